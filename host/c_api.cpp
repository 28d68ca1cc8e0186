// The C API: thin conversions onto the C++ functions. Live handles are kept in a registry so that
// a destroyed (or never created) handle is reported instead of dereferenced.
#include <mutex>
#include <new>
#include <unordered_set>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "host/error.hpp"

struct contrastive_handle {
  contrastive::Handle handle;
};

namespace {

using contrastive::Status;
namespace infonce = contrastive::infonce;

std::mutex g_registry_mutex;
std::unordered_set<const contrastive_handle*>& registry() {
  static auto* live = new std::unordered_set<const contrastive_handle*>();  // never destroyed:
  return *live;  // handles may be released from other static destructors
}

bool is_live(const contrastive_handle* handle) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  return registry().count(handle) != 0;
}

int to_int(Status status) {
  return static_cast<int>(status);
}

#define CONTRASTIVE_C_TRY(expr)                      \
  do {                                               \
    const Status contrastive_c_status_ = (expr);     \
    if (contrastive_c_status_ != Status::kSuccess) { \
      return to_int(contrastive_c_status_);          \
    }                                                \
  } while (0)

Status convert(const contrastive_infonce_params_t* in, infonce::Params* out) {
  if (in == nullptr)
    return contrastive::detail::fail(Status::kNullPointer, "infonce: params is null");
  out->batch = in->batch;
  out->num_keys = in->num_keys;
  out->dim = in->dim;
  out->positive_offset = in->positive_offset;
  out->q_row_stride = in->q_row_stride;
  out->k_row_stride = in->k_row_stride;
  out->tile_rows = in->tile_rows;
  out->tile_cols = in->tile_cols;
  out->dtype = static_cast<contrastive::DType>(in->dtype);
  out->similarity = static_cast<contrastive::Similarity>(in->similarity);
  out->reduction = static_cast<contrastive::Reduction>(in->reduction);
  out->symmetric = in->symmetric != 0;
  out->allow_tf32 = in->allow_tf32 != 0;
  out->temperature = in->temperature;
  out->eps = in->eps;
  return Status::kSuccess;
}

// Converts the params and runs `body`. Arguments are validated before the handle (as in the C++
// API), so a null or destroyed handle runs the body with an empty handle and reports it after.
template <typename Body>
int with_handle(contrastive_handle_t handle, const contrastive_infonce_params_t* c_params,
                Body body) {
  infonce::Params params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  static const contrastive::Handle empty;
  const bool live = handle != nullptr && is_live(handle);
  const Status status = body(live ? handle->handle : empty, params);
  if (status == Status::kInvalidHandle && !live) {
    return to_int(contrastive::detail::fail(
        Status::kInvalidHandle,
        handle == nullptr ? "handle is null" : "handle was destroyed (contrastive_destroy)"));
  }
  return to_int(status);
}

}  // namespace

extern "C" {

const char* contrastive_status_string(int status) {
  return contrastive::status_string(static_cast<Status>(status));
}

const char* contrastive_last_error(void) {
  return contrastive::last_error_message();
}

int contrastive_create(contrastive_handle_t* handle, int device) {
  if (handle == nullptr) {
    return to_int(
        contrastive::detail::fail(Status::kNullPointer, "contrastive_create: handle is null"));
  }
  contrastive::Handle created;
  const Status status = contrastive::Handle::create(&created, device);
  if (status != Status::kSuccess) return to_int(status);
  auto* wrapper = new (std::nothrow) contrastive_handle{std::move(created)};
  if (wrapper == nullptr) {
    return to_int(contrastive::detail::fail(Status::kInternalError,
                                            "contrastive_create: out of host memory"));
  }
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    registry().insert(wrapper);
  }
  *handle = wrapper;
  return to_int(Status::kSuccess);
}

int contrastive_destroy(contrastive_handle_t handle) {
  if (handle == nullptr) return to_int(Status::kSuccess);
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    if (registry().erase(handle) == 0) {
      return to_int(contrastive::detail::fail(Status::kInvalidHandle,
                                              "contrastive_destroy: handle was already destroyed"));
    }
  }
  delete handle;
  return to_int(Status::kSuccess);
}

void contrastive_infonce_params_init(contrastive_infonce_params_t* params) {
  if (params == nullptr) return;
  const infonce::Params defaults;
  *params = contrastive_infonce_params_t{};
  params->batch = defaults.batch;
  params->num_keys = defaults.num_keys;
  params->dim = defaults.dim;
  params->positive_offset = defaults.positive_offset;
  params->q_row_stride = defaults.q_row_stride;
  params->k_row_stride = defaults.k_row_stride;
  params->tile_rows = defaults.tile_rows;
  params->tile_cols = defaults.tile_cols;
  params->dtype = static_cast<int32_t>(defaults.dtype);
  params->similarity = static_cast<int32_t>(defaults.similarity);
  params->reduction = static_cast<int32_t>(defaults.reduction);
  params->symmetric = defaults.symmetric ? 1 : 0;
  params->allow_tf32 = defaults.allow_tf32 ? 1 : 0;
  params->temperature = defaults.temperature;
  params->eps = defaults.eps;
}

int contrastive_infonce_check(const contrastive_infonce_params_t* c_params) {
  infonce::Params params;
  Status status = convert(c_params, &params);
  if (status == Status::kSuccess) status = infonce::check(params);
  return to_int(status);
}

int contrastive_infonce_workspace_size(const contrastive_infonce_params_t* c_params,
                                       size_t* bytes) {
  infonce::Params params;
  Status status = convert(c_params, &params);
  if (status == Status::kSuccess) status = infonce::workspace_size(params, bytes);
  return to_int(status);
}

int contrastive_infonce_saved_size(const contrastive_infonce_params_t* c_params, size_t* bytes) {
  infonce::Params params;
  Status status = convert(c_params, &params);
  if (status == Status::kSuccess) status = infonce::saved_size(params, bytes);
  return to_int(status);
}

int contrastive_infonce_forward(contrastive_handle_t handle,
                                const contrastive_infonce_params_t* params, const void* q,
                                const void* k, float* loss, void* saved, void* workspace,
                                size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(handle, params, [&](const contrastive::Handle& h, const infonce::Params& p) {
    return infonce::forward(h, p, {q, k, loss, saved}, workspace, workspace_bytes, stream);
  });
}

int contrastive_infonce_backward(contrastive_handle_t handle,
                                 const contrastive_infonce_params_t* params, const void* q,
                                 const void* k, const void* saved, const float* grad_loss,
                                 void* grad_q, void* grad_k, float* grad_temperature,
                                 void* workspace, size_t workspace_bytes,
                                 struct CUstream_st* stream) {
  return with_handle(handle, params, [&](const contrastive::Handle& h, const infonce::Params& p) {
    return infonce::backward(h, p, {q, k, saved, grad_loss, grad_q, grad_k, grad_temperature},
                             workspace, workspace_bytes, stream);
  });
}

int contrastive_infonce_forward_backward(contrastive_handle_t handle,
                                         const contrastive_infonce_params_t* params, const void* q,
                                         const void* k, float* loss, void* saved,
                                         const float* grad_loss, void* grad_q, void* grad_k,
                                         float* grad_temperature, void* workspace,
                                         size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(handle, params, [&](const contrastive::Handle& h, const infonce::Params& p) {
    return infonce::forward_backward(
        h, p, {q, k, loss, saved, grad_loss, grad_q, grad_k, grad_temperature}, workspace,
        workspace_bytes, stream);
  });
}

}  // extern "C"
