// Fused softmax cross-entropy over tiles of the logits matrix S (B, M), S = s * sim, s = 1 /
// temperature or a scale: the tile holds sim and the kernels multiply by s, read on the device.
//   forward:  tile -> running row (and column) max / sum-exp, positive logits; then one block turns
//             them into row / column log-sum-exp and the reduced loss.
//   backward: tile of S -> tile of G in place, plus per-row sum of G * S for the temperature
//             gradient (reduced by kernels/reduce.cu). G is dLoss/dS without the reduction's
//             host factors (1/B, 1/2 symmetric): the gradient GEMMs apply those in alpha.
// Reductions are CUB block reductions in a fixed order (no atomics): results are bitwise
// repeatable.
#include <cstdint>

#include <cub/block/block_reduce.cuh>

#include "kernels/numeric.hpp"
#include "kernels/softmax_xent.hpp"
#include "kernels/vector_access.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kRowThreads = 256;  // one block per row of the tile
constexpr int kColumnWidth = 32;  // columns per block: a warp reads 128 contiguous bytes
// Rows read in parallel for each column: 32 warps a block keep 32 loads of 128 bytes in flight per
// 32 columns (B / 32 blocks alone would leave most of the GPU idle).
constexpr int kColumnRowGroups = 32;
constexpr int kSingleBlockThreads = 1024;

// A row's running state over the columns this thread owns (kernels/row_chunks.hpp), N per load.
template <int N, typename L>
__device__ inline LseState thread_row_state(const L* __restrict__ logits, std::int64_t cols,
                                            float scale) {
  LseState state = lse_empty();
  visit_row<N, kRowThreads>(logits, cols,
                            [&](std::int64_t, float sim) { state = lse_push(state, scale * sim); });
  return state;
}

template <int N, typename L>
__global__ __launch_bounds__(kRowThreads) void row_lse_tile_kernel(
    LogitsTile tile, std::int64_t positive_offset, LseState* __restrict__ row_state,
    float* __restrict__ positive_logit, bool first_tile) {
  using BlockReduce = cub::BlockReduce<LseState, kRowThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const std::int64_t local_row = blockIdx.x;
  const L* logits = static_cast<const L*>(tile.data) + local_row * tile.ld;
  const float scale = tile_scale(tile);
  LseState state = thread_row_state<N>(logits, tile.cols, scale);
  state = BlockReduce(temp).Reduce(state, LseMerge{});
  if (threadIdx.x == 0) {
    const std::int64_t row = tile.row0 + local_row;
    row_state[row] = first_tile ? state : lse_merge(row_state[row], state);
    const std::int64_t positive = row + positive_offset - tile.col0;
    if (positive >= 0 && positive < tile.cols) {
      positive_logit[row] = scale * to_float(logits[positive]);
    }
  }
}

template <typename L>
__global__ __launch_bounds__(kColumnWidth* kColumnRowGroups) void col_lse_tile_kernel(
    LogitsTile tile, LseState* __restrict__ col_state, bool first_tile) {
  const L* logits = static_cast<const L*>(tile.data);
  const float scale = tile_scale(tile);
  __shared__ LseState partial[kColumnRowGroups][kColumnWidth];
  const std::int64_t local_col = static_cast<std::int64_t>(blockIdx.x) * kColumnWidth + threadIdx.x;
  LseState state = lse_empty();
  if (local_col < tile.cols) {
    for (std::int64_t r = threadIdx.y; r < tile.rows; r += kColumnRowGroups) {
      state = lse_push(state, scale * to_float(logits[r * tile.ld + local_col]));
    }
  }
  partial[threadIdx.y][threadIdx.x] = state;
  __syncthreads();
  if (threadIdx.y == 0 && local_col < tile.cols) {
    for (int group = 1; group < kColumnRowGroups; ++group) {
      state = lse_merge(state, partial[group][threadIdx.x]);
    }
    col_state[local_col] = first_tile ? state : lse_merge(col_state[local_col], state);
  }
}

__global__ __launch_bounds__(kSingleBlockThreads) void finalize_loss_kernel(
    const LseState* __restrict__ row_state, const LseState* __restrict__ col_state,
    const float* __restrict__ positive_logit, std::int64_t batch, Reduction reduction,
    float* __restrict__ row_lse, float* __restrict__ col_lse, float* __restrict__ loss) {
  using BlockReduce = cub::BlockReduce<double, kSingleBlockThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  double total = 0.0;
  for (std::int64_t i = threadIdx.x; i < batch; i += kSingleBlockThreads) {
    const float lse = lse_value(row_state[i]);
    row_lse[i] = lse;
    float row_loss = lse - positive_logit[i];
    if (col_state != nullptr) {  // symmetric: positive column i + offset, whose positive is row i
      const float column_lse = lse_value(col_state[i]);
      col_lse[i] = column_lse;
      row_loss = 0.5f * (row_loss + (column_lse - positive_logit[i]));
    }
    if (reduction == Reduction::kNone) {
      loss[i] = row_loss;
    } else {
      total += row_loss;
    }
  }
  if (reduction == Reduction::kNone) return;  // uniform across the block
  total = BlockReduce(temp).Sum(total);
  if (threadIdx.x == 0) {
    loss[0] = static_cast<float>(reduction == Reduction::kMean ? total / batch : total);
  }
}

template <int N, typename L, typename GT>
__global__ __launch_bounds__(kRowThreads) void logits_backward_tile_kernel(
    LogitsTile tile, GT* grad, std::int64_t positive_offset, std::int64_t batch,
    const float* __restrict__ row_lse, const float* __restrict__ col_lse, UpstreamGradient upstream,
    float* __restrict__ row_logit_grad, bool first_tile) {
  using BlockReduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const std::int64_t local_row = blockIdx.x;
  const std::int64_t row = tile.row0 + local_row;
  // grad may be the tile itself (GT == L): each element is read, then written, by one thread.
  const L* logits = static_cast<const L*>(tile.data) + local_row * tile.ld;
  GT* grads = grad + local_row * tile.ld;
  const float row_weight = upstream.weight(row);
  const float lse = row_lse[row];
  const std::int64_t positive = row + positive_offset;
  const float scale = tile_scale(tile);
  float grad_dot_logit = 0.0f;
  auto gradient = [&](std::int64_t j, float sim) {
    const float logit = scale * sim;
    const std::int64_t col = tile.col0 + j;
    float g = softmax_xent_grad(logit, lse, col == positive, row_weight);
    const std::int64_t positive_column = col - positive_offset;  // in [0, B) for positives
    if (col_lse != nullptr && positive_column >= 0 && positive_column < batch) {
      g += softmax_xent_grad(logit, col_lse[positive_column], col == positive,
                             upstream.weight(positive_column));
    }
    grad_dot_logit += grad_times_logit(g, logit);
    return g;
  };
  map_row<N, kRowThreads>(logits, grads, tile.cols, gradient);
  grad_dot_logit = BlockReduce(temp).Sum(grad_dot_logit);
  if (threadIdx.x == 0) {
    row_logit_grad[row] = first_tile ? grad_dot_logit : row_logit_grad[row] + grad_dot_logit;
  }
}

template <int N, typename L, typename GT>
__global__ __launch_bounds__(kRowThreads) void row_softmax_xent_tile_kernel(
    LogitsTile tile, GT* grad, std::int64_t positive_offset, UpstreamGradient upstream,
    LseState* __restrict__ row_state, float* __restrict__ positive_logit,
    float* __restrict__ row_logit_grad) {
  using StateReduce = cub::BlockReduce<LseState, kRowThreads>;
  using SumReduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ union {
    typename StateReduce::TempStorage state;
    typename SumReduce::TempStorage sum;
  } temp;
  __shared__ float row_lse;
  const std::int64_t local_row = blockIdx.x;
  const std::int64_t row = tile.row0 + local_row;
  // grad may be the tile itself (GT == L): the first pass only reads; in the second each element
  // is read, then written, by one thread.
  const L* logits = static_cast<const L*>(tile.data) + local_row * tile.ld;
  GT* grads = grad + local_row * tile.ld;
  const std::int64_t positive = row + positive_offset - tile.col0;
  // The row's state as row_lse_tile_kernel forms it, so that its log-sum-exp has the bits
  // launch_finalize_loss saves.
  const float scale = tile_scale(tile);
  LseState state = thread_row_state<N>(logits, tile.cols, scale);
  state = StateReduce(temp.state).Reduce(state, LseMerge{});
  if (threadIdx.x == 0) {
    row_state[row] = state;
    if (positive >= 0 && positive < tile.cols) {
      positive_logit[row] = scale * to_float(logits[positive]);
    }
    row_lse = lse_value(state);
  }
  __syncthreads();  // row_lse, and temp before its reuse
  const float lse = row_lse;
  const float row_weight = upstream.weight(row);
  float grad_dot_logit = 0.0f;
  auto gradient = [&](std::int64_t j, float sim) {
    const float logit = scale * sim;
    const float g = softmax_xent_grad(logit, lse, j == positive, row_weight);
    grad_dot_logit += grad_times_logit(g, logit);
    return g;
  };
  map_row<N, kRowThreads>(logits, grads, tile.cols, gradient);
  grad_dot_logit = SumReduce(temp.sum).Sum(grad_dot_logit);
  if (threadIdx.x == 0) row_logit_grad[row] = grad_dot_logit;
}

}  // namespace

template <typename L>
cudaError_t launch_row_lse_tile(const LogitsTile& tile, std::int64_t positive_offset,
                                LseState* row_state, float* positive_logit, bool first_tile,
                                cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L))) {
    row_lse_tile_kernel<kVectorElements<L>, L><<<blocks, kRowThreads, 0, stream>>>(
        tile, positive_offset, row_state, positive_logit, first_tile);
  } else {
    row_lse_tile_kernel<1, L><<<blocks, kRowThreads, 0, stream>>>(tile, positive_offset, row_state,
                                                                  positive_logit, first_tile);
  }
  return cudaGetLastError();
}

template <typename L>
cudaError_t launch_col_lse_tile(const LogitsTile& tile, LseState* col_state, bool first_tile,
                                cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((tile.cols + kColumnWidth - 1) / kColumnWidth);
  col_lse_tile_kernel<L>
      <<<blocks, dim3(kColumnWidth, kColumnRowGroups), 0, stream>>>(tile, col_state, first_tile);
  return cudaGetLastError();
}

cudaError_t launch_finalize_loss(const LseState* row_state, const LseState* col_state,
                                 const float* positive_logit, std::int64_t batch,
                                 Reduction reduction, float* row_lse, float* col_lse, float* loss,
                                 cudaStream_t stream) {
  finalize_loss_kernel<<<1, kSingleBlockThreads, 0, stream>>>(
      row_state, col_state, positive_logit, batch, reduction, row_lse, col_lse, loss);
  return cudaGetLastError();
}

template <typename L, typename GT>
cudaError_t launch_logits_backward_tile(const LogitsTile& tile, GT* grad,
                                        std::int64_t positive_offset, std::int64_t batch,
                                        const float* row_lse, const float* col_lse,
                                        UpstreamGradient upstream, float* row_logit_grad,
                                        bool first_tile, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L), grad)) {
    logits_backward_tile_kernel<kVectorElements<L>, L, GT><<<blocks, kRowThreads, 0, stream>>>(
        tile, grad, positive_offset, batch, row_lse, col_lse, upstream, row_logit_grad, first_tile);
  } else {
    logits_backward_tile_kernel<1, L, GT><<<blocks, kRowThreads, 0, stream>>>(
        tile, grad, positive_offset, batch, row_lse, col_lse, upstream, row_logit_grad, first_tile);
  }
  return cudaGetLastError();
}

template <typename L, typename GT>
cudaError_t launch_row_softmax_xent_tile(const LogitsTile& tile, GT* grad,
                                         std::int64_t positive_offset, UpstreamGradient upstream,
                                         LseState* row_state, float* positive_logit,
                                         float* row_logit_grad, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L), grad)) {
    row_softmax_xent_tile_kernel<kVectorElements<L>, L, GT><<<blocks, kRowThreads, 0, stream>>>(
        tile, grad, positive_offset, upstream, row_state, positive_logit, row_logit_grad);
  } else {
    row_softmax_xent_tile_kernel<1, L, GT><<<blocks, kRowThreads, 0, stream>>>(
        tile, grad, positive_offset, upstream, row_state, positive_logit, row_logit_grad);
  }
  return cudaGetLastError();
}

#define CONTRASTIVE_INSTANTIATE_TILE(L)                                                           \
  template cudaError_t launch_row_lse_tile<L>(const LogitsTile&, std::int64_t, LseState*, float*, \
                                              bool, cudaStream_t);                                \
  template cudaError_t launch_col_lse_tile<L>(const LogitsTile&, LseState*, bool, cudaStream_t);
#define CONTRASTIVE_INSTANTIATE_BACKWARD(L, GT)                                                  \
  template cudaError_t launch_logits_backward_tile<L, GT>(                                       \
      const LogitsTile&, GT*, std::int64_t, std::int64_t, const float*, const float*,            \
      UpstreamGradient, float*, bool, cudaStream_t);                                             \
  template cudaError_t launch_row_softmax_xent_tile<L, GT>(const LogitsTile&, GT*, std::int64_t, \
                                                           UpstreamGradient, LseState*, float*,  \
                                                           float*, cudaStream_t);
CONTRASTIVE_INSTANTIATE_TILE(float)
CONTRASTIVE_INSTANTIATE_TILE(__nv_bfloat16)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, float)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, __half)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, __nv_bfloat16)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, float)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, __half)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, __nv_bfloat16)
#undef CONTRASTIVE_INSTANTIATE_TILE
#undef CONTRASTIVE_INSTANTIATE_BACKWARD

}  // namespace contrastive::kernels
