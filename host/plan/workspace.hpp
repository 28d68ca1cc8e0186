// Internal: caller-owned scratch carved into 256-byte aligned pieces (as CUB does). The size
// reported to callers includes kWorkspaceAlignment - 1 bytes of slack, so a workspace pointer with
// any alignment works when the block has the reported size.
#pragma once

#include <cstddef>
#include <cstdint>

namespace contrastive::detail {

constexpr std::size_t kWorkspaceAlignment = 256;

constexpr std::size_t round_up(std::size_t value, std::size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

/// Lays out pieces one after another, each starting on kWorkspaceAlignment, with overflow checks.
class WorkspaceLayoutBuilder {
 public:
  static constexpr std::size_t kAbsent = ~std::size_t{0};

  /// Reserve `count` elements of `element_bytes`; returns the piece's offset from the aligned base,
  /// or kAbsent for an empty piece. Sets overflowed() when the sizes do not fit in 64 bits.
  std::size_t add(std::uint64_t count, std::size_t element_bytes) {
    if (count == 0) return kAbsent;
    std::uint64_t bytes = 0;
    std::uint64_t end = 0;
    if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(element_bytes), &bytes) ||
        __builtin_add_overflow(static_cast<std::uint64_t>(used_), bytes, &end) ||
        end > ~std::uint64_t{0} - 2 * kWorkspaceAlignment) {
      overflowed_ = true;
      return kAbsent;
    }
    const std::size_t offset = used_;
    used_ = round_up(static_cast<std::size_t>(end), kWorkspaceAlignment);
    return offset;
  }

  bool overflowed() const { return overflowed_; }

  /// Bytes to ask the caller for: the pieces plus slack for aligning an arbitrary base pointer.
  std::size_t required_bytes() const { return used_ == 0 ? 0 : used_ + kWorkspaceAlignment - 1; }

  /// Bytes used from the aligned base.
  std::size_t used_bytes() const { return used_; }

 private:
  std::size_t used_ = 0;
  bool overflowed_ = false;
};

/// The first kWorkspaceAlignment-aligned address at or after `base`.
inline void* align_workspace(void* base) {
  const auto address = reinterpret_cast<std::uintptr_t>(base);
  return reinterpret_cast<void*>(round_up(address, kWorkspaceAlignment));
}

/// True when `used_bytes` from the aligned base of `base` fit inside `[base, base + bytes)`.
inline bool workspace_fits(void* base, std::size_t bytes, std::size_t used_bytes) {
  const auto address = reinterpret_cast<std::uintptr_t>(base);
  const std::size_t padding = round_up(address, kWorkspaceAlignment) - address;
  return padding <= bytes && used_bytes <= bytes - padding;
}

}  // namespace contrastive::detail
