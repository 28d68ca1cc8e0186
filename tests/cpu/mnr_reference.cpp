// The float64 MNR references checked on their own: the demo example (d = 4, n = 3) and its
// float64 gradients to 1e-12, central finite differences in every mode, and identities with
// InfoNCE.
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "support/finite_difference.hpp"
#include "support/golden.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::random_normal;

constexpr double kExact = 1e-12;

// ---- Per-anchor negatives
// ------------------------------------------------------------------------

struct PerAnchorProblem {
  mnr::PerAnchorParams params;
  std::vector<double> anchors, positives, negatives;

  reference::MnrPerAnchorForward forward() const {
    return testing::reference_output<reference::MnrPerAnchorForward>([&](auto* out) {
      return reference::mnr_per_anchor_forward(params, anchors.data(), positives.data(),
                                               negatives.data(), out);
    });
  }
  reference::MnrPerAnchorBackward backward(const std::vector<double>& upstream) const {
    return testing::reference_output<reference::MnrPerAnchorBackward>([&](auto* out) {
      return reference::mnr_per_anchor_backward(params, anchors.data(), positives.data(),
                                                negatives.data(), upstream.data(), out);
    });
  }
};

TEST(ReferenceMnr, MatchesNumPyOnTheDemoExample) {
  PerAnchorProblem problem;
  problem.params.batch = 1;
  problem.params.negatives = 3;
  problem.params.dim = 4;  // dot product, scale 1
  problem.anchors = testing::golden_numbers("seed_mnr.json", "anchor");
  problem.positives = testing::golden_numbers("seed_mnr.json", "positive");
  problem.negatives = testing::golden_numbers("seed_mnr.json", "negatives");
  EXPECT_NEAR(problem.forward().loss[0], testing::golden_numbers("seed_mnr.json", "loss")[0],
              kExact);
  EXPECT_EQ(std::round(problem.forward().loss[0] * 1e4) / 1e4, 1.6965);  // what the demo prints
  const reference::MnrPerAnchorBackward grads = problem.backward({1.0});
  const std::vector<double> grad_anchor = testing::golden_numbers("seed_mnr.json", "grad_anchor");
  const std::vector<double> grad_positive =
      testing::golden_numbers("seed_mnr.json", "grad_positive");
  const std::vector<double> grad_negatives =
      testing::golden_numbers("seed_mnr.json", "grad_negatives");
  for (std::size_t i = 0; i < grad_anchor.size(); ++i) {
    EXPECT_NEAR(grads.grad_anchors[i], grad_anchor[i], kExact) << i;
    EXPECT_NEAR(grads.grad_positives[i], grad_positive[i], kExact) << i;
  }
  for (std::size_t i = 0; i < grad_negatives.size(); ++i) {
    EXPECT_NEAR(grads.grad_negatives[i], grad_negatives[i], kExact) << i;
  }
}

struct PerAnchorCase {
  Similarity similarity;
  Reduction reduction;
  std::int64_t batch, negatives, dim, padding;
  float scale;
};

std::string per_anchor_name(const ::testing::TestParamInfo<PerAnchorCase>& info);
void PrintTo(const PerAnchorCase& c, std::ostream* out) {
  *out << per_anchor_name(::testing::TestParamInfo<PerAnchorCase>(c, 0));
}

class ReferenceMnrPerAnchor : public ::testing::TestWithParam<PerAnchorCase> {};

TEST_P(ReferenceMnrPerAnchor, GradientsMatchCentralDifferences) {
  const PerAnchorCase& c = GetParam();
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 engine(seed);
  PerAnchorProblem problem;
  mnr::PerAnchorParams& p = problem.params;
  p.batch = c.batch;
  p.negatives = c.negatives;
  p.dim = c.dim;
  p.similarity = c.similarity;
  p.reduction = c.reduction;
  p.scale = c.scale;
  if (c.padding != 0) {
    p.anchor_row_stride = c.dim + c.padding;
    p.positive_row_stride = c.dim + 2 * c.padding;
    p.negative_row_stride = c.dim + 3 * c.padding;
  }
  const std::int64_t a_stride = row_stride_or_dim(p.anchor_row_stride, p.dim);
  const std::int64_t p_stride = row_stride_or_dim(p.positive_row_stride, p.dim);
  const std::int64_t n_stride = row_stride_or_dim(p.negative_row_stride, p.dim);
  problem.anchors = random_normal(p.batch * a_stride, engine);
  problem.positives = random_normal(p.batch * p_stride, engine);
  problem.negatives = random_normal(p.batch * p.negatives * n_stride, engine);
  const std::vector<double> upstream =
      random_normal(p.reduction == Reduction::kNone ? p.batch : 1, engine);
  const reference::MnrPerAnchorBackward grads = problem.backward(upstream);
  auto objective = [&] { return testing::weighted_sum(problem.forward().loss, upstream); };
  testing::expect_gradient(problem.anchors, p.batch, a_stride, p.dim, grads.grad_anchors, objective,
                           "grad_anchors");
  testing::expect_gradient(problem.positives, p.batch, p_stride, p.dim, grads.grad_positives,
                           objective, "grad_positives");
  testing::expect_gradient(problem.negatives, p.batch * p.negatives, n_stride, p.dim,
                           grads.grad_negatives, objective, "grad_negatives");
  testing::expect_float_derivative(p.scale, grads.grad_scale, objective, "grad_scale");
}

std::vector<PerAnchorCase> per_anchor_cases() {
  std::vector<PerAnchorCase> cases;
  for (Similarity similarity : {Similarity::kDot, Similarity::kCosine}) {
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      cases.push_back({similarity, reduction, 3, 2, 4, 0, 1.0f});
      cases.push_back({similarity, reduction, 2, 4, 3, 2, 20.0f});
    }
    cases.push_back({similarity, Reduction::kMean, 1, 1, 1, 0, 0.5f});
  }
  return cases;
}

std::string per_anchor_name(const ::testing::TestParamInfo<PerAnchorCase>& info) {
  const PerAnchorCase& c = info.param;
  const char* reductions[] = {"mean", "sum", "none"};
  return std::string(c.similarity == Similarity::kDot ? "dot" : "cosine") + "_" +
         reductions[static_cast<int>(c.reduction)] + "_B" + std::to_string(c.batch) + "_n" +
         std::to_string(c.negatives) + "_D" + std::to_string(c.dim) + "_pad" +
         std::to_string(c.padding);
}

INSTANTIATE_TEST_SUITE_P(AllModes, ReferenceMnrPerAnchor, ::testing::ValuesIn(per_anchor_cases()),
                         per_anchor_name);

// ---- In-batch with hard negatives ---------------------------------------------------------------

struct InBatchProblem {
  mnr::InBatchParams params;
  std::vector<double> anchors, candidates;

  reference::InfoNCEForward forward() const {
    return testing::reference_output<reference::InfoNCEForward>([&](auto* out) {
      return reference::mnr_in_batch_forward(params, anchors.data(), candidates.data(), out);
    });
  }
  reference::MnrInBatchBackward backward(const std::vector<double>& upstream) const {
    return testing::reference_output<reference::MnrInBatchBackward>([&](auto* out) {
      return reference::mnr_in_batch_backward(params, anchors.data(), candidates.data(),
                                              upstream.data(), out);
    });
  }
};

InBatchProblem random_in_batch(std::int64_t batch, std::int64_t hard_negatives, std::int64_t dim,
                               std::mt19937_64& engine) {
  InBatchProblem problem;
  problem.params.batch = batch;
  problem.params.hard_negatives = hard_negatives;
  problem.params.dim = dim;
  problem.anchors = random_normal(batch * dim, engine);
  problem.candidates = random_normal((1 + hard_negatives) * batch * dim, engine);
  return problem;
}

TEST(ReferenceMnrInBatch, GradientsMatchCentralDifferences) {
  std::mt19937_64 engine(testing::test_seed());
  for (std::int64_t hard_negatives : {0, 1, 2}) {
    for (bool symmetric : {false, true}) {
      for (Reduction reduction : {Reduction::kMean, Reduction::kNone}) {
        SCOPED_TRACE("K " + std::to_string(hard_negatives) + (symmetric ? " symmetric" : ""));
        InBatchProblem problem = random_in_batch(3, hard_negatives, 4, engine);
        problem.params.symmetric = symmetric;
        problem.params.reduction = reduction;
        mnr::InBatchParams& p = problem.params;
        const std::vector<double> upstream =
            random_normal(reduction == Reduction::kNone ? p.batch : 1, engine);
        const reference::MnrInBatchBackward grads = problem.backward(upstream);
        auto objective = [&] { return testing::weighted_sum(problem.forward().loss, upstream); };
        testing::expect_gradient(problem.anchors, p.batch, p.dim, p.dim, grads.grad_anchors,
                                 objective, "grad_anchors");
        testing::expect_gradient(problem.candidates, (1 + hard_negatives) * p.batch, p.dim, p.dim,
                                 grads.grad_candidates, objective, "grad_candidates");
        testing::expect_float_derivative(p.scale, grads.grad_scale, objective, "grad_scale");
      }
    }
  }
}

// With one anchor, the in-batch candidates are exactly that anchor's [p; N_1; ...; N_K].
TEST(ReferenceMnrInBatch, OneAnchorEqualsPerAnchorNegatives) {
  std::mt19937_64 engine(testing::test_seed());
  InBatchProblem in_batch = random_in_batch(1, 5, 6, engine);
  PerAnchorProblem per_anchor;
  per_anchor.params.batch = 1;
  per_anchor.params.negatives = 5;
  per_anchor.params.dim = 6;
  per_anchor.params.similarity = Similarity::kCosine;
  per_anchor.params.scale = in_batch.params.scale;
  per_anchor.anchors = in_batch.anchors;
  per_anchor.positives.assign(in_batch.candidates.begin(), in_batch.candidates.begin() + 6);
  per_anchor.negatives.assign(in_batch.candidates.begin() + 6, in_batch.candidates.end());
  EXPECT_NEAR(in_batch.forward().loss[0], per_anchor.forward().loss[0], kExact);
  const auto a = in_batch.backward({1.0});
  const auto b = per_anchor.backward({1.0});
  EXPECT_NEAR(a.grad_scale, b.grad_scale, kExact);
  for (std::size_t i = 0; i < a.grad_anchors.size(); ++i) {
    EXPECT_NEAR(a.grad_anchors[i], b.grad_anchors[i], kExact);
  }
}

// In-batch MNR is InfoNCE with temperature 1/scale (here a power of two, so exactly so).
TEST(ReferenceMnrInBatch, IsInfoNCEWithTheInverseScale) {
  std::mt19937_64 engine(testing::test_seed());
  InBatchProblem problem = random_in_batch(4, 2, 5, engine);
  problem.params.scale = 16.0f;
  problem.params.symmetric = true;
  infonce::Params p;
  p.batch = 4;
  p.num_keys = 12;
  p.dim = 5;
  p.temperature = 1.0f / 16.0f;
  p.symmetric = true;
  reference::InfoNCEForward expected;
  ASSERT_EQ(
      reference::infonce_forward(p, problem.anchors.data(), problem.candidates.data(), &expected),
      Status::kSuccess);
  EXPECT_NEAR(problem.forward().loss[0], expected.loss[0], kExact);
}

TEST(ReferenceMnr, RejectsBadProblems) {
  mnr::PerAnchorParams p;
  p.batch = 2;
  p.negatives = 0;
  p.dim = 3;
  reference::MnrPerAnchorForward out;
  const std::vector<double> data(100, 1.0);
  EXPECT_EQ(reference::mnr_per_anchor_forward(p, data.data(), data.data(), data.data(), &out),
            Status::kInvalidArgument);
  EXPECT_STREQ(last_error_message(), "mnr (per-anchor): negatives (n) must be >= 1, got 0");
  mnr::InBatchParams q;
  q.batch = 2;
  q.hard_negatives = -1;
  q.dim = 3;
  reference::InfoNCEForward in_batch;
  EXPECT_EQ(reference::mnr_in_batch_forward(q, data.data(), data.data(), &in_batch),
            Status::kInvalidArgument);
  EXPECT_STREQ(last_error_message(), "mnr (in-batch): hard_negatives (K) must be >= 0, got -1");
}

}  // namespace
}  // namespace contrastive
