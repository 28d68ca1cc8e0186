// Launchers of the pairwise sigmoid kernels (kernels/sigmoid_xent.cu), the head of SigLIP's loss:
// per tile of s * sim, the per-row sums of softplus(-z (s sim + bias)) (forward) and the turn of
// the tile into G = upstream * (sigmoid(l) - y) with the per-row sums the scalar gradients need
// (backward). Rows need no statistics from other tiles, so backward can also produce forward's
// sums in the same read. L = float or __nv_bfloat16 tile, GT = float, __half or __nv_bfloat16 G.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernels/softmax_xent.hpp"
#include "kernels/upstream_gradient.hpp"

namespace contrastive::kernels {

/// Where the positives are: column row + offset, or nowhere (negatives_only).
struct SigmoidLabels {
  std::int64_t positive_offset;
  bool negatives_only;
};

/// row_loss[row] (+)= sum over the tile's columns of the loss of l = logit + bias (first_tile:
/// overwrite).
template <typename L>
cudaError_t launch_sigmoid_forward_tile(const LogitsTile& tile, const float* bias,
                                        SigmoidLabels labels, float* row_loss, bool first_tile,
                                        cudaStream_t stream);

/// The per-row sums a backward tile adds to (first_tile: overwrites).
struct SigmoidRowSums {
  float* grad_dot_logit;  ///< (B) sum of G * logit (logit without the bias): the scale's gradient
  float* grad;            ///< (B) sum of G: the bias's gradient
  float* loss;            ///< (B) forward's row_loss, or null when forward ran apart
};

/// logits -> grad (same shape and ld; may be tile.data when GT == L): G = w_row (sigmoid(l) - y).
template <typename L, typename GT>
cudaError_t launch_sigmoid_backward_tile(const LogitsTile& tile, GT* grad, const float* bias,
                                         SigmoidLabels labels, UpstreamGradient upstream,
                                         SigmoidRowSums sums, bool first_tile, cudaStream_t stream);

}  // namespace contrastive::kernels
