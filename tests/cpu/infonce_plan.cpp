// Host-side planning, run on the CPU: parameter checks (exact status and message for each bad
// input), tile bookkeeping, workspace carving and the saved-buffer layout.
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/plan/mnr_plan.hpp"
#include "host/plan/tile_plan.hpp"
#include "host/plan/workspace.hpp"

namespace contrastive {
namespace {

using infonce::Params;

Params valid_params() {
  Params p;
  p.batch = 8;
  p.num_keys = 8;
  p.dim = 16;
  return p;
}

// ---- check() ---------------------------------------------------------------------------------

struct BadParamsCase {
  const char* name;
  std::function<void(Params&)> edit;
  Status status;
  const char* message;
};

void PrintTo(const BadParamsCase& c, std::ostream* out) {
  *out << c.name;
}

class InfoNCECheck : public ::testing::TestWithParam<BadParamsCase> {};

TEST_P(InfoNCECheck, RejectsWithItsOwnStatusAndMessage) {
  Params p = valid_params();
  GetParam().edit(p);
  EXPECT_EQ(infonce::check(p), GetParam().status);
  EXPECT_STREQ(last_error_message(), GetParam().message);
  std::size_t bytes = 12345;
  EXPECT_EQ(infonce::workspace_size(p, &bytes), GetParam().status);
  EXPECT_EQ(infonce::saved_size(p, &bytes), GetParam().status);
  EXPECT_EQ(bytes, 12345u) << "a failed size query must leave its output untouched";
}

const BadParamsCase kBadParams[] = {
    {"ZeroBatch", [](Params& p) { p.batch = 0; }, Status::kInvalidArgument,
     "infonce: batch (B) must be >= 1, got 0"},
    {"NegativeBatch", [](Params& p) { p.batch = -3; }, Status::kInvalidArgument,
     "infonce: batch (B) must be >= 1, got -3"},
    {"ZeroDim", [](Params& p) { p.dim = 0; }, Status::kInvalidArgument,
     "infonce: dim (D) must be >= 1, got 0"},
    {"FewerKeysThanRows", [](Params& p) { p.num_keys = 7; }, Status::kInvalidArgument,
     "infonce: num_keys (M = 7) must be >= batch (B = 8)"},
    {"HugeDim", [](Params& p) { p.dim = std::int64_t{1} << 31; }, Status::kInvalidArgument,
     "infonce: batch, num_keys and dim must each be < 2^31 (B = 8, M = 8, D = 2147483648)"},
    {"OffsetPastTheEnd", [](Params& p) { p.num_keys = 10, p.positive_offset = 3; },
     Status::kInvalidArgument, "infonce: positive_offset must be in [0, M - B] = [0, 2], got 3"},
    {"NegativeOffset", [](Params& p) { p.positive_offset = -1; }, Status::kInvalidArgument,
     "infonce: positive_offset must be in [0, M - B] = [0, 0], got -1"},
    {"QStrideBelowDim", [](Params& p) { p.q_row_stride = 15; }, Status::kInvalidArgument,
     "infonce: q_row_stride (15) must be 0 (dense) or >= dim (16)"},
    {"KStrideNegative", [](Params& p) { p.k_row_stride = -16; }, Status::kInvalidArgument,
     "infonce: k_row_stride (-16) must be 0 (dense) or >= dim (16)"},
    {"UnknownDtype", [](Params& p) { p.dtype = static_cast<DType>(7); }, Status::kInvalidArgument,
     "infonce: unknown dtype value 7"},
    {"UnknownSimilarity", [](Params& p) { p.similarity = static_cast<Similarity>(2); },
     Status::kInvalidArgument, "infonce: unknown similarity value 2"},
    {"UnknownReduction", [](Params& p) { p.reduction = static_cast<Reduction>(-1); },
     Status::kInvalidArgument, "infonce: unknown reduction value -1"},
    {"ZeroTemperature", [](Params& p) { p.temperature = 0.0f; }, Status::kInvalidArgument,
     "infonce: temperature must be finite and > 0, got 0"},
    {"NegativeTemperature", [](Params& p) { p.temperature = -0.1f; }, Status::kInvalidArgument,
     "infonce: temperature must be finite and > 0, got -0.1"},
    {"NaNTemperature", [](Params& p) { p.temperature = NAN; }, Status::kInvalidArgument,
     "infonce: temperature must be finite and > 0, got nan"},
    {"InfiniteTemperature", [](Params& p) { p.temperature = INFINITY; }, Status::kInvalidArgument,
     "infonce: temperature must be finite and > 0, got inf"},
    {"TemperatureWhoseReciprocalOverflows", [](Params& p) { p.temperature = 1e-39f; },
     Status::kInvalidArgument,
     "infonce: temperature must be >= 2.93873728e-39 (its reciprocal, the logit scale, must be a "
     "finite float), got 1e-39"},
    {"SmallestSubnormalTemperature",
     [](Params& p) { p.temperature = std::numeric_limits<float>::denorm_min(); },
     Status::kInvalidArgument,
     "infonce: temperature must be >= 2.93873728e-39 (its reciprocal, the logit scale, must be a "
     "finite float), got 1.4013e-45"},
    {"ZeroEps", [](Params& p) { p.eps = 0.0f; }, Status::kInvalidArgument,
     "infonce: eps must be finite and > 0, got 0"},
    {"NegativeTile", [](Params& p) { p.tile_rows = -1; }, Status::kInvalidArgument,
     "infonce: tile_rows and tile_cols must be >= 0 (0: whole), got -1 x 0"},
    {"StrideOverflows64Bits", [](Params& p) { p.q_row_stride = std::int64_t{1} << 62; },
     Status::kInvalidArgument,
     "infonce: the extent of Q or K in bytes overflows 64 bits (strides 4611686018427387904, 16)"},
    {"F16Logits", [](Params& p) { p.logits_dtype = DType::kF16; }, Status::kNotSupported,
     "infonce: logits_dtype must be f32 or bf16, got f16"},
    {"UnknownLogitsDtype", [](Params& p) { p.logits_dtype = static_cast<DType>(5); },
     Status::kInvalidArgument, "infonce: unknown logits_dtype value 5"},
    {"UnknownTiling", [](Params& p) { p.tiling = static_cast<Tiling>(3); },
     Status::kInvalidArgument, "infonce: unknown tiling value 3"},
    {"Bf16LogitsFromF32", [](Params& p) { p.logits_dtype = DType::kBF16; }, Status::kNotSupported,
     "infonce: a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), got "
     "dtype f32"},
    {"Bf16LogitsFromF16", [](Params& p) { p.dtype = DType::kF16, p.logits_dtype = DType::kBF16; },
     Status::kNotSupported,
     "infonce: a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), got "
     "dtype f16"},
};

INSTANTIATE_TEST_SUITE_P(BadParams, InfoNCECheck, ::testing::ValuesIn(kBadParams),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(InfoNCECheck, AcceptsValidProblems) {
  Params p = valid_params();
  EXPECT_EQ(infonce::check(p), Status::kSuccess);
  p.num_keys = 100;
  p.positive_offset = 92;
  p.similarity = Similarity::kDot;
  p.eps = 0.0f;  // unused by dot
  p.q_row_stride = 16;
  p.k_row_stride = 1000;
  p.reduction = Reduction::kNone;
  EXPECT_EQ(infonce::check(p), Status::kSuccess);
}

// B = M = 2^31 - 1: the logits alone are ~2^64 bytes: the size query must refuse, not wrap.
TEST(InfoNCECheck, WorkspaceThatOverflows64BitsIsRefused) {
  Params p = valid_params();
  p.batch = p.num_keys = (std::int64_t{1} << 31) - 1;
  p.tiling = Tiling::kMaterialized;
  std::size_t bytes = 0;
  EXPECT_EQ(infonce::workspace_size(p, &bytes), Status::kInvalidArgument);
  EXPECT_STREQ(
      last_error_message(),
      "infonce: the workspace for B = 2147483647, M = 2147483647, D = 16 overflows 64 bits");
  p.tile_rows = p.tile_cols = 4096;  // tiled, the same problem needs O((B + M) D) only
  EXPECT_EQ(infonce::workspace_size(p, &bytes), Status::kSuccess);
  p.tile_rows = p.tile_cols = 0;
  p.tiling = Tiling::kAuto;  // the materialized path cannot be laid out, so kAuto tiles
  EXPECT_EQ(infonce::workspace_size(p, &bytes), Status::kSuccess) << last_error_message();
}

TEST(InfoNCECheck, NullSizeOutput) {
  EXPECT_EQ(infonce::workspace_size(valid_params(), nullptr), Status::kNullPointer);
  EXPECT_STREQ(last_error_message(), "infonce: bytes is null");
  EXPECT_EQ(infonce::saved_size(valid_params(), nullptr), Status::kNullPointer);
}

TEST(StatusText, EveryStatusHasAName) {
  for (int value = 0; value <= static_cast<int>(Status::kInternalError); ++value) {
    EXPECT_STRNE(status_string(static_cast<Status>(value)), "unknown status") << value;
  }
  EXPECT_STREQ(status_string(static_cast<Status>(99)), "unknown status");
}

// ---- Saved buffer ----------------------------------------------------------------------------

TEST(SavedLayout, HoldsWhatEachModeNeeds) {
  Params p = valid_params();
  p.num_keys = 12;
  std::size_t bytes = 0;
  ASSERT_EQ(infonce::saved_size(p, &bytes), Status::kSuccess);
  EXPECT_EQ(bytes, (8 + 8 + 12) * sizeof(float));  // row lse, inverse norms of Q and K
  const auto cosine = logits::saved_layout(infonce::detail::to_problem(p));
  EXPECT_EQ(cosine.head, 0);  // row lse
  EXPECT_EQ(logits::head_layout(infonce::detail::to_problem(p)).saved_per_row, 1);
  EXPECT_EQ(cosine.q_inv_norm, 8);
  EXPECT_EQ(cosine.k_inv_norm, 16);
  p.similarity = Similarity::kDot;
  ASSERT_EQ(infonce::saved_size(p, &bytes), Status::kSuccess);
  EXPECT_EQ(bytes, 8 * sizeof(float));
  p.num_keys = 8;
  p.symmetric = true;
  const auto symmetric_dot = logits::saved_layout(infonce::detail::to_problem(p));
  EXPECT_EQ(logits::head_layout(infonce::detail::to_problem(p)).saved_per_row, 2);  // and col lse
  EXPECT_EQ(symmetric_dot.q_inv_norm, -1);
  EXPECT_EQ(symmetric_dot.floats, 16);
}

// ---- Tiles -----------------------------------------------------------------------------------

TEST(TilePlan, ZeroMeansOneTile) {
  const auto plan = detail::make_tile_plan(127, 4097, 0, 0);
  EXPECT_TRUE(plan.single_tile());
  EXPECT_EQ(plan.row_tile(0).size, 127);
  EXPECT_EQ(plan.col_tile(0).size, 4097);
  EXPECT_TRUE(detail::make_tile_plan(5, 9, 100, 100).single_tile());
}

// Every (row, column) of the matrix lies in exactly one tile, edges included.
TEST(TilePlan, TilesCoverTheMatrixExactlyOnce) {
  for (auto [rows, cols, tile_rows, tile_cols] : std::vector<std::array<std::int64_t, 4>>{
           {4097, 12289, 1024, 2048}, {33, 7, 5, 3}, {1, 1, 1, 1}, {127, 1000, 127, 999}}) {
    const auto plan = detail::make_tile_plan(rows, cols, tile_rows, tile_cols);
    std::vector<int> row_hits(rows, 0), col_hits(cols, 0);
    for (std::int64_t r = 0; r < plan.row_tiles(); ++r) {
      const auto extent = plan.row_tile(r);
      ASSERT_GT(extent.size, 0);
      ASSERT_LE(extent.size, tile_rows);
      for (std::int64_t i = 0; i < extent.size; ++i) ++row_hits[extent.begin + i];
    }
    for (std::int64_t c = 0; c < plan.col_tiles(); ++c) {
      const auto extent = plan.col_tile(c);
      ASSERT_GT(extent.size, 0);
      ASSERT_LE(extent.size, tile_cols);
      for (std::int64_t j = 0; j < extent.size; ++j) ++col_hits[extent.begin + j];
    }
    for (int hits : row_hits) ASSERT_EQ(hits, 1);
    for (int hits : col_hits) ASSERT_EQ(hits, 1);
    EXPECT_EQ(plan.single_tile(), tile_rows >= rows && tile_cols >= cols);
  }
}

// ---- Workspace -------------------------------------------------------------------------------

TEST(Workspace, PiecesAreAlignedAndDisjoint) {
  detail::WorkspaceLayoutBuilder builder;
  const std::size_t a = builder.add(3, 4);
  const std::size_t empty = builder.add(0, 4);
  const std::size_t b = builder.add(1000, 8);
  const std::size_t c = builder.add(1, 1);
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(empty, detail::WorkspaceLayoutBuilder::kAbsent);
  EXPECT_EQ(b, detail::kWorkspaceAlignment);
  EXPECT_EQ(c % detail::kWorkspaceAlignment, 0u);
  EXPECT_GE(c, b + 8000);
  EXPECT_EQ(builder.required_bytes(), builder.used_bytes() + detail::kWorkspaceAlignment - 1);
  EXPECT_FALSE(builder.overflowed());
  builder.add(std::numeric_limits<std::uint64_t>::max() / 2, 4);
  EXPECT_TRUE(builder.overflowed());
}

// A workspace of the reported size works from any base address, as CUB's do.
TEST(Workspace, AnyBaseAlignmentFitsTheReportedSize) {
  detail::WorkspaceLayoutBuilder builder;
  builder.add(1000, 4);
  builder.add(77, 8);
  const std::size_t required = builder.required_bytes();
  for (std::uintptr_t misalignment = 0; misalignment < detail::kWorkspaceAlignment;
       ++misalignment) {
    void* base = reinterpret_cast<void*>(0x10000 + misalignment);
    EXPECT_TRUE(detail::workspace_fits(base, required, builder.used_bytes())) << misalignment;
    const auto aligned = reinterpret_cast<std::uintptr_t>(detail::align_workspace(base));
    EXPECT_EQ(aligned % detail::kWorkspaceAlignment, 0u);
    EXPECT_GE(aligned, 0x10000 + misalignment);
  }
  void* odd = reinterpret_cast<void*>(0x10001);
  EXPECT_FALSE(detail::workspace_fits(odd, builder.used_bytes(), builder.used_bytes()));
  EXPECT_FALSE(detail::workspace_fits(odd, 10, builder.used_bytes()));
}

TEST(Workspace, InfoNCEPlanMatchesTheMode) {
  Params p = valid_params();
  logits::WorkspacePlan cosine, dot, tiled;
  ASSERT_EQ(logits::plan_workspace(infonce::detail::to_problem(p), "infonce", &cosine),
            Status::kSuccess);
  EXPECT_NE(cosine.q_hat, logits::WorkspacePlan::kAbsent);
  // The row head's scratch: (max, sum-exp), the positive logit and the sum of G * logit per row.
  EXPECT_EQ(logits::head_layout(infonce::detail::to_problem(p)).scratch_per_row, 4);
  p.similarity = Similarity::kDot;
  ASSERT_EQ(logits::plan_workspace(infonce::detail::to_problem(p), "infonce", &dot),
            Status::kSuccess);
  EXPECT_EQ(dot.q_hat, logits::WorkspacePlan::kAbsent);
  EXPECT_LT(dot.required_bytes, cosine.required_bytes);
  p.batch = p.num_keys = 4097;
  p.tile_rows = 1000;
  p.tile_cols = 300;
  ASSERT_EQ(logits::plan_workspace(infonce::detail::to_problem(p), "infonce", &tiled),
            Status::kSuccess);
  EXPECT_EQ(tiled.tiles.row_tiles(), 5);
  EXPECT_EQ(tiled.tiles.col_tiles(), 14);
  EXPECT_EQ(tiled.required_bytes, tiled.used_bytes + detail::kWorkspaceAlignment - 1);
  std::size_t reported = 0;
  ASSERT_EQ(infonce::workspace_size(p, &reported), Status::kSuccess);
  EXPECT_EQ(reported, tiled.required_bytes);
}

// The pieces follow the dtypes (the tiles' rows padded to the pitch): the logits tile in
// logits_dtype; a separate G tile (in the input
// dtype, as the backward GEMMs read it) only when the two differ; normalized rows in the input
// dtype; fp32 accumulators unless an f32 dot product can write the caller's gradients directly.
TEST(Workspace, InfoNCEPlanFollowsTheDtypes) {
  using Plan = logits::WorkspacePlan;
  constexpr std::size_t kAbsent = Plan::kAbsent;
  Params p = valid_params();
  p.batch = 40;
  p.num_keys = 96;
  p.dim = 64;
  auto piece = [](std::size_t begin, std::size_t next) { return next - begin; };
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (DType logits_dtype : {DType::kF32, DType::kBF16}) {
      if (logits_dtype == DType::kBF16 && dtype != DType::kBF16) continue;  // not supported
      for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " inputs, " + dtype_name(logits_dtype) +
                     " tile, " + (similarity == Similarity::kCosine ? "cosine" : "dot"));
        p.dtype = dtype;
        p.logits_dtype = logits_dtype;
        p.similarity = similarity;
        Plan plan;
        ASSERT_EQ(logits::plan_workspace(infonce::detail::to_problem(p), "infonce", &plan),
                  Status::kSuccess);
        const std::size_t tile = 40 * 128, element = dtype_size(dtype);  // 96 columns, pitch 128
        const std::size_t after_tile = plan.grad_tile != kAbsent    ? plan.grad_tile
                                       : plan.q_hat != kAbsent      ? plan.q_hat
                                       : plan.grad_q_sum != kAbsent ? plan.grad_q_sum
                                                                    : plan.head_scratch;
        EXPECT_EQ(piece(plan.logits_tile, after_tile),
                  detail::round_up(tile * dtype_size(logits_dtype), detail::kWorkspaceAlignment));
        EXPECT_EQ(plan.grad_tile != kAbsent, logits_dtype != dtype);
        EXPECT_EQ(plan.q_hat != kAbsent, similarity == Similarity::kCosine);
        if (plan.q_hat != kAbsent) {
          EXPECT_EQ(piece(plan.q_hat, plan.k_hat), 40 * 64 * element);
        }
        const bool accumulators = similarity == Similarity::kCosine || dtype != DType::kF32;
        EXPECT_EQ(plan.grad_q_sum != kAbsent, accumulators);
        if (accumulators) {
          EXPECT_EQ(piece(plan.grad_q_sum, plan.grad_k_sum), 40 * 64 * 4u);
        }
      }
    }
  }
}

// ---- The tiling policy ------------------------------------------------------------------------

logits::WorkspacePlan plan_of(const Params& p) {
  logits::WorkspacePlan plan;
  EXPECT_EQ(logits::plan_workspace(infonce::detail::to_problem(p), "infonce", &plan),
            Status::kSuccess)
      << last_error_message();
  return plan;
}

Params large_bf16(std::int64_t batch, std::int64_t dim) {
  Params p;
  p.batch = p.num_keys = batch;
  p.dim = dim;
  p.dtype = DType::kBF16;
  p.symmetric = true;
  return p;
}

// kAuto: one tile while its workspace fits the budget, L2-sized tiles beyond.
TEST(TilingPolicy, AutoMaterializesWhatFitsTheBudget) {
  Params p = large_bf16(4096, 256);
  const logits::WorkspacePlan fits = plan_of(p);
  EXPECT_TRUE(fits.tiles.single_tile());
  p.workspace_budget = fits.required_bytes;  // exactly enough: still materialized
  EXPECT_TRUE(plan_of(p).tiles.single_tile());
  p.workspace_budget = fits.required_bytes - 1;
  const logits::WorkspacePlan tiled = plan_of(p);
  EXPECT_FALSE(tiled.tiles.single_tile());
  EXPECT_LT(tiled.required_bytes, fits.required_bytes);
  p.tiling = Tiling::kMaterialized;  // forced: the budget does not matter
  EXPECT_TRUE(plan_of(p).tiles.single_tile());
  // The default budget (4 GiB) materializes B = M = 16384 in bf16 with an fp32 tile (1.6 GB with
  // its bf16 G) and tiles B = M = 65536 (26 GB).
  EXPECT_TRUE(plan_of(large_bf16(16384, 768)).tiles.single_tile());
  EXPECT_FALSE(plan_of(large_bf16(65536, 768)).tiles.single_tile());
}

// kTiled: the tile (logits, and G where stored apart) fits tile_cache_bytes, at most 8192 wide,
// in whole 128-row blocks; the workspace grows with (B + M) D, not with B x M.
TEST(TilingPolicy, TiledTilesFitTheCacheShare) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (DType logits_dtype : {DType::kF32, DType::kBF16}) {
      if (logits_dtype == DType::kBF16 && dtype != DType::kBF16) continue;
      for (std::size_t cache : {std::size_t{0}, std::size_t{8} << 20, std::size_t{50} << 20}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " inputs, " + dtype_name(logits_dtype) +
                     " tile, cache " + std::to_string(cache));
        Params p = large_bf16(100000, 256);
        p.dtype = dtype;
        p.logits_dtype = logits_dtype;
        p.tiling = Tiling::kTiled;
        p.tile_cache_bytes = cache;
        const detail::TilePlan tiles = plan_of(p).tiles;
        const std::size_t per_element =
            dtype_size(logits_dtype) + (logits_dtype == dtype ? 0 : dtype_size(dtype));
        const std::size_t share = cache == 0 ? kDefaultTileCacheBytes : cache;
        EXPECT_LE(static_cast<std::size_t>(tiles.tile_rows * tiles.tile_cols) * per_element, share);
        EXPECT_EQ(tiles.tile_cols, 8192);
        EXPECT_EQ(tiles.tile_rows % 128, 0);
        EXPECT_GE(tiles.tile_rows, 128);
      }
    }
  }
  // O((B + M) D): 8x the rows (64x the logits) costs about 8x the workspace.
  Params small = large_bf16(16384, 768), large = large_bf16(131072, 768);
  small.tiling = large.tiling = Tiling::kTiled;
  const double ratio = static_cast<double>(plan_of(large).required_bytes) /
                       static_cast<double>(plan_of(small).required_bytes);
  EXPECT_LT(ratio, 9.0);
  EXPECT_LT(plan_of(large).required_bytes, std::size_t{2} << 30);  // materialized: 103 GB
}

// Small matrices and small caches: the tile never exceeds the matrix and is at least 1 x 1.
TEST(TilingPolicy, TilesStayInsideTheMatrix) {
  Params p = valid_params();
  p.tiling = Tiling::kTiled;
  EXPECT_TRUE(plan_of(p).tiles.single_tile());  // 8 x 8 fits any cache share
  p.batch = 300;
  p.num_keys = 20000;
  p.tile_cache_bytes = 1;  // smaller than one logit
  const detail::TilePlan tiles = plan_of(p).tiles;
  EXPECT_EQ(tiles.tile_rows, 1);
  EXPECT_EQ(tiles.tile_cols, 1);
  p.tile_cache_bytes = 4 * 8192 * 100;  // 100 rows of 8192: less than one 128-row block
  EXPECT_EQ(plan_of(p).tiles.tile_rows, 100);
  p.tile_cache_bytes = 4 * 8192 * 200;  // 200 rows: one whole 128-row block
  EXPECT_EQ(plan_of(p).tiles.tile_rows, 128);
}

// An explicit tile overrides the policy.
TEST(TilingPolicy, AnExplicitTileWins) {
  Params p = large_bf16(4096, 64);
  p.tile_rows = 1000;
  p.tile_cols = 3000;
  for (Tiling tiling : {Tiling::kAuto, Tiling::kMaterialized, Tiling::kTiled}) {
    p.tiling = tiling;
    const detail::TilePlan tiles = plan_of(p).tiles;
    EXPECT_EQ(tiles.tile_rows, 1000);
    EXPECT_EQ(tiles.tile_cols, 3000);
  }
}

// ---- Temperature bounds and the reduction's factor ---------------------------------------------

// The smallest accepted temperature is the smallest float whose reciprocal is finite: the bound
// in the message is exact, on both sides.
TEST(InfoNCECheck, TemperatureBoundIsExact) {
  Params p = valid_params();
  const float smallest = 2.93873728e-39f;
  p.temperature = smallest;
  EXPECT_EQ(infonce::check(p), Status::kSuccess) << last_error_message();
  EXPECT_TRUE(std::isfinite(1.0f / smallest));
  p.temperature = std::nextafter(smallest, 0.0f);
  EXPECT_FALSE(std::isfinite(1.0f / p.temperature));
  EXPECT_EQ(infonce::check(p), Status::kInvalidArgument);
  p.temperature = 1e-30f;  // tiny but fine: 1/t = 1e30
  EXPECT_EQ(infonce::check(p), Status::kSuccess);
}

// In-batch MNR runs the same engine with its scale as the logit scale: no reciprocal is taken in
// fp32 (its gradient's 1/s is taken in double), so every finite positive scale is accepted and
// gives finite GEMM alphas and a finite scalar-gradient factor, from the smallest subnormal to
// the largest float.
TEST(InfoNCECheck, InBatchMnrScaleHasNoReciprocalToOverflow) {
  for (float scale : {std::numeric_limits<float>::denorm_min(), 1e-30f, 20.0f,
                      std::numeric_limits<float>::max()}) {
    SCOPED_TRACE(scale);
    mnr::InBatchParams p;
    p.batch = 4096;
    p.hard_negatives = 1;
    p.dim = 16;
    p.scale = scale;
    p.symmetric = true;
    EXPECT_EQ(mnr::check(p), Status::kSuccess) << last_error_message();
    const Params engine = mnr::detail::to_infonce(p);
    EXPECT_EQ(infonce::detail::check_problem(engine), Status::kSuccess) << last_error_message();
    const double factor = logits::gradient_factor(infonce::detail::to_problem(engine));
    EXPECT_TRUE(std::isfinite(static_cast<float>(static_cast<double>(scale) * factor)));
    EXPECT_TRUE(std::isfinite(factor / static_cast<double>(scale)));
  }
  mnr::InBatchParams p;
  p.batch = 4;
  p.dim = 16;
  p.scale = INFINITY;
  EXPECT_EQ(mnr::check(p), Status::kInvalidArgument);
}

// G is stored without the reduction's factor; the gradient GEMMs (and the scalar gradient) apply
// it: 1/B for a mean, 1 otherwise, halved in symmetric mode.
TEST(GradientFactor, IsTheReductionsFactor) {
  Params p = valid_params();
  p.batch = p.num_keys = 4096;
  EXPECT_EQ(logits::gradient_factor(infonce::detail::to_problem(p)), 1.0 / 4096);
  p.symmetric = true;
  EXPECT_EQ(logits::gradient_factor(infonce::detail::to_problem(p)), 0.5 / 4096);
  p.reduction = Reduction::kSum;
  EXPECT_EQ(logits::gradient_factor(infonce::detail::to_problem(p)), 0.5);
  p.symmetric = false;
  p.reduction = Reduction::kNone;
  EXPECT_EQ(logits::gradient_factor(infonce::detail::to_problem(p)), 1.0);
}

// ---- The tiles' row pitch ----------------------------------------------------------------------

using Plan = logits::WorkspacePlan;

// Bytes from `offset` to the next piece of the plan (or the end of the used bytes).
std::size_t piece_bytes(const Plan& plan, std::size_t offset) {
  std::size_t next = plan.used_bytes;
  for (std::size_t other :
       {plan.logits_tile, plan.grad_tile, plan.q_hat, plan.k_hat, plan.grad_q_sum, plan.grad_k_sum,
        plan.head_scratch, plan.gemm_workspace}) {
    if (other != Plan::kAbsent && other > offset) next = std::min(next, other);
  }
  return next - offset;
}

// Every tile row starts on a multiple of 128 elements (so of 16 bytes, which cuBLASLt's
// tensor-core kernels need of a leading dimension) for any M, and the tiles are sized with it.
TEST(TilePitch, PadsEveryTileRowTo128Elements) {
  for (std::int64_t keys : {1, 7, 8, 100, 127, 128, 129, 4097, 12289}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (DType logits_dtype : {DType::kF32, DType::kBF16}) {
        if (logits_dtype == DType::kBF16 && dtype != DType::kBF16) continue;
        for (Tiling tiling : {Tiling::kMaterialized, Tiling::kTiled}) {
          SCOPED_TRACE("M = " + std::to_string(keys) + ", " + dtype_name(dtype) + " inputs, " +
                       dtype_name(logits_dtype) + " tile, " +
                       (tiling == Tiling::kTiled ? "tiled" : "materialized"));
          Params p = valid_params();
          p.batch = std::min<std::int64_t>(keys, 33);
          p.num_keys = keys;
          p.dtype = dtype;
          p.logits_dtype = logits_dtype;
          p.tiling = tiling;
          p.tile_cache_bytes = 64 << 10;  // small tiles for the tiled walk
          const Plan plan = plan_of(p);
          const std::int64_t pitch = plan.tile_pitch, cols = plan.tiles.tile_cols;
          EXPECT_EQ(pitch % logits::kTilePitchElements, 0);
          EXPECT_GE(pitch, cols);
          EXPECT_LT(pitch, cols + logits::kTilePitchElements);
          for (DType stored : {logits_dtype, dtype}) {
            EXPECT_EQ(pitch * static_cast<std::int64_t>(dtype_size(stored)) % 16, 0);
          }
          const auto tile_elements = static_cast<std::size_t>(plan.tiles.tile_rows * pitch);
          EXPECT_EQ(piece_bytes(plan, plan.logits_tile),
                    detail::round_up(tile_elements * dtype_size(logits_dtype),
                                     detail::kWorkspaceAlignment));
          if (plan.grad_tile != Plan::kAbsent) {
            EXPECT_EQ(
                piece_bytes(plan, plan.grad_tile),
                detail::round_up(tile_elements * dtype_size(dtype), detail::kWorkspaceAlignment));
          }
          if (tiling == Tiling::kTiled) {
            const std::size_t per_element =
                dtype_size(logits_dtype) + (logits_dtype == dtype ? 0 : dtype_size(dtype));
            if (plan.tiles.tile_rows > 1) {
              EXPECT_LE(tile_elements * per_element, p.tile_cache_bytes);
            }
          }
        }
      }
    }
  }
}

// The three GEMMs of every tile: each leading dimension of a tile is the pitch, each operand and
// output starts at its tile's first row or column, alpha is the logit scale for the logits and
// the logit scale times the reduction's factor for the gradients, beta accumulates past the
// first tile.
TEST(TilePitch, EveryTileGemmUsesThePitch) {
  for (bool symmetric : {false, true}) {
    Params p = valid_params();
    p.batch = p.num_keys = 1000;
    p.dim = 24;
    p.dtype = DType::kF16;
    p.symmetric = symmetric;
    p.tile_rows = 300;
    p.tile_cols = 333;  // pitch 384
    const Plan plan = plan_of(p);
    ASSERT_EQ(plan.tile_pitch, 384);
    std::vector<char> q(1), k(1);
    std::vector<float> grad_q(1), grad_k(1);
    char logits = 0, grad = 0;
    const logits::TileOperands operands{q.data(), 40, k.data(), 56};
    const float scale = 1.0f / 0.07f;
    const float grad_alpha = static_cast<float>(
        static_cast<double>(scale) * logits::gradient_factor(infonce::detail::to_problem(p)));
    for (std::int64_t r = 0; r < plan.tiles.row_tiles(); ++r) {
      for (std::int64_t c = 0; c < plan.tiles.col_tiles(); ++c) {
        const detail::Extent rows = plan.tiles.row_tile(r), cols = plan.tiles.col_tile(c);
        const auto products =
            logits::tile_products(infonce::detail::to_problem(p), plan, operands, rows, cols, scale,
                                  &logits, &grad, grad_q.data(), grad_k.data(), c > 0, r > 0);
        EXPECT_EQ(products.logits.ldc, plan.tile_pitch);
        EXPECT_EQ(products.grad_q.lda, plan.tile_pitch);
        EXPECT_EQ(products.grad_k.lda, plan.tile_pitch);
        EXPECT_EQ(products.logits.c, &logits);
        EXPECT_EQ(products.grad_q.a, &grad);
        EXPECT_EQ(products.grad_k.a, &grad);
        EXPECT_EQ(products.logits.a, q.data() + rows.begin * 40 * 2);  // f16: 2 bytes
        EXPECT_EQ(products.logits.b, k.data() + cols.begin * 56 * 2);
        EXPECT_EQ(products.grad_q.b, products.logits.b);
        EXPECT_EQ(products.grad_k.b, products.logits.a);
        EXPECT_EQ(products.grad_q.c, grad_q.data() + rows.begin * p.dim);
        EXPECT_EQ(products.grad_k.c, grad_k.data() + cols.begin * p.dim);
        EXPECT_EQ(products.logits.alpha, scale);
        EXPECT_EQ(products.grad_q.alpha, grad_alpha);
        EXPECT_EQ(products.grad_k.alpha, grad_alpha);
        EXPECT_EQ(products.grad_q.beta, c > 0 ? 1.0f : 0.0f);
        EXPECT_EQ(products.grad_k.beta, r > 0 ? 1.0f : 0.0f);
        EXPECT_EQ(products.logits.m, rows.size);
        EXPECT_EQ(products.logits.n, cols.size);
        EXPECT_EQ(products.grad_q.k, cols.size);
        EXPECT_EQ(products.grad_k.k, rows.size);
      }
    }
  }
}

}  // namespace
}  // namespace contrastive
