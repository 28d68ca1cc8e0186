// The unfused per-anchor MNR and Repel baselines (see unfused_anchor.hpp): plain kernels, one step
// each. Their rows are short (D values, or J <= 2048 similarities) and many, so every kernel gives
// each row one warp.
#include "bench/unfused_anchor.hpp"

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <utility>
#include <variant>
#include <vector>

#include <cub/block/block_reduce.cuh>

#include "bench/cublas_floor.hpp"
#include "host/blas/cublas_gemm.hpp"
#include "host/engine/dispatch.hpp"
#include "kernels/numeric.hpp"
#include "kernels/warp_reduce.cuh"

namespace contrastive::bench {
namespace {

using kernels::kWarpSize;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * kWarpSize;

// The row of this thread's warp. A warp past the last row returns whole, so every shuffle below
// runs on a full warp.
__device__ std::int64_t warp_row() {
  return static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
}

__device__ int lane() {
  return static_cast<int>(threadIdx.x % kWarpSize);
}

__device__ float warp_max(float value) {
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2) {
    value = fmaxf(value, __shfl_xor_sync(kernels::kFullWarp, value, mask));
  }
  return value;
}

// Allocates each (bytes, buffer) in turn; false at the first that fails (reported through `gpu`).
bool allocate_each(GpuFixture& gpu,
                   std::initializer_list<std::pair<std::size_t, DeviceBuffer*>> buffers) {
  for (const auto& [bytes, buffer] : buffers) {
    if (!gpu.allocate(bytes, buffer)) return false;
  }
  return true;
}

unsigned row_blocks(std::int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

// ---- Rows of D values: normalize, concatenate, split, convert ---------------------------------

// x_hat = x / max(|x|, eps), and the inverse norm.
template <typename T>
__global__ void normalize_kernel(const T* x, std::int64_t rows, std::int64_t dim, float eps,
                                 T* x_hat, float* inv_norm) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  const std::int64_t base = row * dim;
  float squares = 0.0f;
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) {
    const float v = kernels::to_float(x[base + c]);
    squares += v * v;
  }
  const float inverse = 1.0f / fmaxf(sqrtf(kernels::warp_all_sum(squares)), eps);
  if (lane() == 0) inv_norm[row] = inverse;
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) {
    x_hat[base + c] = kernels::from_float<T>(kernels::to_float(x[base + c]) * inverse);
  }
}

// dx = (g - x_hat (x_hat . g)) / |x|. May run in place (out == grad): each lane reads an element
// before it writes it.
template <typename T, typename Out>
__global__ void normalize_backward_kernel(const T* x_hat, const float* inv_norm, const float* grad,
                                          std::int64_t rows, std::int64_t dim, Out* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  const std::int64_t base = row * dim;
  float dot = 0.0f;
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) {
    dot += kernels::to_float(x_hat[base + c]) * grad[base + c];
  }
  const float projection = kernels::warp_all_sum(dot);
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) {
    const float g = grad[base + c] - kernels::to_float(x_hat[base + c]) * projection;
    out[base + c] = kernels::from_float<Out>(g * inv_norm[row]);
  }
}

// Row b * J + j of the candidates: P's row b for j == 0, else N's row b * (J - 1) + j - 1.
template <typename T>
__device__ T* candidate_row(T* positives, T* negatives, std::int64_t row, std::int64_t candidates,
                            std::int64_t dim) {
  const std::int64_t anchor = row / candidates, j = row % candidates;
  return j == 0 ? positives + anchor * dim : negatives + (anchor * (candidates - 1) + j - 1) * dim;
}

// C (B * J, D) = cat(P, N), as torch.cat of P (B, 1, D) and N (B, J - 1, D).
template <typename T>
__global__ void concat_kernel(const T* positives, const T* negatives, std::int64_t rows,
                              std::int64_t candidates, std::int64_t dim, T* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  const T* in = candidate_row(positives, negatives, row, candidates, dim);
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) out[row * dim + c] = in[c];
}

// concat_kernel's backward: dP and dN from dC (B * J, D) fp32, rounded to T.
template <typename T>
__global__ void split_kernel(const float* grad, std::int64_t rows, std::int64_t candidates,
                             std::int64_t dim, T* grad_positives, T* grad_negatives) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  T* out = candidate_row(grad_positives, grad_negatives, row, candidates, dim);
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) {
    out[c] = kernels::from_float<T>(grad[row * dim + c]);
  }
}

// out (rows, D) = in rounded to T.
template <typename T>
__global__ void convert_kernel(const float* in, std::int64_t rows, std::int64_t dim, T* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  for (std::int64_t c = lane(); c < dim; c += kWarpSize) {
    out[row * dim + c] = kernels::from_float<T>(in[row * dim + c]);
  }
}

// ---- Rows of J similarities: softmax, hinge, mean ---------------------------------------------

// out[row] = max or sum over the row.
template <bool kMax>
__global__ void row_reduce_kernel(const float* matrix, std::int64_t rows, std::int64_t cols,
                                  float* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  float value = kMax ? -INFINITY : 0.0f;
  for (std::int64_t c = lane(); c < cols; c += kWarpSize) {
    const float x = matrix[row * cols + c];
    value = kMax ? fmaxf(value, x) : value + x;
  }
  value = kMax ? warp_max(value) : kernels::warp_all_sum(value);
  if (lane() == 0) out[row] = value;
}

__global__ void exp_shift_kernel(const float* logits, const float* row_max, std::int64_t rows,
                                 std::int64_t cols, float* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  for (std::int64_t c = lane(); c < cols; c += kWarpSize) {
    out[row * cols + c] = expf(logits[row * cols + c] - row_max[row]);
  }
}

__global__ void log_softmax_kernel(const float* logits, const float* row_max, const float* row_sum,
                                   std::int64_t rows, std::int64_t cols, float* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  for (std::int64_t c = lane(); c < cols; c += kWarpSize) {
    out[row * cols + c] = logits[row * cols + c] - row_max[row] - logf(row_sum[row]);
  }
}

// G = weight (exp(L) - onehot): each row's positive is candidate 0.
template <typename T>
__global__ void softmax_grad_kernel(const float* log_probs, std::int64_t rows, std::int64_t cols,
                                    float weight, T* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  for (std::int64_t c = lane(); c < cols; c += kWarpSize) {
    const float positive = c == 0 ? 1.0f : 0.0f;
    out[row * cols + c] =
        kernels::from_float<T>(weight * (expf(log_probs[row * cols + c]) - positive));
  }
}

__global__ void hinge_kernel(const float* cosines, std::int64_t rows, std::int64_t cols,
                             float margin, float* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  for (std::int64_t c = lane(); c < cols; c += kWarpSize) {
    out[row * cols + c] = fmaxf(cosines[row * cols + c] - margin, 0.0f);
  }
}

// G = weight where the term is above the margin, else 0.
template <typename T>
__global__ void hinge_grad_kernel(const float* cosines, std::int64_t rows, std::int64_t cols,
                                  float margin, float weight, T* out) {
  const std::int64_t row = warp_row();
  if (row >= rows) return;
  for (std::int64_t c = lane(); c < cols; c += kWarpSize) {
    out[row * cols + c] = kernels::from_float<T>(cosines[row * cols + c] > margin ? weight : 0.0f);
  }
}

// One block: out = factor * sum of values[i * stride] for i < count (a gather-mean, or a mean).
__global__ void strided_sum_kernel(const float* values, std::int64_t count, std::int64_t stride,
                                   float factor, float* out) {
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  float sum = 0.0f;
  for (std::int64_t i = threadIdx.x; i < count; i += kThreads) sum += values[i * stride];
  sum = Reduce(temp).Sum(sum);
  if (threadIdx.x == 0) *out = factor * sum;
}

// ---- The batched GEMMs, one product per anchor ------------------------------------------------

// Elements between consecutive anchors' A, B and C of a RowMajorGemm.
struct AnchorStrides {
  std::int64_t a = 0, b = 0, c = 0;
};

// `g` once per anchor, its operands advancing by `strides`: detail::cublas_gemm's exchange of
// row-major for column-major, through cublasGemmStridedBatchedEx.
cublasStatus_t batched_gemm(cublasHandle_t cublas, const detail::RowMajorGemm& g,
                            const AnchorStrides& strides, std::int64_t batch) {
  const cudaDataType_t in = kernels::cuda_data_type(g.input_type);
  return cublasGemmStridedBatchedEx_64(
      cublas, g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      g.n, g.m, g.k, &g.alpha, g.b, in, g.ldb, strides.b, g.a, in, g.lda, strides.a, &g.beta, g.c,
      kernels::cuda_data_type(g.output_type), g.ldc, strides.c, batch,
      detail::compute_type(g.input_type, /*allow_tf32=*/false), CUBLAS_GEMM_DEFAULT);
}

// Anchors A (B, D) against J candidates each, C (B * J, D) with row b * J + j, both in dtype: the
// products InfoNCE's GEMMs are (host/blas/row_major_gemm.hpp), with one row of Q per anchor.
struct AnchorCandidateGemms {
  std::int64_t batch = 0, candidates = 0, dim = 0;
  DType dtype = DType::kF32;

  // S (B, J) fp32: S[b] = scale * a_b C_b^T.
  bool similarities(GpuFixture& gpu, cublasHandle_t cublas, const void* a, const void* c,
                    float scale, float* s) const {
    const std::int64_t j = candidates, d = dim;
    return gpu.check(
        batched_gemm(cublas,
                     detail::logits_product(a, d, c, d, dtype, 1, j, d, s, j, DType::kF32, scale),
                     {d, j * d, j}, batch),
        "cublasGemmStridedBatchedEx(S)");
  }

  // From G (B, J) in dtype, fp32: dA[b] = scale * G[b] C_b and dC_b = scale * G[b]^T a_b.
  bool gradients(GpuFixture& gpu, cublasHandle_t cublas, const void* g, const void* a,
                 const void* c, float scale, float* grad_a, float* grad_c) const {
    const std::int64_t j = candidates, d = dim;
    return gpu.check(
               batched_gemm(
                   cublas, detail::grad_q_product(g, j, c, d, dtype, 1, j, d, grad_a, scale, false),
                   {j, j * d, d}, batch),
               "cublasGemmStridedBatchedEx(dA)") &&
           gpu.check(
               batched_gemm(
                   cublas, detail::grad_k_product(g, j, a, d, dtype, 1, j, d, grad_c, scale, false),
                   {j, d, j * d}, batch),
               "cublasGemmStridedBatchedEx(dC)");
  }
};

// ---- Per-anchor MNR ----------------------------------------------------------------------------

class UnfusedPerAnchorMnr {
 public:
  bool allocate(GpuFixture& gpu, const mnr::PerAnchorParams& params);
  bool enqueue(GpuFixture& gpu, cublasHandle_t cublas,
               const mnr::PerAnchorForwardBackwardArgs& args) const;

 private:
  mnr::PerAnchorParams params_;
  AnchorCandidateGemms gemms_;
  // The normalized rows and their inverse norms only for cosine.
  DeviceBuffer candidates_, anchors_hat_, candidates_hat_, inv_norms_, logits_, exps_, log_probs_,
      probs_, row_max_, row_sum_, grad_anchors_, grad_candidates_;
};

bool UnfusedPerAnchorMnr::allocate(GpuFixture& gpu, const mnr::PerAnchorParams& params) {
  params_ = params;
  const std::int64_t b = params.batch, j = 1 + params.negatives, d = params.dim;
  const DType t = params.dtype, f32 = DType::kF32;
  gemms_ = {b, j, d, t};
  const bool normalized = params.similarity != Similarity::kCosine ||
                          allocate_each(gpu, {{matrix_bytes(b, d, t), &anchors_hat_},
                                              {matrix_bytes(b * j, d, t), &candidates_hat_},
                                              {matrix_bytes(b + b * j, 1, f32), &inv_norms_}});
  return normalized && allocate_each(gpu, {{matrix_bytes(b * j, d, t), &candidates_},
                                           {matrix_bytes(b, j, f32), &logits_},
                                           {matrix_bytes(b, j, f32), &exps_},
                                           {matrix_bytes(b, j, f32), &log_probs_},
                                           {matrix_bytes(b, j, t), &probs_},
                                           {matrix_bytes(b, 1, f32), &row_max_},
                                           {matrix_bytes(b, 1, f32), &row_sum_},
                                           {matrix_bytes(b, d, f32), &grad_anchors_},
                                           {matrix_bytes(b * j, d, f32), &grad_candidates_}});
}

bool UnfusedPerAnchorMnr::enqueue(GpuFixture& gpu, cublasHandle_t cublas,
                                  const mnr::PerAnchorForwardBackwardArgs& args) const {
  const cudaStream_t stream = gpu.stream();
  const std::int64_t b = gemms_.batch, j = gemms_.candidates, d = gemms_.dim;
  const bool cosine = params_.similarity == Similarity::kCosine;
  const unsigned anchor_blocks = row_blocks(b), candidate_blocks = row_blocks(b * j);
  const float scale = params_.scale, weight = 1.0f / static_cast<float>(b);
  float* const logits = logits_.as_floats();
  float* const row_max = row_max_.as_floats();
  float* const row_sum = row_sum_.as_floats();
  float* const log_probs = log_probs_.as_floats();
  float* const grad_a = grad_anchors_.as_floats();
  float* const grad_c = grad_candidates_.as_floats();
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto* anchors = static_cast<const T*>(args.anchors);
    auto* candidates = static_cast<T*>(candidates_.get());
    concat_kernel<T><<<candidate_blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(args.positives), static_cast<const T*>(args.negatives), b * j, j, d,
        candidates);
    const T* a_hat = anchors;
    const T* c_hat = candidates;
    if (cosine) {
      normalize_kernel<T><<<anchor_blocks, kThreads, 0, stream>>>(
          anchors, b, d, params_.eps, static_cast<T*>(anchors_hat_.get()), inv_norms_.as_floats());
      normalize_kernel<T><<<candidate_blocks, kThreads, 0, stream>>>(
          candidates, b * j, d, params_.eps, static_cast<T*>(candidates_hat_.get()),
          inv_norms_.as_floats() + b);
      a_hat = static_cast<const T*>(anchors_hat_.get());
      c_hat = static_cast<const T*>(candidates_hat_.get());
    }
    if (!gemms_.similarities(gpu, cublas, a_hat, c_hat, scale, logits)) return false;
    row_reduce_kernel<true><<<anchor_blocks, kThreads, 0, stream>>>(logits, b, j, row_max);
    exp_shift_kernel<<<anchor_blocks, kThreads, 0, stream>>>(logits, row_max, b, j,
                                                             exps_.as_floats());
    row_reduce_kernel<false>
        <<<anchor_blocks, kThreads, 0, stream>>>(exps_.as_floats(), b, j, row_sum);
    log_softmax_kernel<<<anchor_blocks, kThreads, 0, stream>>>(logits, row_max, row_sum, b, j,
                                                               log_probs);
    strided_sum_kernel<<<1, kThreads, 0, stream>>>(log_probs, b, j, -weight, args.loss);
    softmax_grad_kernel<T><<<anchor_blocks, kThreads, 0, stream>>>(log_probs, b, j, weight,
                                                                   static_cast<T*>(probs_.get()));
    if (!gemms_.gradients(gpu, cublas, probs_.get(), a_hat, c_hat, scale, grad_a, grad_c)) {
      return false;
    }
    if (cosine) {
      normalize_backward_kernel<T, float><<<anchor_blocks, kThreads, 0, stream>>>(
          a_hat, inv_norms_.as_floats(), grad_a, b, d, grad_a);
      normalize_backward_kernel<T, float><<<candidate_blocks, kThreads, 0, stream>>>(
          c_hat, inv_norms_.as_floats() + b, grad_c, b * j, d, grad_c);
    }
    convert_kernel<T>
        <<<anchor_blocks, kThreads, 0, stream>>>(grad_a, b, d, static_cast<T*>(args.grad_anchors));
    split_kernel<T><<<candidate_blocks, kThreads, 0, stream>>>(
        grad_c, b * j, j, d, static_cast<T*>(args.grad_positives),
        static_cast<T*>(args.grad_negatives));
    return gpu.check(cudaGetLastError(), "unfused per-anchor MNR launch");
  };
  return detail::dispatch_dtype(params_.dtype, launch);
}

// ---- Repel -------------------------------------------------------------------------------------

class UnfusedRepel {
 public:
  bool allocate(GpuFixture& gpu, const repel::Params& params);
  bool enqueue(GpuFixture& gpu, cublasHandle_t cublas,
               const repel::ForwardBackwardArgs& args) const;

 private:
  repel::Params params_;
  AnchorCandidateGemms gemms_;
  DeviceBuffer anchors_hat_, negatives_hat_, inv_norms_, cosines_, hinge_, grads_,
      grad_anchors_hat_, grad_negatives_hat_;
};

bool UnfusedRepel::allocate(GpuFixture& gpu, const repel::Params& params) {
  params_ = params;
  const std::int64_t b = params.batch, n = params.negatives, d = params.dim;
  const DType t = params.dtype, f32 = DType::kF32;
  gemms_ = {b, n, d, t};
  return allocate_each(gpu, {{matrix_bytes(b, d, t), &anchors_hat_},
                             {matrix_bytes(b * n, d, t), &negatives_hat_},
                             {matrix_bytes(b + b * n, 1, f32), &inv_norms_},
                             {matrix_bytes(b, n, f32), &cosines_},
                             {matrix_bytes(b, n, f32), &hinge_},
                             {matrix_bytes(b, n, t), &grads_},
                             {matrix_bytes(b, d, f32), &grad_anchors_hat_},
                             {matrix_bytes(b * n, d, f32), &grad_negatives_hat_}});
}

bool UnfusedRepel::enqueue(GpuFixture& gpu, cublasHandle_t cublas,
                           const repel::ForwardBackwardArgs& args) const {
  const cudaStream_t stream = gpu.stream();
  const std::int64_t b = gemms_.batch, n = gemms_.candidates, d = gemms_.dim;
  const unsigned anchor_blocks = row_blocks(b), negative_blocks = row_blocks(b * n);
  const float margin = params_.margin, weight = 1.0f / static_cast<float>(b * n);
  float* const a_inv = inv_norms_.as_floats();
  float* const n_inv = a_inv + b;
  float* const cosines = cosines_.as_floats();
  float* const grad_a_hat = grad_anchors_hat_.as_floats();
  float* const grad_n_hat = grad_negatives_hat_.as_floats();
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* const a_hat = static_cast<T*>(anchors_hat_.get());
    T* const n_hat = static_cast<T*>(negatives_hat_.get());
    normalize_kernel<T><<<anchor_blocks, kThreads, 0, stream>>>(static_cast<const T*>(args.anchors),
                                                                b, d, params_.eps, a_hat, a_inv);
    normalize_kernel<T><<<negative_blocks, kThreads, 0, stream>>>(
        static_cast<const T*>(args.negatives), b * n, d, params_.eps, n_hat, n_inv);
    if (!gemms_.similarities(gpu, cublas, a_hat, n_hat, 1.0f, cosines)) return false;
    hinge_kernel<<<anchor_blocks, kThreads, 0, stream>>>(cosines, b, n, margin, hinge_.as_floats());
    strided_sum_kernel<<<1, kThreads, 0, stream>>>(hinge_.as_floats(), b * n, 1, weight, args.loss);
    hinge_grad_kernel<T><<<anchor_blocks, kThreads, 0, stream>>>(cosines, b, n, margin, weight,
                                                                 static_cast<T*>(grads_.get()));
    if (!gemms_.gradients(gpu, cublas, grads_.get(), a_hat, n_hat, 1.0f, grad_a_hat, grad_n_hat)) {
      return false;
    }
    normalize_backward_kernel<T, T><<<anchor_blocks, kThreads, 0, stream>>>(
        a_hat, a_inv, grad_a_hat, b, d, static_cast<T*>(args.grad_anchors));
    normalize_backward_kernel<T, T><<<negative_blocks, kThreads, 0, stream>>>(
        n_hat, n_inv, grad_n_hat, b * n, d, static_cast<T*>(args.grad_negatives));
    return gpu.check(cudaGetLastError(), "unfused Repel launch");
  };
  return detail::dispatch_dtype(params_.dtype, launch);
}

// ---- Timing ------------------------------------------------------------------------------------

// `Unfused` on `args`' buffers with a cuBLAS handle of its own: run once, its loss finite, then
// handed to `use`.
template <typename Unfused, typename LossParams, typename Args>
bool with_unfused_on(GpuFixture& gpu, const LossParams& params, const Args& args,
                     const std::function<bool(const Work&)>& use) {
  CublasFloor cublas(gpu);
  Unfused unfused;
  if (!cublas.ready() || !unfused.allocate(gpu, params)) return false;
  const Work work = [&] { return unfused.enqueue(gpu, cublas.handle(), args); };
  FiniteValue loss;
  loss.device_value = args.loss;
  loss.name = "unfused loss";
  if (!work() || !gpu.require_finite(std::vector<FiniteValue>(1, loss))) return false;
  return use(work);
}

bool with_unfused_of(GpuFixture& gpu, const mnr::PerAnchorParams& params, const LossBuffers& at,
                     const std::function<bool(const Work&)>& use) {
  mnr::PerAnchorForwardBackwardArgs args;
  args.anchors = at.at("anchors");
  args.positives = at.at("positives");
  args.negatives = at.at("negatives");
  args.loss = static_cast<float*>(at.at("loss"));
  args.grad_anchors = at.at("grad_anchors");
  args.grad_positives = at.at("grad_positives");
  args.grad_negatives = at.at("grad_negatives");
  return with_unfused_on<UnfusedPerAnchorMnr>(gpu, params, args, use);
}

bool with_unfused_of(GpuFixture& gpu, const repel::Params& params, const LossBuffers& at,
                     const std::function<bool(const Work&)>& use) {
  repel::ForwardBackwardArgs args;
  args.anchors = at.at("anchors");
  args.negatives = at.at("negatives");
  args.loss = static_cast<float*>(at.at("loss"));
  args.grad_anchors = at.at("grad_anchors");
  args.grad_negatives = at.at("grad_negatives");
  return with_unfused_on<UnfusedRepel>(gpu, params, args, use);
}

template <typename LossParams>
bool with_unfused_of(GpuFixture& gpu, const LossParams&, const LossBuffers& buffers,
                     const std::function<bool(const Work&)>&) {
  return gpu.fail(buffers.name() + ": no unfused per-anchor baseline");
}

}  // namespace

bool with_unfused(GpuFixture& gpu, const LossBuffers& buffers,
                  const std::function<bool(const Work&)>& use) {
  return std::visit([&](const auto& params) { return with_unfused_of(gpu, params, buffers, use); },
                    buffers.params());
}

}  // namespace contrastive::bench
