// The float64 CPU reference for every loss: straightforward loops, no CUDA, used by the tests, the
// benchmarks and the demo to judge the GPU results. Same Params as the GPU path; the dtype and the
// tiling fields are ignored (inputs are always double here).
#pragma once

#include <cstdint>
#include <vector>

#include "contrastive/export.h"
#include "contrastive/ids.hpp"
#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"
#include "contrastive/siglip.hpp"
#include "contrastive/status.hpp"

namespace contrastive::reference {

struct InfoNCEForward {
  std::vector<double> loss;     ///< 1 value, or B for Reduction::kNone
  std::vector<double> row_lse;  ///< (B) logsumexp of each row of the logits
  std::vector<double> col_lse;  ///< (B) logsumexp of each positive column; symmetric only
  std::vector<double> logits;   ///< (B, M) row-major: sim(q_i, k_j) / temperature
};

struct InfoNCEBackward {
  std::vector<double> grad_q;       ///< (B, D) dense
  std::vector<double> grad_k;       ///< (M, D) dense
  double grad_temperature = 0.0;    ///< dLoss/dtemperature
  std::vector<double> grad_logits;  ///< (B, M) dLoss/dlogits, for diagnostics and error bounds
};

/// @param q (B, q_row_stride) row-major
/// @param k (M, k_row_stride) row-major
CONTRASTIVE_API Status infonce_forward(const infonce::Params& params, const double* q,
                                       const double* k, InfoNCEForward* out);

/// @param grad_loss upstream gradient: (1), or (B) for Reduction::kNone; null means 1
CONTRASTIVE_API Status infonce_backward(const infonce::Params& params, const double* q,
                                        const double* k, const double* grad_loss,
                                        InfoNCEBackward* out);

// ---- MNR, per-anchor negatives
// -------------------------------------------------------------------

struct MnrPerAnchorForward {
  std::vector<double> loss;     ///< 1 value, or B for Reduction::kNone
  std::vector<double> row_lse;  ///< (B)
  std::vector<double> logits;   ///< (B, 1 + n): scale * sim(a_b, [p_b; N_b])
};

struct MnrPerAnchorBackward {
  std::vector<double> grad_anchors;    ///< (B, D)
  std::vector<double> grad_positives;  ///< (B, D)
  std::vector<double> grad_negatives;  ///< (B * n, D)
  double grad_scale = 0.0;
  std::vector<double> grad_logits;  ///< (B, 1 + n)
};

/// @param anchors (B, anchor_row_stride); positives (B, positive_row_stride);
///        negatives (B * n, negative_row_stride)
CONTRASTIVE_API Status mnr_per_anchor_forward(const mnr::PerAnchorParams& params,
                                              const double* anchors, const double* positives,
                                              const double* negatives, MnrPerAnchorForward* out);
/// @param grad_loss (1), or (B) for kNone; null means 1
CONTRASTIVE_API Status mnr_per_anchor_backward(const mnr::PerAnchorParams& params,
                                               const double* anchors, const double* positives,
                                               const double* negatives, const double* grad_loss,
                                               MnrPerAnchorBackward* out);

// ---- MNR, in-batch with shared hard negatives
// ----------------------------------------------------

struct MnrInBatchBackward {
  std::vector<double> grad_anchors;     ///< (B, D)
  std::vector<double> grad_candidates;  ///< ((1 + K) B, D)
  double grad_scale = 0.0;
  std::vector<double> grad_logits;  ///< (B, (1 + K) B)
};

/// The forward result has InfoNCE's form (logits = scale * sim).
/// @param anchors (B, anchor_row_stride); candidates ((1 + K) B, candidate_row_stride)
CONTRASTIVE_API Status mnr_in_batch_forward(const mnr::InBatchParams& params, const double* anchors,
                                            const double* candidates, InfoNCEForward* out);
CONTRASTIVE_API Status mnr_in_batch_backward(const mnr::InBatchParams& params,
                                             const double* anchors, const double* candidates,
                                             const double* grad_loss, MnrInBatchBackward* out);

// ---- Repel ------------------------------------------------------------------------------------

struct RepelForward {
  std::vector<double> loss;          ///< 1 value, or (B, N) for Reduction::kNone
  std::vector<double> similarities;  ///< (B, N) cos(u_b, x_bn)
  double active_terms = 0.0;         ///< terms with s_bn - margin > 0
};

struct RepelBackward {
  std::vector<double> grad_anchors;    ///< (B, D)
  std::vector<double> grad_negatives;  ///< (B * N, D)
};

/// @param anchors (B, anchor_row_stride); negatives (B * N, negative_row_stride)
CONTRASTIVE_API Status repel_forward(const repel::Params& params, const double* anchors,
                                     const double* negatives, RepelForward* out);
/// @param grad_loss (1), or (B, N) for kNone; null means 1
CONTRASTIVE_API Status repel_backward(const repel::Params& params, const double* anchors,
                                      const double* negatives, const double* grad_loss,
                                      RepelBackward* out);

// ---- SigLIP ------------------------------------------------------------------------------------

struct SigLIPForward {
  std::vector<double> loss;    ///< 1 value, or B for Reduction::kNone
  std::vector<double> logits;  ///< (B, M) row-major: t * sim(q_i, k_j) + b
};

struct SigLIPBackward {
  std::vector<double> grad_q;       ///< (B, D) dense
  std::vector<double> grad_k;       ///< (M, D) dense
  double grad_scale = 0.0;          ///< dLoss/dt, or dLoss/dlog t with log_scale
  double grad_bias = 0.0;           ///< dLoss/db
  std::vector<double> grad_logits;  ///< (B, M) dLoss/dlogits, for diagnostics and error bounds
};

/// @param q (B, q_row_stride) row-major; k (M, k_row_stride) row-major
CONTRASTIVE_API Status siglip_forward(const siglip::Params& params, const double* q,
                                      const double* k, SigLIPForward* out);
/// @param grad_loss upstream gradient: (1), or (B) for Reduction::kNone; null means 1
CONTRASTIVE_API Status siglip_backward(const siglip::Params& params, const double* q,
                                       const double* k, const double* grad_loss,
                                       SigLIPBackward* out);

// ---- Ids: InfoNCE and in-batch MNR with ids (ids.hpp) ---------------------------------------

/// The forward result of a loss with ids: InfoNCE's, where row_lse (and col_lse) run over the kept
/// keys only (-infinity for a row that keeps none), plus the count and the mask.
struct IdsForward : InfoNCEForward {
  /// Rows with at least one positive: the divisor of kMean in multi-positive mode; B otherwise.
  std::int64_t positive_rows = 0;
  /// (B, M) row-major: 1 where key j is in row i's denominator (the row direction), else 0.
  std::vector<std::uint8_t> kept;
};

/// InfoNCE with ids. `query_ids` (B) and `key_ids` (M) are read when options.type is not kNone
/// (either width: the reference reads int64) and may be null otherwise. options are checked with
/// ids::check's rules; the backward result is InfoNCE's (masked entries of grad_logits are 0).
/// @param grad_loss (1), or (B) for kNone; null means 1
CONTRASTIVE_API Status infonce_ids_forward(const infonce::Params& params,
                                           const ids::IdOptions& options, const double* q,
                                           const double* k, const std::int64_t* query_ids,
                                           const std::int64_t* key_ids, IdsForward* out);
CONTRASTIVE_API Status infonce_ids_backward(const infonce::Params& params,
                                            const ids::IdOptions& options, const double* q,
                                            const double* k, const std::int64_t* query_ids,
                                            const std::int64_t* key_ids, const double* grad_loss,
                                            InfoNCEBackward* out);

/// In-batch MNR with ids: `anchor_ids` (B) and `candidate_ids` ((1 + K) B) as query and key ids.
CONTRASTIVE_API Status mnr_in_batch_ids_forward(const mnr::InBatchParams& params,
                                                const ids::IdOptions& options,
                                                const double* anchors, const double* candidates,
                                                const std::int64_t* anchor_ids,
                                                const std::int64_t* candidate_ids, IdsForward* out);
CONTRASTIVE_API Status mnr_in_batch_ids_backward(const mnr::InBatchParams& params,
                                                 const ids::IdOptions& options,
                                                 const double* anchors, const double* candidates,
                                                 const std::int64_t* anchor_ids,
                                                 const std::int64_t* candidate_ids,
                                                 const double* grad_loss, MnrInBatchBackward* out);

}  // namespace contrastive::reference
