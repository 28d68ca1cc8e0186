// Row L2-normalization and its backward, one warp per row, for fp32 / fp16 / bf16 rows; sums in
// double so that rows with norms near 1e+-30 neither overflow nor underflow. 16-byte vector loads
// and stores when the rows' address, stride and length allow it, scalar access otherwise.
//   forward:  x (rows, ld) T -> x_hat (rows, dim) T dense, inv_norm (rows) fp32
//   backward: x (rows, ld) T, grad_x_hat (rows, dim) fp32 -> grad_x (rows, dim) T dense
// Also the elementwise conversion of fp32 accumulators to T.
#include <cstdint>

#include "kernels/normalize.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/vector_access.cuh"
#include "kernels/warp_reduce.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kBlockThreads = kWarpSize * kWarpsPerBlock;
constexpr int kConvertThreads = 256;
constexpr int kMaxConvertBlocks = 4096;  // a grid-stride loop covers the rest

__device__ std::int64_t warp_row() {
  return static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
}

template <typename T, bool kVector>
__global__ __launch_bounds__(kBlockThreads) void normalize_rows_kernel(
    const T* __restrict__ x, std::int64_t rows, std::int64_t ld, std::int64_t dim, float eps,
    const float* __restrict__ inv_norm_in, float* __restrict__ inv_norm_out,
    T* __restrict__ x_hat) {
  constexpr int kStep = kVector ? kVectorElements<T> : 1;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t row = warp_row();
  if (row >= rows) return;  // the whole warp leaves together
  const T* in = x + row * ld;
  T* out = x_hat + row * dim;
  float inv_norm;
  if (inv_norm_in != nullptr) {
    inv_norm = inv_norm_in[row];
  } else {
    double squares = 0.0;
    for (std::int64_t c = lane * kStep; c < dim; c += kWarpSize * kStep) {
      float values[kStep];
      if constexpr (kVector) {
        load_vector(in + c, values);
      } else {
        values[0] = to_float(in[c]);
      }
#pragma unroll
      for (int i = 0; i < kStep; ++i) squares += static_cast<double>(values[i]) * values[i];
    }
    squares = warp_all_sum(squares);
    inv_norm = 1.0f / nan_propagating_max(static_cast<float>(sqrt(squares)), eps);
    if (inv_norm_out != nullptr && lane == 0) inv_norm_out[row] = inv_norm;
  }
  for (std::int64_t c = lane * kStep; c < dim; c += kWarpSize * kStep) {
    if constexpr (kVector) {
      float values[kStep];
      load_vector(in + c, values);
#pragma unroll
      for (int i = 0; i < kStep; ++i) values[i] *= inv_norm;
      store_vector(out + c, values);
    } else {
      out[c] = from_float<T>(to_float(in[c]) * inv_norm);
    }
  }
}

template <typename T, bool kVector>
__global__ __launch_bounds__(kBlockThreads) void normalize_rows_backward_kernel(
    const T* __restrict__ x, std::int64_t rows, std::int64_t ld, std::int64_t dim, float eps,
    const float* __restrict__ grad_x_hat, T* __restrict__ grad_x, const float* __restrict__ scale) {
  const float g_scale = scale != nullptr ? *scale : 1.0f;
  constexpr int kStep = kVector ? kVectorElements<T> : 1;
  constexpr int kFloatVectors = kVector ? kStep / kVectorElements<float> : 0;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  const T* in = x + row * ld;
  const float* grad_in = grad_x_hat + row * dim;
  T* out = grad_x + row * dim;
  // One chunk of kStep elements: x as fp32 and the matching gradient values.
  auto load = [&](std::int64_t c, float(&values)[kStep], float(&grads)[kStep]) {
    if constexpr (kVector) {
      load_vector(in + c, values);
#pragma unroll
      for (int v = 0; v < kFloatVectors; ++v) {
        float part[kVectorElements<float>];
        load_vector(grad_in + c + v * kVectorElements<float>, part);
#pragma unroll
        for (int i = 0; i < kVectorElements<float>; ++i)
          grads[v * kVectorElements<float> + i] = g_scale * part[i];
      }
    } else {
      values[0] = to_float(in[c]);
      grads[0] = g_scale * grad_in[c];
    }
  };
  double squares = 0.0, x_dot_grad = 0.0;
  for (std::int64_t c = lane * kStep; c < dim; c += kWarpSize * kStep) {
    float values[kStep], grads[kStep];
    load(c, values, grads);
#pragma unroll
    for (int i = 0; i < kStep; ++i) {
      squares += static_cast<double>(values[i]) * values[i];
      x_dot_grad += static_cast<double>(values[i]) * grads[i];
    }
  }
  squares = warp_all_sum(squares);
  x_dot_grad = warp_all_sum(x_dot_grad);
  const double norm = sqrt(squares);
  const bool clamped = norm <= eps;  // x_hat = x / eps is linear there
  // Written with x_hat = x / |x| and (x_hat . g) so no intermediate leaves fp32 range.
  const float inv_norm = clamped ? 1.0f / eps : static_cast<float>(1.0 / norm);
  const float projection = clamped ? 0.0f : static_cast<float>(x_dot_grad / norm);
  for (std::int64_t c = lane * kStep; c < dim; c += kWarpSize * kStep) {
    float values[kStep], grads[kStep];
    load(c, values, grads);
#pragma unroll
    for (int i = 0; i < kStep; ++i)
      values[i] = (grads[i] - (values[i] * inv_norm) * projection) * inv_norm;
    if constexpr (kVector) {
      store_vector(out + c, values);
    } else {
      out[c] = from_float<T>(values[0]);
    }
  }
}

// No __restrict__ on in and out: they may be one buffer (each element is read, then written, by
// one thread).
template <typename T>
__global__ __launch_bounds__(kConvertThreads) void convert_kernel(const float* in,
                                                                  std::int64_t count, T* out,
                                                                  const float* __restrict__ scale) {
  const float factor = scale != nullptr ? *scale : 1.0f;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kConvertThreads;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kConvertThreads + threadIdx.x;
       i < count; i += stride) {
    out[i] = from_float<T>(scale != nullptr ? factor * in[i] : in[i]);
  }
}

unsigned blocks_for_rows(std::int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

template <typename T>
cudaError_t launch_normalize_rows(const T* x, std::int64_t rows, std::int64_t ld, std::int64_t dim,
                                  float eps, const float* inv_norm_in, float* inv_norm_out,
                                  T* x_hat, cudaStream_t stream) {
  if (vectorizable(x, ld, dim, sizeof(T)) && vectorizable(x_hat, dim, dim, sizeof(T))) {
    normalize_rows_kernel<T, true><<<blocks_for_rows(rows), kBlockThreads, 0, stream>>>(
        x, rows, ld, dim, eps, inv_norm_in, inv_norm_out, x_hat);
  } else {
    normalize_rows_kernel<T, false><<<blocks_for_rows(rows), kBlockThreads, 0, stream>>>(
        x, rows, ld, dim, eps, inv_norm_in, inv_norm_out, x_hat);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_normalize_rows_backward(const T* x, std::int64_t rows, std::int64_t ld,
                                           std::int64_t dim, float eps, const float* grad_x_hat,
                                           T* grad_x, cudaStream_t stream, const float* scale) {
  if (vectorizable(x, ld, dim, sizeof(T)) && vectorizable(grad_x, dim, dim, sizeof(T)) &&
      vectorizable(grad_x_hat, dim, dim, sizeof(float))) {
    normalize_rows_backward_kernel<T, true><<<blocks_for_rows(rows), kBlockThreads, 0, stream>>>(
        x, rows, ld, dim, eps, grad_x_hat, grad_x, scale);
  } else {
    normalize_rows_backward_kernel<T, false><<<blocks_for_rows(rows), kBlockThreads, 0, stream>>>(
        x, rows, ld, dim, eps, grad_x_hat, grad_x, scale);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_convert(const float* in, std::int64_t count, T* out, cudaStream_t stream,
                           const float* scale) {
  const std::int64_t needed = (count + kConvertThreads - 1) / kConvertThreads;
  const auto blocks =
      static_cast<unsigned>(needed < kMaxConvertBlocks ? needed : kMaxConvertBlocks);
  convert_kernel<T><<<blocks, kConvertThreads, 0, stream>>>(in, count, out, scale);
  return cudaGetLastError();
}

#define CONTRASTIVE_INSTANTIATE(T)                                                              \
  template cudaError_t launch_normalize_rows<T>(const T*, std::int64_t, std::int64_t,           \
                                                std::int64_t, float, const float*, float*, T*,  \
                                                cudaStream_t);                                  \
  template cudaError_t launch_normalize_rows_backward<T>(const T*, std::int64_t, std::int64_t,  \
                                                         std::int64_t, float, const float*, T*, \
                                                         cudaStream_t, const float*);           \
  template cudaError_t launch_convert<T>(const float*, std::int64_t, T*, cudaStream_t,          \
                                         const float*);
CONTRASTIVE_INSTANTIATE(float)
CONTRASTIVE_INSTANTIATE(__half)
CONTRASTIVE_INSTANTIATE(__nv_bfloat16)
#undef CONTRASTIVE_INSTANTIATE

}  // namespace contrastive::kernels
