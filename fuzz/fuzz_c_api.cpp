// libFuzzer harness over the host-side argument checking of every loss, through the C API: the
// params structs (every byte of them), the pointer arguments (null, aligned, misaligned), the
// workspace size, and handles that were never created. Built with clang and
// -fsanitize=fuzzer,address,undefined from the library's own host sources (fuzz/CMakeLists.txt);
// the kernel launchers are stubs that abort (fuzz/launcher_stubs.cpp). Input layout:
// fuzz/fuzz_input.hpp.
//
// Invariants, each a crash (and so a reported input) when broken:
//   - no crash, no sanitizer report, no kernel launched (no call with such a handle may launch);
//   - every status is one of the library's (0 ... 11), and names a failure of the caller's input:
//     a forward / backward / forward_backward call never succeeds and never reports a CUDA,
//     cuBLAS, device or internal error;
//   - a failure leaves a message: non-empty, NUL-terminated within the library's 512 bytes;
//   - params are checked first: a call whose params check() rejects fails with check()'s status
//     and message; the size queries likewise;
//   - a params header (struct_size, magic) other than _params_init()'s, or a reserved field that
//     is not 0, is refused, naming the struct; nothing past struct_size is read;
//   - every argument is checked before the handle, and nothing else is: a call whose params pass
//     check() fails on the handle exactly when every required pointer is set and aligned to its
//     element, every optional one aligned, a gradient asked for (backward), and the workspace set
//     and of workspace_size() bytes at least;
//   - a failed size query leaves `*bytes` as it was, a successful one needs check() to pass;
//   - nothing is written: every argument buffer (inputs, outputs, `saved`, the workspace) keeps
//     its poison.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "contrastive/contrastive.h"
#include "fuzz/fuzz_input.hpp"
#include "host/describe/losses.hpp"

namespace {

using namespace contrastive_fuzz;
using contrastive::Pass;
using contrastive::describe::Described;
using contrastive::describe::Role;
using contrastive::describe::Tensor;

constexpr std::size_t kSlotBytes = 4096;
constexpr unsigned char kPoison = 0xA5;
constexpr std::size_t kMessageCapacity = 512;  // host/plan/status.cpp
constexpr std::uint64_t kUntouchedBytes = 0xDEADBEEFCAFEF00Dull;

alignas(256) unsigned char g_slots[kSlots][kSlotBytes];

[[noreturn]] void violated(const char* what, int status, const std::string& message) {
  std::fprintf(stderr, "fuzz_c_api: invariant violated: %s (status %d, message \"%s\")\n", what,
               status, message.c_str());
  std::abort();
}

void require(bool holds, const char* what, int status, const std::string& message) {
  if (!holds) violated(what, status, message);
}

/// The last error as a string, after checking it is terminated within the library's buffer.
std::string last_error() {
  const char* text = contrastive_last_error();
  require(text != nullptr, "contrastive_last_error() is null", -1, "");
  require(std::memchr(text, '\0', kMessageCapacity) != nullptr, "message not terminated", -1, "");
  return text;
}

void require_known_status(int status) {
  require(status >= CONTRASTIVE_SUCCESS && status <= CONTRASTIVE_INTERNAL_ERROR,
          "status outside the enum", status, last_error());
  require(contrastive_status_string(status) != nullptr, "status without a name", status, "");
}

// ---- The C API of one loss, by params type ---------------------------------------------------

template <typename C>
struct Api;

// The entry points of one loss, with its C++ params (whose description says what it takes).
#define CONTRASTIVE_FUZZ_API(api, Params)                                                     \
  template <>                                                                                 \
  struct Api<contrastive_##api##_params_t> {                                                  \
    using Cpp = Params;                                                                       \
    static constexpr const char* name = "contrastive_" #api "_params_t";                      \
    static void init(contrastive_##api##_params_t* p) { contrastive_##api##_params_init(p); } \
    static constexpr auto init_sized = contrastive_##api##_params_init_sized;                 \
    static constexpr auto check = contrastive_##api##_check;                                  \
    static constexpr auto workspace_size = contrastive_##api##_workspace_size;                \
    static constexpr auto saved_size = contrastive_##api##_saved_size;                        \
    static constexpr auto forward = contrastive_##api##_forward;                              \
    static constexpr auto backward = contrastive_##api##_backward;                            \
    static constexpr auto forward_backward = contrastive_##api##_forward_backward;            \
  };

CONTRASTIVE_FUZZ_API(infonce, contrastive::infonce::Params)
CONTRASTIVE_FUZZ_API(mnr_per_anchor, contrastive::mnr::PerAnchorParams)
CONTRASTIVE_FUZZ_API(mnr_in_batch, contrastive::mnr::InBatchParams)
CONTRASTIVE_FUZZ_API(repel, contrastive::repel::Params)
CONTRASTIVE_FUZZ_API(siglip, contrastive::siglip::Params)

// Which slots each loss uses: its inputs (required, aligned to the element), its gradients
// (optional, aligned), and whether it has a temperature or scale gradient; and the slot of each
// of its tensors (its n-th input in kInput0 + n, its n-th gradient in kGrad0 + n).
struct Arguments {
  int inputs = 0, gradients = 0;  // the first `inputs` of kInput0..2, `gradients` of kGrad0..2
  int scalars = 0;                // in kGradScalar, then kGrad2 (a loss with two has no third
                                  // gradient)
  Slot scalar_slots[2] = {kGradScalar, kGrad2};
  Slot slots[16] = {};  // by position in the loss's description
};

template <typename Cpp>
constexpr Arguments arguments_of() {
  static_assert(std::size(Described<Cpp>::tensors) <= std::size(Arguments{}.slots));
  Arguments a;
  std::size_t i = 0;
  for (const Tensor& tensor : Described<Cpp>::tensors) {
    switch (tensor.role) {
      case Role::kInput: a.slots[i] = static_cast<Slot>(kInput0 + a.inputs++); break;
      case Role::kLoss: a.slots[i] = kLoss; break;
      case Role::kSaved: a.slots[i] = kSaved; break;
      case Role::kUpstreamGradient: a.slots[i] = kGradLoss; break;
      case Role::kGradient: a.slots[i] = static_cast<Slot>(kGrad0 + a.gradients++); break;
      case Role::kScalarGradient: a.slots[i] = a.scalar_slots[a.scalars++]; break;
      case Role::kScalar:  // not in the C signatures
      case Role::kIds: break;
    }
    ++i;
  }
  return a;
}

// The I-th of N arguments of an entry point: handle, params, the tensors in the order of the
// description, workspace, workspace_bytes, stream.
template <typename T, std::size_t I, std::size_t N>
T argument(contrastive_handle_t h, const void* params, void* const* tensors, void* workspace,
           std::size_t workspace_bytes) {
  if constexpr (I == 0) {
    return h;
  } else if constexpr (I == 1) {
    return static_cast<T>(params);
  } else if constexpr (I == N - 3) {
    return workspace;
  } else if constexpr (I == N - 2) {
    return workspace_bytes;
  } else if constexpr (I == N - 1) {
    return nullptr;
  } else {
    return static_cast<T>(tensors[I - 2]);
  }
}

template <typename Cpp, Pass pass, typename... A, std::size_t... I>
int invoke(int (*entry)(A...), contrastive_handle_t h, const void* params, void* const* s,
           std::size_t ws, std::index_sequence<I...>) {
  constexpr auto taken = contrastive::describe::c_arguments<Cpp>(pass);
  static_assert(taken.count + 5 == sizeof...(A), "the C signature and the description disagree");
  constexpr Arguments slots = arguments_of<Cpp>();
  void* tensors[sizeof...(A)] = {};
  for (std::size_t i = 0; i < taken.count; ++i) tensors[i] = s[slots.slots[taken.index[i]]];
  return entry(argument<A, I, sizeof...(A)>(h, params, tensors, s[kWorkspace], ws)...);
}

template <typename Cpp, Pass pass, typename... A>
int invoke(int (*entry)(A...), contrastive_handle_t h, const void* params, void* const* s,
           std::size_t ws) {
  return invoke<Cpp, pass>(entry, h, params, s, ws, std::index_sequence_for<A...>());
}

template <typename C>
int call(Operation op, contrastive_handle_t h, const C* p, void* const* s, std::size_t ws) {
  using Cpp = typename Api<C>::Cpp;
  switch (op) {
    case kForward: return invoke<Cpp, Pass::kForward>(Api<C>::forward, h, p, s, ws);
    case kBackward: return invoke<Cpp, Pass::kBackward>(Api<C>::backward, h, p, s, ws);
    default: return invoke<Cpp, Pass::kForwardBackward>(Api<C>::forward_backward, h, p, s, ws);
  }
}

// ---- One input --------------------------------------------------------------------------------

struct Header {
  Operation operation;
  bool params_null, bytes_null;
  HeaderMode header_mode;
  contrastive_handle_t handle;
  void* slots[kSlots];
  std::size_t workspace_bytes;
};

bool aligned(const void* pointer, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(pointer) % alignment == 0;
}

// Whether `size` is a layout of P the library serves (the current one or an older one): what its
// _params_init_sized() accepts. (It sets the last error when it refuses.)
template <typename P>
bool known_layout(std::uint32_t size) {
  if (size > sizeof(P)) return false;
  P scratch;
  return Api<P>::init_sized(&scratch, size) == CONTRASTIVE_SUCCESS;
}

// The device scalars the params structs carry, each null or aligned to its float.
bool device_scalars_aligned(const contrastive_infonce_params_t& p) {
  return aligned(p.temperature_device, 4);
}
bool device_scalars_aligned(const contrastive_mnr_per_anchor_params_t& p) {
  return aligned(p.scale_device, 4);
}
bool device_scalars_aligned(const contrastive_mnr_in_batch_params_t& p) {
  return aligned(p.scale_device, 4);
}
bool device_scalars_aligned(const contrastive_repel_params_t&) {
  return true;
}
bool device_scalars_aligned(const contrastive_siglip_params_t& p) {
  return aligned(p.scale_device, 4) && aligned(p.bias_device, 4);
}

// Whether a call with params that check() accepts has nothing wrong but its handle: every
// required pointer set and aligned to its element, every optional one aligned, a gradient asked
// for (backward), a workspace of at least workspace_size() bytes. The library must then fail on
// the handle, and otherwise on something else: no argument check may be missing or spurious.
template <typename P>
bool only_the_handle_is_wrong(const P& params, const Header& h) {
  // The device scalars of the current layouts: null or 4-byte aligned, or the call fails on them
  // (an older layout has none: the library takes their defaults).
  if (params.struct_size == sizeof params && !device_scalars_aligned(params)) return false;
  constexpr Arguments args = arguments_of<typename Api<P>::Cpp>();
  const std::size_t element = params.dtype == 0 ? 4 : 2;  // f32, or f16 / bf16
  const bool forward = h.operation != kBackward, backward = h.operation != kForward;
  auto set_and_aligned = [&](int slot, std::size_t alignment) {
    return h.slots[slot] != nullptr && aligned(h.slots[slot], alignment);
  };
  auto aligned_if_set = [&](int slot, std::size_t alignment) {
    return h.slots[slot] == nullptr || aligned(h.slots[slot], alignment);
  };
  for (int i = 0; i < args.inputs; ++i) {
    if (!set_and_aligned(kInput0 + i, element)) return false;
  }
  if (forward && !set_and_aligned(kLoss, 4)) return false;
  // saved is required unless there is nothing to save (SigLIP with dot similarity).
  std::size_t saved = 0;
  if (Api<P>::saved_size(&params, &saved) != CONTRASTIVE_SUCCESS) return false;
  if (saved > 0 ? !set_and_aligned(kSaved, 4) : !aligned_if_set(kSaved, 4)) return false;
  if (backward) {
    bool any = false;
    for (int i = 0; i < args.scalars; ++i) any = any || h.slots[args.scalar_slots[i]] != nullptr;
    for (int i = 0; i < args.gradients; ++i) any = any || h.slots[kGrad0 + i] != nullptr;
    if (!any || !aligned_if_set(kGradLoss, 4)) return false;
    for (int i = 0; i < args.gradients; ++i) {
      if (!aligned_if_set(kGrad0 + i, element)) return false;
    }
    for (int i = 0; i < args.scalars; ++i) {
      if (!aligned_if_set(args.scalar_slots[i], 4)) return false;
    }
  }
  std::size_t required = 0;
  if (Api<P>::workspace_size(&params, &required) != CONTRASTIVE_SUCCESS) return false;
  return h.slots[kWorkspace] != nullptr && h.workspace_bytes >= required;
}

template <typename P>
void run(Input& input, const Header& h) {
  P params;
  Api<P>::init(&params);
  auto* raw = reinterpret_cast<unsigned char*>(&params);
  if (h.header_mode == kHeaderFromInput) {
    input.overwrite(raw, sizeof params);
  } else {
    if (h.header_mode == kStructSizeFromInput) params.struct_size = input.u32();
    input.overwrite(raw + kParamsHeaderBytes, sizeof params - kParamsHeaderBytes);
  }
  // The caller's struct as the library sees it: struct_size bytes when that is smaller, on the
  // heap, so that a read past it is an AddressSanitizer report.
  const std::size_t caller_bytes = std::min<std::size_t>(
      sizeof params, std::max<std::size_t>(kParamsHeaderBytes, params.struct_size));
  std::vector<unsigned char> caller(raw, raw + caller_bytes);
  const P* params_pointer = h.params_null ? nullptr : reinterpret_cast<const P*>(caller.data());

  const int checked = Api<P>::check(params_pointer);
  require_known_status(checked);
  const std::string check_message = last_error();
  if (checked != CONTRASTIVE_SUCCESS) require(!check_message.empty(), "no message", checked, "");
  if (h.params_null) {
    require(checked == CONTRASTIVE_NULL_POINTER && check_message == "params is null",
            "null params not reported", checked, check_message);
  }
  // A header other than _params_init()'s, or a reserved field that is not 0, is refused first,
  // and the message names the struct.
  const bool magic = params.magic == CONTRASTIVE_PARAMS_MAGIC;
  if (!h.params_null && (!magic || !known_layout<P>(params.struct_size) || params.reserved != 0)) {
    require(checked == (magic && params.struct_size > sizeof params ? CONTRASTIVE_NOT_SUPPORTED
                                                                    : CONTRASTIVE_INVALID_ARGUMENT),
            "a bad header not refused with its status", checked, check_message);
    require(check_message.rfind(Api<P>::name, 0) == 0, "a header's refusal names another struct",
            checked, check_message);
  }
  if (h.operation == kCheck) return;

  if (h.operation == kWorkspaceSize || h.operation == kSavedSize) {
    std::size_t bytes = kUntouchedBytes;
    auto* query = h.operation == kWorkspaceSize ? Api<P>::workspace_size : Api<P>::saved_size;
    const int status = query(params_pointer, h.bytes_null ? nullptr : &bytes);
    require_known_status(status);
    const std::string message = last_error();
    if (status == CONTRASTIVE_SUCCESS) {
      require(checked == CONTRASTIVE_SUCCESS, "a size for params check() rejects", status,
              check_message);
      return;
    }
    require(!message.empty(), "no message", status, message);
    require(bytes == kUntouchedBytes, "a failed size query wrote *bytes", status, message);
    if (checked != CONTRASTIVE_SUCCESS && !h.bytes_null) {
      require(status == checked && message == check_message,
              "a size query reports something else than check()", status, message);
    }
    return;
  }

  const bool expect_handle_failure =
      checked == CONTRASTIVE_SUCCESS && !h.params_null && only_the_handle_is_wrong(params, h);
  const int status = call(h.operation, h.handle, params_pointer, h.slots, h.workspace_bytes);
  require_known_status(status);
  const std::string message = last_error();
  require(status == CONTRASTIVE_INVALID_ARGUMENT || status == CONTRASTIVE_NULL_POINTER ||
              status == CONTRASTIVE_MISALIGNED_POINTER ||
              status == CONTRASTIVE_WORKSPACE_TOO_SMALL || status == CONTRASTIVE_NOT_SUPPORTED ||
              status == CONTRASTIVE_INVALID_HANDLE,
          "a call with a handle that was never created did not fail on its input", status, message);
  require(!message.empty(), "no message", status, message);
  if (checked != CONTRASTIVE_SUCCESS) {
    require(status == checked && message == check_message,
            "a call reports something else than check() for its params", status, message);
  }
  if (status == CONTRASTIVE_INVALID_HANDLE) {
    require(message == "handle is null" || message == "handle was destroyed (contrastive_destroy)",
            "the handle's failure is worded otherwise", status, message);
  }
  require((status == CONTRASTIVE_INVALID_HANDLE) == expect_handle_failure,
          expect_handle_failure ? "valid arguments rejected"
                                : "a bad argument got through to the handle check",
          status, message);
  for (int slot = 0; slot < kSlots; ++slot) {
    for (std::size_t i = 0; i < kSlotBytes; ++i) {
      require(g_slots[slot][i] == kPoison, "an argument buffer was written", status, message);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input input(data, size);
  const int loss = input.byte() % kLosses;
  Header h{};
  h.operation = static_cast<Operation>(input.byte() % kOperations);
  const std::uint8_t flags = input.byte();
  h.params_null = (flags & 1) != 0;
  h.bytes_null = (flags & 2) != 0;
  h.header_mode = static_cast<HeaderMode>((flags >> 4) & 3);
  int local = 0;
  switch ((flags >> 2) & 3) {
    case 0: h.handle = nullptr; break;
    case 1: h.handle = reinterpret_cast<contrastive_handle_t>(std::uintptr_t{0x10}); break;
    case 2: h.handle = reinterpret_cast<contrastive_handle_t>(&local); break;
    default: h.handle = reinterpret_cast<contrastive_handle_t>(std::uintptr_t{0x7fff0000}); break;
  }
  std::memset(g_slots, kPoison, sizeof g_slots);
  for (int slot = 0; slot < kSlots; ++slot) {
    const int mode = input.byte() % kPointerModes;
    h.slots[slot] = mode == 0 ? nullptr : g_slots[slot] + kPointerOffsets[mode];
  }
  h.workspace_bytes = static_cast<std::size_t>(input.u64());
  switch (loss) {
    case kInfoNCE: run<contrastive_infonce_params_t>(input, h); break;
    case kPerAnchor: run<contrastive_mnr_per_anchor_params_t>(input, h); break;
    case kInBatch: run<contrastive_mnr_in_batch_params_t>(input, h); break;
    case kRepel: run<contrastive_repel_params_t>(input, h); break;
    default: run<contrastive_siglip_params_t>(input, h); break;
  }
  // Any int names a status or "unknown status", never null.
  require(contrastive_status_string(static_cast<int>(size) - 3) != nullptr, "null status name", 0,
          "");
  return 0;
}
