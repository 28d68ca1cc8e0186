// MNR validation and buffer planning: no device needed.
#include "host/plan/mnr_plan.hpp"

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"
#include "host/plan/ids_plan.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/plan/logits_plan.hpp"
#include "host/plan/workspace.hpp"

namespace contrastive::mnr {
namespace detail {
namespace {

using namespace contrastive::detail;  // the shared checks

// Every loss checks in the same order: sizes, their limits, strides, enum values, scalars, flags,
// then the extents in bytes.
Status check_kinds_and_scalars(const char* loss, DType dtype, Similarity similarity,
                               Reduction reduction, float scale, float eps, bool log_scale = false,
                               float max_scale = 0.0f) {
  CONTRASTIVE_TRY(require_known(loss, dtype));
  CONTRASTIVE_TRY(require_known(loss, similarity));
  CONTRASTIVE_TRY(require_known(loss, reduction));
  CONTRASTIVE_TRY(require_scale(loss, "scale", scale, log_scale, max_scale));
  if (similarity == Similarity::kCosine) CONTRASTIVE_TRY(require_positive_finite(loss, "eps", eps));
  return Status::kSuccess;
}

Status overflow(const char* loss) {
  return fail(Status::kInvalidArgument, "%s: the extent of the inputs in bytes overflows 64 bits",
              loss);
}

}  // namespace

Status check_problem(const PerAnchorParams& p) {
  CONTRASTIVE_TRY(require_at_least(kPerAnchor, "batch (B)", p.batch, 1));
  CONTRASTIVE_TRY(require_at_least(kPerAnchor, "negatives (n)", p.negatives, 1));
  CONTRASTIVE_TRY(require_at_least(kPerAnchor, "dim (D)", p.dim, 1));
  if (p.batch > kMaxExtent || p.negatives > kMaxExtent || p.dim > kMaxExtent) {
    return fail(Status::kInvalidArgument,
                "%s: batch, negatives and dim must each be < 2^31 (B = %lld, n = %lld, D = %lld)",
                kPerAnchor, static_cast<long long>(p.batch), static_cast<long long>(p.negatives),
                static_cast<long long>(p.dim));
  }
  CONTRASTIVE_TRY(require_stride(kPerAnchor, "anchor_row_stride", p.anchor_row_stride, p.dim));
  CONTRASTIVE_TRY(require_stride(kPerAnchor, "positive_row_stride", p.positive_row_stride, p.dim));
  CONTRASTIVE_TRY(require_stride(kPerAnchor, "negative_row_stride", p.negative_row_stride, p.dim));
  CONTRASTIVE_TRY(
      check_kinds_and_scalars(kPerAnchor, p.dtype, p.similarity, p.reduction, p.scale, p.eps));
  std::uint64_t bytes = 0, negative_rows = 0;
  const std::size_t element = dtype_size(p.dtype);
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(p.batch),
                             static_cast<std::uint64_t>(p.negatives), &negative_rows) ||
      !span_bytes(p.batch, row_stride_or_dim(p.anchor_row_stride, p.dim), p.dim, element, &bytes) ||
      !span_bytes(p.batch, row_stride_or_dim(p.positive_row_stride, p.dim), p.dim, element,
                  &bytes) ||
      !span_bytes(static_cast<std::int64_t>(negative_rows),
                  row_stride_or_dim(p.negative_row_stride, p.dim), p.dim, element, &bytes)) {
    return overflow(kPerAnchor);
  }
  return Status::kSuccess;
}

Status check_problem(const InBatchParams& p) {
  CONTRASTIVE_TRY(require_at_least(kInBatch, "batch (B)", p.batch, 1));
  CONTRASTIVE_TRY(require_at_least(kInBatch, "hard_negatives (K)", p.hard_negatives, 0));
  CONTRASTIVE_TRY(require_at_least(kInBatch, "dim (D)", p.dim, 1));
  std::int64_t blocks = 0, candidates = 0;
  if (__builtin_add_overflow(p.hard_negatives, 1, &blocks) ||
      __builtin_mul_overflow(blocks, p.batch, &candidates) || candidates > kMaxExtent ||
      p.dim > kMaxExtent) {
    return fail(Status::kInvalidArgument,
                "%s: (1 + K) B candidates and D must each be < 2^31 (B = %lld, K = %lld, D = %lld)",
                kInBatch, static_cast<long long>(p.batch), static_cast<long long>(p.hard_negatives),
                static_cast<long long>(p.dim));
  }
  CONTRASTIVE_TRY(require_stride(kInBatch, "anchor_row_stride", p.anchor_row_stride, p.dim));
  CONTRASTIVE_TRY(require_stride(kInBatch, "candidate_row_stride", p.candidate_row_stride, p.dim));
  CONTRASTIVE_TRY(check_kinds_and_scalars(kInBatch, p.dtype, p.similarity, p.reduction, p.scale,
                                          p.eps, p.log_scale, p.max_scale));
  CONTRASTIVE_TRY(require_known(kInBatch, p.logits_dtype, "logits_dtype"));
  CONTRASTIVE_TRY(require_known(kInBatch, p.tiling));
  if (p.tile_rows < 0 || p.tile_cols < 0) {
    return fail(Status::kInvalidArgument,
                "%s: tile_rows and tile_cols must be >= 0 (0: whole), got %lld x %lld", kInBatch,
                static_cast<long long>(p.tile_rows), static_cast<long long>(p.tile_cols));
  }
  std::uint64_t bytes = 0;
  const std::size_t element = dtype_size(p.dtype);
  if (!span_bytes(p.batch, row_stride_or_dim(p.anchor_row_stride, p.dim), p.dim, element, &bytes) ||
      !span_bytes(candidates, row_stride_or_dim(p.candidate_row_stride, p.dim), p.dim, element,
                  &bytes)) {
    return overflow(kInBatch);
  }
  return Status::kSuccess;
}

infonce::Params to_infonce(const InBatchParams& p) {
  infonce::Params q;
  q.batch = p.batch;
  q.num_keys = (p.hard_negatives + 1) * p.batch;
  q.dim = p.dim;
  q.positive_offset = 0;
  q.q_row_stride = p.anchor_row_stride;
  q.k_row_stride = p.candidate_row_stride;
  q.dtype = p.dtype;
  q.similarity = p.similarity;
  q.reduction = p.reduction;
  q.temperature = 1.0f;  // unused: the loop takes the logit scale (p.scale) apart
  q.eps = p.eps;
  q.symmetric = p.symmetric;
  q.allow_tf32 = p.allow_tf32;
  q.logits_dtype = p.logits_dtype;
  q.tiling = p.tiling;
  q.workspace_budget = p.workspace_budget;
  q.tile_cache_bytes = p.tile_cache_bytes;
  q.tile_rows = p.tile_rows;
  q.tile_cols = p.tile_cols;
  q.ids = p.ids;
  return q;
}

logits::Problem to_problem(const InBatchParams& params) {
  return infonce::detail::to_problem(to_infonce(params));
}

PerAnchorWorkspace plan_workspace(const PerAnchorParams& p) {
  WorkspaceLayoutBuilder builder;
  PerAnchorWorkspace plan;
  plan.row_loss = builder.add(static_cast<std::uint64_t>(p.batch), sizeof(float));
  plan.row_logit_grad = builder.add(static_cast<std::uint64_t>(p.batch), sizeof(float));
  plan.scalars = builder.add(logits::kScalarsBytes, 1);
  plan.used_bytes = builder.used_bytes();
  plan.required_bytes = builder.required_bytes();
  return plan;
}

PerAnchorSaved saved_layout(const PerAnchorParams& p) {
  const auto batch = static_cast<std::size_t>(p.batch);
  const std::size_t slots = batch * static_cast<std::size_t>(p.negatives + 1);
  PerAnchorSaved layout;
  layout.row_lse = 0;
  layout.anchor_inverse_norms = batch;
  layout.similarities = 2 * batch;
  layout.inverse_norms = layout.similarities + slots;
  layout.floats = layout.inverse_norms + slots;
  return layout;
}

}  // namespace detail

Status check(const PerAnchorParams& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  if (params.negatives + 1 > kMaxAnchorCandidates) {
    return contrastive::detail::fail(
        Status::kNotSupported, "%s: at most %lld negatives per anchor are supported, got %lld",
        detail::kPerAnchor, static_cast<long long>(kMaxAnchorCandidates - 1),
        static_cast<long long>(params.negatives));
  }
  return Status::kSuccess;
}

Status check(const InBatchParams& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  CONTRASTIVE_TRY(contrastive::detail::require_supported_logits(detail::kInBatch,
                                                                params.logits_dtype, params.dtype));
  return ids::detail::check_options(detail::kInBatch, params.ids, params.symmetric);
}

Status workspace_size(const PerAnchorParams& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "%s: bytes is null", detail::kPerAnchor);
  }
  CONTRASTIVE_TRY(check(params));
  *bytes = detail::plan_workspace(params).required_bytes;
  return Status::kSuccess;
}

Status saved_size(const PerAnchorParams& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "%s: bytes is null", detail::kPerAnchor);
  }
  CONTRASTIVE_TRY(check(params));
  *bytes = detail::saved_layout(params).floats * sizeof(float);
  return Status::kSuccess;
}

Status workspace_size(const InBatchParams& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "%s: bytes is null", detail::kInBatch);
  }
  CONTRASTIVE_TRY(check(params));
  logits::WorkspacePlan plan;
  if (logits::plan_workspace(detail::to_problem(params), detail::kInBatch, &plan) !=
      Status::kSuccess) {
    return contrastive::detail::fail(
        Status::kInvalidArgument,
        "%s: the workspace for B = %lld, K = %lld, D = %lld overflows 64 bits (tiles bound it)",
        detail::kInBatch, static_cast<long long>(params.batch),
        static_cast<long long>(params.hard_negatives), static_cast<long long>(params.dim));
  }
  *bytes = plan.required_bytes;
  return Status::kSuccess;
}

Status saved_size(const InBatchParams& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "%s: bytes is null", detail::kInBatch);
  }
  CONTRASTIVE_TRY(check(params));
  *bytes = logits::saved_bytes(detail::to_problem(params));
  return Status::kSuccess;
}

}  // namespace contrastive::mnr
