// Internal: the B x M logits engine's problem, as every head of it sees it, and everything about it
// that needs no device: the saved layout, the tile plan, where each scratch piece lives and the
// three GEMMs of a tile. Each B x M loss (InfoNCE, in-batch MNR, SigLIP) turns its public Params
// into a Problem; the engine (host/engine/logits_engine.cpp) and its heads (host/engine/heads.hpp)
// run it. Pure C++ (contrastive_cpu).
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/id_options.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"
#include "host/blas/row_major_gemm.hpp"
#include "host/plan/tile_plan.hpp"

namespace contrastive::logits {

/// What a tile of logits turns into: the statistics it contributes, how they merge and its
/// gradient dLoss/dlogits (DESIGN.md, "Heads").
enum class HeadKind {
  kSoftmaxRows,            ///< softmax cross-entropy along each row (InfoNCE, MNR)
  kSoftmaxRowsAndColumns,  ///< and along each positive column, averaged (CLIP)
  kSigmoid,                ///< a binary cross-entropy per logit (SigLIP)
  /// Softmax rows over the kept keys of each row (Problem::ids: ids, several positives,
  /// self-exclusion, a false-negative threshold; contrastive/ids.hpp), the mask recomputed per
  /// tile from the ids and the similarities.
  kMaskedSoftmaxRows,
  kMaskedSoftmaxRowsAndColumns,  ///< and along each positive column over its kept rows (CLIP)
};

/// Whether the options change which keys a row keeps (ids or a threshold): the masked heads.
inline bool masks_keys(const ids::IdOptions& options) {
  return options.type != ids::IdType::kNone || options.false_negative_threshold;
}

/// One B x M problem, independent of the public Params it came from. S = s * sim(Q, K) (+ bias,
/// added by the sigmoid head); the positive of row i is column i + positive_offset.
struct Problem {
  HeadKind head = HeadKind::kSoftmaxRows;
  std::int64_t batch = 0;     ///< B
  std::int64_t num_keys = 0;  ///< M
  std::int64_t dim = 0;       ///< D
  std::int64_t positive_offset = 0;
  std::int64_t q_stride = 0;    ///< elements between rows of Q (>= D)
  std::int64_t k_stride = 0;    ///< elements between rows of K (>= D)
  bool negatives_only = false;  ///< sigmoid head: no positive in this block of keys
  DType dtype = DType::kF32;
  DType logits_dtype = DType::kF32;
  Similarity similarity = Similarity::kCosine;
  Reduction reduction = Reduction::kMean;
  float eps = 1e-12f;
  bool allow_tf32 = false;
  Tiling tiling = Tiling::kAuto;
  std::size_t workspace_budget = kDefaultWorkspaceBudget;
  std::size_t tile_cache_bytes = 0;
  std::int64_t tile_rows = 0;
  std::int64_t tile_cols = 0;
  ids::IdOptions ids;  ///< masked heads: the ids' type and meaning

  bool cosine() const { return similarity == Similarity::kCosine; }
  bool masked() const {
    return head == HeadKind::kMaskedSoftmaxRows || head == HeadKind::kMaskedSoftmaxRowsAndColumns;
  }
  /// Both directions of the softmax (symmetric).
  bool columns() const {
    return head == HeadKind::kSoftmaxRowsAndColumns ||
           head == HeadKind::kMaskedSoftmaxRowsAndColumns;
  }
  /// kMean divides by the rows that have a positive, a count known on the device only.
  bool mean_over_positive_rows() const {
    return masked() && ids.multi_positive && reduction == Reduction::kMean;
  }
};

/// What a head keeps besides the shared pieces, in 4-byte words per query row.
struct HeadLayout {
  std::int64_t scratch_per_row = 0;  ///< running statistics and per-row partial sums
  std::int64_t saved_per_row = 0;    ///< what forward saves for backward (e.g. the log-sum-exp)
};

CONTRASTIVE_API HeadLayout head_layout(const Problem& problem);

/// The reduction's factor of dLoss/dlogits: 1/B for a mean (else 1), times 1/2 for the row and
/// column heads; 1 for a mean over the rows with a positive (multi-positive), whose divisor the
/// masked head applies on the device (ResolvedScalars::gradient_scale). The kernels store G =
/// upstream * dl/dlogits without it and the gradient GEMMs apply it in alpha (with the logit
/// scale), as does the scalar gradient: folded into a 16-bit G, 1/B would push small entries (about
/// 1/(B M)) below fp16's normal range, where they flush.
CONTRASTIVE_API double gradient_factor(const Problem& problem);

/// Float offsets into the saved buffer; -1 for a piece this configuration does not use.
struct SavedLayout {
  std::int64_t head = -1;        ///< (B * saved_per_row) the head's, row-major by piece
  std::int64_t q_inv_norm = -1;  ///< (B) cosine only
  std::int64_t k_inv_norm = -1;  ///< (M) cosine only
  std::int64_t floats = 0;
};

CONTRASTIVE_API SavedLayout saved_layout(const Problem& problem);

/// What a loss's saved_size() reports.
inline std::size_t saved_bytes(const Problem& problem) {
  return static_cast<std::size_t>(saved_layout(problem).floats) * sizeof(float);
}

/// Rows of the logits and G tiles start every tile_pitch elements: tile_cols rounded up to a
/// multiple of kTilePitchElements (256 bytes of bf16 / fp16, 512 of fp32), so every GEMM that
/// writes or reads a tile has a leading dimension that keeps cuBLASLt's tensor-core kernels (they
/// need 16-byte multiples) whatever M is.
constexpr std::int64_t kTilePitchElements = 128;

/// Bytes of the resolved scalars every call writes first (kernels::ResolvedScalars, with room).
constexpr std::size_t kScalarsBytes = 64;

/// Byte offsets of the scratch pieces from the 256-aligned workspace base; kAbsent if unused.
struct WorkspacePlan {
  static constexpr std::size_t kAbsent = ~std::size_t{0};

  contrastive::detail::TilePlan tiles;
  std::int64_t tile_pitch = 0;         ///< elements from one tile row to the next (>= tile_cols)
  std::size_t logits_tile = kAbsent;   ///< (tile_rows, tile_pitch) logits_dtype: logits, then G in
                                       ///< place when G's type (dtype) is the same
  std::size_t grad_tile = kAbsent;     ///< (tile_rows, tile_pitch) dtype: G, apart from the logits
  std::size_t q_hat = kAbsent;         ///< (B, D) dtype normalized Q (cosine)
  std::size_t k_hat = kAbsent;         ///< (M, D) dtype normalized K (cosine)
  std::size_t grad_q_sum = kAbsent;    ///< (B, D) f32 dLoss/dQ_hat (cosine, or 16-bit dot)
  std::size_t grad_k_sum = kAbsent;    ///< (M, D) f32 dLoss/dK_hat (cosine, or 16-bit dot)
  std::size_t head_scratch = kAbsent;  ///< (B * scratch_per_row) 4-byte words of the head
  std::size_t scalars = kAbsent;       ///< the call's resolved scalars (kScalarsBytes)
  std::size_t gemm_workspace = kAbsent;  ///< cuBLASLt scratch
  std::size_t gemm_workspace_bytes = 0;
  std::size_t used_bytes = 0;      ///< bytes from the aligned base
  std::size_t required_bytes = 0;  ///< what workspace_size() reports (with alignment slack)
};

/// The tile walk and the pieces: the materialized path (one tile) when its workspace fits the
/// budget (Tiling::kAuto), L2-sized tiles otherwise. `loss` names the loss in messages. Fails with
/// kInvalidArgument when the sizes overflow 64-bit byte counts.
CONTRASTIVE_API Status plan_workspace(const Problem& problem, const char* loss,
                                      WorkspacePlan* plan);

/// What the GEMMs read, elements of the problem's dtype: normalized copies (cosine) or the
/// caller's rows (dot).
struct TileOperands {
  const void* q = nullptr;  ///< (B, ldq)
  std::int64_t ldq = 0;
  const void* k = nullptr;  ///< (M, ldk)
  std::int64_t ldk = 0;
};

/// The three GEMMs of the tile (rows x cols), every tile leading dimension plan.tile_pitch:
///   logits[rows, cols]  = s Q[rows] K[cols]^T             (into logits_tile, logits_dtype)
///   grad_q[rows]       (+)= s f G K[cols]                  (f = gradient_factor)
///   grad_k[cols]       (+)= s f G^T Q[rows]
/// grad_tile holds G in the problem's dtype; grad_q (B, D) and grad_k (M, D) are dense fp32 (may
/// be null: that product is then not described). accumulate_q / accumulate_k: beta = 1.
struct TileProducts {
  contrastive::detail::RowMajorGemm logits, grad_q, grad_k;
};

CONTRASTIVE_API TileProducts tile_products(const Problem& problem, const WorkspacePlan& plan,
                                           const TileOperands& operands,
                                           contrastive::detail::Extent rows,
                                           contrastive::detail::Extent cols, float logit_scale,
                                           void* logits_tile, const void* grad_tile, float* grad_q,
                                           float* grad_k, bool accumulate_q, bool accumulate_k);

/// The smallest positive float whose reciprocal, computed as 1.0f / t, is finite (about 2.94e-39,
/// a subnormal): the least temperature a loss can take.
CONTRASTIVE_API float min_finite_reciprocal();

}  // namespace contrastive::logits
