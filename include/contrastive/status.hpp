// Error reporting: every call returns a Status; the failing call's message is kept per thread.
// The library never prints, throws, aborts or exits.
#pragma once

#include "contrastive/export.h"

namespace contrastive {

/// Result of every library call. Values are stable: the C API returns the same integers.
enum class [[nodiscard]] Status : int{
    kSuccess = 0,
    kInvalidArgument = 1,    ///< a size, offset, stride or scalar is out of range
    kNullPointer = 2,        ///< a required pointer is null
    kMisalignedPointer = 3,  ///< a pointer is not aligned to its element type
    kWorkspaceTooSmall = 4,  ///< workspace smaller than workspace_size() asked for, or null
    kNotSupported = 5,       ///< a valid request this build does not implement (e.g. a dtype)
    kInvalidHandle = 6,      ///< an empty, moved-from or destroyed handle
    kWrongDevice = 7,        ///< the current CUDA device is not the handle's device
    kNoDevice = 8,           ///< no usable CUDA device (no driver, or no GPU)
    kCudaError = 9,          ///< the CUDA runtime reported an error
    kCublasError = 10,       ///< cuBLAS/cuBLASLt reported an error
    kInternalError = 11,     ///< a bug in the library
};

/// A short name for `status`, e.g. "invalid argument". Never null.
CONTRASTIVE_API const char* status_string(Status status) noexcept;

/// The message of the most recent failed call on this thread ("" if none). The pointer is valid
/// until the next library call on this thread.
CONTRASTIVE_API const char* last_error_message() noexcept;

}  // namespace contrastive

/// Propagate a non-success Status to the caller.
#define CONTRASTIVE_TRY(expr)                                         \
  do {                                                                \
    const ::contrastive::Status contrastive_try_status_ = (expr);     \
    if (contrastive_try_status_ != ::contrastive::Status::kSuccess) { \
      return contrastive_try_status_;                                 \
    }                                                                 \
  } while (0)
