// Host-side planning of Repel, run on the CPU: every bad parameter gets its exact status and
// message from check(), workspace_size() and saved_size() alike (a failed size query leaves its
// output untouched), and valid problems get the sizes the GPU path is written for.
#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/repel.hpp"
#include "host/plan/repel_plan.hpp"
#include "support/case_suite.hpp"
#include "support/plan_cases.hpp"
#include "support/problems.hpp"

namespace contrastive {
namespace {

using testing::BadParamsCase;
using testing::expect_accepted;
using testing::expect_rejected;

constexpr std::int64_t kBatch = testing::kProblemBatch, kNegatives = testing::kProblemNegatives,
                       kDim = testing::kProblemDim;
constexpr std::int64_t kTwoTo31 = std::int64_t{1} << 31;

repel::Params valid_repel() {
  return testing::anchor_problem<repel::Params>();
}

// ---- Repel -----------------------------------------------------------------------------------

using R = repel::Params;
const std::vector<BadParamsCase<R>> kRepelBad = testing::with_shared_bad_params<R>(
    "repel",
    {
        {"ZeroNegatives", [](R& p) { p.negatives = 0; }, Status::kInvalidArgument,
         "repel: negatives (N) must be >= 1, got 0"},
        {"NegativeNegatives", [](R& p) { p.negatives = -1; }, Status::kInvalidArgument,
         "repel: negatives (N) must be >= 1, got -1"},
        {"HugeBatch", [](R& p) { p.batch = kTwoTo31; }, Status::kInvalidArgument,
         "repel: batch, negatives and dim must each be < 2^31 (B = 2147483648, N = 3, D = 16)"},
        {"HugeDim", [](R& p) { p.dim = kTwoTo31; }, Status::kInvalidArgument,
         "repel: batch, negatives and dim must each be < 2^31 (B = 8, N = 3, D = 2147483648)"},
        {"AnchorStrideBelowDim", [](R& p) { p.anchor_row_stride = 8; }, Status::kInvalidArgument,
         "repel: anchor_row_stride (8) must be 0 (dense) or >= dim (16)"},
        {"NegativeStrideNegative", [](R& p) { p.negative_row_stride = -32; },
         Status::kInvalidArgument,
         "repel: negative_row_stride (-32) must be 0 (dense) or >= dim (16)"},
        {"NaNMargin", [](R& p) { p.margin = NAN; }, Status::kInvalidArgument,
         "repel: margin must be finite, got nan"},
        {"InfiniteMargin", [](R& p) { p.margin = INFINITY; }, Status::kInvalidArgument,
         "repel: margin must be finite, got inf"},
        {"MinusInfiniteMargin", [](R& p) { p.margin = -INFINITY; }, Status::kInvalidArgument,
         "repel: margin must be finite, got -inf"},
        {"ZeroEps", [](R& p) { p.eps = 0.0f; }, Status::kInvalidArgument,
         "repel: eps must be finite and > 0, got 0"},
        {"NegativeEps", [](R& p) { p.eps = -0.25f; }, Status::kInvalidArgument,
         "repel: eps must be finite and > 0, got -0.25"},
        {"NaNEps", [](R& p) { p.eps = NAN; }, Status::kInvalidArgument,
         "repel: eps must be finite and > 0, got nan"},
        {"InfiniteEps", [](R& p) { p.eps = INFINITY; }, Status::kInvalidArgument,
         "repel: eps must be finite and > 0, got inf"},
        {"MeanOverActiveWithSum",
         [](R& p) { p.mean_over_active = true, p.reduction = Reduction::kSum; },
         Status::kInvalidArgument, "repel: mean_over_active needs Reduction::kMean"},
        {"MeanOverActiveWithNone",
         [](R& p) { p.mean_over_active = true, p.reduction = Reduction::kNone; },
         Status::kInvalidArgument, "repel: mean_over_active needs Reduction::kMean"},
        {"AnchorStrideOverflows64Bits", [](R& p) { p.anchor_row_stride = std::int64_t{1} << 62; },
         Status::kInvalidArgument, "repel: the extent of the inputs in bytes overflows 64 bits"},
        {"NegativeStrideOverflows64Bits",
         [](R& p) { p.negative_row_stride = std::int64_t{1} << 60; }, Status::kInvalidArgument,
         "repel: the extent of the inputs in bytes overflows 64 bits"},
        {"AnchorStrideOverflowsInBytes", [](R& p) { p.anchor_row_stride = std::int64_t{1} << 61; },
         Status::kInvalidArgument, "repel: the extent of the inputs in bytes overflows 64 bits"},
        {"TooManyNegatives", [](R& p) { p.negatives = 2049; }, Status::kNotSupported,
         "repel: at most 2048 negatives per anchor are supported, got 2049"},
        {"InvalidBeforeUnsupported", [](R& p) { p.negatives = 4096, p.margin = NAN; },
         Status::kInvalidArgument, "repel: margin must be finite, got nan"},
    });

CONTRASTIVE_BAD_PARAMS_SUITE(RepelCheck, RejectsWithItsOwnStatusAndMessage, kRepelBad,
                             expect_rejected(valid_repel(), GetParam()));

TEST(RepelCheck, AcceptsValidProblems) {
  expect_accepted(valid_repel());
  repel::Params p = valid_repel();
  p.negatives = 2048;  // the kernel's limit
  p.margin = -1.5f;    // any finite margin
  p.mean_over_active = true;
  p.anchor_row_stride = kDim;
  p.negative_row_stride = 100;
  expect_accepted(p);
  p.mean_over_active = false;
  p.reduction = Reduction::kNone;
  p.margin = 0.0f;
  expect_accepted(p);
  p.batch = p.negatives = p.dim = 1;
  p.reduction = Reduction::kSum;
  expect_accepted(p);
}

TEST(RepelSizes, SavedIsTheActiveCountInverseNormsAndSimilarities) {
  repel::Params p = valid_repel();
  std::size_t saved = 0, workspace = 0;
  ASSERT_EQ(repel::saved_size(p, &saved), Status::kSuccess);
  EXPECT_EQ(saved, (1 + kBatch + 2 * kBatch * kNegatives) * sizeof(float));
  const repel::detail::Saved layout = repel::detail::saved_layout(p);
  EXPECT_EQ(layout.active_total, 0u);  // first, where the reference's count is compared
  EXPECT_EQ(layout.anchor_inverse_norms, 1u);
  EXPECT_EQ(layout.similarities, static_cast<std::size_t>(1 + kBatch));
  EXPECT_EQ(layout.inverse_norms, static_cast<std::size_t>(1 + kBatch + kBatch * kNegatives));
  EXPECT_EQ(layout.floats * sizeof(float), saved);
  ASSERT_EQ(repel::workspace_size(p, &workspace), Status::kSuccess);
  EXPECT_GT(workspace, 0u);
  EXPECT_EQ(workspace, repel::detail::plan_workspace(p).required_bytes);
  p.batch = 100000;
  p.negatives = 2048;
  p.dim = 4096;  // the width does not count
  p.reduction = Reduction::kNone;
  ASSERT_EQ(repel::saved_size(p, &saved), Status::kSuccess);
  EXPECT_EQ(saved, (1 + 100000 + 2 * std::size_t{100000} * 2048) * sizeof(float));
  std::size_t larger = 0;
  ASSERT_EQ(repel::workspace_size(p, &larger), Status::kSuccess);
  EXPECT_GT(larger, workspace);
}

TEST(RepelSizes, NullSizeOutput) {
  testing::expect_null_size_output(valid_repel(), "repel");
}

}  // namespace
}  // namespace contrastive
