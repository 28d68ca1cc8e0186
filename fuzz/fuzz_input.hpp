// The layout of one fuzzer input, shared by the harness (fuzz_c_api.cpp) and the seed writer
// (write_seeds.cpp):
//   [0] loss          (mod 5): InfoNCE, per-anchor MNR, in-batch MNR, Repel, SigLIP
//   [1] operation     (mod 6): check, workspace_size, saved_size, forward, backward,
//                              forward_backward
//   [2] flags         bit 0: params null; bit 1: the size query's `bytes` null;
//                     bits 2-3: the handle: null, 0x10, the address of a local, or 0x7fff0000
//                     (none of them created: the library must look them up, never use them);
//                     bits 4-5: the params' header (struct_size, magic): 0 or 3 as _params_init()
//                     set it, 1 from the input like the rest, 2 struct_size from 4 input bytes
//   [3 .. 3 + kSlots) the pointer of each argument slot (mod 6): null, the slot's buffer (256-byte
//                     aligned), or that address + 1, + 2, + 4, + 16
//   [.. + 8)          workspace_bytes, little endian
//   [.. + 4)          struct_size, little endian (header mode 2 only)
//   [rest]            bytes copied over the loss's C params struct after its _params_init(): from
//                     its first byte in header mode 1, else from the first byte after the header
//                     (so the committed corpus, written before the header existed, still lands
//                     on the same fields)
// The struct the library is given has exactly struct_size bytes when that is less than its size
// (at least the 8-byte header), so AddressSanitizer reports a read past a caller's struct.
// Missing bytes read as 0. Any byte string is a valid input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace contrastive_fuzz {

enum Loss { kInfoNCE, kPerAnchor, kInBatch, kRepel, kSigLIP, kLosses };
enum Operation {
  kCheck,
  kWorkspaceSize,
  kSavedSize,
  kForward,
  kBackward,
  kForwardBackward,
  kOperations
};

// Argument slots: every pointer argument of every call has one (unused ones stay poisoned too).
enum Slot {
  kInput0,  // q, anchors
  kInput1,  // k, positives, candidates, Repel's negatives
  kInput2,  // per-anchor negatives
  kLoss,
  kSaved,
  kGradLoss,
  kGrad0,       // grad_q, grad_anchors
  kGrad1,       // grad_k, grad_positives, grad_candidates, Repel's grad_negatives
  kGrad2,       // per-anchor grad_negatives; SigLIP's grad_bias (its second scalar gradient)
  kGradScalar,  // grad_temperature, grad_scale (the first scalar gradient)
  kWorkspace,
  kSlots
};

constexpr std::size_t kHeaderBytes = 3 + kSlots + 8;
constexpr std::size_t kParamsHeaderBytes = 8;  // struct_size, magic

enum HeaderMode { kHeaderFromInit, kHeaderFromInput, kStructSizeFromInput, kHeaderModes = 4 };
constexpr int kPointerModes = 6;
constexpr std::size_t kPointerOffsets[kPointerModes] = {0, 0, 1, 2, 4, 16};  // mode 0: null

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  std::uint8_t byte() { return position_ < size_ ? data_[position_++] : 0; }

  std::uint32_t u32() {
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) value |= static_cast<std::uint32_t>(byte()) << (8 * i);
    return value;
  }

  std::uint64_t u64() {
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value |= static_cast<std::uint64_t>(byte()) << (8 * i);
    return value;
  }

  /// Copies what is left (at most `bytes`) over `object`.
  void overwrite(void* object, std::size_t bytes) {
    const std::size_t left = size_ - position_;
    const std::size_t count = left < bytes ? left : bytes;
    std::memcpy(object, data_ + position_, count);
    position_ += count;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
};

}  // namespace contrastive_fuzz
