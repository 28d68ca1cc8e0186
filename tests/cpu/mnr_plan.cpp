// Host-side planning of MNR (per-anchor and in-batch), run on the CPU: every bad
// parameter gets its exact status and message from check(), workspace_size() and saved_size()
// alike (a failed size query leaves its output untouched), and valid problems get the sizes the
// GPU paths are written for.
#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "host/plan/mnr_plan.hpp"
#include "support/case_suite.hpp"
#include "support/plan_cases.hpp"
#include "support/problems.hpp"

namespace contrastive {
namespace {

using testing::BadParamsCase;
using testing::expect_accepted;
using testing::expect_rejected;
using testing::kUntouched;

constexpr std::int64_t kBatch = testing::kProblemBatch, kNegatives = testing::kProblemNegatives,
                       kHardNegatives = testing::kProblemHardNegatives, kDim = testing::kProblemDim;
constexpr std::int64_t kTwoTo31 = std::int64_t{1} << 31;

mnr::PerAnchorParams valid_per_anchor() {
  return testing::anchor_problem<mnr::PerAnchorParams>();
}

mnr::InBatchParams valid_in_batch() {
  return testing::anchor_problem<mnr::InBatchParams>();
}

// ---- Per-anchor MNR --------------------------------------------------------------------------

using P = mnr::PerAnchorParams;
const std::vector<BadParamsCase<P>> kPerAnchorBad = testing::with_shared_bad_params<P>(
    "mnr (per-anchor)",
    {
        {"ZeroNegatives", [](P& p) { p.negatives = 0; }, Status::kInvalidArgument,
         "mnr (per-anchor): negatives (n) must be >= 1, got 0"},
        {"NegativeNegatives", [](P& p) { p.negatives = -2; }, Status::kInvalidArgument,
         "mnr (per-anchor): negatives (n) must be >= 1, got -2"},
        {"HugeDim", [](P& p) { p.dim = kTwoTo31; }, Status::kInvalidArgument,
         "mnr (per-anchor): batch, negatives and dim must each be < 2^31 (B = 8, n = 3, D = "
         "2147483648)"},
        {"HugeNegatives", [](P& p) { p.negatives = kTwoTo31; }, Status::kInvalidArgument,
         "mnr (per-anchor): batch, negatives and dim must each be < 2^31 (B = 8, n = 2147483648, D "
         "= "
         "16)"},
        {"AnchorStrideBelowDim", [](P& p) { p.anchor_row_stride = 15; }, Status::kInvalidArgument,
         "mnr (per-anchor): anchor_row_stride (15) must be 0 (dense) or >= dim (16)"},
        {"PositiveStrideNegative", [](P& p) { p.positive_row_stride = -16; },
         Status::kInvalidArgument,
         "mnr (per-anchor): positive_row_stride (-16) must be 0 (dense) or >= dim (16)"},
        {"NegativeStrideBelowDim", [](P& p) { p.negative_row_stride = 1; },
         Status::kInvalidArgument,
         "mnr (per-anchor): negative_row_stride (1) must be 0 (dense) or >= dim (16)"},
        {"UnknownSimilarity", [](P& p) { p.similarity = static_cast<Similarity>(2); },
         Status::kInvalidArgument, "mnr (per-anchor): unknown similarity value 2"},
        {"ZeroScale", [](P& p) { p.scale = 0.0f; }, Status::kInvalidArgument,
         "mnr (per-anchor): scale must be finite and > 0, got 0"},
        {"NegativeScale", [](P& p) { p.scale = -20.0f; }, Status::kInvalidArgument,
         "mnr (per-anchor): scale must be finite and > 0, got -20"},
        {"NaNScale", [](P& p) { p.scale = NAN; }, Status::kInvalidArgument,
         "mnr (per-anchor): scale must be finite and > 0, got nan"},
        {"InfiniteScale", [](P& p) { p.scale = INFINITY; }, Status::kInvalidArgument,
         "mnr (per-anchor): scale must be finite and > 0, got inf"},
        {"ZeroEpsCosine", [](P& p) { p.similarity = Similarity::kCosine, p.eps = 0.0f; },
         Status::kInvalidArgument, "mnr (per-anchor): eps must be finite and > 0, got 0"},
        {"NegativeEpsCosine", [](P& p) { p.similarity = Similarity::kCosine, p.eps = -0.5f; },
         Status::kInvalidArgument, "mnr (per-anchor): eps must be finite and > 0, got -0.5"},
        {"NaNEpsCosine", [](P& p) { p.similarity = Similarity::kCosine, p.eps = NAN; },
         Status::kInvalidArgument, "mnr (per-anchor): eps must be finite and > 0, got nan"},
        {"InfiniteEpsCosine", [](P& p) { p.similarity = Similarity::kCosine, p.eps = INFINITY; },
         Status::kInvalidArgument, "mnr (per-anchor): eps must be finite and > 0, got inf"},
        // (B - 1) * 2^62 elements: the row offset itself overflows.
        {"AnchorStrideOverflows64Bits", [](P& p) { p.anchor_row_stride = std::int64_t{1} << 62; },
         Status::kInvalidArgument,
         "mnr (per-anchor): the extent of the inputs in bytes overflows 64 bits"},
        // 7 * 2^61 + 16 elements fit in 64 bits; times 4 bytes they do not.
        {"PositiveStrideOverflowsInBytes",
         [](P& p) { p.positive_row_stride = std::int64_t{1} << 61; }, Status::kInvalidArgument,
         "mnr (per-anchor): the extent of the inputs in bytes overflows 64 bits"},
        // B n - 1 = 23 negative rows of 2^60 elements.
        {"NegativeStrideOverflows64Bits",
         [](P& p) { p.negative_row_stride = std::int64_t{1} << 60; }, Status::kInvalidArgument,
         "mnr (per-anchor): the extent of the inputs in bytes overflows 64 bits"},
        {"TooManyNegatives", [](P& p) { p.negatives = 2048; }, Status::kNotSupported,
         "mnr (per-anchor): at most 2047 negatives per anchor are supported, got 2048"},
        // Invalid values are reported before unsupported ones.
        {"InvalidBeforeUnsupported", [](P& p) { p.negatives = 4096, p.scale = 0.0f; },
         Status::kInvalidArgument, "mnr (per-anchor): scale must be finite and > 0, got 0"},
    });

CONTRASTIVE_BAD_PARAMS_SUITE(PerAnchorCheck, RejectsWithItsOwnStatusAndMessage, kPerAnchorBad,
                             expect_rejected(valid_per_anchor(), GetParam()));

TEST(PerAnchorCheck, AcceptsValidProblems) {
  expect_accepted(valid_per_anchor());
  mnr::PerAnchorParams p = valid_per_anchor();
  p.negatives = 2047;  // 1 + n = 2048 candidates: the kernel's limit
  p.anchor_row_stride = kDim;
  p.positive_row_stride = 1000;
  p.negative_row_stride = kDim + 1;
  p.reduction = Reduction::kNone;
  p.eps = 0.0f;  // unused by dot
  expect_accepted(p);
  p.similarity = Similarity::kCosine;
  p.eps = 1e-8f;
  p.reduction = Reduction::kSum;
  p.scale = 1e4f;
  expect_accepted(p);
  p.batch = p.dim = 1;
  p.negatives = 1;
  expect_accepted(p);
}

TEST(PerAnchorSizes, SavedIsLseInverseNormsAndSimilaritiesWorkspaceTheRowPartials) {
  mnr::PerAnchorParams p = valid_per_anchor();
  std::size_t saved = 0, workspace = 0;
  ASSERT_EQ(mnr::saved_size(p, &saved), Status::kSuccess);
  // Per row: its lse and the anchor's inverse norm; per candidate: similarity and inverse norm.
  EXPECT_EQ(saved, (2 * kBatch + 2 * kBatch * (kNegatives + 1)) * sizeof(float));
  const mnr::detail::PerAnchorSaved layout = mnr::detail::saved_layout(p);
  EXPECT_EQ(layout.row_lse, 0u);  // first, where the reference's row lse is compared
  EXPECT_EQ(layout.anchor_inverse_norms, static_cast<std::size_t>(kBatch));
  EXPECT_EQ(layout.similarities, static_cast<std::size_t>(2 * kBatch));
  EXPECT_EQ(layout.inverse_norms, static_cast<std::size_t>(2 * kBatch + kBatch * (kNegatives + 1)));
  EXPECT_EQ(layout.floats * sizeof(float), saved);
  ASSERT_EQ(mnr::workspace_size(p, &workspace), Status::kSuccess);
  EXPECT_GT(workspace, 0u);
  EXPECT_EQ(workspace, mnr::detail::plan_workspace(p).required_bytes);
  // The scratch is per row: the number of negatives and the width do not change it.
  p.negatives = 2000;
  p.dim = 1000;
  std::size_t wider = 0;
  ASSERT_EQ(mnr::workspace_size(p, &wider), Status::kSuccess);
  EXPECT_EQ(wider, workspace);
  p.batch = 1000;
  ASSERT_EQ(mnr::saved_size(p, &saved), Status::kSuccess);
  EXPECT_EQ(saved, (2 * 1000 + 2 * 1000 * 2001) * sizeof(float));  // the width does not count
}

TEST(PerAnchorSizes, NullSizeOutput) {
  testing::expect_null_size_output(valid_per_anchor(), "mnr (per-anchor)");
}

// ---- In-batch MNR ----------------------------------------------------------------------------

using I = mnr::InBatchParams;
const std::vector<BadParamsCase<I>> kInBatchBad = testing::with_shared_bad_params<I>(
    "mnr (in-batch)",
    {
        {"NegativeHardNegatives", [](I& p) { p.hard_negatives = -1; }, Status::kInvalidArgument,
         "mnr (in-batch): hard_negatives (K) must be >= 0, got -1"},
        // (1 + K) B = 2^31: one candidate too many.
        {"TooManyCandidates", [](I& p) { p.hard_negatives = (kTwoTo31 / kBatch) - 1; },
         Status::kInvalidArgument,
         "mnr (in-batch): (1 + K) B candidates and D must each be < 2^31 (B = 8, K = 268435455, D "
         "= "
         "16)"},
        {"HugeDim", [](I& p) { p.dim = kTwoTo31; }, Status::kInvalidArgument,
         "mnr (in-batch): (1 + K) B candidates and D must each be < 2^31 (B = 8, K = 2, D = "
         "2147483648)"},
        {"AnchorStrideBelowDim", [](I& p) { p.anchor_row_stride = 15; }, Status::kInvalidArgument,
         "mnr (in-batch): anchor_row_stride (15) must be 0 (dense) or >= dim (16)"},
        {"CandidateStrideNegative", [](I& p) { p.candidate_row_stride = -1; },
         Status::kInvalidArgument,
         "mnr (in-batch): candidate_row_stride (-1) must be 0 (dense) or >= dim (16)"},
        {"NegativeTileRows", [](I& p) { p.tile_rows = -1; }, Status::kInvalidArgument,
         "mnr (in-batch): tile_rows and tile_cols must be >= 0 (0: whole), got -1 x 0"},
        {"NegativeTileCols", [](I& p) { p.tile_cols = -8; }, Status::kInvalidArgument,
         "mnr (in-batch): tile_rows and tile_cols must be >= 0 (0: whole), got 0 x -8"},
        {"UnknownSimilarity", [](I& p) { p.similarity = static_cast<Similarity>(-1); },
         Status::kInvalidArgument, "mnr (in-batch): unknown similarity value -1"},
        {"ZeroScale", [](I& p) { p.scale = 0.0f; }, Status::kInvalidArgument,
         "mnr (in-batch): scale must be finite and > 0, got 0"},
        {"NegativeScale", [](I& p) { p.scale = -0.5f; }, Status::kInvalidArgument,
         "mnr (in-batch): scale must be finite and > 0, got -0.5"},
        {"NaNScale", [](I& p) { p.scale = NAN; }, Status::kInvalidArgument,
         "mnr (in-batch): scale must be finite and > 0, got nan"},
        {"InfiniteScale", [](I& p) { p.scale = -INFINITY; }, Status::kInvalidArgument,
         "mnr (in-batch): scale must be finite and > 0, got -inf"},
        {"ZeroEps", [](I& p) { p.eps = 0.0f; }, Status::kInvalidArgument,
         "mnr (in-batch): eps must be finite and > 0, got 0"},
        {"NegativeEps", [](I& p) { p.eps = -1.0f; }, Status::kInvalidArgument,
         "mnr (in-batch): eps must be finite and > 0, got -1"},
        {"NaNEps", [](I& p) { p.eps = NAN; }, Status::kInvalidArgument,
         "mnr (in-batch): eps must be finite and > 0, got nan"},
        {"CandidateStrideOverflows64Bits",
         [](I& p) { p.candidate_row_stride = std::int64_t{1} << 62; }, Status::kInvalidArgument,
         "mnr (in-batch): the extent of the inputs in bytes overflows 64 bits"},
        {"AnchorStrideOverflowsInBytes", [](I& p) { p.anchor_row_stride = std::int64_t{1} << 61; },
         Status::kInvalidArgument,
         "mnr (in-batch): the extent of the inputs in bytes overflows 64 bits"},
        {"F16Logits", [](I& p) { p.logits_dtype = DType::kF16; }, Status::kNotSupported,
         "mnr (in-batch): logits_dtype must be f32 or bf16, got f16"},
        {"Bf16LogitsFromF32", [](I& p) { p.logits_dtype = DType::kBF16; }, Status::kNotSupported,
         "mnr (in-batch): a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 "
         "operands), got dtype f32"},
        {"InvalidBeforeUnsupported", [](I& p) { p.logits_dtype = DType::kF16, p.tile_cols = -1; },
         Status::kInvalidArgument,
         "mnr (in-batch): tile_rows and tile_cols must be >= 0 (0: whole), got 0 x -1"},
    });

CONTRASTIVE_BAD_PARAMS_SUITE(InBatchCheck, RejectsWithItsOwnStatusAndMessage, kInBatchBad,
                             expect_rejected(valid_in_batch(), GetParam()));

TEST(InBatchCheck, AcceptsValidProblems) {
  expect_accepted(valid_in_batch());
  mnr::InBatchParams p = valid_in_batch();
  p.hard_negatives = 0;  // plain in-batch negatives
  p.similarity = Similarity::kDot;
  p.eps = 0.0f;  // unused by dot
  p.symmetric = true;
  p.reduction = Reduction::kNone;
  p.anchor_row_stride = 1000;
  p.candidate_row_stride = kDim;
  expect_accepted(p);
  p.hard_negatives = 5;
  p.tile_rows = 3;
  p.tile_cols = 7;
  p.allow_tf32 = true;
  p.scale = 0.05f;
  expect_accepted(p);
  p.hard_negatives = (kTwoTo31 / kBatch) - 2;  // (1 + K) B = 2^31 - 8 candidates
  EXPECT_EQ(mnr::check(p), Status::kSuccess) << last_error_message();
}

// B = 2^31 - 1 anchors and as many candidates: the one-tile logits alone are ~2^64 bytes. The
// problem is valid, so check() and saved_size() accept it; the workspace query must refuse, not
// wrap (in InfoNCE's words: in-batch MNR is InfoNCE's problem underneath).
TEST(InBatchSizes, WorkspaceThatOverflows64BitsIsRefused) {
  mnr::InBatchParams p = valid_in_batch();
  p.batch = kTwoTo31 - 1;
  p.hard_negatives = 0;
  p.tiling = Tiling::kMaterialized;
  EXPECT_EQ(mnr::check(p), Status::kSuccess) << last_error_message();
  std::size_t bytes = kUntouched;
  EXPECT_EQ(mnr::saved_size(p, &bytes), Status::kSuccess) << last_error_message();
  EXPECT_EQ(bytes, (3 * (kTwoTo31 - 1)) * sizeof(float));  // row lse, inverse norms of A and C
  bytes = kUntouched;
  EXPECT_EQ(mnr::workspace_size(p, &bytes), Status::kInvalidArgument);
  EXPECT_STREQ(
      last_error_message(),
      "mnr (in-batch): the workspace for B = 2147483647, K = 0, D = 16 overflows 64 bits (tiles "
      "bound it)");
  EXPECT_EQ(bytes, kUntouched);
  p.tile_rows = p.tile_cols = 4096;  // tiled, the same problem needs O((B + M) D) only
  EXPECT_EQ(mnr::workspace_size(p, &bytes), Status::kSuccess) << last_error_message();
}

// In-batch MNR is rectangular InfoNCE with M = (1 + K) B keys and the positives at offset 0: its
// sizes are those of the equivalent InfoNCE problem, written out here by hand.
TEST(InBatchSizes, AreThoseOfTheEquivalentInfoNCEProblem) {
  for (const Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    for (const bool symmetric : {false, true}) {
      for (const std::int64_t hard_negatives : {0, 1, 3}) {
        for (const std::int64_t tile : {0, 5, -1}) {  // -1: Tiling::kTiled, a 256-byte share
          SCOPED_TRACE(::testing::Message()
                       << "similarity " << static_cast<int>(similarity) << ", symmetric "
                       << symmetric << ", K " << hard_negatives << ", tile " << tile);
          const Tiling tiling = tile < 0 ? Tiling::kTiled : Tiling::kAuto;
          const std::size_t cache = tile < 0 ? 256 : 0;
          mnr::InBatchParams p = valid_in_batch();
          p.similarity = similarity;
          p.symmetric = symmetric;
          p.hard_negatives = hard_negatives;
          p.tile_rows = p.tile_cols = std::max<std::int64_t>(tile, 0);
          p.tiling = tiling;
          p.tile_cache_bytes = cache;
          p.candidate_row_stride = 2 * kDim;
          infonce::Params q;
          q.batch = kBatch;
          q.num_keys = (1 + hard_negatives) * kBatch;
          q.dim = kDim;
          q.positive_offset = 0;
          q.k_row_stride = 2 * kDim;
          q.similarity = similarity;
          q.symmetric = symmetric;
          q.tile_rows = q.tile_cols = std::max<std::int64_t>(tile, 0);
          q.tiling = tiling;
          q.tile_cache_bytes = cache;
          std::size_t mnr_saved = 0, infonce_saved = 0, mnr_workspace = 0, infonce_workspace = 0;
          ASSERT_EQ(mnr::saved_size(p, &mnr_saved), Status::kSuccess) << last_error_message();
          ASSERT_EQ(infonce::saved_size(q, &infonce_saved), Status::kSuccess);
          EXPECT_EQ(mnr_saved, infonce_saved);
          ASSERT_EQ(mnr::workspace_size(p, &mnr_workspace), Status::kSuccess);
          ASSERT_EQ(infonce::workspace_size(q, &infonce_workspace), Status::kSuccess);
          EXPECT_EQ(mnr_workspace, infonce_workspace);
          EXPECT_GT(mnr_workspace, 0u);
        }
      }
    }
  }
  // Spelled out: cosine saves the row lse and the inverse norms of A and of the 3B candidates.
  std::size_t saved = 0;
  ASSERT_EQ(mnr::saved_size(valid_in_batch(), &saved), Status::kSuccess);
  EXPECT_EQ(saved, (kBatch + kBatch + (1 + kHardNegatives) * kBatch) * sizeof(float));
}

TEST(InBatchSizes, NullSizeOutput) {
  testing::expect_null_size_output(valid_in_batch(), "mnr (in-batch)");
}

}  // namespace
}  // namespace contrastive
