// Row L2-normalization and its backward: one warp per row, sums of squares in double so that
// rows with norms near 1e+-30 neither overflow nor underflow in fp32.
//   forward:  x (rows, ld) -> x_hat (rows, dim) dense, inv_norm (rows)
//   backward: x (rows, ld), grad_x_hat (rows, dim) -> grad_x (rows, dim) dense
#include <cstdint>

#include "kernels/normalize.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/warp_reduce.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kBlockThreads = kWarpSize * kWarpsPerBlock;

__global__ __launch_bounds__(kBlockThreads) void normalize_rows_kernel(
    const float* __restrict__ x, std::int64_t rows, std::int64_t ld, std::int64_t dim, float eps,
    const float* __restrict__ inv_norm_in, float* __restrict__ inv_norm_out,
    float* __restrict__ x_hat) {
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;  // the whole warp leaves together
  const float* in = x + row * ld;
  float inv_norm;
  if (inv_norm_in != nullptr) {
    inv_norm = inv_norm_in[row];
  } else {
    double squares = 0.0;
    for (std::int64_t c = lane; c < dim; c += kWarpSize) {
      const double value = in[c];
      squares += value * value;
    }
    squares = warp_all_sum(squares);
    inv_norm = 1.0f / nan_propagating_max(static_cast<float>(sqrt(squares)), eps);
    if (inv_norm_out != nullptr && lane == 0) inv_norm_out[row] = inv_norm;
  }
  float* out = x_hat + row * dim;
  for (std::int64_t c = lane; c < dim; c += kWarpSize) out[c] = in[c] * inv_norm;
}

__global__ __launch_bounds__(kBlockThreads) void normalize_rows_backward_kernel(
    const float* __restrict__ x, std::int64_t rows, std::int64_t ld, std::int64_t dim, float eps,
    const float* __restrict__ grad_x_hat, float* __restrict__ grad_x) {
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;
  const float* in = x + row * ld;
  const float* grad_in = grad_x_hat + row * dim;
  float* out = grad_x + row * dim;
  double squares = 0.0;
  double x_dot_grad = 0.0;
  for (std::int64_t c = lane; c < dim; c += kWarpSize) {
    const double value = in[c];
    squares += value * value;
    x_dot_grad += value * grad_in[c];
  }
  squares = warp_all_sum(squares);
  x_dot_grad = warp_all_sum(x_dot_grad);
  const double norm = sqrt(squares);
  if (norm <= eps) {  // clamped: x_hat = x / eps is linear in x
    for (std::int64_t c = lane; c < dim; c += kWarpSize) out[c] = grad_in[c] / eps;
    return;
  }
  // Written with x_hat = x / |x| and (x_hat . g) so no intermediate leaves fp32 range.
  const float inv_norm = static_cast<float>(1.0 / norm);
  const float projection = static_cast<float>(x_dot_grad / norm);
  for (std::int64_t c = lane; c < dim; c += kWarpSize) {
    out[c] = (grad_in[c] - (in[c] * inv_norm) * projection) * inv_norm;
  }
}

unsigned blocks_for_rows(std::int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

cudaError_t launch_normalize_rows(const float* x, std::int64_t rows, std::int64_t ld,
                                  std::int64_t dim, float eps, const float* inv_norm_in,
                                  float* inv_norm_out, float* x_hat, cudaStream_t stream) {
  normalize_rows_kernel<<<blocks_for_rows(rows), kBlockThreads, 0, stream>>>(
      x, rows, ld, dim, eps, inv_norm_in, inv_norm_out, x_hat);
  return cudaGetLastError();
}

cudaError_t launch_normalize_rows_backward(const float* x, std::int64_t rows, std::int64_t ld,
                                           std::int64_t dim, float eps, const float* grad_x_hat,
                                           float* grad_x, cudaStream_t stream) {
  normalize_rows_backward_kernel<<<blocks_for_rows(rows), kBlockThreads, 0, stream>>>(
      x, rows, ld, dim, eps, grad_x_hat, grad_x);
  return cudaGetLastError();
}

}  // namespace contrastive::kernels
