// Internal: everything about an InfoNCE call that needs no device: validation of the problem,
// the tile plan, and where each scratch and saved buffer lives. Pure C++ (contrastive_cpu).
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/infonce.hpp"
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

/// Byte offsets of the scratch pieces from the 256-aligned workspace base; kAbsent if unused.
struct WorkspacePlan {
  static constexpr std::size_t kAbsent = ~std::size_t{0};

  contrastive::detail::TilePlan tiles;
  std::size_t logits_tile = kAbsent;  ///< (tile_rows, tile_cols) logits_dtype: logits, then G in
                                      ///< place when G's type (dtype) is the same
  std::size_t grad_tile = kAbsent;  ///< (tile_rows, tile_cols) dtype: G, when it cannot be in place
  std::size_t q_hat = kAbsent;      ///< (B, D) dtype normalized Q (cosine)
  std::size_t k_hat = kAbsent;      ///< (M, D) dtype normalized K (cosine)
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

}  // namespace contrastive::infonce::detail
