// Repel validation and buffer planning: no device needed.
#include "host/plan/repel_plan.hpp"

#include <cmath>

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"
#include "host/plan/workspace.hpp"

namespace contrastive::repel {
namespace detail {
namespace {

using namespace contrastive::detail;  // the shared checks
constexpr const char* kLoss = "repel";

}  // namespace

Status check_problem(const Params& p) {
  CONTRASTIVE_TRY(require_at_least(kLoss, "batch (B)", p.batch, 1));
  CONTRASTIVE_TRY(require_at_least(kLoss, "negatives (N)", p.negatives, 1));
  CONTRASTIVE_TRY(require_at_least(kLoss, "dim (D)", p.dim, 1));
  if (p.batch > kMaxExtent || p.negatives > kMaxExtent || p.dim > kMaxExtent) {
    return fail(
        Status::kInvalidArgument,
        "repel: batch, negatives and dim must each be < 2^31 (B = %lld, N = %lld, D = %lld)",
        static_cast<long long>(p.batch), static_cast<long long>(p.negatives),
        static_cast<long long>(p.dim));
  }
  CONTRASTIVE_TRY(require_stride(kLoss, "anchor_row_stride", p.anchor_row_stride, p.dim));
  CONTRASTIVE_TRY(require_stride(kLoss, "negative_row_stride", p.negative_row_stride, p.dim));
  CONTRASTIVE_TRY(require_known(kLoss, p.dtype));
  CONTRASTIVE_TRY(require_known(kLoss, p.reduction));
  if (!std::isfinite(p.margin)) {
    return fail(Status::kInvalidArgument, "repel: margin must be finite, got %g",
                static_cast<double>(p.margin));
  }
  CONTRASTIVE_TRY(require_positive_finite(kLoss, "eps", p.eps));
  if (p.mean_over_active && p.reduction != Reduction::kMean) {
    return fail(Status::kInvalidArgument, "repel: mean_over_active needs Reduction::kMean");
  }
  std::uint64_t bytes = 0, negative_rows = 0;
  const std::size_t element = dtype_size(p.dtype);
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(p.batch),
                             static_cast<std::uint64_t>(p.negatives), &negative_rows) ||
      !span_bytes(p.batch, row_stride_or_dim(p.anchor_row_stride, p.dim), p.dim, element, &bytes) ||
      !span_bytes(static_cast<std::int64_t>(negative_rows),
                  row_stride_or_dim(p.negative_row_stride, p.dim), p.dim, element, &bytes)) {
    return fail(Status::kInvalidArgument,
                "repel: the extent of the inputs in bytes overflows 64 bits");
  }
  return Status::kSuccess;
}

Workspace plan_workspace(const Params& p) {
  WorkspaceLayoutBuilder builder;
  Workspace plan;
  plan.row_sum = builder.add(static_cast<std::uint64_t>(p.batch), sizeof(float));
  plan.row_active = builder.add(static_cast<std::uint64_t>(p.batch), sizeof(float));
  plan.used_bytes = builder.used_bytes();
  plan.required_bytes = builder.required_bytes();
  return plan;
}

Saved saved_layout(const Params& p) {
  const auto batch = static_cast<std::size_t>(p.batch);
  const std::size_t slots = batch * static_cast<std::size_t>(p.negatives);
  Saved layout;
  layout.active_total = 0;
  layout.anchor_inverse_norms = 1;
  layout.similarities = 1 + batch;
  layout.inverse_norms = layout.similarities + slots;
  layout.floats = layout.inverse_norms + slots;
  return layout;
}

}  // namespace detail

Status check(const Params& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  if (params.negatives > kMaxAnchorCandidates) {
    return contrastive::detail::fail(
        Status::kNotSupported, "repel: at most %lld negatives per anchor are supported, got %lld",
        static_cast<long long>(kMaxAnchorCandidates), static_cast<long long>(params.negatives));
  }
  return Status::kSuccess;
}

Status workspace_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr)
    return contrastive::detail::fail(Status::kNullPointer, "repel: bytes is null");
  CONTRASTIVE_TRY(check(params));
  *bytes = detail::plan_workspace(params).required_bytes;
  return Status::kSuccess;
}

Status saved_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr)
    return contrastive::detail::fail(Status::kNullPointer, "repel: bytes is null");
  CONTRASTIVE_TRY(check(params));
  *bytes = detail::saved_layout(params).floats * sizeof(float);
  return Status::kSuccess;
}

}  // namespace contrastive::repel
