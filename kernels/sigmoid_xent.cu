// Pairwise sigmoid cross-entropy over tiles of the logits matrix (SigLIP's loss): l = s sim + b,
// label +1 at column row + offset (none in negatives-only mode), loss softplus(-z l) per logit.
// One block per tile row; reductions are CUB block reductions in a fixed order (no atomics), so
// results are bitwise repeatable.
#include <cstdint>

#include <cub/block/block_reduce.cuh>

#include "kernels/numeric.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/sigmoid_math.hpp"
#include "kernels/sigmoid_xent.hpp"
#include "kernels/vector_access.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kRowThreads = 256;  // one block per row of the tile

// The tile column of row `row`'s positive, or -1 when it is not in this tile.
__device__ inline std::int64_t positive_column(const LogitsTile& tile, std::int64_t row,
                                               SigmoidLabels labels) {
  if (labels.negatives_only) return -1;
  const std::int64_t local = row + labels.positive_offset - tile.col0;
  return (local >= 0 && local < tile.cols) ? local : -1;
}

template <int N, typename L>
__global__ __launch_bounds__(kRowThreads) void sigmoid_forward_tile_kernel(
    LogitsTile tile, const float* __restrict__ bias_in, SigmoidLabels labels,
    float* __restrict__ row_loss, bool first_tile) {
  const float bias = *bias_in;  // resolved on the device (kernels/logit_scalars.hpp)
  const float scale = tile_scale(tile);
  using BlockReduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const std::int64_t row = tile.row0 + blockIdx.x;
  const L* __restrict__ logits = static_cast<const L*>(tile.data) + blockIdx.x * tile.ld;
  const std::int64_t positive = positive_column(tile, row, labels);
  float loss = 0.0f;
  visit_row<N, kRowThreads>(logits, tile.cols, [&](std::int64_t j, float sim) {
    loss += sigmoid_xent(scale * sim + bias, j == positive);
  });
  loss = BlockReduce(temp).Sum(loss);
  if (threadIdx.x == 0) row_loss[row] = first_tile ? loss : row_loss[row] + loss;
}

template <int N, typename L, typename GT>
__global__ __launch_bounds__(kRowThreads) void sigmoid_backward_tile_kernel(
    LogitsTile tile, GT* grad, const float* bias_in, SigmoidLabels labels,
    UpstreamGradient upstream, SigmoidRowSums sums, bool first_tile) {
  const float bias = *bias_in;
  const float scale = tile_scale(tile);
  using BlockReduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const std::int64_t row = tile.row0 + blockIdx.x;
  // grad may be the tile itself (GT == L): each element is read, then written, by one thread.
  const L* logits = static_cast<const L*>(tile.data) + blockIdx.x * tile.ld;
  GT* grads = grad + blockIdx.x * tile.ld;
  const std::int64_t positive = positive_column(tile, row, labels);
  const float weight = upstream.weight(row);
  const bool with_loss = sums.loss != nullptr;
  float grad_dot_logit = 0.0f, grad_sum = 0.0f, loss = 0.0f;
  auto gradient = [&](std::int64_t j, float sim) {
    const float logit = scale * sim;
    const float l = logit + bias;
    const float g = sigmoid_xent_grad(l, j == positive, weight);
    grad_dot_logit += grad_times_logit(g, logit);
    grad_sum += g;
    if (with_loss) loss += sigmoid_xent(l, j == positive);
    return g;
  };
  map_row<N, kRowThreads>(logits, grads, tile.cols, gradient);
  // Three block sums in a fixed order; temp is reused, hence the barriers.
  grad_dot_logit = BlockReduce(temp).Sum(grad_dot_logit);
  __syncthreads();
  grad_sum = BlockReduce(temp).Sum(grad_sum);
  if (with_loss) {
    __syncthreads();
    loss = BlockReduce(temp).Sum(loss);
  }
  if (threadIdx.x != 0) return;
  sums.grad_dot_logit[row] =
      first_tile ? grad_dot_logit : sums.grad_dot_logit[row] + grad_dot_logit;
  sums.grad[row] = first_tile ? grad_sum : sums.grad[row] + grad_sum;
  if (with_loss) sums.loss[row] = first_tile ? loss : sums.loss[row] + loss;
}

}  // namespace

template <typename L>
cudaError_t launch_sigmoid_forward_tile(const LogitsTile& tile, const float* bias,
                                        SigmoidLabels labels, float* row_loss, bool first_tile,
                                        cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L))) {
    sigmoid_forward_tile_kernel<kVectorElements<L>, L>
        <<<blocks, kRowThreads, 0, stream>>>(tile, bias, labels, row_loss, first_tile);
  } else {
    sigmoid_forward_tile_kernel<1, L>
        <<<blocks, kRowThreads, 0, stream>>>(tile, bias, labels, row_loss, first_tile);
  }
  return cudaGetLastError();
}

template <typename L, typename GT>
cudaError_t launch_sigmoid_backward_tile(const LogitsTile& tile, GT* grad, const float* bias,
                                         SigmoidLabels labels, UpstreamGradient upstream,
                                         SigmoidRowSums sums, bool first_tile,
                                         cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L), grad)) {
    sigmoid_backward_tile_kernel<kVectorElements<L>, L, GT>
        <<<blocks, kRowThreads, 0, stream>>>(tile, grad, bias, labels, upstream, sums, first_tile);
  } else {
    sigmoid_backward_tile_kernel<1, L, GT>
        <<<blocks, kRowThreads, 0, stream>>>(tile, grad, bias, labels, upstream, sums, first_tile);
  }
  return cudaGetLastError();
}

#define CONTRASTIVE_INSTANTIATE_FORWARD(L)                                             \
  template cudaError_t launch_sigmoid_forward_tile<L>(const LogitsTile&, const float*, \
                                                      SigmoidLabels, float*, bool, cudaStream_t);
#define CONTRASTIVE_INSTANTIATE_BACKWARD(L, GT)                                                  \
  template cudaError_t launch_sigmoid_backward_tile<L, GT>(const LogitsTile&, GT*, const float*, \
                                                           SigmoidLabels, UpstreamGradient,      \
                                                           SigmoidRowSums, bool, cudaStream_t);
CONTRASTIVE_INSTANTIATE_FORWARD(float)
CONTRASTIVE_INSTANTIATE_FORWARD(__nv_bfloat16)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, float)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, __half)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, __nv_bfloat16)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, float)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, __half)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, __nv_bfloat16)
#undef CONTRASTIVE_INSTANTIATE_FORWARD
#undef CONTRASTIVE_INSTANTIATE_BACKWARD

}  // namespace contrastive::kernels
