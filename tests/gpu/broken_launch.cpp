// The sanitizer's self-test: the library's row normalization (kernels/normalize.cu, built into this
// program as it is into the library) launched over one row more than its buffers hold (a classic
// off-by-one). Run plainly it may well pass unnoticed; under compute-sanitizer memcheck it must
// report out-of-bounds reads and writes. scripts/gpu-check.sh runs it so and expects the errors:
// if memcheck stays silent here, its silence elsewhere proves nothing.
// Exit status: 0 after the launch, 77 without a usable GPU, 1 on a CUDA error.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <vector>

#include "kernels/normalize.hpp"

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("broken_launch: no usable CUDA device\n");
    return 77;
  }
  constexpr std::int64_t kRows = 33, kDim = 64;
  const std::vector<float> host(kRows * kDim, 1.0f);
  float *x = nullptr, *x_hat = nullptr, *inv_norm = nullptr;
  // Exactly the sizes kRows rows need: the launch's extra row lies past the end of each allocation.
  if (cudaMalloc(reinterpret_cast<void**>(&x), host.size() * sizeof(float)) != cudaSuccess ||
      cudaMalloc(reinterpret_cast<void**>(&x_hat), host.size() * sizeof(float)) != cudaSuccess ||
      cudaMalloc(reinterpret_cast<void**>(&inv_norm), kRows * sizeof(float)) != cudaSuccess ||
      cudaMemcpy(x, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice) !=
          cudaSuccess) {
    std::printf("broken_launch: allocation failed\n");
    return 1;
  }
  const cudaError_t launched = contrastive::kernels::launch_normalize_rows<float>(
      x, kRows + 1, kDim, kDim, 1e-12f, nullptr, inv_norm, x_hat, nullptr);
  const cudaError_t finished = cudaDeviceSynchronize();
  std::printf("broken_launch: normalize_rows over %lld rows launched with one too many: %s, %s\n",
              static_cast<long long>(kRows), cudaGetErrorName(launched),
              cudaGetErrorName(finished));
  cudaFree(x);
  cudaFree(x_hat);
  cudaFree(inv_norm);
  return launched == cudaSuccess ? 0 : 1;
}
