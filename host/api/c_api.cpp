// The C API: thin conversions onto the C++ functions. Each loss has one pair of conversions
// (C params <-> C++ params); the rest is generic. Live handles are kept in a registry so that a
// destroyed (or never created) handle is reported instead of dereferenced.
#include <mutex>
#include <new>
#include <unordered_set>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "host/plan/error.hpp"

struct contrastive_handle {
  contrastive::Handle handle;
};

namespace {

using contrastive::DType;
using contrastive::Reduction;
using contrastive::Similarity;
using contrastive::Status;
using contrastive::Tiling;
namespace infonce = contrastive::infonce;
namespace mnr = contrastive::mnr;
namespace repel = contrastive::repel;

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

// ---- Conversions, one pair per loss ----------------------------------------------------------

template <typename C>
struct CppParams;
template <>
struct CppParams<contrastive_infonce_params_t> {
  using type = infonce::Params;
};
template <>
struct CppParams<contrastive_mnr_per_anchor_params_t> {
  using type = mnr::PerAnchorParams;
};
template <>
struct CppParams<contrastive_mnr_in_batch_params_t> {
  using type = mnr::InBatchParams;
};
template <>
struct CppParams<contrastive_repel_params_t> {
  using type = repel::Params;
};

// The C structs mirror the C++ ones field for field: copy in one direction or the other.
template <typename From, typename To>
void copy_infonce(const From& in, To* out) {
  out->batch = in.batch;
  out->num_keys = in.num_keys;
  out->dim = in.dim;
  out->positive_offset = in.positive_offset;
  out->q_row_stride = in.q_row_stride;
  out->k_row_stride = in.k_row_stride;
  out->tile_rows = in.tile_rows;
  out->tile_cols = in.tile_cols;
  out->workspace_budget = in.workspace_budget;
  out->tile_cache_bytes = in.tile_cache_bytes;
  out->temperature = in.temperature;
  out->eps = in.eps;
}

template <typename From, typename To>
void copy_per_anchor(const From& in, To* out) {
  out->batch = in.batch;
  out->negatives = in.negatives;
  out->dim = in.dim;
  out->anchor_row_stride = in.anchor_row_stride;
  out->positive_row_stride = in.positive_row_stride;
  out->negative_row_stride = in.negative_row_stride;
  out->scale = in.scale;
  out->eps = in.eps;
}

template <typename From, typename To>
void copy_in_batch(const From& in, To* out) {
  out->batch = in.batch;
  out->hard_negatives = in.hard_negatives;
  out->dim = in.dim;
  out->anchor_row_stride = in.anchor_row_stride;
  out->candidate_row_stride = in.candidate_row_stride;
  out->tile_rows = in.tile_rows;
  out->tile_cols = in.tile_cols;
  out->workspace_budget = in.workspace_budget;
  out->tile_cache_bytes = in.tile_cache_bytes;
  out->scale = in.scale;
  out->eps = in.eps;
}

template <typename From, typename To>
void copy_repel(const From& in, To* out) {
  out->batch = in.batch;
  out->negatives = in.negatives;
  out->dim = in.dim;
  out->anchor_row_stride = in.anchor_row_stride;
  out->negative_row_stride = in.negative_row_stride;
  out->margin = in.margin;
  out->eps = in.eps;
}

// The enums and flags of the losses over logits (InfoNCE, in-batch MNR): C ints <-> C++ types.
template <typename C, typename Cpp>
void logits_options_to_cpp(const C& in, Cpp* out) {
  out->dtype = static_cast<DType>(in.dtype);
  out->logits_dtype = static_cast<DType>(in.logits_dtype);
  out->tiling = static_cast<Tiling>(in.tiling);
  out->similarity = static_cast<Similarity>(in.similarity);
  out->reduction = static_cast<Reduction>(in.reduction);
  out->symmetric = in.symmetric != 0;
  out->allow_tf32 = in.allow_tf32 != 0;
}

template <typename Cpp, typename C>
void logits_options_to_c(const Cpp& in, C* out) {
  out->dtype = static_cast<int32_t>(in.dtype);
  out->logits_dtype = static_cast<int32_t>(in.logits_dtype);
  out->tiling = static_cast<int32_t>(in.tiling);
  out->similarity = static_cast<int32_t>(in.similarity);
  out->reduction = static_cast<int32_t>(in.reduction);
  out->symmetric = in.symmetric ? 1 : 0;
  out->allow_tf32 = in.allow_tf32 ? 1 : 0;
}

void to_cpp(const contrastive_infonce_params_t& in, infonce::Params* out) {
  copy_infonce(in, out);
  logits_options_to_cpp(in, out);
}

void to_c(const infonce::Params& in, contrastive_infonce_params_t* out) {
  copy_infonce(in, out);
  logits_options_to_c(in, out);
}

void to_cpp(const contrastive_mnr_per_anchor_params_t& in, mnr::PerAnchorParams* out) {
  copy_per_anchor(in, out);
  out->dtype = static_cast<DType>(in.dtype);
  out->similarity = static_cast<Similarity>(in.similarity);
  out->reduction = static_cast<Reduction>(in.reduction);
}

void to_c(const mnr::PerAnchorParams& in, contrastive_mnr_per_anchor_params_t* out) {
  copy_per_anchor(in, out);
  out->dtype = static_cast<int32_t>(in.dtype);
  out->similarity = static_cast<int32_t>(in.similarity);
  out->reduction = static_cast<int32_t>(in.reduction);
}

void to_cpp(const contrastive_mnr_in_batch_params_t& in, mnr::InBatchParams* out) {
  copy_in_batch(in, out);
  logits_options_to_cpp(in, out);
}

void to_c(const mnr::InBatchParams& in, contrastive_mnr_in_batch_params_t* out) {
  copy_in_batch(in, out);
  logits_options_to_c(in, out);
}

void to_cpp(const contrastive_repel_params_t& in, repel::Params* out) {
  copy_repel(in, out);
  out->dtype = static_cast<DType>(in.dtype);
  out->reduction = static_cast<Reduction>(in.reduction);
  out->mean_over_active = in.mean_over_active != 0;
}

void to_c(const repel::Params& in, contrastive_repel_params_t* out) {
  copy_repel(in, out);
  out->dtype = static_cast<int32_t>(in.dtype);
  out->reduction = static_cast<int32_t>(in.reduction);
  out->mean_over_active = in.mean_over_active ? 1 : 0;
}

// ---- Generic entry points --------------------------------------------------------------------

template <typename C>
Status convert(const C* in, typename CppParams<C>::type* out) {
  if (in == nullptr) return contrastive::detail::fail(Status::kNullPointer, "params is null");
  to_cpp(*in, out);
  return Status::kSuccess;
}

template <typename C>
void init(C* params) {
  if (params == nullptr) return;
  *params = C{};
  to_c(typename CppParams<C>::type{}, params);
}

// check, workspace_size and saved_size of each loss are found by argument-dependent lookup.
template <typename C>
int check_params(const C* c_params) {
  typename CppParams<C>::type params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  return to_int(check(params));
}

template <typename C>
int workspace_bytes(const C* c_params, size_t* bytes) {
  typename CppParams<C>::type params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  return to_int(workspace_size(params, bytes));
}

template <typename C>
int saved_bytes(const C* c_params, size_t* bytes) {
  typename CppParams<C>::type params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  return to_int(saved_size(params, bytes));
}

// Converts the params and runs `body`. Arguments are validated before the handle (as in the C++
// API), so a null or destroyed handle runs the body with an empty handle and reports it after.
template <typename C, typename Body>
int with_handle(contrastive_handle_t handle, const C* c_params, Body body) {
  typename CppParams<C>::type params;
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
  CONTRASTIVE_C_TRY(contrastive::Handle::create(&created, device));
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

// ---- InfoNCE ------------------------------------------------------------------------------------

void contrastive_infonce_params_init(contrastive_infonce_params_t* params) {
  init(params);
}
int contrastive_infonce_check(const contrastive_infonce_params_t* params) {
  return check_params(params);
}
int contrastive_infonce_workspace_size(const contrastive_infonce_params_t* params, size_t* bytes) {
  return workspace_bytes(params, bytes);
}
int contrastive_infonce_saved_size(const contrastive_infonce_params_t* params, size_t* bytes) {
  return saved_bytes(params, bytes);
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

// ---- MNR, per-anchor negatives ------------------------------------------------------------------

void contrastive_mnr_per_anchor_params_init(contrastive_mnr_per_anchor_params_t* params) {
  init(params);
}
int contrastive_mnr_per_anchor_check(const contrastive_mnr_per_anchor_params_t* params) {
  return check_params(params);
}
int contrastive_mnr_per_anchor_workspace_size(const contrastive_mnr_per_anchor_params_t* params,
                                              size_t* bytes) {
  return workspace_bytes(params, bytes);
}
int contrastive_mnr_per_anchor_saved_size(const contrastive_mnr_per_anchor_params_t* params,
                                          size_t* bytes) {
  return saved_bytes(params, bytes);
}

int contrastive_mnr_per_anchor_forward(contrastive_handle_t handle,
                                       const contrastive_mnr_per_anchor_params_t* params,
                                       const void* anchors, const void* positives,
                                       const void* negatives, float* loss, void* saved,
                                       void* workspace, size_t workspace_bytes,
                                       struct CUstream_st* stream) {
  return with_handle(handle, params,
                     [&](const contrastive::Handle& h, const mnr::PerAnchorParams& p) {
                       return mnr::forward(h, p, {anchors, positives, negatives, loss, saved},
                                           workspace, workspace_bytes, stream);
                     });
}

int contrastive_mnr_per_anchor_backward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, const void* saved,
    const float* grad_loss, void* grad_anchors, void* grad_positives, void* grad_negatives,
    float* grad_scale, void* workspace, size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(
      handle, params, [&](const contrastive::Handle& h, const mnr::PerAnchorParams& p) {
        return mnr::backward(h, p,
                             {anchors, positives, negatives, saved, grad_loss, grad_anchors,
                              grad_positives, grad_negatives, grad_scale},
                             workspace, workspace_bytes, stream);
      });
}

int contrastive_mnr_per_anchor_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, float* loss, void* saved,
    const float* grad_loss, void* grad_anchors, void* grad_positives, void* grad_negatives,
    float* grad_scale, void* workspace, size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(
      handle, params, [&](const contrastive::Handle& h, const mnr::PerAnchorParams& p) {
        return mnr::forward_backward(h, p,
                                     {anchors, positives, negatives, loss, saved, grad_loss,
                                      grad_anchors, grad_positives, grad_negatives, grad_scale},
                                     workspace, workspace_bytes, stream);
      });
}

// ---- MNR, in-batch with hard negatives -------------------------------------------------------

void contrastive_mnr_in_batch_params_init(contrastive_mnr_in_batch_params_t* params) {
  init(params);
}
int contrastive_mnr_in_batch_check(const contrastive_mnr_in_batch_params_t* params) {
  return check_params(params);
}
int contrastive_mnr_in_batch_workspace_size(const contrastive_mnr_in_batch_params_t* params,
                                            size_t* bytes) {
  return workspace_bytes(params, bytes);
}
int contrastive_mnr_in_batch_saved_size(const contrastive_mnr_in_batch_params_t* params,
                                        size_t* bytes) {
  return saved_bytes(params, bytes);
}

int contrastive_mnr_in_batch_forward(contrastive_handle_t handle,
                                     const contrastive_mnr_in_batch_params_t* params,
                                     const void* anchors, const void* candidates, float* loss,
                                     void* saved, void* workspace, size_t workspace_bytes,
                                     struct CUstream_st* stream) {
  return with_handle(handle, params,
                     [&](const contrastive::Handle& h, const mnr::InBatchParams& p) {
                       return mnr::forward(h, p, {anchors, candidates, loss, saved}, workspace,
                                           workspace_bytes, stream);
                     });
}

int contrastive_mnr_in_batch_backward(contrastive_handle_t handle,
                                      const contrastive_mnr_in_batch_params_t* params,
                                      const void* anchors, const void* candidates,
                                      const void* saved, const float* grad_loss, void* grad_anchors,
                                      void* grad_candidates, float* grad_scale, void* workspace,
                                      size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(
      handle, params, [&](const contrastive::Handle& h, const mnr::InBatchParams& p) {
        return mnr::backward(
            h, p,
            {anchors, candidates, saved, grad_loss, grad_anchors, grad_candidates, grad_scale},
            workspace, workspace_bytes, stream);
      });
}

int contrastive_mnr_in_batch_forward_backward(contrastive_handle_t handle,
                                              const contrastive_mnr_in_batch_params_t* params,
                                              const void* anchors, const void* candidates,
                                              float* loss, void* saved, const float* grad_loss,
                                              void* grad_anchors, void* grad_candidates,
                                              float* grad_scale, void* workspace,
                                              size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(handle, params,
                     [&](const contrastive::Handle& h, const mnr::InBatchParams& p) {
                       return mnr::forward_backward(h, p,
                                                    {anchors, candidates, loss, saved, grad_loss,
                                                     grad_anchors, grad_candidates, grad_scale},
                                                    workspace, workspace_bytes, stream);
                     });
}

// ---- Repel ------------------------------------------------------------------------------------

void contrastive_repel_params_init(contrastive_repel_params_t* params) {
  init(params);
}
int contrastive_repel_check(const contrastive_repel_params_t* params) {
  return check_params(params);
}
int contrastive_repel_workspace_size(const contrastive_repel_params_t* params, size_t* bytes) {
  return workspace_bytes(params, bytes);
}
int contrastive_repel_saved_size(const contrastive_repel_params_t* params, size_t* bytes) {
  return saved_bytes(params, bytes);
}

int contrastive_repel_forward(contrastive_handle_t handle, const contrastive_repel_params_t* params,
                              const void* anchors, const void* negatives, float* loss, void* saved,
                              void* workspace, size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(handle, params, [&](const contrastive::Handle& h, const repel::Params& p) {
    return repel::forward(h, p, {anchors, negatives, loss, saved}, workspace, workspace_bytes,
                          stream);
  });
}

int contrastive_repel_backward(contrastive_handle_t handle,
                               const contrastive_repel_params_t* params, const void* anchors,
                               const void* negatives, const void* saved, const float* grad_loss,
                               void* grad_anchors, void* grad_negatives, void* workspace,
                               size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(handle, params, [&](const contrastive::Handle& h, const repel::Params& p) {
    return repel::backward(h, p,
                           {anchors, negatives, saved, grad_loss, grad_anchors, grad_negatives},
                           workspace, workspace_bytes, stream);
  });
}

int contrastive_repel_forward_backward(contrastive_handle_t handle,
                                       const contrastive_repel_params_t* params,
                                       const void* anchors, const void* negatives, float* loss,
                                       void* saved, const float* grad_loss, void* grad_anchors,
                                       void* grad_negatives, void* workspace,
                                       size_t workspace_bytes, struct CUstream_st* stream) {
  return with_handle(handle, params, [&](const contrastive::Handle& h, const repel::Params& p) {
    return repel::forward_backward(
        h, p, {anchors, negatives, loss, saved, grad_loss, grad_anchors, grad_negatives}, workspace,
        workspace_bytes, stream);
  });
}

}  // extern "C"
