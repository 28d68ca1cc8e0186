// InfoNCE validation and buffer planning: no device needed.
#include "host/plan/infonce_plan.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"
#include "host/plan/workspace.hpp"
#include "kernels/online_softmax.hpp"

namespace contrastive::infonce {
namespace detail {
namespace {

using contrastive::detail::fail;
using contrastive::detail::WorkspaceLayoutBuilder;
using ll = long long;
constexpr const char* kLoss = "infonce";

constexpr std::size_t kMinGemmWorkspaceBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxGemmWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS's advice for Hopper

// The smallest temperature whose reciprocal, computed as the calls compute it (1.0f / t), is a
// finite float: about 2.94e-39, a subnormal.
float min_temperature() {
  float t = 1.0f / std::numeric_limits<float>::max();
  while (!std::isfinite(1.0f / t)) t = std::nextafter(t, 1.0f);
  while (std::isfinite(1.0f / std::nextafter(t, 0.0f))) t = std::nextafter(t, 0.0f);
  return t;
}

}  // namespace

Status check_problem(const Params& p) {
  using namespace contrastive::detail;  // the shared checks
  CONTRASTIVE_TRY(require_at_least(kLoss, "batch (B)", p.batch, 1));
  CONTRASTIVE_TRY(require_at_least(kLoss, "dim (D)", p.dim, 1));
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
  CONTRASTIVE_TRY(require_stride(kLoss, "q_row_stride", p.q_row_stride, p.dim));
  CONTRASTIVE_TRY(require_stride(kLoss, "k_row_stride", p.k_row_stride, p.dim));
  CONTRASTIVE_TRY(require_known(kLoss, p.dtype));
  CONTRASTIVE_TRY(require_known(kLoss, p.logits_dtype, "logits_dtype"));
  CONTRASTIVE_TRY(require_known(kLoss, p.similarity));
  CONTRASTIVE_TRY(require_known(kLoss, p.reduction));
  CONTRASTIVE_TRY(require_known(kLoss, p.tiling));
  CONTRASTIVE_TRY(require_positive_finite(kLoss, "temperature", p.temperature));
  if (!std::isfinite(1.0f / p.temperature)) {  // the logits would all be +-inf or NaN
    return fail(Status::kInvalidArgument,
                "infonce: temperature must be >= %.9g (its reciprocal, the logit scale, must be a "
                "finite float), got %g",
                static_cast<double>(min_temperature()), static_cast<double>(p.temperature));
  }
  if (p.similarity == Similarity::kCosine) {
    CONTRASTIVE_TRY(require_positive_finite(kLoss, "eps", p.eps));
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

namespace {

using contrastive::detail::make_tile_plan;
using contrastive::detail::TilePlan;

constexpr std::int64_t kMaxTileCols = 8192;     // wide tiles keep each GEMM large
constexpr std::int64_t kTileRowMultiple = 128;  // whole row blocks of the GEMM kernels
static_assert(kMaxTileCols % kTilePitchElements == 0, "the widest tile needs no padding");

// Bytes a tile holds per logit: the logits, and dLoss/dlogits where it cannot overwrite them.
std::size_t tile_bytes_per_element(const Params& p) {
  const std::size_t logits = dtype_size(p.logits_dtype);
  return p.logits_dtype == p.dtype ? logits : logits + dtype_size(p.dtype);
}

std::int64_t pitch_of(std::int64_t tile_cols) {
  return (tile_cols + kTilePitchElements - 1) / kTilePitchElements * kTilePitchElements;
}

// The tiled path's tile: as wide as kMaxTileCols, as many whole row blocks (of the padded pitch)
// as fit the cache share.
TilePlan l2_tiles(const Params& p) {
  const std::size_t cache = p.tile_cache_bytes != 0 ? p.tile_cache_bytes : kDefaultTileCacheBytes;
  const auto elements =
      static_cast<std::int64_t>(std::max<std::size_t>(cache / tile_bytes_per_element(p), 1));
  const std::int64_t cols = std::min({p.num_keys, kMaxTileCols, elements});
  std::int64_t rows = std::max<std::int64_t>(elements / pitch_of(cols), 1);
  if (rows >= kTileRowMultiple) rows -= rows % kTileRowMultiple;
  return make_tile_plan(p.batch, p.num_keys, rows, cols);
}

// The pieces for a walk in `tiles`; false when a size overflows 64 bits.
bool lay_out(const Params& p, const TilePlan& tiles, WorkspacePlan* plan) {
  WorkspacePlan result;
  result.tiles = tiles;
  result.tile_pitch = pitch_of(tiles.tile_cols);
  const auto b = static_cast<std::uint64_t>(p.batch);
  const auto m = static_cast<std::uint64_t>(p.num_keys);
  const auto d = static_cast<std::uint64_t>(p.dim);
  const bool cosine = p.similarity == Similarity::kCosine;
  WorkspaceLayoutBuilder builder;
  std::uint64_t tile_elements = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(result.tiles.tile_rows),
                             static_cast<std::uint64_t>(result.tile_pitch), &tile_elements)) {
    return false;
  }
  const std::size_t element = dtype_size(p.dtype);
  result.logits_tile = builder.add(tile_elements, dtype_size(p.logits_dtype));
  // G feeds the gradient GEMMs beside Q_hat and K_hat, so it is stored in their type.
  if (p.logits_dtype != p.dtype) result.grad_tile = builder.add(tile_elements, element);
  if (cosine) {
    result.q_hat = builder.add(b * d, element);
    result.k_hat = builder.add(m * d, element);
  }
  // fp32 accumulators, unless the products can land in the caller's (dense fp32) gradients.
  if (cosine || p.dtype != DType::kF32) {
    result.grad_q_sum = builder.add(b * d, sizeof(float));
    result.grad_k_sum = builder.add(m * d, sizeof(float));
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
  if (builder.overflowed()) return false;
  result.used_bytes = builder.used_bytes();
  result.required_bytes = builder.required_bytes();
  *plan = result;
  return true;
}

}  // namespace

Status plan_workspace(const Params& p, WorkspacePlan* plan) {
  bool laid_out = false;
  if (p.tile_rows > 0 || p.tile_cols > 0) {  // an explicit tile
    laid_out = lay_out(p, make_tile_plan(p.batch, p.num_keys, p.tile_rows, p.tile_cols), plan);
  } else if (p.tiling == Tiling::kTiled) {
    laid_out = lay_out(p, l2_tiles(p), plan);
  } else {
    laid_out = lay_out(p, make_tile_plan(p.batch, p.num_keys, 0, 0), plan);
    if (p.tiling == Tiling::kAuto && (!laid_out || plan->required_bytes > p.workspace_budget)) {
      laid_out = lay_out(p, l2_tiles(p), plan);  // the materialized path does not fit the budget
    }
  }
  if (!laid_out) {
    return fail(Status::kInvalidArgument,
                "infonce: the workspace for B = %lld, M = %lld, D = %lld overflows 64 bits",
                static_cast<ll>(p.batch), static_cast<ll>(p.num_keys), static_cast<ll>(p.dim));
  }
  return Status::kSuccess;
}

double gradient_factor(const Params& p) {
  double factor = p.reduction == Reduction::kMean ? 1.0 / static_cast<double>(p.batch) : 1.0;
  return p.symmetric ? 0.5 * factor : factor;
}

TileProducts tile_products(const Params& p, const WorkspacePlan& plan, const TileOperands& operands,
                           contrastive::detail::Extent rows, contrastive::detail::Extent cols,
                           float logit_scale, void* logits_tile, const void* grad_tile,
                           float* grad_q, float* grad_k, bool accumulate_q, bool accumulate_k) {
  using contrastive::detail::RowMajorGemm;
  const auto element = static_cast<std::int64_t>(dtype_size(p.dtype));
  const void* q = static_cast<const char*>(operands.q) + rows.begin * operands.ldq * element;
  const void* k = static_cast<const char*>(operands.k) + cols.begin * operands.ldk * element;
  // alpha of the gradient products: the logit scale and the reduction's factor, in double first
  // so that s * (1/B) does not round twice.
  const auto grad_alpha = static_cast<float>(static_cast<double>(logit_scale) * gradient_factor(p));
  TileProducts products;
  products.logits = contrastive::detail::logits_product(
      q, operands.ldq, k, operands.ldk, p.dtype, rows.size, cols.size, p.dim, logits_tile,
      plan.tile_pitch, p.logits_dtype, logit_scale);
  if (grad_q != nullptr) {
    products.grad_q = contrastive::detail::grad_q_product(
        grad_tile, plan.tile_pitch, k, operands.ldk, p.dtype, rows.size, cols.size, p.dim,
        grad_q + rows.begin * p.dim, grad_alpha, accumulate_q);
  }
  if (grad_k != nullptr) {
    products.grad_k = contrastive::detail::grad_k_product(
        grad_tile, plan.tile_pitch, q, operands.ldq, p.dtype, rows.size, cols.size, p.dim,
        grad_k + cols.begin * p.dim, grad_alpha, accumulate_k);
  }
  return products;
}

}  // namespace detail

Status check(const Params& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  return contrastive::detail::require_supported_logits("infonce", params.logits_dtype,
                                                       params.dtype);
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
