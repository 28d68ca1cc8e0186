// Masked softmax cross-entropy over tiles of the logits S (B, M) under ids (contrastive/ids.hpp):
// the kernels of kernels/softmax_xent.cu with each element's role (kept, positive) recomputed
// from the ids and the similarity it reads (kernels/id_mask.hpp), forward and backward alike.
//   forward:  tile -> each row's running (max, sum-exp) over its kept keys, the sum of its
//             positives' logits and their count (and, symmetric, each positive column's state
//             over its kept rows); then one block turns them into log-sum-exp and the loss.
//   backward: tile of S -> tile of G, 0 on masked keys, plus each row's sum of G * S.
// The false-negative threshold compares each similarity with the row's positive similarity,
// computed before the walk from the GEMM operands (launch_positive_similarity) and saved, so that
// backward reads the same values. Reductions are CUB block reductions or fixed warp butterflies
// (no atomics): results are bitwise repeatable.
#include <cstdint>

#include <cub/block/block_reduce.cuh>

#include "kernels/masked_softmax_xent.hpp"
#include "kernels/numeric.hpp"
#include "kernels/vector_access.cuh"
#include "kernels/warp_reduce.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kRowThreads = 256;  // one block per row of the tile
constexpr int kColumnWidth = 32;  // columns per block: a warp reads 128 contiguous bytes
constexpr int kColumnRowGroups = 32;
constexpr int kSingleBlockThreads = 1024;
constexpr int kSimilarityWarps = 8;  // rows per block of the positive similarities

// A row's statistics over the part of it a thread (or a block) has seen.
struct RowStats {
  LseState state;
  float positive_sum;
  float positive_count;
};

struct RowStatsMerge {
  __device__ RowStats operator()(const RowStats& a, const RowStats& b) const {
    return {lse_merge(a.state, b.state), a.positive_sum + b.positive_sum,
            a.positive_count + b.positive_count};
  }
};

__device__ inline std::int64_t row_id(const IdMask& mask, std::int64_t row) {
  return mask.has_ids() ? load_id(mask.row_ids, mask.wide, row) : 0;
}

__device__ inline bool same_id(const IdMask& mask, std::int64_t a, std::int64_t key) {
  return mask.has_ids() && load_id(mask.key_ids, mask.wide, key) == a;
}

template <typename T>
__global__ __launch_bounds__(kSimilarityWarps* kWarpSize) void positive_similarity_kernel(
    const T* __restrict__ q, std::int64_t ldq, const T* __restrict__ k, std::int64_t ldk,
    std::int64_t batch, std::int64_t dim, std::int64_t positive_offset,
    float* __restrict__ positive_sim) {
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * kSimilarityWarps + threadIdx.x / kWarpSize;
  if (row >= batch) return;  // uniform across the warp
  const int lane = threadIdx.x % kWarpSize;
  const T* q_row = q + row * ldq;
  const T* k_row = k + (row + positive_offset) * ldk;
  float dot = 0.0f;
  for (std::int64_t d = lane; d < dim; d += kWarpSize)
    dot += to_float(q_row[d]) * to_float(k_row[d]);
  dot = warp_all_sum(dot);
  if (lane == 0) positive_sim[row] = dot;
}

template <int N, typename L>
__global__ __launch_bounds__(kRowThreads) void masked_row_stats_tile_kernel(
    LogitsTile tile, MaskedRows rows, LseState* __restrict__ row_state,
    float* __restrict__ positive_sum, float* __restrict__ positive_count, bool first_tile) {
  using BlockReduce = cub::BlockReduce<RowStats, kRowThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const std::int64_t local_row = blockIdx.x;
  const std::int64_t row = tile.row0 + local_row;
  const L* logits = static_cast<const L*>(tile.data) + local_row * tile.ld;
  const float scale = tile_scale(tile);
  const std::int64_t a = row_id(rows.mask, row);
  const std::int64_t own = row + rows.positive_offset;
  const float positive_sim = rows.positive_sim != nullptr ? rows.positive_sim[row] : 0.0f;
  RowStats stats{lse_empty(), 0.0f, 0.0f};
  visit_row<N, kRowThreads>(logits, tile.cols, [&](std::int64_t j, float sim) {
    const std::int64_t col = tile.col0 + j;
    const KeyRole role =
        key_role(rows.mask, col == own, same_id(rows.mask, a, col), sim, positive_sim);
    const float logit = scale * sim;
    if (role.kept) stats.state = lse_push(stats.state, logit);
    if (role.positive) {
      stats.positive_sum += logit;
      stats.positive_count += 1.0f;
    }
  });
  stats = BlockReduce(temp).Reduce(stats, RowStatsMerge{});
  if (threadIdx.x == 0) {
    if (first_tile) {
      row_state[row] = stats.state;
      positive_sum[row] = stats.positive_sum;
      positive_count[row] = stats.positive_count;
    } else {
      row_state[row] = lse_merge(row_state[row], stats.state);
      positive_sum[row] += stats.positive_sum;
      positive_count[row] += stats.positive_count;
    }
  }
}

template <typename L>
__global__ __launch_bounds__(kColumnWidth* kColumnRowGroups) void masked_col_lse_tile_kernel(
    LogitsTile part, MaskedRows rows, LseState* __restrict__ col_state, bool first_tile) {
  const L* logits = static_cast<const L*>(part.data);
  const float scale = tile_scale(part);
  __shared__ LseState partial[kColumnRowGroups][kColumnWidth];
  const std::int64_t local_col = static_cast<std::int64_t>(blockIdx.x) * kColumnWidth + threadIdx.x;
  LseState state = lse_empty();
  if (local_col < part.cols) {
    const std::int64_t col = part.col0 + local_col;
    const std::int64_t owner = col - rows.positive_offset;  // the row whose positive column it is
    const float positive_sim = rows.positive_sim != nullptr ? rows.positive_sim[owner] : 0.0f;
    for (std::int64_t r = threadIdx.y; r < part.rows; r += kColumnRowGroups) {
      const std::int64_t row = part.row0 + r;
      const float sim = to_float(logits[r * part.ld + local_col]);
      const KeyRole role =
          key_role(rows.mask, row == owner, same_id(rows.mask, row_id(rows.mask, row), col), sim,
                   positive_sim);
      if (role.kept) state = lse_push(state, scale * sim);
    }
  }
  partial[threadIdx.y][threadIdx.x] = state;
  __syncthreads();
  if (threadIdx.y == 0 && local_col < part.cols) {
    for (int group = 1; group < kColumnRowGroups; ++group) {
      state = lse_merge(state, partial[group][threadIdx.x]);
    }
    col_state[local_col] = first_tile ? state : lse_merge(col_state[local_col], state);
  }
}

__global__ __launch_bounds__(kSingleBlockThreads) void masked_finalize_loss_kernel(
    const LseState* __restrict__ row_state, const LseState* __restrict__ col_state,
    const float* __restrict__ positive_sum, const float* __restrict__ positive_count,
    std::int64_t batch, Reduction reduction, bool mean_over_positive_rows,
    float* __restrict__ row_lse, float* __restrict__ col_lse, float* __restrict__ saved_count,
    float* __restrict__ loss) {
  using BlockReduce = cub::BlockReduce<double, kSingleBlockThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  double total = 0.0, active_rows = 0.0;
  for (std::int64_t i = threadIdx.x; i < batch; i += kSingleBlockThreads) {
    const float lse = lse_value(row_state[i]);
    const float count = positive_count[i];
    row_lse[i] = lse;
    if (saved_count != nullptr) saved_count[i] = count;
    float row_loss = masked_row_loss(lse, positive_sum[i], count);
    if (col_state != nullptr) {  // single-positive: the column of row i's one positive
      const float column_lse = lse_value(col_state[i]);
      col_lse[i] = column_lse;
      row_loss = 0.5f * (row_loss + (column_lse - positive_sum[i]));
    }
    if (count > 0.0f) active_rows += 1.0;
    if (reduction == Reduction::kNone) {
      loss[i] = row_loss;
    } else {
      total += row_loss;
    }
  }
  if (reduction == Reduction::kNone) return;  // uniform across the block
  total = BlockReduce(temp).Sum(total);
  if (mean_over_positive_rows) {
    __syncthreads();  // temp is reused
    active_rows = BlockReduce(temp).Sum(active_rows);
  }
  if (threadIdx.x != 0) return;
  double result = total;
  if (reduction == Reduction::kMean) {
    const double divisor = mean_over_positive_rows ? active_rows : static_cast<double>(batch);
    result = divisor > 0.0 ? total / divisor : 0.0;
  }
  loss[0] = static_cast<float>(result);
}

template <int N, typename L, typename GT>
__global__ __launch_bounds__(kRowThreads) void masked_backward_tile_kernel(
    LogitsTile tile, GT* grad, MaskedRows rows, const float* __restrict__ row_lse,
    const float* __restrict__ col_lse, const float* __restrict__ counts, UpstreamGradient upstream,
    float* __restrict__ row_logit_grad, bool first_tile) {
  using BlockReduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const std::int64_t local_row = blockIdx.x;
  const std::int64_t row = tile.row0 + local_row;
  // grad may be the tile itself (GT == L): each element is read, then written, by one thread.
  const L* logits = static_cast<const L*>(tile.data) + local_row * tile.ld;
  GT* grads = grad + local_row * tile.ld;
  const float scale = tile_scale(tile);
  const float count = counts != nullptr ? counts[row] : 1.0f;
  const bool active = count > 0.0f;
  const float inverse_count = active ? 1.0f / count : 0.0f;
  const float row_weight = upstream.weight(row);
  const float lse = row_lse[row];
  const std::int64_t a = row_id(rows.mask, row);
  const std::int64_t own = row + rows.positive_offset;
  const float positive_sim = rows.positive_sim != nullptr ? rows.positive_sim[row] : 0.0f;
  float grad_dot_logit = 0.0f;
  auto gradient = [&](std::int64_t j, float sim) {
    const float logit = scale * sim;
    const std::int64_t col = tile.col0 + j;
    const bool same = same_id(rows.mask, a, col);
    const KeyRole role = key_role(rows.mask, col == own, same, sim, positive_sim);
    float g = masked_xent_grad(logit, lse, role, inverse_count, active, row_weight);
    const std::int64_t owner = col - rows.positive_offset;  // in [0, B) for positive columns
    if (col_lse != nullptr && owner >= 0 && owner < rows.batch) {
      const float owner_sim = rows.positive_sim != nullptr ? rows.positive_sim[owner] : 0.0f;
      const KeyRole column_role = key_role(rows.mask, row == owner, same, sim, owner_sim);
      g += masked_xent_grad(logit, col_lse[owner], column_role, 1.0f, true, upstream.weight(owner));
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

__global__ __launch_bounds__(kSingleBlockThreads) void positive_rows_scale_kernel(
    const float* __restrict__ counts, std::int64_t batch, ResolvedScalars* scalars) {
  using BlockReduce = cub::BlockReduce<double, kSingleBlockThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  double active_rows = 0.0;
  for (std::int64_t i = threadIdx.x; i < batch; i += kSingleBlockThreads) {
    if (counts[i] > 0.0f) active_rows += 1.0;
  }
  active_rows = BlockReduce(temp).Sum(active_rows);
  if (threadIdx.x != 0) return;
  // 0 * s keeps a NaN scale NaN; with no positive row every G is 0 anyway.
  const double inverse = active_rows > 0.0 ? 1.0 / active_rows : 0.0;
  scalars->gradient_scale = static_cast<float>(static_cast<double>(scalars->logit_scale) * inverse);
  scalars->scale_gradient_factor *= inverse;
}

}  // namespace

template <typename T>
cudaError_t launch_positive_similarity(const T* q, std::int64_t ldq, const T* k, std::int64_t ldk,
                                       std::int64_t batch, std::int64_t dim,
                                       std::int64_t positive_offset, float* positive_sim,
                                       cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((batch + kSimilarityWarps - 1) / kSimilarityWarps);
  positive_similarity_kernel<T><<<blocks, kSimilarityWarps * kWarpSize, 0, stream>>>(
      q, ldq, k, ldk, batch, dim, positive_offset, positive_sim);
  return cudaGetLastError();
}

template <typename L>
cudaError_t launch_masked_row_stats_tile(const LogitsTile& tile, const MaskedRows& rows,
                                         LseState* row_state, float* positive_sum,
                                         float* positive_count, bool first_tile,
                                         cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L))) {
    masked_row_stats_tile_kernel<kVectorElements<L>, L><<<blocks, kRowThreads, 0, stream>>>(
        tile, rows, row_state, positive_sum, positive_count, first_tile);
  } else {
    masked_row_stats_tile_kernel<1, L><<<blocks, kRowThreads, 0, stream>>>(
        tile, rows, row_state, positive_sum, positive_count, first_tile);
  }
  return cudaGetLastError();
}

template <typename L>
cudaError_t launch_masked_col_lse_tile(const LogitsTile& part, const MaskedRows& rows,
                                       LseState* col_state, bool first_tile, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((part.cols + kColumnWidth - 1) / kColumnWidth);
  masked_col_lse_tile_kernel<L><<<blocks, dim3(kColumnWidth, kColumnRowGroups), 0, stream>>>(
      part, rows, col_state, first_tile);
  return cudaGetLastError();
}

cudaError_t launch_masked_finalize_loss(const LseState* row_state, const LseState* col_state,
                                        const float* positive_sum, const float* positive_count,
                                        std::int64_t batch, Reduction reduction,
                                        bool mean_over_positive_rows, float* row_lse,
                                        float* col_lse, float* saved_count, float* loss,
                                        cudaStream_t stream) {
  masked_finalize_loss_kernel<<<1, kSingleBlockThreads, 0, stream>>>(
      row_state, col_state, positive_sum, positive_count, batch, reduction, mean_over_positive_rows,
      row_lse, col_lse, saved_count, loss);
  return cudaGetLastError();
}

template <typename L, typename GT>
cudaError_t launch_masked_backward_tile(const LogitsTile& tile, GT* grad, const MaskedRows& rows,
                                        const float* row_lse, const float* col_lse,
                                        const float* counts, UpstreamGradient upstream,
                                        float* row_logit_grad, bool first_tile,
                                        cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(tile.rows);
  if (rows_take_packs(tile.data, tile.ld, sizeof(L), grad)) {
    masked_backward_tile_kernel<kVectorElements<L>, L, GT><<<blocks, kRowThreads, 0, stream>>>(
        tile, grad, rows, row_lse, col_lse, counts, upstream, row_logit_grad, first_tile);
  } else {
    masked_backward_tile_kernel<1, L, GT><<<blocks, kRowThreads, 0, stream>>>(
        tile, grad, rows, row_lse, col_lse, counts, upstream, row_logit_grad, first_tile);
  }
  return cudaGetLastError();
}

cudaError_t launch_positive_rows_scale(const float* counts, std::int64_t batch,
                                       ResolvedScalars* scalars, cudaStream_t stream) {
  positive_rows_scale_kernel<<<1, kSingleBlockThreads, 0, stream>>>(counts, batch, scalars);
  return cudaGetLastError();
}

#define CONTRASTIVE_INSTANTIATE_OPERANDS(T)                                                    \
  template cudaError_t launch_positive_similarity<T>(const T*, std::int64_t, const T*,         \
                                                     std::int64_t, std::int64_t, std::int64_t, \
                                                     std::int64_t, float*, cudaStream_t);
#define CONTRASTIVE_INSTANTIATE_TILE(L)                                                     \
  template cudaError_t launch_masked_row_stats_tile<L>(                                     \
      const LogitsTile&, const MaskedRows&, LseState*, float*, float*, bool, cudaStream_t); \
  template cudaError_t launch_masked_col_lse_tile<L>(const LogitsTile&, const MaskedRows&,  \
                                                     LseState*, bool, cudaStream_t);
#define CONTRASTIVE_INSTANTIATE_BACKWARD(L, GT)                                            \
  template cudaError_t launch_masked_backward_tile<L, GT>(                                 \
      const LogitsTile&, GT*, const MaskedRows&, const float*, const float*, const float*, \
      UpstreamGradient, float*, bool, cudaStream_t);
CONTRASTIVE_INSTANTIATE_OPERANDS(float)
CONTRASTIVE_INSTANTIATE_OPERANDS(__half)
CONTRASTIVE_INSTANTIATE_OPERANDS(__nv_bfloat16)
CONTRASTIVE_INSTANTIATE_TILE(float)
CONTRASTIVE_INSTANTIATE_TILE(__nv_bfloat16)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, float)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, __half)
CONTRASTIVE_INSTANTIATE_BACKWARD(float, __nv_bfloat16)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, float)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, __half)
CONTRASTIVE_INSTANTIATE_BACKWARD(__nv_bfloat16, __nv_bfloat16)
#undef CONTRASTIVE_INSTANTIATE_OPERANDS
#undef CONTRASTIVE_INSTANTIATE_TILE
#undef CONTRASTIVE_INSTANTIATE_BACKWARD

}  // namespace contrastive::kernels
