// Launchers of the fused anchor-versus-own-candidates kernels (kernels/anchor_candidates.cu):
// per-anchor MNR (a softmax cross-entropy over [p_b; N_b]) and Repel (a hinge on each negative).
// A warp per candidate row, up to eight anchors per block; forward saves every similarity and
// inverse norm (8 bytes per candidate row), so backward reads each candidate row once and writes
// its gradient. docs/per-anchor-kernels.md describes the kernels.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/types.hpp"
#include "kernels/upstream_gradient.hpp"

namespace contrastive::kernels {

/// Anchor b is anchors + b * anchor_ld. With `first` set (MNR), candidate 0 is first + b * first_ld
/// (the positive) and candidate t >= 1 is rest + (b * (count - 1) + t - 1) * rest_ld; without it
/// (Repel), candidate t is rest + (b * count + t) * rest_ld.
struct AnchorCandidates {
  const void* anchors;  ///< elements of T, as every row and gradient here
  std::int64_t anchor_ld;
  const void* first;
  std::int64_t first_ld;
  const void* rest;
  std::int64_t rest_ld;
  std::int64_t batch;
  std::int64_t count;  ///< candidates per anchor, <= kMaxAnchorCandidates
  std::int64_t dim;
  bool cosine;  ///< cosine similarity (eps-clamped norms), else dot
  float eps;
};

/// Dense gradients (row stride D), each optional, laid out as the rows they belong to.
struct AnchorCandidateGrads {
  void* anchors;
  void* first;
  void* rest;
};

/// What forward saves for backward, beside the head's own state: each anchor's and candidate's
/// inverse norm, encoded by anchor::encode_inverse_norm (1 for dot), and every similarity.
struct SavedSimilarities {
  float* anchor_inverse_norms;  ///< (B)
  float* similarities;          ///< (B, count)
  float* inverse_norms;         ///< (B, count)
};

/// The pass as the library names it (contrastive/types.hpp).
using AnchorPass = contrastive::Pass;

/// MNR: logits = scale * sim, loss_b = logsumexp_t logits_bt - logits_b0.
struct SoftmaxHead {
  const float* scale;         ///< device (1): the call's resolved scale (kernels/logit_scalars.hpp)
  float* row_lse;             ///< (B): written by the forward passes
  float* row_loss;            ///< (B): each row's loss (forward passes)
  UpstreamGradient upstream;  ///< per row
  float* row_logit_grad;      ///< (B) or null: sum_t dLoss/dlogit_bt * logit_bt, for dLoss/dscale
};

/// Repel: term_bt = max(sim_bt - margin, 0), NaN kept.
struct HingeHead {
  float margin;
  float* terms;               ///< (B, count) every term (Reduction::kNone), or null
  float* row_sum;             ///< (B) sum of the row's terms, or null
  float* row_active;          ///< (B) how many of the row's terms exceed the margin, or null
  UpstreamGradient upstream;  ///< per term: output index b * count + t
  const float*
      active_total;  ///< device scalar: divide the weights by it (mean over active), or null
};

/// For T in float, __half and __nv_bfloat16 (the element type of every row and gradient).
/// kForward and kForwardBackward write `saved`; kBackward reads it and skips phase 1. With every
/// gradient pointer null (only dLoss/dscale wanted) no candidate row is read after the head.
template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const SoftmaxHead& head, const AnchorCandidateGrads& grads,
                                     const SavedSimilarities& saved, cudaStream_t stream);
template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const HingeHead& head, const AnchorCandidateGrads& grads,
                                     const SavedSimilarities& saved, cudaStream_t stream);

}  // namespace contrastive::kernels
