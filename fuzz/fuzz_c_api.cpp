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
#include <string>
#include <vector>

#include "contrastive/contrastive.h"
#include "fuzz/fuzz_input.hpp"

namespace {

using namespace contrastive_fuzz;

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

template <typename P>
struct Api;

// Which slots each loss uses: its inputs (required, aligned to the element), its gradients
// (optional, aligned), and whether it has a temperature or scale gradient.
struct Arguments {
  int inputs, gradients;  // the first `inputs` of kInput0..2, the first `gradients` of kGrad0..2
  bool scalar;
};

template <>
struct Api<contrastive_infonce_params_t> {
  static constexpr Arguments arguments{2, 2, true};
  static constexpr const char* name = "contrastive_infonce_params_t";
  static void init(contrastive_infonce_params_t* p) { contrastive_infonce_params_init(p); }
  static constexpr auto check = contrastive_infonce_check;
  static constexpr auto workspace_size = contrastive_infonce_workspace_size;
  static constexpr auto saved_size = contrastive_infonce_saved_size;
  static int call(Operation op, contrastive_handle_t h, const contrastive_infonce_params_t* p,
                  void* const* s, std::size_t ws) {
    auto f = [s](Slot slot) { return static_cast<float*>(s[slot]); };
    switch (op) {
      case kForward:
        return contrastive_infonce_forward(h, p, s[kInput0], s[kInput1], f(kLoss), s[kSaved],
                                           s[kWorkspace], ws, nullptr);
      case kBackward:
        return contrastive_infonce_backward(h, p, s[kInput0], s[kInput1], s[kSaved], f(kGradLoss),
                                            s[kGrad0], s[kGrad1], f(kGradScalar), s[kWorkspace], ws,
                                            nullptr);
      default:
        return contrastive_infonce_forward_backward(h, p, s[kInput0], s[kInput1], f(kLoss),
                                                    s[kSaved], f(kGradLoss), s[kGrad0], s[kGrad1],
                                                    f(kGradScalar), s[kWorkspace], ws, nullptr);
    }
  }
};

template <>
struct Api<contrastive_mnr_per_anchor_params_t> {
  static constexpr Arguments arguments{3, 3, true};
  static constexpr const char* name = "contrastive_mnr_per_anchor_params_t";
  static void init(contrastive_mnr_per_anchor_params_t* p) {
    contrastive_mnr_per_anchor_params_init(p);
  }
  static constexpr auto check = contrastive_mnr_per_anchor_check;
  static constexpr auto workspace_size = contrastive_mnr_per_anchor_workspace_size;
  static constexpr auto saved_size = contrastive_mnr_per_anchor_saved_size;
  static int call(Operation op, contrastive_handle_t h,
                  const contrastive_mnr_per_anchor_params_t* p, void* const* s, std::size_t ws) {
    auto f = [s](Slot slot) { return static_cast<float*>(s[slot]); };
    switch (op) {
      case kForward:
        return contrastive_mnr_per_anchor_forward(h, p, s[kInput0], s[kInput1], s[kInput2],
                                                  f(kLoss), s[kSaved], s[kWorkspace], ws, nullptr);
      case kBackward:
        return contrastive_mnr_per_anchor_backward(
            h, p, s[kInput0], s[kInput1], s[kInput2], s[kSaved], f(kGradLoss), s[kGrad0], s[kGrad1],
            s[kGrad2], f(kGradScalar), s[kWorkspace], ws, nullptr);
      default:
        return contrastive_mnr_per_anchor_forward_backward(
            h, p, s[kInput0], s[kInput1], s[kInput2], f(kLoss), s[kSaved], f(kGradLoss), s[kGrad0],
            s[kGrad1], s[kGrad2], f(kGradScalar), s[kWorkspace], ws, nullptr);
    }
  }
};

template <>
struct Api<contrastive_mnr_in_batch_params_t> {
  static constexpr Arguments arguments{2, 2, true};
  static constexpr const char* name = "contrastive_mnr_in_batch_params_t";
  static void init(contrastive_mnr_in_batch_params_t* p) {
    contrastive_mnr_in_batch_params_init(p);
  }
  static constexpr auto check = contrastive_mnr_in_batch_check;
  static constexpr auto workspace_size = contrastive_mnr_in_batch_workspace_size;
  static constexpr auto saved_size = contrastive_mnr_in_batch_saved_size;
  static int call(Operation op, contrastive_handle_t h, const contrastive_mnr_in_batch_params_t* p,
                  void* const* s, std::size_t ws) {
    auto f = [s](Slot slot) { return static_cast<float*>(s[slot]); };
    switch (op) {
      case kForward:
        return contrastive_mnr_in_batch_forward(h, p, s[kInput0], s[kInput1], f(kLoss), s[kSaved],
                                                s[kWorkspace], ws, nullptr);
      case kBackward:
        return contrastive_mnr_in_batch_backward(h, p, s[kInput0], s[kInput1], s[kSaved],
                                                 f(kGradLoss), s[kGrad0], s[kGrad1], f(kGradScalar),
                                                 s[kWorkspace], ws, nullptr);
      default:
        return contrastive_mnr_in_batch_forward_backward(
            h, p, s[kInput0], s[kInput1], f(kLoss), s[kSaved], f(kGradLoss), s[kGrad0], s[kGrad1],
            f(kGradScalar), s[kWorkspace], ws, nullptr);
    }
  }
};

template <>
struct Api<contrastive_repel_params_t> {
  static constexpr Arguments arguments{2, 2, false};
  static constexpr const char* name = "contrastive_repel_params_t";
  static void init(contrastive_repel_params_t* p) { contrastive_repel_params_init(p); }
  static constexpr auto check = contrastive_repel_check;
  static constexpr auto workspace_size = contrastive_repel_workspace_size;
  static constexpr auto saved_size = contrastive_repel_saved_size;
  static int call(Operation op, contrastive_handle_t h, const contrastive_repel_params_t* p,
                  void* const* s, std::size_t ws) {
    auto f = [s](Slot slot) { return static_cast<float*>(s[slot]); };
    switch (op) {
      case kForward:
        return contrastive_repel_forward(h, p, s[kInput0], s[kInput1], f(kLoss), s[kSaved],
                                         s[kWorkspace], ws, nullptr);
      case kBackward:
        return contrastive_repel_backward(h, p, s[kInput0], s[kInput1], s[kSaved], f(kGradLoss),
                                          s[kGrad0], s[kGrad1], s[kWorkspace], ws, nullptr);
      default:
        return contrastive_repel_forward_backward(h, p, s[kInput0], s[kInput1], f(kLoss), s[kSaved],
                                                  f(kGradLoss), s[kGrad0], s[kGrad1], s[kWorkspace],
                                                  ws, nullptr);
    }
  }
};

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

// Whether a call with params that check() accepts has nothing wrong but its handle: every
// required pointer set and aligned to its element, every optional one aligned, a gradient asked
// for (backward), a workspace of at least workspace_size() bytes. The library must then fail on
// the handle, and otherwise on something else: no argument check may be missing or spurious.
template <typename P>
bool only_the_handle_is_wrong(const P& params, const Header& h) {
  constexpr Arguments args = Api<P>::arguments;
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
  if (!set_and_aligned(kSaved, 4)) return false;
  if (backward) {
    bool any = args.scalar && h.slots[kGradScalar] != nullptr;
    for (int i = 0; i < args.gradients; ++i) any = any || h.slots[kGrad0 + i] != nullptr;
    if (!any || !aligned_if_set(kGradLoss, 4)) return false;
    for (int i = 0; i < args.gradients; ++i) {
      if (!aligned_if_set(kGrad0 + i, element)) return false;
    }
    if (args.scalar && !aligned_if_set(kGradScalar, 4)) return false;
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
  if (!h.params_null && (!magic || params.struct_size != sizeof params || params.reserved != 0)) {
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
  const int status =
      Api<P>::call(h.operation, h.handle, params_pointer, h.slots, h.workspace_bytes);
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
    default: run<contrastive_repel_params_t>(input, h); break;
  }
  // Any int names a status or "unknown status", never null.
  require(contrastive_status_string(static_cast<int>(size) - 3) != nullptr, "null status name", 0,
          "");
  return 0;
}
