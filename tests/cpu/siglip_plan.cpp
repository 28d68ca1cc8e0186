// Host-side planning of SigLIP, run on the CPU: every bad parameter gets its exact status and
// message from check(), workspace_size() and saved_size() alike (a failed size query leaves its
// output untouched); valid problems get the logits engine's plan with the sigmoid head (three
// scratch words per row, nothing saved but the inverse norms).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/siglip.hpp"
#include "host/plan/logits_plan.hpp"
#include "host/plan/siglip_plan.hpp"
#include "host/plan/workspace.hpp"
#include "support/case_suite.hpp"
#include "support/plan_cases.hpp"
#include "support/problems.hpp"

namespace contrastive {
namespace {

using siglip::Params;
using testing::BadParamsCase;
using testing::expect_rejected;

constexpr Status kInvalid = Status::kInvalidArgument;

Params valid_params() {
  return testing::infonce_problem<Params>();  // B = M = 8, D = 16
}

logits::WorkspacePlan plan_of(const Params& p) {
  logits::WorkspacePlan plan;
  EXPECT_EQ(logits::plan_workspace(siglip::detail::to_problem(p), "siglip", &plan),
            Status::kSuccess);
  return plan;
}

// ---- check() -----------------------------------------------------------------------------------

const std::vector<BadParamsCase<Params>> kSigLIPBad = testing::with_shared_bad_params<Params>(
    "siglip",
    {
        {"FewerKeysThanRows", [](Params& p) { p.num_keys = 7; }, kInvalid,
         "siglip: num_keys (M = 7) must be >= batch (B = 8)"},
        {"ZeroKeysNegativesOnly", [](Params& p) { p.num_keys = 0, p.negatives_only = true; },
         kInvalid, "siglip: num_keys (M) must be >= 1, got 0"},
        {"HugeKeys", [](Params& p) { p.num_keys = std::int64_t{1} << 31; }, kInvalid,
         "siglip: batch, num_keys and dim must each be < 2^31 (B = 8, M = 2147483648, D = 16)"},
        {"OffsetPastTheEnd", [](Params& p) { p.num_keys = 10, p.positive_offset = 3; }, kInvalid,
         "siglip: positive_offset must be in [0, M - B] = [0, 2], got 3"},
        {"NegativeOffset", [](Params& p) { p.positive_offset = -1; }, kInvalid,
         "siglip: positive_offset must be in [0, M - B] = [0, 0], got -1"},
        {"QStrideBelowDim", [](Params& p) { p.q_row_stride = 15; }, kInvalid,
         "siglip: q_row_stride (15) must be 0 (dense) or >= dim (16)"},
        {"KStrideNegative", [](Params& p) { p.k_row_stride = -16; }, kInvalid,
         "siglip: k_row_stride (-16) must be 0 (dense) or >= dim (16)"},
        {"StrideOverflows64Bits", [](Params& p) { p.k_row_stride = std::int64_t{1} << 62; },
         kInvalid,
         "siglip: the extent of Q or K in bytes overflows 64 bits (strides 16, "
         "4611686018427387904)"},
        {"UnknownSimilarity", [](Params& p) { p.similarity = static_cast<Similarity>(2); },
         kInvalid, "siglip: unknown similarity value 2"},
        {"UnknownLogitsDtype", [](Params& p) { p.logits_dtype = static_cast<DType>(5); }, kInvalid,
         "siglip: unknown logits_dtype value 5"},
        {"UnknownTiling", [](Params& p) { p.tiling = static_cast<Tiling>(3); }, kInvalid,
         "siglip: unknown tiling value 3"},
        {"ZeroScale", [](Params& p) { p.scale = 0.0f; }, kInvalid,
         "siglip: scale must be finite and > 0, got 0"},
        {"NegativeScale", [](Params& p) { p.scale = -1.0f; }, kInvalid,
         "siglip: scale must be finite and > 0, got -1"},
        {"NaNScale", [](Params& p) { p.scale = NAN; }, kInvalid,
         "siglip: scale must be finite and > 0, got nan"},
        {"InfiniteScale", [](Params& p) { p.scale = INFINITY; }, kInvalid,
         "siglip: scale must be finite and > 0, got inf"},
        {"LogScaleWhoseExpOverflows", [](Params& p) { p.log_scale = true, p.scale = 88.73f; },
         kInvalid,
         "siglip: scale (log of the scale with log_scale) must be finite with exp(scale) a finite "
         "float (scale <= 88.72) unless max_scale clamps it, got 88.73"},
        {"LogScaleNaN", [](Params& p) { p.log_scale = true, p.scale = NAN; }, kInvalid,
         "siglip: scale (log of the scale with log_scale) must be finite with exp(scale) a finite "
         "float (scale <= 88.72) unless max_scale clamps it, got nan"},
        {"LogScaleMinusInfinity", [](Params& p) { p.log_scale = true, p.scale = -INFINITY; },
         kInvalid,
         "siglip: scale (log of the scale with log_scale) must be finite with exp(scale) a finite "
         "float (scale <= 88.72) unless max_scale clamps it, got -inf"},
        {"NaNBias", [](Params& p) { p.bias = NAN; }, kInvalid,
         "siglip: bias must be finite, got nan"},
        {"InfiniteBias", [](Params& p) { p.bias = -INFINITY; }, kInvalid,
         "siglip: bias must be finite, got -inf"},
        // The scalars are checked before eps: the first bad value is named.
        {"ScaleBeforeEps", [](Params& p) { p.scale = 0.0f, p.eps = 0.0f; }, kInvalid,
         "siglip: scale must be finite and > 0, got 0"},
        {"ZeroEps", [](Params& p) { p.eps = 0.0f; }, kInvalid,
         "siglip: eps must be finite and > 0, got 0"},
        {"NegativeTile", [](Params& p) { p.tile_cols = -2; }, kInvalid,
         "siglip: tile_rows and tile_cols must be >= 0 (0: whole), got 0 x -2"},
        {"F16Logits", [](Params& p) { p.logits_dtype = DType::kF16; }, Status::kNotSupported,
         "siglip: logits_dtype must be f32 or bf16, got f16"},
        {"Bf16LogitsFromF32", [](Params& p) { p.logits_dtype = DType::kBF16; },
         Status::kNotSupported,
         "siglip: a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), "
         "got dtype f32"},
        {"Bf16LogitsFromF16",
         [](Params& p) { p.dtype = DType::kF16, p.logits_dtype = DType::kBF16; },
         Status::kNotSupported,
         "siglip: a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), "
         "got dtype f16"},
    });

CONTRASTIVE_BAD_PARAMS_SUITE(SigLIPCheck, RejectsWithItsOwnStatusAndMessage, kSigLIPBad,
                             expect_rejected(valid_params(), GetParam()));

void expect_valid(const Params& p) {
  EXPECT_EQ(siglip::check(p), Status::kSuccess) << last_error_message();
  std::size_t workspace = 0, saved = 0;
  EXPECT_EQ(siglip::workspace_size(p, &workspace), Status::kSuccess) << last_error_message();
  EXPECT_EQ(siglip::saved_size(p, &saved), Status::kSuccess) << last_error_message();
  EXPECT_GT(workspace, 0u);
}

TEST(SigLIPCheck, AcceptsValidProblems) {
  Params p = valid_params();
  expect_valid(p);  // the defaults: cosine, t = 10, b = -10, mean
  p.num_keys = 100;
  p.positive_offset = 92;
  p.similarity = Similarity::kDot;
  p.eps = 0.0f;  // unused by dot
  p.q_row_stride = 16;
  p.k_row_stride = 1000;
  p.reduction = Reduction::kNone;
  p.bias = 0.0f;
  p.scale = std::numeric_limits<float>::denorm_min();  // any t > 0
  expect_valid(p);
  p.dtype = p.logits_dtype = DType::kBF16;
  p.scale = std::numeric_limits<float>::max();
  expect_valid(p);
}

// With log_scale the scale is log t: negative values are fine, and the bound 88.72 is where
// exp(scale) leaves the float range.
TEST(SigLIPCheck, LogScaleTakesAnyLogWhoseExpIsFinite) {
  Params p = valid_params();
  p.log_scale = true;
  for (float scale : {std::log(10.0f), 0.0f, -5.0f, -200.0f, 88.72f}) {
    p.scale = scale;
    EXPECT_EQ(siglip::check(p), Status::kSuccess) << scale << ": " << last_error_message();
  }
  EXPECT_FLOAT_EQ(siglip::detail::scale_of(p), std::exp(88.72f));
  EXPECT_TRUE(std::isfinite(std::exp(88.72f)));
  EXPECT_FALSE(std::isfinite(std::exp(88.73f)));
  p.log_scale = false;
  EXPECT_EQ(siglip::detail::scale_of(p), 88.72f);
}

// negatives_only: no positive, so any M >= 1 (a block of another rank's keys, smaller or larger
// than the batch) and the offset is not read.
TEST(SigLIPCheck, NegativesOnlyTakesAnyKeysAndIgnoresTheOffset) {
  Params p = valid_params();
  p.negatives_only = true;
  for (std::int64_t keys : {1, 7, 8, 300}) {
    for (std::int64_t offset : {-5, 0, 3, 1000}) {
      p.num_keys = keys;
      p.positive_offset = offset;
      expect_valid(p);
      const logits::Problem problem = siglip::detail::to_problem(p);
      EXPECT_TRUE(problem.negatives_only);
      EXPECT_EQ(problem.positive_offset, 0) << "the engine never sees an unused offset";
    }
  }
  p.negatives_only = false;  // the same keys with labels: M >= B and the offset in range again
  p.num_keys = 7;
  p.positive_offset = 0;
  expect_rejected(p, kInvalid, "siglip: num_keys (M = 7) must be >= batch (B = 8)");
}

TEST(SigLIPCheck, NullSizeOutput) {
  testing::expect_null_size_output(valid_params(), "siglip");
}

TEST(SigLIPCheck, WorkspaceThatOverflows64BitsIsRefused) {
  Params p = valid_params();
  p.batch = p.num_keys = (std::int64_t{1} << 31) - 1;
  p.tiling = Tiling::kMaterialized;
  std::size_t bytes = 0;
  EXPECT_EQ(siglip::workspace_size(p, &bytes), kInvalid);
  EXPECT_STREQ(
      last_error_message(),
      "siglip: the workspace for B = 2147483647, M = 2147483647, D = 16 overflows 64 bits");
  p.tiling = Tiling::kAuto;  // tiled, the same problem needs O((B + M) D) only
  EXPECT_EQ(siglip::workspace_size(p, &bytes), Status::kSuccess) << last_error_message();
}

// ---- The logits problem ------------------------------------------------------------------------

TEST(SigLIPProblem, CarriesEveryFieldToTheSigmoidHead) {
  Params p = valid_params();
  p.num_keys = 20;
  p.dim = 5;
  p.positive_offset = 7;
  p.q_row_stride = 9;
  p.dtype = p.logits_dtype = DType::kBF16;
  p.similarity = Similarity::kDot;
  p.reduction = Reduction::kSum;
  p.eps = 1e-3f;
  p.allow_tf32 = true;
  p.tiling = Tiling::kTiled;
  p.workspace_budget = 12345;
  p.tile_cache_bytes = 777;
  p.tile_rows = 3;
  p.tile_cols = 4;
  const logits::Problem problem = siglip::detail::to_problem(p);
  EXPECT_EQ(problem.head, logits::HeadKind::kSigmoid);
  EXPECT_EQ(problem.batch, 8);
  EXPECT_EQ(problem.num_keys, 20);
  EXPECT_EQ(problem.dim, 5);
  EXPECT_EQ(problem.positive_offset, 7);
  EXPECT_FALSE(problem.negatives_only);
  EXPECT_EQ(problem.q_stride, 9);
  EXPECT_EQ(problem.k_stride, 5);  // 0: dense
  EXPECT_EQ(problem.dtype, DType::kBF16);
  EXPECT_EQ(problem.logits_dtype, DType::kBF16);
  EXPECT_EQ(problem.similarity, Similarity::kDot);
  EXPECT_EQ(problem.reduction, Reduction::kSum);
  EXPECT_EQ(problem.eps, 1e-3f);
  EXPECT_TRUE(problem.allow_tf32);
  EXPECT_EQ(problem.tiling, Tiling::kTiled);
  EXPECT_EQ(problem.workspace_budget, 12345u);
  EXPECT_EQ(problem.tile_cache_bytes, 777u);
  EXPECT_EQ(problem.tile_rows, 3);
  EXPECT_EQ(problem.tile_cols, 4);
}

// ---- Saved buffer and workspace ----------------------------------------------------------------

// Nothing per row is saved (no log-sum-exp): the inverse norms of Q and K with cosine, nothing with
// dot.
TEST(SigLIPSaved, IsTheInverseNormsOrNothing) {
  Params p = valid_params();
  p.num_keys = 12;
  std::size_t bytes = 1;
  ASSERT_EQ(siglip::saved_size(p, &bytes), Status::kSuccess);
  EXPECT_EQ(bytes, (8 + 12) * sizeof(float));
  const logits::SavedLayout cosine = logits::saved_layout(siglip::detail::to_problem(p));
  EXPECT_EQ(cosine.head, -1);
  EXPECT_EQ(cosine.q_inv_norm, 0);
  EXPECT_EQ(cosine.k_inv_norm, 8);
  EXPECT_EQ(cosine.floats, 20);
  p.similarity = Similarity::kDot;
  ASSERT_EQ(siglip::saved_size(p, &bytes), Status::kSuccess);
  EXPECT_EQ(bytes, 0u);
  p.negatives_only = true;
  p.num_keys = 3;
  p.similarity = Similarity::kCosine;
  ASSERT_EQ(siglip::saved_size(p, &bytes), Status::kSuccess);
  EXPECT_EQ(bytes, (8 + 3) * sizeof(float));
}

// Three scratch words per row (the row's loss, its sum of G * logit and its sum of G); the rest of
// the workspace is the engine's, piece for piece as InfoNCE's for the same shape.
TEST(SigLIPWorkspace, HeadLayoutIsThreeScratchWordsPerRow) {
  Params p = valid_params();
  const logits::HeadLayout layout = logits::head_layout(siglip::detail::to_problem(p));
  EXPECT_EQ(layout.scratch_per_row, 3);
  EXPECT_EQ(layout.saved_per_row, 0);
  for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      SCOPED_TRACE(dtype_name(dtype));
      p.similarity = similarity;
      p.dtype = dtype;
      p.batch = 40;
      p.num_keys = 300;
      const logits::WorkspacePlan plan = plan_of(p);
      ASSERT_NE(plan.head_scratch, logits::WorkspacePlan::kAbsent);
      EXPECT_GE(plan.gemm_workspace - plan.head_scratch, 3 * 40 * sizeof(float));
      EXPECT_EQ(plan.q_hat != logits::WorkspacePlan::kAbsent, similarity == Similarity::kCosine);
      const bool direct = similarity == Similarity::kDot && dtype == DType::kF32;
      EXPECT_EQ(plan.grad_q_sum == logits::WorkspacePlan::kAbsent, direct);
      // G overwrites the f32 logits tile when it is f32 too; else it has a tile of its dtype.
      EXPECT_EQ(plan.grad_tile == logits::WorkspacePlan::kAbsent, dtype == DType::kF32);
      std::size_t reported = 0;
      ASSERT_EQ(siglip::workspace_size(p, &reported), Status::kSuccess);
      EXPECT_EQ(reported, plan.required_bytes);
      EXPECT_EQ(plan.required_bytes, plan.used_bytes + detail::kWorkspaceAlignment - 1);
    }
  }
}

// The same tiling policy as InfoNCE: materialized when it fits the budget, else L2-sized tiles;
// an explicit tile wins; tiled, the workspace grows with (B + M) D, not B x M.
TEST(SigLIPWorkspace, FollowsTheTilingPolicy) {
  Params p = valid_params();
  p.batch = p.num_keys = 4096;
  p.dim = 256;
  p.dtype = DType::kBF16;
  const logits::WorkspacePlan fits = plan_of(p);
  EXPECT_TRUE(fits.tiles.single_tile());
  p.workspace_budget = fits.required_bytes - 1;
  const logits::WorkspacePlan tiled = plan_of(p);
  EXPECT_FALSE(tiled.tiles.single_tile());
  EXPECT_LT(tiled.required_bytes, fits.required_bytes);
  std::size_t reported = 0;
  ASSERT_EQ(siglip::workspace_size(p, &reported), Status::kSuccess);
  EXPECT_EQ(reported, tiled.required_bytes);
  p.tile_rows = 1000;
  p.tile_cols = 300;
  const logits::WorkspacePlan explicit_tile = plan_of(p);
  EXPECT_EQ(explicit_tile.tiles.row_tiles(), 5);
  EXPECT_EQ(explicit_tile.tiles.col_tiles(), 14);
  EXPECT_EQ(explicit_tile.tile_pitch, 384);
  // Tiled, O((B + M) D): 8x the rows (64x the logits) costs about 8x the workspace.
  Params small = valid_params(), large = valid_params();
  small.batch = small.num_keys = 16384;
  large.batch = large.num_keys = 131072;
  for (Params* x : {&small, &large}) {
    x->dim = 768;
    x->dtype = x->logits_dtype = DType::kBF16;
    x->tiling = Tiling::kTiled;
  }
  const double ratio = static_cast<double>(plan_of(large).required_bytes) /
                       static_cast<double>(plan_of(small).required_bytes);
  EXPECT_LT(ratio, 9.0);
  EXPECT_LT(plan_of(large).required_bytes, std::size_t{2} << 30);  // materialized: 34 GB
}

// The reduction's factor: 1/B for the mean (the paper's loss), 1 for sum and none; no 1/2 (a
// single head).
TEST(SigLIPWorkspace, GradientFactorIsTheReductionsFactor) {
  Params p = valid_params();
  p.batch = 4;
  p.num_keys = 9;
  EXPECT_DOUBLE_EQ(logits::gradient_factor(siglip::detail::to_problem(p)), 0.25);
  p.reduction = Reduction::kSum;
  EXPECT_DOUBLE_EQ(logits::gradient_factor(siglip::detail::to_problem(p)), 1.0);
  p.reduction = Reduction::kNone;
  EXPECT_DOUBLE_EQ(logits::gradient_factor(siglip::detail::to_problem(p)), 1.0);
}

}  // namespace
}  // namespace contrastive
