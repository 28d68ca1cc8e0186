// The C API: thin conversions onto the C++ functions. Each loss has one pair of conversions
// (C params <-> C++ params); the rest is generic. Three rules hold for every entry point
// (docs/c-api.md):
//   - nothing escapes: each body runs inside guarded(), which turns any exception into a status
//     and a message, and everything it allocated is owned (no leak on any failure);
//   - a params struct is read only after its magic and struct_size say which layout it has, and
//     never past struct_size; the layouts are pinned below by static_assert;
//   - live handles are kept in a registry, so a destroyed (or never created) handle is reported
//     instead of dereferenced.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
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
using contrastive::detail::fail;
namespace infonce = contrastive::infonce;
namespace mnr = contrastive::mnr;
namespace repel = contrastive::repel;

// ---- The layouts, pinned ------------------------------------------------------------------------
// Fields are never moved or removed. A new field takes the place of `reserved` (its default must
// be 0: every older caller has 0 there) or goes after the last field, with explicit padding where
// needed; then the struct grows and the old size stays in Layout<C>::sizes, so a caller built
// against an older header is served: the fields past its struct_size take their defaults. A
// changed offset below is an ABI break.

#define CONTRASTIVE_PIN_FIELD(type, field, offset) \
  static_assert(offsetof(type, field) == (offset), #type "::" #field " moved")

CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, struct_size, 0);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, magic, 4);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, batch, 8);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, num_keys, 16);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, dim, 24);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, positive_offset, 32);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, q_row_stride, 40);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, k_row_stride, 48);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, tile_rows, 56);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, tile_cols, 64);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, workspace_budget, 72);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, tile_cache_bytes, 80);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, tiling, 88);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, dtype, 92);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, similarity, 96);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, reduction, 100);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, symmetric, 104);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, allow_tf32, 108);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, logits_dtype, 112);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, temperature, 116);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, eps, 120);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, reserved, 124);
static_assert(sizeof(contrastive_infonce_params_t) == 128, "contrastive_infonce_params_t resized");

CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, struct_size, 0);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, magic, 4);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, batch, 8);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, negatives, 16);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, dim, 24);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, anchor_row_stride, 32);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, positive_row_stride, 40);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, negative_row_stride, 48);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, dtype, 56);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, similarity, 60);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, reduction, 64);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, scale, 68);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, eps, 72);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, reserved, 76);
static_assert(sizeof(contrastive_mnr_per_anchor_params_t) == 80,
              "contrastive_mnr_per_anchor_params_t resized");

CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, struct_size, 0);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, magic, 4);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, batch, 8);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, hard_negatives, 16);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, dim, 24);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, anchor_row_stride, 32);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, candidate_row_stride, 40);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, tile_rows, 48);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, tile_cols, 56);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, workspace_budget, 64);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, tile_cache_bytes, 72);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, tiling, 80);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, dtype, 84);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, similarity, 88);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, reduction, 92);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, symmetric, 96);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, allow_tf32, 100);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, logits_dtype, 104);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, scale, 108);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, eps, 112);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, reserved, 116);
static_assert(sizeof(contrastive_mnr_in_batch_params_t) == 120,
              "contrastive_mnr_in_batch_params_t resized");

CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, struct_size, 0);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, magic, 4);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, batch, 8);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, negatives, 16);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, dim, 24);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, anchor_row_stride, 32);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, negative_row_stride, 40);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, dtype, 48);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, reduction, 52);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, mean_over_active, 56);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, margin, 60);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, eps, 64);
CONTRASTIVE_PIN_FIELD(contrastive_repel_params_t, reserved, 68);
static_assert(sizeof(contrastive_repel_params_t) == 72, "contrastive_repel_params_t resized");

#undef CONTRASTIVE_PIN_FIELD

// Per C struct: its C++ params, its names, the sizes of every layout published with struct_size
// (oldest first, the current one last), and the size of the layout from before struct_size
// existed (what a caller built against that header passes to the unsuffixed _params_init symbol).
template <typename C>
struct Layout;
template <>
struct Layout<contrastive_infonce_params_t> {
  using Cpp = infonce::Params;
  static constexpr const char* name = "contrastive_infonce_params_t";
  static constexpr const char* init = "contrastive_infonce_params_init";
  static constexpr std::uint32_t sizes[] = {128};
  static constexpr std::size_t unversioned_size = 120;
};
template <>
struct Layout<contrastive_mnr_per_anchor_params_t> {
  using Cpp = mnr::PerAnchorParams;
  static constexpr const char* name = "contrastive_mnr_per_anchor_params_t";
  static constexpr const char* init = "contrastive_mnr_per_anchor_params_init";
  static constexpr std::uint32_t sizes[] = {80};
  static constexpr std::size_t unversioned_size = 72;
};
template <>
struct Layout<contrastive_mnr_in_batch_params_t> {
  using Cpp = mnr::InBatchParams;
  static constexpr const char* name = "contrastive_mnr_in_batch_params_t";
  static constexpr const char* init = "contrastive_mnr_in_batch_params_init";
  static constexpr std::uint32_t sizes[] = {120};
  static constexpr std::size_t unversioned_size = 112;
};
template <>
struct Layout<contrastive_repel_params_t> {
  using Cpp = repel::Params;
  static constexpr const char* name = "contrastive_repel_params_t";
  static constexpr const char* init = "contrastive_repel_params_init";
  static constexpr std::uint32_t sizes[] = {72};
  static constexpr std::size_t unversioned_size = 64;
};

template <typename C>
constexpr std::uint32_t current_size() {
  constexpr std::size_t count = sizeof(Layout<C>::sizes) / sizeof(Layout<C>::sizes[0]);
  static_assert(Layout<C>::sizes[count - 1] == sizeof(C), "the current layout is the last size");
  return Layout<C>::sizes[count - 1];
}

// ---- Exceptions, handles
// --------------------------------------------------------------------------

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

/// Runs `body` (which returns an int status) and turns anything it throws into
/// CONTRASTIVE_INTERNAL_ERROR with a message naming `function`.
template <typename Body>
int guarded(const char* function, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return to_int(
        fail(Status::kInternalError, "%s: out of host memory (std::bad_alloc)", function));
  } catch (const std::exception& error) {
    return to_int(
        fail(Status::kInternalError, "%s: unexpected exception: %s", function, error.what()));
  } catch (...) {
    return to_int(
        fail(Status::kInternalError, "%s: unexpected exception of unknown type", function));
  }
}

// The live handles. The set lives in static storage and is never destroyed (handles may be
// released from other static destructors); building it allocates nothing, so only create()
// allocates: the node of a new handle.
struct Registry {
  std::mutex mutex;
  std::unordered_set<const contrastive_handle*> live;
};

Registry& registry() {
  alignas(Registry) static unsigned char storage[sizeof(Registry)];
  static Registry* const instance = new (storage) Registry();
  return *instance;
}

bool is_live(const contrastive_handle* handle) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.live.count(handle) != 0;
}

// ---- Conversions, one pair per loss ----------------------------------------------------------

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

// ---- Reading and writing the C structs ---------------------------------------------------------

struct Header {
  std::uint32_t struct_size, magic;
};

/// Whether `size` is a published layout of C; otherwise the failure, with nothing read or written.
template <typename C>
Status require_known_size(std::size_t size) {
  using L = Layout<C>;
  for (const std::uint32_t known : L::sizes) {
    if (size == known) return Status::kSuccess;
  }
  if (size > current_size<C>()) {
    return fail(Status::kNotSupported,
                "%s: struct_size %zu is larger than this library's %u: the caller was built "
                "against a newer contrastive.h than the library it runs with",
                L::name, size, current_size<C>());
  }
  return fail(Status::kInvalidArgument,
              "%s: struct_size %zu is not a layout this library knows (it has %u bytes): set "
              "struct_size with %s()",
              L::name, size, current_size<C>(), L::init);
}

/// The defaults of the C++ params in the current layout, with struct_size and magic set.
template <typename C>
C defaults() {
  C params{};
  to_c(typename Layout<C>::Cpp{}, &params);
  params.struct_size = current_size<C>();
  params.magic = CONTRASTIVE_PARAMS_MAGIC;
  params.reserved = 0;
  return params;
}

template <typename C>
int init_sized(C* params, std::size_t struct_size) {
  if (params == nullptr) {
    return to_int(fail(Status::kNullPointer, "%s_sized: params is null", Layout<C>::init));
  }
  CONTRASTIVE_C_TRY(require_known_size<C>(struct_size));
  C values = defaults<C>();
  values.struct_size = static_cast<std::uint32_t>(struct_size);
  std::memcpy(params, &values, struct_size);  // an older layout is a prefix of the current one
  return to_int(Status::kSuccess);
}

/// Reads the caller's struct: its header first (8 bytes, in every layout), then struct_size
/// bytes over the defaults; converts to the C++ params.
template <typename C>
Status convert(const C* in, typename Layout<C>::Cpp* out) {
  using L = Layout<C>;
  if (in == nullptr) return fail(Status::kNullPointer, "params is null");
  Header header;
  std::memcpy(&header, static_cast<const void*>(in), sizeof header);
  if (header.magic != CONTRASTIVE_PARAMS_MAGIC) {
    return fail(Status::kInvalidArgument,
                "%s: magic is 0x%08x, not CONTRASTIVE_PARAMS_MAGIC: call %s() before setting "
                "fields (a caller built against a contrastive.h without struct_size and magic "
                "must be rebuilt)",
                L::name, static_cast<unsigned>(header.magic), L::init);
  }
  CONTRASTIVE_TRY(require_known_size<C>(header.struct_size));
  C params = defaults<C>();
  std::memcpy(&params, static_cast<const void*>(in), header.struct_size);
  if (params.reserved != 0) {
    return fail(Status::kInvalidArgument, "%s: reserved must be 0, got %u", L::name,
                static_cast<unsigned>(params.reserved));
  }
  to_cpp(params, out);
  return Status::kSuccess;
}

/// What the unsuffixed _params_init symbol does: only a caller built against the header from
/// before struct_size calls it (this header maps the name onto _params_init_sized). Its struct has
/// the layout of that header: zero it, never past its end, and leave a message; every later call
/// with it is refused (its magic is 0).
template <typename C>
void init_unversioned(void* params) {
  if (params != nullptr) std::memset(params, 0, Layout<C>::unversioned_size);
  (void)fail(Status::kInvalidArgument,
             "%s: the caller was built against a contrastive.h without struct_size and magic; "
             "rebuild it against this one",
             Layout<C>::init);
}

// check, workspace_size and saved_size of each loss are found by argument-dependent lookup.
template <typename C>
int check_params(const C* c_params) {
  typename Layout<C>::Cpp params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  return to_int(check(params));
}

template <typename C>
int workspace_bytes(const C* c_params, size_t* bytes) {
  typename Layout<C>::Cpp params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  return to_int(workspace_size(params, bytes));
}

template <typename C>
int saved_bytes(const C* c_params, size_t* bytes) {
  typename Layout<C>::Cpp params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  return to_int(saved_size(params, bytes));
}

// Converts the params and runs `body`. Arguments are validated before the handle (as in the C++
// API), so a null or destroyed handle runs the body with an empty handle and reports it after.
template <typename C, typename Body>
int with_handle(contrastive_handle_t handle, const C* c_params, Body body) {
  typename Layout<C>::Cpp params;
  CONTRASTIVE_C_TRY(convert(c_params, &params));
  static const contrastive::Handle empty;
  const bool live = handle != nullptr && is_live(handle);
  const Status status = body(live ? handle->handle : empty, params);
  if (status == Status::kInvalidHandle && !live) {
    return to_int(fail(Status::kInvalidHandle, handle == nullptr
                                                   ? "handle is null"
                                                   : "handle was destroyed (contrastive_destroy)"));
  }
  return to_int(status);
}

// Removes a registry entry; true when it was there.
bool unregister(const contrastive_handle* handle) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.live.erase(handle) != 0;
}

int create(contrastive_handle_t* handle, int device) {
  if (handle == nullptr)
    return to_int(fail(Status::kNullPointer, "contrastive_create: handle is null"));
  std::unique_ptr<contrastive_handle> wrapper(new (std::nothrow) contrastive_handle{});
  if (wrapper == nullptr) {
    return to_int(fail(Status::kInternalError, "contrastive_create: out of host memory"));
  }
  // Register first: once the handle (its cuBLAS handles) exists, nothing may fail any more.
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.live.insert(wrapper.get());
  }
  Status status = Status::kInternalError;
  try {
    status = contrastive::Handle::create(&wrapper->handle, device);
  } catch (...) {
    (void)unregister(wrapper.get());
    throw;
  }
  if (status != Status::kSuccess) {
    (void)unregister(wrapper.get());
    return to_int(status);
  }
  *handle = wrapper.release();
  return to_int(Status::kSuccess);
}

int destroy(contrastive_handle_t handle) {
  if (handle == nullptr) return to_int(Status::kSuccess);
  if (!unregister(handle)) {
    return to_int(
        fail(Status::kInvalidHandle, "contrastive_destroy: handle was already destroyed"));
  }
  delete handle;
  return to_int(Status::kSuccess);
}

}  // namespace

extern "C" {

// The symbols of callers built against the header from before struct_size (see init_unversioned).
CONTRASTIVE_API void(contrastive_infonce_params_init)(void* params) noexcept;
CONTRASTIVE_API void(contrastive_mnr_per_anchor_params_init)(void* params) noexcept;
CONTRASTIVE_API void(contrastive_mnr_in_batch_params_init)(void* params) noexcept;
CONTRASTIVE_API void(contrastive_repel_params_init)(void* params) noexcept;

void(contrastive_infonce_params_init)(void* params) noexcept {
  init_unversioned<contrastive_infonce_params_t>(params);
}
void(contrastive_mnr_per_anchor_params_init)(void* params) noexcept {
  init_unversioned<contrastive_mnr_per_anchor_params_t>(params);
}
void(contrastive_mnr_in_batch_params_init)(void* params) noexcept {
  init_unversioned<contrastive_mnr_in_batch_params_t>(params);
}
void(contrastive_repel_params_init)(void* params) noexcept {
  init_unversioned<contrastive_repel_params_t>(params);
}

const char* contrastive_status_string(int status) noexcept {
  return contrastive::status_string(static_cast<Status>(status));
}

const char* contrastive_last_error(void) noexcept {
  return contrastive::last_error_message();
}

int contrastive_create(contrastive_handle_t* handle, int device) noexcept {
  return guarded(__func__, [&] { return create(handle, device); });
}

int contrastive_destroy(contrastive_handle_t handle) noexcept {
  return guarded(__func__, [&] { return destroy(handle); });
}

// ---- InfoNCE ------------------------------------------------------------------------------------

int contrastive_infonce_params_init_sized(contrastive_infonce_params_t* params,
                                          size_t struct_size) noexcept {
  return guarded(__func__, [&] { return init_sized(params, struct_size); });
}
int contrastive_infonce_check(const contrastive_infonce_params_t* params) noexcept {
  return guarded(__func__, [&] { return check_params(params); });
}
int contrastive_infonce_workspace_size(const contrastive_infonce_params_t* params,
                                       size_t* bytes) noexcept {
  return guarded(__func__, [&] { return workspace_bytes(params, bytes); });
}
int contrastive_infonce_saved_size(const contrastive_infonce_params_t* params,
                                   size_t* bytes) noexcept {
  return guarded(__func__, [&] { return saved_bytes(params, bytes); });
}

int contrastive_infonce_forward(contrastive_handle_t handle,
                                const contrastive_infonce_params_t* params, const void* q,
                                const void* k, float* loss, void* saved, void* workspace,
                                size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params, [&](const contrastive::Handle& h, const infonce::Params& p) {
      return infonce::forward(h, p, {q, k, loss, saved}, workspace, workspace_bytes, stream);
    });
  });
}

int contrastive_infonce_backward(contrastive_handle_t handle,
                                 const contrastive_infonce_params_t* params, const void* q,
                                 const void* k, const void* saved, const float* grad_loss,
                                 void* grad_q, void* grad_k, float* grad_temperature,
                                 void* workspace, size_t workspace_bytes,
                                 struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params, [&](const contrastive::Handle& h, const infonce::Params& p) {
      return infonce::backward(h, p, {q, k, saved, grad_loss, grad_q, grad_k, grad_temperature},
                               workspace, workspace_bytes, stream);
    });
  });
}

int contrastive_infonce_forward_backward(contrastive_handle_t handle,
                                         const contrastive_infonce_params_t* params, const void* q,
                                         const void* k, float* loss, void* saved,
                                         const float* grad_loss, void* grad_q, void* grad_k,
                                         float* grad_temperature, void* workspace,
                                         size_t workspace_bytes,
                                         struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params, [&](const contrastive::Handle& h, const infonce::Params& p) {
      return infonce::forward_backward(
          h, p, {q, k, loss, saved, grad_loss, grad_q, grad_k, grad_temperature}, workspace,
          workspace_bytes, stream);
    });
  });
}

// ---- MNR, per-anchor negatives ------------------------------------------------------------------

int contrastive_mnr_per_anchor_params_init_sized(contrastive_mnr_per_anchor_params_t* params,
                                                 size_t struct_size) noexcept {
  return guarded(__func__, [&] { return init_sized(params, struct_size); });
}
int contrastive_mnr_per_anchor_check(const contrastive_mnr_per_anchor_params_t* params) noexcept {
  return guarded(__func__, [&] { return check_params(params); });
}
int contrastive_mnr_per_anchor_workspace_size(const contrastive_mnr_per_anchor_params_t* params,
                                              size_t* bytes) noexcept {
  return guarded(__func__, [&] { return workspace_bytes(params, bytes); });
}
int contrastive_mnr_per_anchor_saved_size(const contrastive_mnr_per_anchor_params_t* params,
                                          size_t* bytes) noexcept {
  return guarded(__func__, [&] { return saved_bytes(params, bytes); });
}

int contrastive_mnr_per_anchor_forward(contrastive_handle_t handle,
                                       const contrastive_mnr_per_anchor_params_t* params,
                                       const void* anchors, const void* positives,
                                       const void* negatives, float* loss, void* saved,
                                       void* workspace, size_t workspace_bytes,
                                       struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params,
                       [&](const contrastive::Handle& h, const mnr::PerAnchorParams& p) {
                         return mnr::forward(h, p, {anchors, positives, negatives, loss, saved},
                                             workspace, workspace_bytes, stream);
                       });
  });
}

int contrastive_mnr_per_anchor_backward(contrastive_handle_t handle,
                                        const contrastive_mnr_per_anchor_params_t* params,
                                        const void* anchors, const void* positives,
                                        const void* negatives, const void* saved,
                                        const float* grad_loss, void* grad_anchors,
                                        void* grad_positives, void* grad_negatives,
                                        float* grad_scale, void* workspace, size_t workspace_bytes,
                                        struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(
        handle, params, [&](const contrastive::Handle& h, const mnr::PerAnchorParams& p) {
          return mnr::backward(h, p,
                               {anchors, positives, negatives, saved, grad_loss, grad_anchors,
                                grad_positives, grad_negatives, grad_scale},
                               workspace, workspace_bytes, stream);
        });
  });
}

int contrastive_mnr_per_anchor_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, float* loss, void* saved,
    const float* grad_loss, void* grad_anchors, void* grad_positives, void* grad_negatives,
    float* grad_scale, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(
        handle, params, [&](const contrastive::Handle& h, const mnr::PerAnchorParams& p) {
          return mnr::forward_backward(h, p,
                                       {anchors, positives, negatives, loss, saved, grad_loss,
                                        grad_anchors, grad_positives, grad_negatives, grad_scale},
                                       workspace, workspace_bytes, stream);
        });
  });
}

// ---- MNR, in-batch with hard negatives -------------------------------------------------------

int contrastive_mnr_in_batch_params_init_sized(contrastive_mnr_in_batch_params_t* params,
                                               size_t struct_size) noexcept {
  return guarded(__func__, [&] { return init_sized(params, struct_size); });
}
int contrastive_mnr_in_batch_check(const contrastive_mnr_in_batch_params_t* params) noexcept {
  return guarded(__func__, [&] { return check_params(params); });
}
int contrastive_mnr_in_batch_workspace_size(const contrastive_mnr_in_batch_params_t* params,
                                            size_t* bytes) noexcept {
  return guarded(__func__, [&] { return workspace_bytes(params, bytes); });
}
int contrastive_mnr_in_batch_saved_size(const contrastive_mnr_in_batch_params_t* params,
                                        size_t* bytes) noexcept {
  return guarded(__func__, [&] { return saved_bytes(params, bytes); });
}

int contrastive_mnr_in_batch_forward(contrastive_handle_t handle,
                                     const contrastive_mnr_in_batch_params_t* params,
                                     const void* anchors, const void* candidates, float* loss,
                                     void* saved, void* workspace, size_t workspace_bytes,
                                     struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params,
                       [&](const contrastive::Handle& h, const mnr::InBatchParams& p) {
                         return mnr::forward(h, p, {anchors, candidates, loss, saved}, workspace,
                                             workspace_bytes, stream);
                       });
  });
}

int contrastive_mnr_in_batch_backward(contrastive_handle_t handle,
                                      const contrastive_mnr_in_batch_params_t* params,
                                      const void* anchors, const void* candidates,
                                      const void* saved, const float* grad_loss, void* grad_anchors,
                                      void* grad_candidates, float* grad_scale, void* workspace,
                                      size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(
        handle, params, [&](const contrastive::Handle& h, const mnr::InBatchParams& p) {
          return mnr::backward(
              h, p,
              {anchors, candidates, saved, grad_loss, grad_anchors, grad_candidates, grad_scale},
              workspace, workspace_bytes, stream);
        });
  });
}

int contrastive_mnr_in_batch_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_in_batch_params_t* params,
    const void* anchors, const void* candidates, float* loss, void* saved, const float* grad_loss,
    void* grad_anchors, void* grad_candidates, float* grad_scale, void* workspace,
    size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params,
                       [&](const contrastive::Handle& h, const mnr::InBatchParams& p) {
                         return mnr::forward_backward(h, p,
                                                      {anchors, candidates, loss, saved, grad_loss,
                                                       grad_anchors, grad_candidates, grad_scale},
                                                      workspace, workspace_bytes, stream);
                       });
  });
}

// ---- Repel ------------------------------------------------------------------------------------

int contrastive_repel_params_init_sized(contrastive_repel_params_t* params,
                                        size_t struct_size) noexcept {
  return guarded(__func__, [&] { return init_sized(params, struct_size); });
}
int contrastive_repel_check(const contrastive_repel_params_t* params) noexcept {
  return guarded(__func__, [&] { return check_params(params); });
}
int contrastive_repel_workspace_size(const contrastive_repel_params_t* params,
                                     size_t* bytes) noexcept {
  return guarded(__func__, [&] { return workspace_bytes(params, bytes); });
}
int contrastive_repel_saved_size(const contrastive_repel_params_t* params, size_t* bytes) noexcept {
  return guarded(__func__, [&] { return saved_bytes(params, bytes); });
}

int contrastive_repel_forward(contrastive_handle_t handle, const contrastive_repel_params_t* params,
                              const void* anchors, const void* negatives, float* loss, void* saved,
                              void* workspace, size_t workspace_bytes,
                              struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params, [&](const contrastive::Handle& h, const repel::Params& p) {
      return repel::forward(h, p, {anchors, negatives, loss, saved}, workspace, workspace_bytes,
                            stream);
    });
  });
}

int contrastive_repel_backward(contrastive_handle_t handle,
                               const contrastive_repel_params_t* params, const void* anchors,
                               const void* negatives, const void* saved, const float* grad_loss,
                               void* grad_anchors, void* grad_negatives, void* workspace,
                               size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params, [&](const contrastive::Handle& h, const repel::Params& p) {
      return repel::backward(h, p,
                             {anchors, negatives, saved, grad_loss, grad_anchors, grad_negatives},
                             workspace, workspace_bytes, stream);
    });
  });
}

int contrastive_repel_forward_backward(contrastive_handle_t handle,
                                       const contrastive_repel_params_t* params,
                                       const void* anchors, const void* negatives, float* loss,
                                       void* saved, const float* grad_loss, void* grad_anchors,
                                       void* grad_negatives, void* workspace,
                                       size_t workspace_bytes,
                                       struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return with_handle(handle, params, [&](const contrastive::Handle& h, const repel::Params& p) {
      return repel::forward_backward(
          h, p, {anchors, negatives, loss, saved, grad_loss, grad_anchors, grad_negatives},
          workspace, workspace_bytes, stream);
    });
  });
}

}  // extern "C"
