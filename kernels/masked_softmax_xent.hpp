// Launchers of the masked softmax cross-entropy kernels (kernels/masked_softmax_xent.cu): the
// softmax heads of the logits engine under ids (contrastive/ids.hpp). Each kernel recomputes the
// mask of the elements it reads from the ids and the tile's similarities (kernels/id_mask.hpp),
// so forward and backward see the same mask and nothing B x M is stored. The tile holds L = float
// or __nv_bfloat16 similarities (logit = s * sim, s read on the device); G is written as GT =
// float, __half or __nv_bfloat16, in place when GT == L.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/types.hpp"
#include "kernels/id_mask.hpp"
#include "kernels/logit_scalars.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/softmax_xent.hpp"
#include "kernels/upstream_gradient.hpp"

namespace contrastive::kernels {

/// The rows of a masked problem: row i's own key is i + positive_offset.
struct MaskedRows {
  std::int64_t positive_offset = 0;
  std::int64_t batch = 0;
  IdMask mask;
  const float* positive_sim = nullptr;  ///< (B) sim_i,pos(i): the threshold's reference, or null
};

/// positive_sim[i] = sim(q_i, k_{i + offset}) over the GEMMs' operands (normalized rows for
/// cosine, the rows as given for dot): fp32 products summed by one warp per row in a fixed order.
template <typename T>
cudaError_t launch_positive_similarity(const T* q, std::int64_t ldq, const T* k, std::int64_t ldk,
                                       std::int64_t batch, std::int64_t dim,
                                       std::int64_t positive_offset, float* positive_sim,
                                       cudaStream_t stream);

/// Merge each row's kept logits into row_state (B), and add its positives' logits and their count
/// to positive_sum and positive_count (B) (first_tile: overwrite).
template <typename L>
cudaError_t launch_masked_row_stats_tile(const LogitsTile& tile, const MaskedRows& rows,
                                         LseState* row_state, float* positive_sum,
                                         float* positive_count, bool first_tile,
                                         cudaStream_t stream);

/// Symmetric: merge the kept rows of each positive column of `part` (the part of a tile inside
/// the positive columns) into col_state[column - offset] (first_tile: overwrite).
template <typename L>
cudaError_t launch_masked_col_lse_tile(const LogitsTile& part, const MaskedRows& rows,
                                       LseState* col_state, bool first_tile, cudaStream_t stream);

/// One block: row_lse (B), col_lse (B) when col_state is set, saved_count (B) when set (the
/// positive counts backward reads), and the loss (1, or B for Reduction::kNone). kMean divides by
/// the rows with a positive when `mean_over_positive_rows`, else by B; 0 over no rows.
cudaError_t launch_masked_finalize_loss(const LseState* row_state, const LseState* col_state,
                                        const float* positive_sum, const float* positive_count,
                                        std::int64_t batch, Reduction reduction,
                                        bool mean_over_positive_rows, float* row_lse,
                                        float* col_lse, float* saved_count, float* loss,
                                        cudaStream_t stream);

/// logits -> G (grad, same shape and ld; may be tile.data when GT == L): per row
/// masked_xent_grad with the row's lse and 1 / count (counts null: 1), plus, when col_lse is set,
/// the positive column's term; row_logit_grad (B) += the tile's sum of G * logit (first_tile:
/// overwrite). G holds the upstream gradient, not the reduction's factors (as
/// launch_logits_backward_tile).
template <typename L, typename GT>
cudaError_t launch_masked_backward_tile(const LogitsTile& tile, GT* grad, const MaskedRows& rows,
                                        const float* row_lse, const float* col_lse,
                                        const float* counts, UpstreamGradient upstream,
                                        float* row_logit_grad, bool first_tile,
                                        cudaStream_t stream);

/// A mean over the rows that have a positive: with P the number of counts (B) above 0, sets the
/// scalars' gradient_scale to s / P and scale_gradient_factor to its value / P (0 when P = 0: no
/// row has a positive, no gradient).
cudaError_t launch_positive_rows_scale(const float* counts, std::int64_t batch,
                                       ResolvedScalars* scalars, cudaStream_t stream);

}  // namespace contrastive::kernels
