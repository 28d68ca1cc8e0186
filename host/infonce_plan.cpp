// InfoNCE validation and buffer planning: no device needed.
#include "host/infonce_plan.hpp"

#include <algorithm>
#include <cmath>

#include "host/error.hpp"
#include "host/workspace.hpp"
#include "kernels/online_softmax.hpp"

namespace contrastive::infonce {
namespace detail {
namespace {

using contrastive::detail::fail;
using contrastive::detail::WorkspaceLayoutBuilder;
using ll = long long;

constexpr std::size_t kMinGemmWorkspaceBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxGemmWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS's advice for Hopper

bool known_dtype(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16;
}
bool known_similarity(Similarity s) {
  return s == Similarity::kCosine || s == Similarity::kDot;
}
bool known_reduction(Reduction r) {
  return r == Reduction::kMean || r == Reduction::kSum || r == Reduction::kNone;
}

Status check_stride(const char* name, std::int64_t stride, std::int64_t dim) {
  if (stride != 0 && stride < dim) {
    return fail(Status::kInvalidArgument, "infonce: %s (%lld) must be 0 (dense) or >= dim (%lld)",
                name, static_cast<ll>(stride), static_cast<ll>(dim));
  }
  return Status::kSuccess;
}

// Bytes spanned by `rows` rows of `stride` elements, the last one `dim` wide; false on overflow.
bool span_bytes(std::int64_t rows, std::int64_t stride, std::int64_t dim, std::size_t element,
                std::uint64_t* bytes) {
  std::uint64_t elements = 0;
  return !__builtin_mul_overflow(static_cast<std::uint64_t>(rows - 1),
                                 static_cast<std::uint64_t>(stride), &elements) &&
         !__builtin_add_overflow(elements, static_cast<std::uint64_t>(dim), &elements) &&
         !__builtin_mul_overflow(elements, static_cast<std::uint64_t>(element), bytes);
}

}  // namespace

Status check_problem(const Params& p) {
  if (p.batch < 1) {
    return fail(Status::kInvalidArgument, "infonce: batch (B) must be >= 1, got %lld",
                static_cast<ll>(p.batch));
  }
  if (p.dim < 1) {
    return fail(Status::kInvalidArgument, "infonce: dim (D) must be >= 1, got %lld",
                static_cast<ll>(p.dim));
  }
  if (p.num_keys < p.batch) {
    return fail(Status::kInvalidArgument,
                "infonce: num_keys (M = %lld) must be >= batch (B = %lld)",
                static_cast<ll>(p.num_keys), static_cast<ll>(p.batch));
  }
  if (p.num_keys > kMaxExtent || p.dim > kMaxExtent) {
    return fail(
        Status::kInvalidArgument,
        "infonce: batch, num_keys and dim must each be < 2^31 (B = %lld, M = %lld, D = %lld)",
        static_cast<ll>(p.batch), static_cast<ll>(p.num_keys), static_cast<ll>(p.dim));
  }
  if (p.positive_offset < 0 || p.positive_offset > p.num_keys - p.batch) {
    return fail(Status::kInvalidArgument,
                "infonce: positive_offset must be in [0, M - B] = [0, %lld], got %lld",
                static_cast<ll>(p.num_keys - p.batch), static_cast<ll>(p.positive_offset));
  }
  CONTRASTIVE_TRY(check_stride("q_row_stride", p.q_row_stride, p.dim));
  CONTRASTIVE_TRY(check_stride("k_row_stride", p.k_row_stride, p.dim));
  if (!known_dtype(p.dtype)) {
    return fail(Status::kInvalidArgument, "infonce: unknown dtype value %d",
                static_cast<int>(p.dtype));
  }
  if (!known_similarity(p.similarity)) {
    return fail(Status::kInvalidArgument, "infonce: unknown similarity value %d",
                static_cast<int>(p.similarity));
  }
  if (!known_reduction(p.reduction)) {
    return fail(Status::kInvalidArgument, "infonce: unknown reduction value %d",
                static_cast<int>(p.reduction));
  }
  if (!(p.temperature > 0.0f) || !std::isfinite(p.temperature)) {
    return fail(Status::kInvalidArgument, "infonce: temperature must be finite and > 0, got %g",
                static_cast<double>(p.temperature));
  }
  if (p.similarity == Similarity::kCosine && (!(p.eps > 0.0f) || !std::isfinite(p.eps))) {
    return fail(Status::kInvalidArgument, "infonce: eps must be finite and > 0, got %g",
                static_cast<double>(p.eps));
  }
  if (p.tile_rows < 0 || p.tile_cols < 0) {
    return fail(Status::kInvalidArgument,
                "infonce: tile_rows and tile_cols must be >= 0 (0: whole), got %lld x %lld",
                static_cast<ll>(p.tile_rows), static_cast<ll>(p.tile_cols));
  }
  std::uint64_t bytes = 0;
  const std::size_t element = dtype_size(p.dtype);
  if (!span_bytes(p.batch, q_stride(p), p.dim, element, &bytes) ||
      !span_bytes(p.num_keys, k_stride(p), p.dim, element, &bytes)) {
    return fail(Status::kInvalidArgument,
                "infonce: the extent of Q or K in bytes overflows 64 bits (strides %lld, %lld)",
                static_cast<ll>(q_stride(p)), static_cast<ll>(k_stride(p)));
  }
  return Status::kSuccess;
}

SavedLayout saved_layout(const Params& p) {
  SavedLayout layout;
  std::int64_t next = 0;
  layout.row_lse = next;
  next += p.batch;
  if (p.symmetric) {
    layout.col_lse = next;
    next += p.batch;
  }
  if (p.similarity == Similarity::kCosine) {
    layout.q_inv_norm = next;
    next += p.batch;
    layout.k_inv_norm = next;
    next += p.num_keys;
  }
  layout.floats = next;
  return layout;
}

Status plan_workspace(const Params& p, WorkspacePlan* plan) {
  WorkspacePlan result;
  result.tiles = contrastive::detail::make_tile_plan(p.batch, p.num_keys, p.tile_rows, p.tile_cols);
  const auto b = static_cast<std::uint64_t>(p.batch);
  const auto m = static_cast<std::uint64_t>(p.num_keys);
  const auto d = static_cast<std::uint64_t>(p.dim);
  const bool cosine = p.similarity == Similarity::kCosine;
  WorkspaceLayoutBuilder builder;
  std::uint64_t tile_elements = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(result.tiles.tile_rows),
                             static_cast<std::uint64_t>(result.tiles.tile_cols), &tile_elements)) {
    return fail(Status::kInvalidArgument, "infonce: the logits tile size overflows 64 bits");
  }
  result.logits_tile = builder.add(tile_elements, sizeof(float));
  if (cosine) {
    result.q_hat = builder.add(b * d, sizeof(float));
    result.k_hat = builder.add(m * d, sizeof(float));
    result.grad_q_hat = builder.add(b * d, sizeof(float));
    result.grad_k_hat = builder.add(m * d, sizeof(float));
  }
  result.row_state = builder.add(b, sizeof(kernels::LseState));
  if (p.symmetric) result.col_state = builder.add(b, sizeof(kernels::LseState));
  result.positive_logit = builder.add(b, sizeof(float));
  result.row_logit_grad = builder.add(b, sizeof(float));
  // Split-K scratch scales with the gradient GEMM outputs; a fixed function of the problem keeps
  // cuBLASLt's choice of algorithm (and so the bits of the result) the same from call to call.
  const std::uint64_t widest = std::max(b, m) * d * sizeof(float) * 4;
  result.gemm_workspace_bytes = static_cast<std::size_t>(
      std::clamp<std::uint64_t>(widest, kMinGemmWorkspaceBytes, kMaxGemmWorkspaceBytes));
  result.gemm_workspace = builder.add(result.gemm_workspace_bytes, 1);
  if (builder.overflowed()) {
    return fail(Status::kInvalidArgument,
                "infonce: the workspace for B = %lld, M = %lld, D = %lld overflows 64 bits",
                static_cast<ll>(p.batch), static_cast<ll>(p.num_keys), static_cast<ll>(p.dim));
  }
  result.used_bytes = builder.used_bytes();
  result.required_bytes = builder.required_bytes();
  *plan = result;
  return Status::kSuccess;
}

}  // namespace detail

Status check(const Params& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  if (params.dtype != DType::kF32) {
    return contrastive::detail::fail(Status::kNotSupported,
                                     "infonce: dtype %s is not supported yet (f32 only)",
                                     dtype_name(params.dtype));
  }
  return Status::kSuccess;
}

Status workspace_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "infonce: bytes is null");
  }
  CONTRASTIVE_TRY(check(params));
  detail::WorkspacePlan plan;
  CONTRASTIVE_TRY(detail::plan_workspace(params, &plan));
  *bytes = plan.required_bytes;
  return Status::kSuccess;
}

Status saved_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "infonce: bytes is null");
  }
  CONTRASTIVE_TRY(check(params));
  *bytes = static_cast<std::size_t>(detail::saved_layout(params).floats) * sizeof(float);
  return Status::kSuccess;
}

}  // namespace contrastive::infonce
