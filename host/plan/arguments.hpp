// Internal: the argument checks every loss makes before it launches anything, with one wording for
// each failure: "<call>: <name> is null", "... is not aligned to N bytes", workspace too small.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/status.hpp"
#include "host/plan/error.hpp"
#include "host/plan/workspace.hpp"

namespace contrastive::detail {

inline Status require_pointer(const void* pointer, const char* call, const char* name) {
  if (pointer == nullptr) return fail(Status::kNullPointer, "%s: %s is null", call, name);
  return Status::kSuccess;
}

/// Null passes (optional pointers); a set pointer must be aligned to its element type.
inline Status require_alignment(const void* pointer, std::size_t alignment, const char* call,
                                const char* name) {
  if (pointer != nullptr && reinterpret_cast<std::uintptr_t>(pointer) % alignment != 0) {
    return fail(Status::kMisalignedPointer, "%s: %s (%p) is not aligned to %zu bytes", call, name,
                pointer, alignment);
  }
  return Status::kSuccess;
}

/// A required input or output: present and aligned.
inline Status require_tensor(const void* pointer, std::size_t alignment, const char* call,
                             const char* name) {
  CONTRASTIVE_TRY(require_pointer(pointer, call, name));
  return require_alignment(pointer, alignment, call, name);
}

/// The caller's workspace holds `used_bytes` from its aligned base; `required_bytes` is what the
/// size query reported (with alignment slack).
inline Status require_workspace(void* workspace, std::size_t bytes, std::size_t required_bytes,
                                std::size_t used_bytes, const char* call) {
  if (workspace == nullptr && bytes != 0) {
    return fail(Status::kNullPointer, "%s: workspace is null but workspace_bytes is %zu", call,
                bytes);
  }
  if (workspace == nullptr || bytes < required_bytes ||
      !workspace_fits(workspace, bytes, used_bytes)) {
    return fail(Status::kWorkspaceTooSmall,
                "%s: workspace of %zu bytes is too small: workspace_size() asks for %zu", call,
                bytes, required_bytes);
  }
  return Status::kSuccess;
}

/// Start of a piece of the workspace (offset from the aligned base), or null when absent.
template <typename T>
T* workspace_piece(void* aligned_base, std::size_t offset) {
  if (offset == WorkspaceLayoutBuilder::kAbsent) return nullptr;
  return reinterpret_cast<T*>(static_cast<char*>(aligned_base) + offset);
}

}  // namespace contrastive::detail

/// Turn a failed CUDA call (a kernel launcher's cudaGetLastError) into kCudaError.
#define CONTRASTIVE_TRY_CUDA(call, what)                                       \
  do {                                                                         \
    const cudaError_t contrastive_cuda_error_ = (call);                        \
    if (contrastive_cuda_error_ != cudaSuccess) {                              \
      return contrastive::detail::cuda_failure(what, contrastive_cuda_error_); \
    }                                                                          \
  } while (0)
