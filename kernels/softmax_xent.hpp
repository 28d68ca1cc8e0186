// Launchers of the fused softmax cross-entropy kernels (kernels/softmax_xent.cu): per tile of
// logits, the running row / column log-sum-exp and the positive logits (forward), and the turn of
// logits into dLoss/dlogits (backward). The tile holds L = float or __nv_bfloat16 logits; the
// gradient G is written as GT = float, __half or __nv_bfloat16 (the type of the GEMM operands
// that read it), in place when GT == L. Instantiated for these types in the .cu file.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/types.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/upstream_gradient.hpp"

namespace contrastive::kernels {

/// A tile of the (B, M) logits: rows [row0, row0 + rows) x columns [col0, col0 + cols), stored
/// densely with leading dimension ld (>= cols), elements of the tile's type. The GEMM writes the
/// similarities; every kernel that reads them takes logit = s * element, with s read on the device
/// (the call's resolved logit scale, kernels/logit_scalars.hpp; null: 1).
struct LogitsTile {
  void* data;
  std::int64_t ld;
  std::int64_t row0;
  std::int64_t rows;
  std::int64_t col0;
  std::int64_t cols;
  const float* scale = nullptr;
};

#if defined(__CUDACC__)
/// The tile's logit scale, read once by each thread of a kernel.
__device__ inline float tile_scale(const LogitsTile& tile) {
  return tile.scale != nullptr ? *tile.scale : 1.0f;
}
#endif

/// Merge the tile's rows into row_state (B) (first_tile: overwrite) and copy the logit of
/// column row + positive_offset into positive_logit (B) when that column lies in the tile.
template <typename L>
cudaError_t launch_row_lse_tile(const LogitsTile& tile, std::int64_t positive_offset,
                                LseState* row_state, float* positive_logit, bool first_tile,
                                cudaStream_t stream);

/// Merge each column of the tile into col_state[local column] (first_tile: overwrite). Symmetric
/// mode passes the part of a tile inside the positive columns, with col_state offset to match.
template <typename L>
cudaError_t launch_col_lse_tile(const LogitsTile& tile, LseState* col_state, bool first_tile,
                                cudaStream_t stream);

/// One block: row_lse (B) and, when col_state is set, col_lse (B) from the running states; the loss
/// (1 value, or B for Reduction::kNone; symmetric rows average row and column losses).
cudaError_t launch_finalize_loss(const LseState* row_state, const LseState* col_state,
                                 const float* positive_logit, std::int64_t batch,
                                 Reduction reduction, float* row_lse, float* col_lse, float* loss,
                                 cudaStream_t stream);

/// logits -> grad (same shape and ld, GT; may be tile.data when GT == L): G = w_i (softmax_row -
/// onehot), plus, when col_lse (B) is set and column j is positive column c = j - offset < B,
/// w_c (softmax_col - onehot); row_logit_grad (B) += sum over the tile's columns of G * logit
/// (first_tile: overwrite), with G in fp32. w = upstream.weight(): the engine passes the upstream
/// gradient alone (scale 1) and applies the reduction's factors in the gradient GEMMs' alpha.
template <typename L, typename GT>
cudaError_t launch_logits_backward_tile(const LogitsTile& tile, GT* grad,
                                        std::int64_t positive_offset, std::int64_t batch,
                                        const float* row_lse, const float* col_lse,
                                        UpstreamGradient upstream, float* row_logit_grad,
                                        bool first_tile, cudaStream_t stream);

/// The row head's forward and backward from one tile that holds whole rows (tile.cols == M):
/// per row, its running state (written to row_state, with the positive logit to positive_logit,
/// as launch_row_lse_tile with first_tile), then G = w_i (softmax_row - onehot) from the row's
/// log-sum-exp (the value launch_finalize_loss will save, bit for bit) into grad (may be
/// tile.data when GT == L), and row_logit_grad (B) = sum of G * logit. The row is read twice by
/// one block, the second time from L2: forward_backward's floor of one read of the logits.
template <typename L, typename GT>
cudaError_t launch_row_softmax_xent_tile(const LogitsTile& tile, GT* grad,
                                         std::int64_t positive_offset, UpstreamGradient upstream,
                                         LseState* row_state, float* positive_logit,
                                         float* row_logit_grad, cudaStream_t stream);

}  // namespace contrastive::kernels
