// Internal: everything about an InfoNCE call that needs no device: validation of the problem,
// the tile plan, and where each scratch and saved buffer lives. Pure C++ (contrastive_cpu).
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/infonce.hpp"
#include "host/blas/row_major_gemm.hpp"
#include "host/plan/tile_plan.hpp"

namespace contrastive::infonce::detail {

/// Validates shapes, strides, scalars and enum values; the dtype only for being a known value.
/// The reference uses this (it runs every dtype); check() adds what the GPU path supports.
CONTRASTIVE_API Status check_problem(const Params& params);

inline std::int64_t q_stride(const Params& p) {
  return row_stride_or_dim(p.q_row_stride, p.dim);
}
inline std::int64_t k_stride(const Params& p) {
  return row_stride_or_dim(p.k_row_stride, p.dim);
}

/// Float offsets into the saved buffer; -1 for a piece this configuration does not use.
struct SavedLayout {
  std::int64_t row_lse = -1;     ///< (B)
  std::int64_t col_lse = -1;     ///< (B) positive columns, symmetric only
  std::int64_t q_inv_norm = -1;  ///< (B) cosine only
  std::int64_t k_inv_norm = -1;  ///< (M) cosine only
  std::int64_t floats = 0;
};

CONTRASTIVE_API SavedLayout saved_layout(const Params& params);

/// Rows of the logits and G tiles start every tile_pitch elements: tile_cols rounded up to a
/// multiple of kTilePitchElements (256 bytes of bf16 / fp16, 512 of fp32), so every GEMM that
/// writes or reads a tile has a leading dimension that keeps cuBLASLt's tensor-core kernels (they
/// need 16-byte multiples) whatever M is.
constexpr std::int64_t kTilePitchElements = 128;

/// Byte offsets of the scratch pieces from the 256-aligned workspace base; kAbsent if unused.
struct WorkspacePlan {
  static constexpr std::size_t kAbsent = ~std::size_t{0};

  contrastive::detail::TilePlan tiles;
  std::int64_t tile_pitch = 0;        ///< elements from one tile row to the next (>= tile_cols)
  std::size_t logits_tile = kAbsent;  ///< (tile_rows, tile_pitch) logits_dtype: logits, then G in
                                      ///< place when G's type (dtype) is the same
  std::size_t grad_tile =
      kAbsent;                  ///< (tile_rows, tile_pitch) dtype: G, when it cannot be in place
  std::size_t q_hat = kAbsent;  ///< (B, D) dtype normalized Q (cosine)
  std::size_t k_hat = kAbsent;  ///< (M, D) dtype normalized K (cosine)
  std::size_t grad_q_sum =
      kAbsent;  ///< (B, D) f32 accumulated dLoss/dQ_hat (cosine, or 16-bit dot)
  std::size_t grad_k_sum =
      kAbsent;                      ///< (M, D) f32 accumulated dLoss/dK_hat (cosine, or 16-bit dot)
  std::size_t row_state = kAbsent;  ///< (B) running (max, sum-exp) per row
  std::size_t col_state = kAbsent;  ///< (B) running state per positive column (symmetric)
  std::size_t positive_logit = kAbsent;  ///< (B) logit of each row's positive
  std::size_t row_logit_grad = kAbsent;  ///< (B) per-row sum of dLoss/dlogit * logit (temperature)
  std::size_t gemm_workspace = kAbsent;  ///< cuBLASLt scratch
  std::size_t gemm_workspace_bytes = 0;
  std::size_t used_bytes = 0;      ///< bytes from the aligned base
  std::size_t required_bytes = 0;  ///< what workspace_size() reports (with alignment slack)
};

/// Fails with kInvalidArgument when the sizes overflow 64-bit byte counts.
CONTRASTIVE_API Status plan_workspace(const Params& params, WorkspacePlan* plan);

/// The reduction's factor of dLoss/dlogits: 1/B for a mean (else 1), times 1/2 in symmetric mode.
/// The kernels store G = upstream (softmax - onehot) without it and the gradient GEMMs apply it in
/// alpha (with the logit scale), as does the scalar gradient: folded into a 16-bit G, 1/B would
/// push the negatives' entries (about 1/(B M)) below fp16's normal range, where they flush.
CONTRASTIVE_API double gradient_factor(const Params& params);

/// What the GEMMs read, elements of the params' dtype: normalized copies (cosine) or the caller's
/// rows (dot).
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
/// grad_tile holds G in the params' dtype; grad_q (B, D) and grad_k (M, D) are dense fp32 (may be
/// null: that product is then not described). accumulate_q / accumulate_k: beta = 1.
struct TileProducts {
  contrastive::detail::RowMajorGemm logits, grad_q, grad_k;
};

CONTRASTIVE_API TileProducts tile_products(const Params& params, const WorkspacePlan& plan,
                                           const TileOperands& operands,
                                           contrastive::detail::Extent rows,
                                           contrastive::detail::Extent cols, float logit_scale,
                                           void* logits_tile, const void* grad_tile, float* grad_q,
                                           float* grad_k, bool accumulate_q, bool accumulate_k);

}  // namespace contrastive::infonce::detail
