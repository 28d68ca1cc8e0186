// Internal: the checks every B x M loss makes of its params (InfoNCE and SigLIP share the field
// names): shapes, the positive offset, strides, enum values, eps and tiles, each failure worded
// once, with the loss's own scalar checks (temperature, scale, bias) at their place in the order.
#pragma once

#include <cstdint>

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"

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

}  // namespace contrastive::logits
