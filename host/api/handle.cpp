// Handle creation: find a usable device, read its properties, create the cuBLASLt handle.
#include <utility>

#include "host/api/handle_impl.hpp"
#include "host/blas/gemm.hpp"
#include "host/plan/error.hpp"

namespace contrastive {

Handle::Impl::~Impl() {
  for (auto& entry : gemm_plans) detail::destroy_gemm_plan(&entry.second);
  if (cublaslt != nullptr) cublasLtDestroy(cublaslt);
  if (cublas != nullptr) cublasDestroy(cublas);
}

Handle::Handle() noexcept = default;
Handle::~Handle() = default;
Handle::Handle(Handle&& other) noexcept = default;
Handle& Handle::operator=(Handle&& other) noexcept = default;

bool Handle::valid() const noexcept {
  return impl_ != nullptr;
}
int Handle::device() const noexcept {
  return impl_ ? impl_->device : -1;
}
int Handle::compute_capability() const noexcept {
  return impl_ ? impl_->compute_capability : 0;
}
int Handle::multiprocessor_count() const noexcept {
  return impl_ ? impl_->multiprocessor_count : 0;
}
std::size_t Handle::l2_cache_bytes() const noexcept {
  return impl_ ? impl_->l2_cache_bytes : 0;
}

namespace detail {

Status cuda_failure(const char* what, cudaError_t error) {
  return fail(Status::kCudaError, "%s: %s (%s)", what, cudaGetErrorName(error),
              cudaGetErrorString(error));
}

Status require_usable(const Handle& handle) {
  if (!handle.valid()) {
    return fail(Status::kInvalidHandle,
                "handle is empty: Handle::create() failed or was not called, or it was moved from");
  }
  int current = -1;
  const cudaError_t error = cudaGetDevice(&current);
  if (error != cudaSuccess) return cuda_failure("cudaGetDevice", error);
  if (current != handle.device()) {
    return fail(Status::kWrongDevice, "handle belongs to CUDA device %d but device %d is current",
                handle.device(), current);
  }
  // Every launcher checks cudaGetLastError(), which also returns an error that earlier work on
  // this thread left pending. Such an error is not this call's: report it as such, launch nothing,
  // and leave it where it is for its owner (peek, do not clear).
  const cudaError_t pending = cudaPeekAtLastError();
  if (pending != cudaSuccess) {
    return fail(Status::kCudaError,
                "a CUDA error from before this call is pending on this thread: %s (%s); nothing "
                "was launched and the error was left for its owner to read and clear with "
                "cudaGetLastError() (a sticky error such as cudaErrorIllegalAddress means the "
                "CUDA context is lost)",
                cudaGetErrorName(pending), cudaGetErrorString(pending));
  }
  return Status::kSuccess;
}

}  // namespace detail

Status Handle::create(Handle* out, int device) {
  using detail::fail;
  if (out == nullptr) return fail(Status::kNullPointer, "Handle::create: out is null");
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    // Without a driver the runtime reports an error here rather than a count of 0: both mean
    // "no usable GPU". Clear the (non-sticky) error so the caller's next check starts clean.
    (void)cudaGetLastError();
    if (error == cudaErrorInsufficientDriver) {
      return fail(Status::kNoDevice,
                  "no usable CUDA device: cudaGetDeviceCount failed with %s (%s): no NVIDIA "
                  "driver found, or one older than CUDA 13 needs",
                  cudaGetErrorName(error), cudaGetErrorString(error));
    }
    if (error != cudaSuccess) {
      return fail(Status::kNoDevice,
                  "no usable CUDA device: cudaGetDeviceCount failed with %s (%s)",
                  cudaGetErrorName(error), cudaGetErrorString(error));
    }
    return fail(Status::kNoDevice, "no usable CUDA device: cudaGetDeviceCount found 0 devices");
  }
  int previous = 0;
  error = cudaGetDevice(&previous);
  if (error != cudaSuccess) return detail::cuda_failure("cudaGetDevice", error);
  if (device == kCurrentDevice) device = previous;
  if (device < 0 || device >= count) {
    return fail(Status::kInvalidArgument, "Handle::create: device %d is not in [0, %d)", device,
                count);
  }
  cudaDeviceProp properties{};
  error = cudaGetDeviceProperties(&properties, device);
  if (error != cudaSuccess) return detail::cuda_failure("cudaGetDeviceProperties", error);

  auto impl = std::make_unique<Impl>();
  impl->device = device;
  impl->compute_capability = properties.major * 10 + properties.minor;
  impl->multiprocessor_count = properties.multiProcessorCount;
  impl->l2_cache_bytes = static_cast<std::size_t>(properties.l2CacheSize);
  // cuBLASLt binds to the current device: make `device` current while creating, then restore.
  if (device != previous && (error = cudaSetDevice(device)) != cudaSuccess) {
    return detail::cuda_failure("cudaSetDevice", error);
  }
  const char* what = "cublasLtCreate";
  cublasStatus_t blas = cublasLtCreate(&impl->cublaslt);
  if (blas != CUBLAS_STATUS_SUCCESS) {
    impl->cublaslt = nullptr;
  } else {
    what = "cublasCreate";
    blas = cublasCreate(&impl->cublas);
    if (blas != CUBLAS_STATUS_SUCCESS) impl->cublas = nullptr;
  }
  if (device != previous) (void)cudaSetDevice(previous);
  if (blas != CUBLAS_STATUS_SUCCESS) {
    return fail(Status::kCublasError, "%s failed: %s", what, cublasLtGetStatusString(blas));
  }
  out->impl_ = std::move(impl);
  return Status::kSuccess;
}

}  // namespace contrastive
