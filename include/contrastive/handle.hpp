// The library handle: long-lived per-device state (cuBLASLt handle, device properties, cached GEMM
// plans). It holds no stream: every call takes one. Use one handle per thread.
#pragma once

#include <cstddef>
#include <memory>

#include "contrastive/export.h"
#include "contrastive/status.hpp"

namespace contrastive {

class CONTRASTIVE_API Handle {
 public:
  /// Use the device that is current when create() runs.
  static constexpr int kCurrentDevice = -1;

  /// An empty handle; every call given it returns Status::kInvalidHandle.
  Handle() noexcept;
  ~Handle();
  Handle(Handle&& other) noexcept;
  Handle& operator=(Handle&& other) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  /// Create a handle for `device`. Allocates nothing on the device beyond what cuBLASLt's own
  /// handle creation does. Without a usable GPU returns Status::kNoDevice and leaves *out empty.
  /// @param out receives the handle; must not be null.
  static Status create(Handle* out, int device = kCurrentDevice);

  /// True when create() succeeded and the handle was not moved from.
  bool valid() const noexcept;

  /// The CUDA device this handle belongs to; -1 when empty.
  int device() const noexcept;

  /// Properties read at creation (0 when empty).
  int compute_capability() const noexcept;  ///< major * 10 + minor, e.g. 90
  int multiprocessor_count() const noexcept;
  std::size_t l2_cache_bytes() const noexcept;

  /// Internal state; opaque to users.
  struct Impl;
  Impl* impl() const noexcept { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace contrastive
