// One block sums per-row partials into one value: the reduced losses and the temperature / scale
// gradients of every loss. Double accumulation, fixed order, no atomics.
#include <cub/block/block_reduce.cuh>

#include "kernels/reduce.hpp"

namespace contrastive::kernels {
namespace {

constexpr int kThreads = 1024;

__global__ __launch_bounds__(kThreads) void sum_kernel(const float* __restrict__ values,
                                                       std::int64_t count, double factor,
                                                       const float* __restrict__ divisor,
                                                       const double* __restrict__ device_factor,
                                                       float* __restrict__ out) {
  using BlockReduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  double total = 0.0, divisor_total = 0.0;
  for (std::int64_t i = threadIdx.x; i < count; i += kThreads) {
    total += values[i];
    if (divisor != nullptr) divisor_total += divisor[i];
  }
  total = BlockReduce(temp).Sum(total);
  if (divisor != nullptr) {
    __syncthreads();  // temp is reused
    divisor_total = BlockReduce(temp).Sum(divisor_total);
  }
  if (threadIdx.x != 0) return;
  if (divisor != nullptr && total == total)
    total = divisor_total > 0.0 ? total / divisor_total : 0.0;
  if (device_factor != nullptr) factor *= *device_factor;
  *out = static_cast<float>(factor * total);
}

}  // namespace

cudaError_t launch_sum(const float* values, std::int64_t count, double factor, const float* divisor,
                       float* out, cudaStream_t stream, const double* device_factor) {
  sum_kernel<<<1, kThreads, 0, stream>>>(values, count, factor, divisor, device_factor, out);
  return cudaGetLastError();
}

}  // namespace contrastive::kernels
