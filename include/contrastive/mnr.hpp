// Multiple negatives ranking (MNR) loss, in the two layouts pipelines use, forward and backward.
//
// Per-anchor negatives (each anchor's -log softmax of its positive among [p; N]): anchors A (B,
// D), positives P (B, D), negatives N (B, n, D). Row b competes its positive against its own
// negatives only:
//   logits_b = scale * sim(a_b, [p_b; N_b])          (1 + n values)
//   loss_b   = logsumexp(logits_b) - logits_b[0]
// Memory-bound: one fused kernel per pass reads each vector once; no GEMM, no (B, 1 + n) buffer.
//
// In-batch with shared hard negatives (sentence-transformers' MultipleNegativesRankingLoss):
// anchors A (B, D) and candidates C = [P; N_1; ...; N_K] ((1 + K) B, D), each block B rows; anchor
// i's positive is candidate i and every anchor competes against all (1 + K) B candidates:
//   logits = scale * sim(A, C),  loss_i = logsumexp_j logits_ij - logits_ii
// Symmetric mode adds the column direction over the positive block (sentence-transformers'
// MultipleNegativesSymmetricRankingLoss): c_i = logsumexp_r logits_ri - logits_ii, and each row's
// loss is (loss_i + c_i) / 2. This is rectangular InfoNCE (infonce.hpp) with a scale in place of
// 1/temperature, and runs on the same cuBLAS GEMMs and fused kernels.
//
// Both have the lifecycle of every loss: check -> workspace_size / saved_size -> forward ->
// backward (or forward_backward). Backward writes dense gradients (row stride D) for every input
// it is given a pointer for, and dLoss/dscale.
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/handle.hpp"
#include "contrastive/id_options.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::mnr {

// ---- Per-anchor negatives
// ------------------------------------------------------------------------

struct PerAnchorParams {
  std::int64_t batch = 0;                ///< B: anchors (and positives), >= 1
  std::int64_t negatives = 0;            ///< n: negatives per anchor, >= 1 (1 + n <= 2048)
  std::int64_t dim = 0;                  ///< D, >= 1
  std::int64_t anchor_row_stride = 0;    ///< elements between anchor rows; 0 means D
  std::int64_t positive_row_stride = 0;  ///< elements between positive rows; 0 means D
  std::int64_t negative_row_stride = 0;  ///< elements between negative rows (b, t); 0 means D
  DType dtype = DType::kF32;
  Similarity similarity = Similarity::kDot;  ///< dot product; cosine as sentence-transformers
  Reduction reduction = Reduction::kMean;
  float scale =
      1.0f;  ///< logits = scale * sim; > 0 and finite (default 1, sentence-transformers: 20)
  float eps = 1e-12f;  ///< cosine only: norms are clamped to at least eps; > 0
};

struct PerAnchorForwardArgs {
  const void* anchors = nullptr;    ///< (B, anchor_row_stride) dtype
  const void* positives = nullptr;  ///< (B, positive_row_stride) dtype
  const void* negatives = nullptr;  ///< (B * n, negative_row_stride) dtype: row b * n + t
  float* loss = nullptr;            ///< (1) for mean/sum, (B) for Reduction::kNone
  void* saved = nullptr;            ///< saved_size() bytes: row lse, similarities, norms
  /// (1) device: when set, the scale is read here, on the stream, instead of from
  /// PerAnchorParams::scale (a learnable scale without a host read).
  const float* scale = nullptr;
};

struct PerAnchorBackwardArgs {
  const void* anchors = nullptr;
  const void* positives = nullptr;
  const void* negatives = nullptr;
  const void* saved = nullptr;       ///< what forward() wrote for the same inputs
  const float* grad_loss = nullptr;  ///< (1), or (B) for kNone; null means 1
  void* grad_anchors = nullptr;      ///< (B, D) or null
  void* grad_positives = nullptr;    ///< (B, D) or null
  void* grad_negatives = nullptr;    ///< (B * n, D) or null
  float* grad_scale = nullptr;       ///< (1) or null
  const float* scale = nullptr;      ///< (1) device or null, as in PerAnchorForwardArgs
};

struct PerAnchorForwardBackwardArgs {
  const void* anchors = nullptr;
  const void* positives = nullptr;
  const void* negatives = nullptr;
  float* loss = nullptr;
  void* saved = nullptr;
  const float* grad_loss = nullptr;
  void* grad_anchors = nullptr;
  void* grad_positives = nullptr;
  void* grad_negatives = nullptr;
  float* grad_scale = nullptr;
  const float* scale = nullptr;  ///< (1) device or null, as in PerAnchorForwardArgs
};

CONTRASTIVE_API Status check(const PerAnchorParams& params);
CONTRASTIVE_API Status workspace_size(const PerAnchorParams& params, std::size_t* bytes);
CONTRASTIVE_API Status saved_size(const PerAnchorParams& params, std::size_t* bytes);
CONTRASTIVE_API Status forward(const Handle& handle, const PerAnchorParams& params,
                               const PerAnchorForwardArgs& args, void* workspace,
                               std::size_t workspace_bytes, Stream stream);
CONTRASTIVE_API Status backward(const Handle& handle, const PerAnchorParams& params,
                                const PerAnchorBackwardArgs& args, void* workspace,
                                std::size_t workspace_bytes, Stream stream);
/// One kernel: the similarities are computed once and the gradients follow in the same pass.
CONTRASTIVE_API Status forward_backward(const Handle& handle, const PerAnchorParams& params,
                                        const PerAnchorForwardBackwardArgs& args, void* workspace,
                                        std::size_t workspace_bytes, Stream stream);

// ---- In-batch with shared hard negatives -------------------------------------------------------

struct InBatchParams {
  std::int64_t batch = 0;                 ///< B: anchors; every candidate block has B rows
  std::int64_t hard_negatives = 0;        ///< K >= 0: blocks of hard negatives after the positives
  std::int64_t dim = 0;                   ///< D, >= 1
  std::int64_t anchor_row_stride = 0;     ///< 0 means D
  std::int64_t candidate_row_stride = 0;  ///< 0 means D
  DType dtype = DType::kF32;
  Similarity similarity = Similarity::kCosine;
  Reduction reduction = Reduction::kMean;
  float scale = 20.0f;      ///< logits = scale * sim; > 0 and finite (sentence-transformers: 20)
  bool log_scale = false;   ///< scale holds log(scale); grad_scale is dLoss/dlog(scale)
  float max_scale = 0.0f;   ///< > 0: the scale is clamped at it (no gradient there); 0: none
  float eps = 1e-12f;       ///< cosine only; > 0
  bool symmetric = false;   ///< add the column direction over the positive block
  bool allow_tf32 = false;  ///< f32 only: TF32 tensor cores for the GEMMs
  DType logits_dtype = DType::kF32;  ///< the logits tile: kF32 or kBF16, as infonce::Params
  /// The walk over the B x (1 + K) B logits, as infonce::Params: kAuto picks the materialized
  /// path when its workspace fits workspace_budget, else L2-sized tiles of tile_cache_bytes.
  Tiling tiling = Tiling::kAuto;
  std::size_t workspace_budget = kDefaultWorkspaceBudget;
  std::size_t tile_cache_bytes = 0;  ///< 0: kDefaultTileCacheBytes
  std::int64_t tile_rows = 0;        ///< an explicit tile, overriding `tiling` (0: whole dimension)
  std::int64_t tile_cols = 0;
  /// Ids of the anchors and of the (1 + K) B candidates (contrastive/ids.hpp); default: none.
  /// With a type, the args' anchor_ids and candidate_ids are required.
  ids::IdOptions ids;
};

struct InBatchForwardArgs {
  const void* anchors = nullptr;     ///< (B, anchor_row_stride) dtype
  const void* candidates = nullptr;  ///< ((1 + K) B, candidate_row_stride) dtype: [P; N_1; ...]
  float* loss = nullptr;             ///< (1), or (B) for Reduction::kNone
  void* saved = nullptr;             ///< saved_size() bytes
  /// (1) device: when set, the scale (its log with log_scale) is read here, on the stream,
  /// instead of from InBatchParams::scale.
  const float* scale = nullptr;
  /// (B) device, int32 or int64 per InBatchParams::ids.type: the anchors' ids; null without ids.
  const void* anchor_ids = nullptr;
  const void* candidate_ids = nullptr;  ///< ((1 + K) B) device: the candidates' ids
};

struct InBatchBackwardArgs {
  const void* anchors = nullptr;
  const void* candidates = nullptr;
  const void* saved = nullptr;
  const float* grad_loss = nullptr;     ///< (1), or (B) for kNone; null means 1
  void* grad_anchors = nullptr;         ///< (B, D) or null
  void* grad_candidates = nullptr;      ///< ((1 + K) B, D) or null
  float* grad_scale = nullptr;          ///< (1) or null
  const float* scale = nullptr;         ///< (1) device or null, as in InBatchForwardArgs
  const void* anchor_ids = nullptr;     ///< (B) device or null, as in InBatchForwardArgs
  const void* candidate_ids = nullptr;  ///< ((1 + K) B) device: the candidates' ids
};

struct InBatchForwardBackwardArgs {
  const void* anchors = nullptr;
  const void* candidates = nullptr;
  float* loss = nullptr;
  void* saved = nullptr;
  const float* grad_loss = nullptr;
  void* grad_anchors = nullptr;
  void* grad_candidates = nullptr;
  float* grad_scale = nullptr;
  const float* scale = nullptr;         ///< (1) device or null, as in InBatchForwardArgs
  const void* anchor_ids = nullptr;     ///< (B) device or null, as in InBatchForwardArgs
  const void* candidate_ids = nullptr;  ///< ((1 + K) B) device: the candidates' ids
};

CONTRASTIVE_API Status check(const InBatchParams& params);
CONTRASTIVE_API Status workspace_size(const InBatchParams& params, std::size_t* bytes);
CONTRASTIVE_API Status saved_size(const InBatchParams& params, std::size_t* bytes);
CONTRASTIVE_API Status forward(const Handle& handle, const InBatchParams& params,
                               const InBatchForwardArgs& args, void* workspace,
                               std::size_t workspace_bytes, Stream stream);
CONTRASTIVE_API Status backward(const Handle& handle, const InBatchParams& params,
                                const InBatchBackwardArgs& args, void* workspace,
                                std::size_t workspace_bytes, Stream stream);
CONTRASTIVE_API Status forward_backward(const Handle& handle, const InBatchParams& params,
                                        const InBatchForwardBackwardArgs& args, void* workspace,
                                        std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::mnr
