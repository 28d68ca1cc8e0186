// Internal: what the params of the B x M losses that share InfoNCE's field names (InfoNCE, SigLIP)
// have in common: their checks (shapes, the positive offset, strides, enum values, eps and tiles,
// each failure worded once, with the loss's own scalar checks at their place in the order) and
// the logits engine's problem they describe.
#pragma once

#include <cstdint>

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"
#include "host/plan/logits_plan.hpp"

namespace contrastive::logits {

/// `labelled`: rows have a positive key (M >= B and the offset in [0, M - B]); otherwise (a block
/// of negatives only) any M >= 1 and the offset is unused.
template <typename P, typename CheckScalars>
Status check_params(const char* loss, const P& p, bool labelled, CheckScalars check_scalars) {
  using namespace contrastive::detail;  // the shared checks
  using ll = long long;
  CONTRASTIVE_TRY(require_at_least(loss, "batch (B)", p.batch, 1));
  CONTRASTIVE_TRY(require_at_least(loss, "dim (D)", p.dim, 1));
  if (!labelled) CONTRASTIVE_TRY(require_at_least(loss, "num_keys (M)", p.num_keys, 1));
  if (labelled && p.num_keys < p.batch) {
    return fail(Status::kInvalidArgument, "%s: num_keys (M = %lld) must be >= batch (B = %lld)",
                loss, static_cast<ll>(p.num_keys), static_cast<ll>(p.batch));
  }
  if (p.batch > kMaxExtent || p.num_keys > kMaxExtent || p.dim > kMaxExtent) {
    return fail(Status::kInvalidArgument,
                "%s: batch, num_keys and dim must each be < 2^31 (B = %lld, M = %lld, D = %lld)",
                loss, static_cast<ll>(p.batch), static_cast<ll>(p.num_keys),
                static_cast<ll>(p.dim));
  }
  if (labelled && (p.positive_offset < 0 || p.positive_offset > p.num_keys - p.batch)) {
    return fail(Status::kInvalidArgument,
                "%s: positive_offset must be in [0, M - B] = [0, %lld], got %lld", loss,
                static_cast<ll>(p.num_keys - p.batch), static_cast<ll>(p.positive_offset));
  }
  CONTRASTIVE_TRY(require_stride(loss, "q_row_stride", p.q_row_stride, p.dim));
  CONTRASTIVE_TRY(require_stride(loss, "k_row_stride", p.k_row_stride, p.dim));
  CONTRASTIVE_TRY(require_known(loss, p.dtype));
  CONTRASTIVE_TRY(require_known(loss, p.logits_dtype, "logits_dtype"));
  CONTRASTIVE_TRY(require_known(loss, p.similarity));
  CONTRASTIVE_TRY(require_known(loss, p.reduction));
  CONTRASTIVE_TRY(require_known(loss, p.tiling));
  CONTRASTIVE_TRY(check_scalars());
  if (p.similarity == Similarity::kCosine) {
    CONTRASTIVE_TRY(require_positive_finite(loss, "eps", p.eps));
  }
  if (p.tile_rows < 0 || p.tile_cols < 0) {
    return fail(Status::kInvalidArgument,
                "%s: tile_rows and tile_cols must be >= 0 (0: whole), got %lld x %lld", loss,
                static_cast<ll>(p.tile_rows), static_cast<ll>(p.tile_cols));
  }
  std::uint64_t bytes = 0;
  const std::size_t element = dtype_size(p.dtype);
  const std::int64_t q_stride = row_stride_or_dim(p.q_row_stride, p.dim);
  const std::int64_t k_stride = row_stride_or_dim(p.k_row_stride, p.dim);
  if (!span_bytes(p.batch, q_stride, p.dim, element, &bytes) ||
      !span_bytes(p.num_keys, k_stride, p.dim, element, &bytes)) {
    return fail(Status::kInvalidArgument,
                "%s: the extent of Q or K in bytes overflows 64 bits (strides %lld, %lld)", loss,
                static_cast<ll>(q_stride), static_cast<ll>(k_stride));
  }
  return Status::kSuccess;
}

/// The problem of `p` for `head`: shapes, strides (0 resolved to D), dtypes, similarity, reduction,
/// eps and tiling.
template <typename P>
Problem problem_of(const P& p, HeadKind head) {
  Problem problem;
  problem.head = head;
  problem.batch = p.batch;
  problem.num_keys = p.num_keys;
  problem.dim = p.dim;
  problem.positive_offset = p.positive_offset;
  problem.q_stride = row_stride_or_dim(p.q_row_stride, p.dim);
  problem.k_stride = row_stride_or_dim(p.k_row_stride, p.dim);
  problem.dtype = p.dtype;
  problem.logits_dtype = p.logits_dtype;
  problem.similarity = p.similarity;
  problem.reduction = p.reduction;
  problem.eps = p.eps;
  problem.allow_tf32 = p.allow_tf32;
  problem.tiling = p.tiling;
  problem.workspace_budget = p.workspace_budget;
  problem.tile_cache_bytes = p.tile_cache_bytes;
  problem.tile_rows = p.tile_rows;
  problem.tile_cols = p.tile_cols;
  return problem;
}

}  // namespace contrastive::logits
