// The C API: thin conversions onto the C++ functions, built from each loss's description
// (host/describe/losses.hpp). Each loss has its pinned layout, one CONTRASTIVE_LAYOUT line (the C
// and C++ params copied field by field from the description's field list), one
// CONTRASTIVE_C_PARAMS_ENTRY_POINTS line, and its three pass functions, whose bodies hand their
// pointers, in signature order, to the description's run(). Three rules hold for every entry
// point (docs/c-api.md):
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
#include "host/describe/losses.hpp"
#include "host/plan/error.hpp"

struct contrastive_handle {
  contrastive::Handle handle;
};

namespace {

using contrastive::Pass;
using contrastive::Status;
using contrastive::detail::fail;
namespace infonce = contrastive::infonce;
namespace mnr = contrastive::mnr;
namespace repel = contrastive::repel;
namespace siglip = contrastive::siglip;

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
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, log_scale, 128);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, max_scale, 132);
CONTRASTIVE_PIN_FIELD(contrastive_infonce_params_t, temperature_device, 136);
static_assert(sizeof(contrastive_infonce_params_t) == 144, "contrastive_infonce_params_t resized");

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
CONTRASTIVE_PIN_FIELD(contrastive_mnr_per_anchor_params_t, scale_device, 80);
static_assert(sizeof(contrastive_mnr_per_anchor_params_t) == 88,
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
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, log_scale, 120);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, max_scale, 124);
CONTRASTIVE_PIN_FIELD(contrastive_mnr_in_batch_params_t, scale_device, 128);
static_assert(sizeof(contrastive_mnr_in_batch_params_t) == 136,
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

CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, struct_size, 0);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, magic, 4);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, batch, 8);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, num_keys, 16);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, dim, 24);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, positive_offset, 32);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, q_row_stride, 40);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, k_row_stride, 48);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, tile_rows, 56);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, tile_cols, 64);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, workspace_budget, 72);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, tile_cache_bytes, 80);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, tiling, 88);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, dtype, 92);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, similarity, 96);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, reduction, 100);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, log_scale, 104);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, negatives_only, 108);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, allow_tf32, 112);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, logits_dtype, 116);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, scale, 120);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, bias, 124);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, eps, 128);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, reserved, 132);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, max_scale, 136);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, reserved_2, 140);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, scale_device, 144);
CONTRASTIVE_PIN_FIELD(contrastive_siglip_params_t, bias_device, 152);
static_assert(sizeof(contrastive_siglip_params_t) == 160, "contrastive_siglip_params_t resized");
static_assert(sizeof(const float*) == 8, "the layouts hold 64-bit device pointers");

#undef CONTRASTIVE_PIN_FIELD

// Per C struct: its C++ params, its names, the sizes of every layout published with struct_size
// (oldest first, the current one last), the size of the layout from before struct_size existed
// (what a caller built against that header passes to the unsuffixed _params_init symbol), and
// copy(): the C struct and the C++ params have the same fields (host/describe/losses.hpp lists
// them), copied in either direction (enums and flags as int32_t in C).
template <typename C>
struct Layout;

#define CONTRASTIVE_COPY_FIELD(field) out->field = static_cast<decltype(out->field)>(in.field);
#define CONTRASTIVE_LAYOUT(api, Params, FIELDS, unversioned, ...)           \
  template <>                                                               \
  struct Layout<contrastive_##api##_params_t> {                             \
    using Cpp = Params;                                                     \
    static constexpr const char* name = "contrastive_" #api "_params_t";    \
    static constexpr const char* init = "contrastive_" #api "_params_init"; \
    static constexpr std::uint32_t sizes[] = {__VA_ARGS__};                 \
    static constexpr std::size_t unversioned_size = unversioned;            \
    template <typename From, typename To>                                   \
    static void copy(const From& in, To* out) {                             \
      FIELDS(CONTRASTIVE_COPY_FIELD)                                        \
    }                                                                       \
  };

// api, C++ params, fields, the size before struct_size, the sizes since (the current one last).
CONTRASTIVE_LAYOUT(infonce, infonce::Params, CONTRASTIVE_INFONCE_FIELDS, 120, 128, 144)
CONTRASTIVE_LAYOUT(mnr_per_anchor, mnr::PerAnchorParams, CONTRASTIVE_MNR_PER_ANCHOR_FIELDS, 72, 80,
                   88)
CONTRASTIVE_LAYOUT(mnr_in_batch, mnr::InBatchParams, CONTRASTIVE_MNR_IN_BATCH_FIELDS, 112, 120, 136)
CONTRASTIVE_LAYOUT(repel, repel::Params, CONTRASTIVE_REPEL_FIELDS, 64, 72)
// SigLIP came after struct_size: no unversioned layout.
CONTRASTIVE_LAYOUT(siglip, siglip::Params, CONTRASTIVE_SIGLIP_FIELDS, 0, 136, 160)

// The device scalars a C params struct carries (the C++ API takes them in its args structs): the
// pointer the struct gives for the description's kScalar tensor `name`, or null.
const float* device_scalar(const contrastive_infonce_params_t& c, std::string_view name) {
  return name == "temperature" ? c.temperature_device : nullptr;
}
const float* device_scalar(const contrastive_mnr_per_anchor_params_t& c, std::string_view name) {
  return name == "scale" ? c.scale_device : nullptr;
}
const float* device_scalar(const contrastive_mnr_in_batch_params_t& c, std::string_view name) {
  return name == "scale" ? c.scale_device : nullptr;
}
const float* device_scalar(const contrastive_repel_params_t&, std::string_view) {
  return nullptr;
}
const float* device_scalar(const contrastive_siglip_params_t& c, std::string_view name) {
  return name == "scale" ? c.scale_device : name == "bias" ? c.bias_device : nullptr;
}

// Fields past `reserved` that must be 0 too (padding of a later layout).
std::uint32_t extra_reserved(const contrastive_siglip_params_t& c) {
  return c.reserved_2;
}
template <typename C>
std::uint32_t extra_reserved(const C&) {
  return 0;
}

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
  Layout<C>::copy(typename Layout<C>::Cpp{}, &params);
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
Status convert(const C* in, typename Layout<C>::Cpp* out, C* full = nullptr) {
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
  if (extra_reserved(params) != 0) {
    return fail(Status::kInvalidArgument, "%s: reserved_2 must be 0, got %u", L::name,
                static_cast<unsigned>(extra_reserved(params)));
  }
  Layout<C>::copy(params, out);
  if (full != nullptr) *full = params;
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
  C full;
  CONTRASTIVE_C_TRY(convert(c_params, &params, &full));
  static const contrastive::Handle empty;
  const bool live = handle != nullptr && is_live(handle);
  const Status status = body(live ? handle->handle : empty, params, full);
  if (status == Status::kInvalidHandle && !live) {
    return to_int(fail(Status::kInvalidHandle, handle == nullptr
                                                   ? "handle is null"
                                                   : "handle was destroyed (contrastive_destroy)"));
  }
  return to_int(status);
}

/// One pass of the loss whose C params are C: `pointers` are the call's pointer arguments in the
/// order of its signature, which is the order of the loss's description (host/describe) less its
/// device scalars, which the params struct carries.
template <Pass pass, typename C, std::size_t N>
int call(contrastive_handle_t handle, const C* c_params, const void* const (&pointers)[N],
         void* workspace, size_t workspace_bytes, contrastive::Stream stream) {
  using Cpp = typename Layout<C>::Cpp;
  constexpr auto arguments = contrastive::describe::c_arguments<Cpp>(pass);
  static_assert(N == arguments.count, "the C signature and the description disagree");
  return with_handle(
      handle, c_params, [&](const contrastive::Handle& h, const Cpp& p, const C& full) {
        auto at = [&](std::string_view name) -> void* {
          for (std::size_t i = 0; i < N; ++i) {
            if (name == contrastive::describe::Described<Cpp>::tensors[arguments.index[i]].name) {
              return const_cast<void*>(pointers[i]);  // the library only reads the inputs
            }
          }
          return const_cast<float*>(device_scalar(full, name));
        };
        return contrastive::describe::detail::run(pass, h, p, at, workspace, workspace_bytes,
                                                  stream);
      });
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

// The entry points every loss has whatever its tensors: the sized init, check and the size
// queries.
#define CONTRASTIVE_C_PARAMS_ENTRY_POINTS(api)                                         \
  int contrastive_##api##_params_init_sized(contrastive_##api##_params_t* params,      \
                                            size_t struct_size) noexcept {             \
    return guarded(__func__, [&] { return init_sized(params, struct_size); });         \
  }                                                                                    \
  int contrastive_##api##_check(const contrastive_##api##_params_t* params) noexcept { \
    return guarded(__func__, [&] { return check_params(params); });                    \
  }                                                                                    \
  int contrastive_##api##_workspace_size(const contrastive_##api##_params_t* params,   \
                                         size_t* bytes) noexcept {                     \
    return guarded(__func__, [&] { return workspace_bytes(params, bytes); });          \
  }                                                                                    \
  int contrastive_##api##_saved_size(const contrastive_##api##_params_t* params,       \
                                     size_t* bytes) noexcept {                         \
    return guarded(__func__, [&] { return saved_bytes(params, bytes); });              \
  }

// The unsuffixed _params_init of callers built against the header from before struct_size (see
// init_unversioned): the losses that header had.
#define CONTRASTIVE_C_UNVERSIONED_INIT(api)                                     \
  CONTRASTIVE_API void(contrastive_##api##_params_init)(void* params) noexcept; \
  void(contrastive_##api##_params_init)(void* params) noexcept {                \
    init_unversioned<contrastive_##api##_params_t>(params);                     \
  }

extern "C" {

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

CONTRASTIVE_C_UNVERSIONED_INIT(infonce)
CONTRASTIVE_C_PARAMS_ENTRY_POINTS(infonce)

int contrastive_infonce_forward(contrastive_handle_t handle,
                                const contrastive_infonce_params_t* params, const void* q,
                                const void* k, float* loss, void* saved, void* workspace,
                                size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForward>(handle, params, {q, k, loss, saved}, workspace, workspace_bytes,
                                stream);
  });
}

int contrastive_infonce_backward(contrastive_handle_t handle,
                                 const contrastive_infonce_params_t* params, const void* q,
                                 const void* k, const void* saved, const float* grad_loss,
                                 void* grad_q, void* grad_k, float* grad_temperature,
                                 void* workspace, size_t workspace_bytes,
                                 struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kBackward>(handle, params,
                                 {q, k, saved, grad_loss, grad_q, grad_k, grad_temperature},
                                 workspace, workspace_bytes, stream);
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
    return call<Pass::kForwardBackward>(
        handle, params, {q, k, loss, saved, grad_loss, grad_q, grad_k, grad_temperature}, workspace,
        workspace_bytes, stream);
  });
}

// ---- MNR, per-anchor negatives ------------------------------------------------------------------

CONTRASTIVE_C_UNVERSIONED_INIT(mnr_per_anchor)
CONTRASTIVE_C_PARAMS_ENTRY_POINTS(mnr_per_anchor)

int contrastive_mnr_per_anchor_forward(contrastive_handle_t handle,
                                       const contrastive_mnr_per_anchor_params_t* params,
                                       const void* anchors, const void* positives,
                                       const void* negatives, float* loss, void* saved,
                                       void* workspace, size_t workspace_bytes,
                                       struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForward>(handle, params, {anchors, positives, negatives, loss, saved},
                                workspace, workspace_bytes, stream);
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
    return call<Pass::kBackward>(handle, params,
                                 {anchors, positives, negatives, saved, grad_loss, grad_anchors,
                                  grad_positives, grad_negatives, grad_scale},
                                 workspace, workspace_bytes, stream);
  });
}

int contrastive_mnr_per_anchor_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_per_anchor_params_t* params,
    const void* anchors, const void* positives, const void* negatives, float* loss, void* saved,
    const float* grad_loss, void* grad_anchors, void* grad_positives, void* grad_negatives,
    float* grad_scale, void* workspace, size_t workspace_bytes,
    struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForwardBackward>(handle, params,
                                        {anchors, positives, negatives, loss, saved, grad_loss,
                                         grad_anchors, grad_positives, grad_negatives, grad_scale},
                                        workspace, workspace_bytes, stream);
  });
}

// ---- MNR, in-batch with hard negatives -------------------------------------------------------

CONTRASTIVE_C_UNVERSIONED_INIT(mnr_in_batch)
CONTRASTIVE_C_PARAMS_ENTRY_POINTS(mnr_in_batch)

int contrastive_mnr_in_batch_forward(contrastive_handle_t handle,
                                     const contrastive_mnr_in_batch_params_t* params,
                                     const void* anchors, const void* candidates, float* loss,
                                     void* saved, void* workspace, size_t workspace_bytes,
                                     struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForward>(handle, params, {anchors, candidates, loss, saved}, workspace,
                                workspace_bytes, stream);
  });
}

int contrastive_mnr_in_batch_backward(contrastive_handle_t handle,
                                      const contrastive_mnr_in_batch_params_t* params,
                                      const void* anchors, const void* candidates,
                                      const void* saved, const float* grad_loss, void* grad_anchors,
                                      void* grad_candidates, float* grad_scale, void* workspace,
                                      size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kBackward>(
        handle, params,
        {anchors, candidates, saved, grad_loss, grad_anchors, grad_candidates, grad_scale},
        workspace, workspace_bytes, stream);
  });
}

int contrastive_mnr_in_batch_forward_backward(
    contrastive_handle_t handle, const contrastive_mnr_in_batch_params_t* params,
    const void* anchors, const void* candidates, float* loss, void* saved, const float* grad_loss,
    void* grad_anchors, void* grad_candidates, float* grad_scale, void* workspace,
    size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForwardBackward>(
        handle, params,
        {anchors, candidates, loss, saved, grad_loss, grad_anchors, grad_candidates, grad_scale},
        workspace, workspace_bytes, stream);
  });
}

// ---- Repel ------------------------------------------------------------------------------------

CONTRASTIVE_C_UNVERSIONED_INIT(repel)
CONTRASTIVE_C_PARAMS_ENTRY_POINTS(repel)

int contrastive_repel_forward(contrastive_handle_t handle, const contrastive_repel_params_t* params,
                              const void* anchors, const void* negatives, float* loss, void* saved,
                              void* workspace, size_t workspace_bytes,
                              struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForward>(handle, params, {anchors, negatives, loss, saved}, workspace,
                                workspace_bytes, stream);
  });
}

int contrastive_repel_backward(contrastive_handle_t handle,
                               const contrastive_repel_params_t* params, const void* anchors,
                               const void* negatives, const void* saved, const float* grad_loss,
                               void* grad_anchors, void* grad_negatives, void* workspace,
                               size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kBackward>(
        handle, params, {anchors, negatives, saved, grad_loss, grad_anchors, grad_negatives},
        workspace, workspace_bytes, stream);
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
    return call<Pass::kForwardBackward>(
        handle, params, {anchors, negatives, loss, saved, grad_loss, grad_anchors, grad_negatives},
        workspace, workspace_bytes, stream);
  });
}

// ---- SigLIP -------------------------------------------------------------------------------------

CONTRASTIVE_C_PARAMS_ENTRY_POINTS(siglip)

int contrastive_siglip_forward(contrastive_handle_t handle,
                               const contrastive_siglip_params_t* params, const void* q,
                               const void* k, float* loss, void* saved, void* workspace,
                               size_t workspace_bytes, struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForward>(handle, params, {q, k, loss, saved}, workspace, workspace_bytes,
                                stream);
  });
}

int contrastive_siglip_backward(contrastive_handle_t handle,
                                const contrastive_siglip_params_t* params, const void* q,
                                const void* k, const void* saved, const float* grad_loss,
                                void* grad_q, void* grad_k, float* grad_scale, float* grad_bias,
                                void* workspace, size_t workspace_bytes,
                                struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kBackward>(handle, params,
                                 {q, k, saved, grad_loss, grad_q, grad_k, grad_scale, grad_bias},
                                 workspace, workspace_bytes, stream);
  });
}

int contrastive_siglip_forward_backward(contrastive_handle_t handle,
                                        const contrastive_siglip_params_t* params, const void* q,
                                        const void* k, float* loss, void* saved,
                                        const float* grad_loss, void* grad_q, void* grad_k,
                                        float* grad_scale, float* grad_bias, void* workspace,
                                        size_t workspace_bytes,
                                        struct CUstream_st* stream) noexcept {
  return guarded(__func__, [&] {
    return call<Pass::kForwardBackward>(
        handle, params, {q, k, loss, saved, grad_loss, grad_q, grad_k, grad_scale, grad_bias},
        workspace, workspace_bytes, stream);
  });
}

}  // extern "C"
