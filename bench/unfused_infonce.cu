// The unfused InfoNCE baseline (see unfused_infonce.hpp): plain kernels, one step each.
#include "bench/unfused_infonce.hpp"

#include <cub/block/block_reduce.cuh>

#include "host/blas/cublas_gemm.hpp"
#include "host/engine/dispatch.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::bench {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxElementwiseBlocks = 65536;
constexpr float kEps = 1e-12f;

using Reduce = cub::BlockReduce<float, kThreads>;

// One block per row: x_hat = x / max(|x|, eps), and the inverse norm.
template <typename T>
__global__ void normalize_kernel(const T* x, std::int64_t dim, T* x_hat, float* inv_norm) {
  __shared__ typename Reduce::TempStorage temp;
  __shared__ float inverse;
  const T* row = x + blockIdx.x * dim;
  float squares = 0.0f;
  for (std::int64_t c = threadIdx.x; c < dim; c += kThreads) {
    const float v = kernels::to_float(row[c]);
    squares += v * v;
  }
  squares = Reduce(temp).Sum(squares);
  if (threadIdx.x == 0) inverse = inv_norm[blockIdx.x] = 1.0f / fmaxf(sqrtf(squares), kEps);
  __syncthreads();
  for (std::int64_t c = threadIdx.x; c < dim; c += kThreads) {
    x_hat[blockIdx.x * dim + c] = kernels::from_float<T>(kernels::to_float(row[c]) * inverse);
  }
}

// One block per row: out[row] = max or sum over the row.
template <bool kMax>
__global__ void row_reduce_kernel(const float* matrix, std::int64_t cols, float* out) {
  __shared__ typename Reduce::TempStorage temp;
  const float* row = matrix + blockIdx.x * cols;
  float value = kMax ? -INFINITY : 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += kThreads) {
    value = kMax ? fmaxf(value, row[c]) : value + row[c];
  }
  if constexpr (kMax) {
    value = Reduce(temp).Reduce(value, [](float a, float b) { return fmaxf(a, b); });
  } else {
    value = Reduce(temp).Sum(value);
  }
  if (threadIdx.x == 0) out[blockIdx.x] = value;
}

// Elementwise over a (rows, cols) matrix, one grid-stride loop per step.
#define CONTRASTIVE_FOR_EACH(count)                                                     \
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x; \
       i < (count); i += static_cast<std::int64_t>(gridDim.x) * kThreads)

__global__ void exp_shift_kernel(const float* logits, const float* row_max, std::int64_t cols,
                                 std::int64_t count, float* out) {
  CONTRASTIVE_FOR_EACH(count) {
    out[i] = expf(logits[i] - row_max[i / cols]);
  }
}

__global__ void log_softmax_kernel(const float* logits, const float* row_max, const float* row_sum,
                                   std::int64_t cols, std::int64_t count, float* out) {
  CONTRASTIVE_FOR_EACH(count) {
    out[i] = logits[i] - row_max[i / cols] - logf(row_sum[i / cols]);
  }
}

// One block: loss = -mean_i log_probs[i, i].
__global__ void nll_mean_kernel(const float* log_probs, std::int64_t rows, float* loss) {
  __shared__ typename Reduce::TempStorage temp;
  float sum = 0.0f;
  for (std::int64_t r = threadIdx.x; r < rows; r += kThreads) sum += log_probs[r * rows + r];
  sum = Reduce(temp).Sum(sum);
  if (threadIdx.x == 0) *loss = -sum / static_cast<float>(rows);
}

template <typename T>
__global__ void probs_kernel(const float* log_probs, std::int64_t cols, std::int64_t count,
                             float weight, T* out) {
  CONTRASTIVE_FOR_EACH(count) {
    const bool positive = i / cols == i % cols;
    out[i] = kernels::from_float<T>(weight * (expf(log_probs[i]) - (positive ? 1.0f : 0.0f)));
  }
}

// One block per row: dx = (g - x_hat (x_hat . g)) / |x|.
template <typename T>
__global__ void normalize_backward_kernel(const T* x_hat, const float* inv_norm, const float* grad,
                                          std::int64_t dim, T* out) {
  __shared__ typename Reduce::TempStorage temp;
  __shared__ float projection;
  const std::int64_t base = blockIdx.x * dim;
  float dot = 0.0f;
  for (std::int64_t c = threadIdx.x; c < dim; c += kThreads) {
    dot += kernels::to_float(x_hat[base + c]) * grad[base + c];
  }
  dot = Reduce(temp).Sum(dot);
  if (threadIdx.x == 0) projection = dot;
  __syncthreads();
  for (std::int64_t c = threadIdx.x; c < dim; c += kThreads) {
    const float g = grad[base + c] - kernels::to_float(x_hat[base + c]) * projection;
    out[base + c] = kernels::from_float<T>(g * inv_norm[blockIdx.x]);
  }
}

#undef CONTRASTIVE_FOR_EACH

unsigned elementwise_blocks(std::int64_t count) {
  const std::int64_t needed = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(needed < kMaxElementwiseBlocks ? needed : kMaxElementwiseBlocks);
}

}  // namespace

bool UnfusedInfoNCE::allocate(GpuFixture& gpu, std::int64_t batch, std::int64_t dim, DType dtype) {
  batch_ = batch;
  dim_ = dim;
  dtype_ = dtype;
  const std::size_t square = static_cast<std::size_t>(batch) * static_cast<std::size_t>(batch);
  const std::size_t rows = matrix_bytes(batch, dim, dtype);
  const std::size_t sums = matrix_bytes(batch, dim, DType::kF32);
  return gpu.allocate(rows, &q_hat_) && gpu.allocate(rows, &k_hat_) &&
         gpu.allocate(2 * batch * sizeof(float), &inv_norms_) &&
         gpu.allocate(square * sizeof(float), &logits_) &&
         gpu.allocate(square * sizeof(float), &exps_) &&
         gpu.allocate(square * sizeof(float), &log_probs_) &&
         gpu.allocate(square * dtype_size(dtype), &probs_) &&
         gpu.allocate(batch * sizeof(float), &row_max_) &&
         gpu.allocate(batch * sizeof(float), &row_sum_) && gpu.allocate(sums, &grad_q_sum_) &&
         gpu.allocate(sums, &grad_k_sum_);
}

bool UnfusedInfoNCE::enqueue(GpuFixture& gpu, cublasHandle_t cublas, const void* q, const void* k,
                             void* grad_q, void* grad_k, float* loss, float temperature) const {
  const cudaStream_t stream = gpu.stream();
  const std::int64_t b = batch_, d = dim_, count = b * b;
  const auto rows = static_cast<unsigned>(b);
  const unsigned blocks = elementwise_blocks(count);
  const float scale = 1.0f / temperature;
  float* q_inv = inv_norms_.as_floats();
  float* k_inv = q_inv + b;
  float* logits = logits_.as_floats();
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    normalize_kernel<T><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(q), d,
                                                       static_cast<T*>(q_hat_.get()), q_inv);
    normalize_kernel<T><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(k), d,
                                                       static_cast<T*>(k_hat_.get()), k_inv);
    if (!gpu.check(
            detail::cublas_gemm(cublas,
                                detail::logits_product(q_hat_.get(), d, k_hat_.get(), d, dtype_, b,
                                                       b, d, logits, b, DType::kF32, scale),
                                false),
            "cublasGemmEx(S)")) {
      return false;
    }
    row_reduce_kernel<true><<<rows, kThreads, 0, stream>>>(logits, b, row_max_.as_floats());
    exp_shift_kernel<<<blocks, kThreads, 0, stream>>>(logits, row_max_.as_floats(), b, count,
                                                      exps_.as_floats());
    row_reduce_kernel<false>
        <<<rows, kThreads, 0, stream>>>(exps_.as_floats(), b, row_sum_.as_floats());
    log_softmax_kernel<<<blocks, kThreads, 0, stream>>>(
        logits, row_max_.as_floats(), row_sum_.as_floats(), b, count, log_probs_.as_floats());
    nll_mean_kernel<<<1, kThreads, 0, stream>>>(log_probs_.as_floats(), b, loss);
    probs_kernel<T><<<blocks, kThreads, 0, stream>>>(log_probs_.as_floats(), b, count,
                                                     1.0f / static_cast<float>(b),
                                                     static_cast<T*>(probs_.get()));
    if (!gpu.check(
            detail::cublas_gemm(cublas,
                                detail::grad_q_product(probs_.get(), b, k_hat_.get(), d, dtype_, b,
                                                       b, d, grad_q_sum_.as_floats(), scale, false),
                                false),
            "cublasGemmEx(dQ)") ||
        !gpu.check(
            detail::cublas_gemm(cublas,
                                detail::grad_k_product(probs_.get(), b, q_hat_.get(), d, dtype_, b,
                                                       b, d, grad_k_sum_.as_floats(), scale, false),
                                false),
            "cublasGemmEx(dK)")) {
      return false;
    }
    normalize_backward_kernel<T><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(q_hat_.get()),
                                                                q_inv, grad_q_sum_.as_floats(), d,
                                                                static_cast<T*>(grad_q));
    normalize_backward_kernel<T><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(k_hat_.get()),
                                                                k_inv, grad_k_sum_.as_floats(), d,
                                                                static_cast<T*>(grad_k));
    return gpu.check(cudaGetLastError(), "unfused InfoNCE launch");
  };
  return detail::dispatch_dtype(dtype_, launch);
}

}  // namespace contrastive::bench
