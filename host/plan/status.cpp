// Status names, the per-thread last-error message and dtype helpers.
#include <cstdarg>
#include <cstdio>

#include "contrastive/status.hpp"
#include "contrastive/types.hpp"
#include "host/plan/error.hpp"

namespace contrastive {
namespace {

constexpr std::size_t kMessageCapacity = 512;
thread_local char g_last_error[kMessageCapacity] = "";

}  // namespace

const char* status_string(Status status) noexcept {
  switch (status) {
    case Status::kSuccess: return "success";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kNullPointer: return "null pointer";
    case Status::kMisalignedPointer: return "misaligned pointer";
    case Status::kWorkspaceTooSmall: return "workspace too small";
    case Status::kNotSupported: return "not supported";
    case Status::kInvalidHandle: return "invalid handle";
    case Status::kWrongDevice: return "wrong device";
    case Status::kNoDevice: return "no CUDA device";
    case Status::kCudaError: return "CUDA error";
    case Status::kCublasError: return "cuBLAS error";
    case Status::kInternalError: return "internal error";
  }
  return "unknown status";
}

const char* last_error_message() noexcept {
  return g_last_error;
}

std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
  }
  return 0;
}

const char* dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
  }
  return "unknown";
}

namespace detail {

Status fail(Status status, const char* format, ...) noexcept {
  std::va_list args;
  va_start(args, format);
  std::vsnprintf(g_last_error, kMessageCapacity, format, args);
  va_end(args);
  return status;
}

}  // namespace detail
}  // namespace contrastive
