// The logits engine's planning: saved layout, tiles and workspace pieces. No device needed.
#include "host/plan/logits_plan.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "host/plan/error.hpp"
#include "host/plan/workspace.hpp"

namespace contrastive::logits {
namespace {

using contrastive::detail::make_tile_plan;
using contrastive::detail::TilePlan;
using contrastive::detail::WorkspaceLayoutBuilder;
using ll = long long;

constexpr std::size_t kMinGemmWorkspaceBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxGemmWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS's advice for Hopper

constexpr std::int64_t kMaxTileCols = 8192;     // wide tiles keep each GEMM large
constexpr std::int64_t kTileRowMultiple = 128;  // whole row blocks of the GEMM kernels
static_assert(kMaxTileCols % kTilePitchElements == 0, "the widest tile needs no padding");

// Bytes a tile holds per logit: the logits, and dLoss/dlogits where it cannot overwrite them.
std::size_t tile_bytes_per_element(const Problem& p) {
  const std::size_t logits = dtype_size(p.logits_dtype);
  return p.logits_dtype == p.dtype ? logits : logits + dtype_size(p.dtype);
}

std::int64_t pitch_of(std::int64_t tile_cols) {
  return (tile_cols + kTilePitchElements - 1) / kTilePitchElements * kTilePitchElements;
}

// The tiled path's tile: as wide as kMaxTileCols, as many whole row blocks (of the padded pitch)
// as fit the cache share.
TilePlan l2_tiles(const Problem& p) {
  const std::size_t cache = p.tile_cache_bytes != 0 ? p.tile_cache_bytes : kDefaultTileCacheBytes;
  const auto elements =
      static_cast<std::int64_t>(std::max<std::size_t>(cache / tile_bytes_per_element(p), 1));
  const std::int64_t cols = std::min({p.num_keys, kMaxTileCols, elements});
  std::int64_t rows = std::max<std::int64_t>(elements / pitch_of(cols), 1);
  if (rows >= kTileRowMultiple) rows -= rows % kTileRowMultiple;
  return make_tile_plan(p.batch, p.num_keys, rows, cols);
}

// The pieces for a walk in `tiles`; false when a size overflows 64 bits.
bool lay_out(const Problem& p, const TilePlan& tiles, WorkspacePlan* plan) {
  WorkspacePlan result;
  result.tiles = tiles;
  result.tile_pitch = pitch_of(tiles.tile_cols);
  const auto b = static_cast<std::uint64_t>(p.batch);
  const auto m = static_cast<std::uint64_t>(p.num_keys);
  const auto d = static_cast<std::uint64_t>(p.dim);
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
  if (p.cosine()) {
    result.q_hat = builder.add(b * d, element);
    result.k_hat = builder.add(m * d, element);
  }
  // fp32 accumulators, unless the products can land in the caller's (dense fp32) gradients.
  if (p.cosine() || p.dtype != DType::kF32) {
    result.grad_q_sum = builder.add(b * d, sizeof(float));
    result.grad_k_sum = builder.add(m * d, sizeof(float));
  }
  const auto words = static_cast<std::uint64_t>(head_layout(p).scratch_per_row);
  result.head_scratch = builder.add(b * words, sizeof(float));
  result.scalars = builder.add(kScalarsBytes, 1);
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

HeadLayout head_layout(const Problem& p) {
  switch (p.head) {
    // row state (max, sum-exp), the positive logit, the row's sum of G * logit; saved: row lse
    case HeadKind::kSoftmaxRows: return {4, 1};
    // and the positive column's state; saved: its lse
    case HeadKind::kSoftmaxRowsAndColumns: return {6, 2};
    // the row's loss, its sum of G * logit and its sum of G; nothing saved
    case HeadKind::kSigmoid: return {3, 0};
    // row state, the sum of the positives' logits, their count, the row's sum of G * logit (and
    // the positive column's state); saved: the row lse (and the column's), then the positive
    // count (multi-positive) or the positive's similarity (threshold)
    case HeadKind::kMaskedSoftmaxRows:
    case HeadKind::kMaskedSoftmaxRowsAndColumns: {
      const bool columns = p.head == HeadKind::kMaskedSoftmaxRowsAndColumns;
      const bool extra = p.ids.multi_positive || p.ids.false_negative_threshold;
      return {columns ? 7 : 5, (columns ? 2 : 1) + (extra ? 1 : 0)};
    }
  }
  return {};
}

double gradient_factor(const Problem& p) {
  if (p.mean_over_positive_rows()) return 1.0;
  const double factor = p.reduction == Reduction::kMean ? 1.0 / static_cast<double>(p.batch) : 1.0;
  return p.columns() ? 0.5 * factor : factor;
}

SavedLayout saved_layout(const Problem& p) {
  SavedLayout layout;
  std::int64_t next = 0;
  const std::int64_t head = head_layout(p).saved_per_row * p.batch;
  if (head > 0) {
    layout.head = next;
    next += head;
  }
  if (p.cosine()) {
    layout.q_inv_norm = next;
    next += p.batch;
    layout.k_inv_norm = next;
    next += p.num_keys;
  }
  layout.floats = next;
  return layout;
}

Status plan_workspace(const Problem& p, const char* loss, WorkspacePlan* plan) {
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
    return contrastive::detail::fail(
        Status::kInvalidArgument,
        "%s: the workspace for B = %lld, M = %lld, D = %lld overflows 64 bits", loss,
        static_cast<ll>(p.batch), static_cast<ll>(p.num_keys), static_cast<ll>(p.dim));
  }
  return Status::kSuccess;
}

TileProducts tile_products(const Problem& p, const WorkspacePlan& plan,
                           const TileOperands& operands, contrastive::detail::Extent rows,
                           contrastive::detail::Extent cols, float logit_scale, void* logits_tile,
                           const void* grad_tile, float* grad_q, float* grad_k, bool accumulate_q,
                           bool accumulate_k) {
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

float min_finite_reciprocal() {
  float t = 1.0f / std::numeric_limits<float>::max();
  while (!std::isfinite(1.0f / t)) t = std::nextafter(t, 1.0f);
  while (std::isfinite(1.0f / std::nextafter(t, 0.0f))) t = std::nextafter(t, 0.0f);
  return t;
}

}  // namespace contrastive::logits
