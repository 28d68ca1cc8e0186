// The float64 Repel reference checked on its own: the formula computed independently here,
// central finite differences away from the hinge, the mean over active terms, NaN and zero rows.
#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "examples/seed_inputs.hpp"
#include "support/finite_difference.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::random_normal;

constexpr double kExact = 1e-12;

struct RepelProblem {
  repel::Params params;
  std::vector<double> anchors, negatives;

  reference::RepelForward forward() const {
    return testing::reference_output<reference::RepelForward>([&](auto* out) {
      return reference::repel_forward(params, anchors.data(), negatives.data(), out);
    });
  }
  reference::RepelBackward backward(const std::vector<double>& upstream) const {
    return testing::reference_output<reference::RepelBackward>([&](auto* out) {
      return reference::repel_backward(params, anchors.data(), negatives.data(), upstream.data(),
                                       out);
    });
  }
};

RepelProblem random_problem(std::int64_t batch, std::int64_t negatives, std::int64_t dim,
                            std::mt19937_64& engine) {
  RepelProblem problem;
  problem.params.batch = batch;
  problem.params.negatives = negatives;
  problem.params.dim = dim;
  problem.anchors = random_normal(batch * dim, engine);
  problem.negatives = random_normal(batch * negatives * dim, engine);
  return problem;
}

double cosine(const double* a, const double* b, std::int64_t dim) {
  double ab = 0, aa = 0, bb = 0;
  for (std::int64_t c = 0; c < dim; ++c) {
    ab += a[c] * b[c];
    aa += a[c] * a[c];
    bb += b[c] * b[c];
  }
  return ab / (std::sqrt(aa) * std::sqrt(bb));
}

// The demo's shapes (B = 2, N = 3, D = 4, margin 0.3) with the formula written out here.
TEST(ReferenceRepel, MatchesTheSeedFormula) {
  seed::NumpyLegacyRandom random(7);
  RepelProblem problem;
  problem.params.batch = 2;
  problem.params.negatives = 3;
  problem.params.dim = 4;
  problem.anchors = random.normal(8);
  problem.negatives = random.normal(24);
  double total = 0.0;
  for (int b = 0; b < 2; ++b) {
    for (int n = 0; n < 3; ++n) {
      const double s = cosine(&problem.anchors[b * 4], &problem.negatives[(b * 3 + n) * 4], 4);
      total += std::max(s - 0.3, 0.0);
    }
  }
  // margin is a float: compare with the formula at the same float value
  const double margin = static_cast<double>(0.3f);
  double at_float_margin = 0.0;
  for (int b = 0; b < 2; ++b) {
    for (int n = 0; n < 3; ++n) {
      const double s = cosine(&problem.anchors[b * 4], &problem.negatives[(b * 3 + n) * 4], 4);
      at_float_margin += std::max(s - margin, 0.0);
    }
  }
  EXPECT_NEAR(problem.forward().loss[0], at_float_margin / 6.0, kExact);
  EXPECT_NEAR(problem.forward().loss[0], total / 6.0, 1e-7);
}

struct RepelCase {
  Reduction reduction;
  bool mean_over_active;
  std::int64_t padding;
};

std::string repel_name(const ::testing::TestParamInfo<RepelCase>& info);
void PrintTo(const RepelCase& c, std::ostream* out) {
  *out << repel_name(::testing::TestParamInfo<RepelCase>(c, 0));
}

class ReferenceRepelGradients : public ::testing::TestWithParam<RepelCase> {};

TEST_P(ReferenceRepelGradients, MatchCentralDifferencesAwayFromTheHinge) {
  const RepelCase& c = GetParam();
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 engine(seed);
  RepelProblem problem = random_problem(3, 4, 5, engine);
  repel::Params& p = problem.params;
  p.reduction = c.reduction;
  p.mean_over_active = c.mean_over_active;
  if (c.padding != 0) {
    p.anchor_row_stride = p.dim + c.padding;
    p.negative_row_stride = p.dim + 2 * c.padding;
    std::vector<double> anchors(p.batch * p.anchor_row_stride, NAN);
    std::vector<double> negatives(p.batch * p.negatives * p.negative_row_stride, NAN);
    for (std::int64_t r = 0; r < p.batch; ++r) {
      for (std::int64_t d = 0; d < p.dim; ++d)
        anchors[r * p.anchor_row_stride + d] = problem.anchors[r * p.dim + d];
    }
    for (std::int64_t r = 0; r < p.batch * p.negatives; ++r) {
      for (std::int64_t d = 0; d < p.dim; ++d) {
        negatives[r * p.negative_row_stride + d] = problem.negatives[r * p.dim + d];
      }
    }
    problem.anchors = anchors;
    problem.negatives = negatives;
  }
  // The margin goes in the middle of the widest gap between middling similarities: about half
  // the terms are active and no finite-difference step crosses the hinge.
  std::vector<double> sorted = problem.forward().similarities;
  std::sort(sorted.begin(), sorted.end());
  std::size_t widest = sorted.size() / 4;
  for (std::size_t i = widest; i + 1 < 3 * sorted.size() / 4; ++i) {
    if (sorted[i + 1] - sorted[i] > sorted[widest + 1] - sorted[widest]) widest = i;
  }
  p.margin = static_cast<float>(0.5 * (sorted[widest] + sorted[widest + 1]));
  for (double s : sorted) ASSERT_GT(std::fabs(s - p.margin), 1e-4) << "similarities too close";
  const std::vector<double> upstream =
      random_normal(p.reduction == Reduction::kNone ? p.batch * p.negatives : 1, engine);
  const reference::RepelBackward grads = problem.backward(upstream);
  auto objective = [&] { return testing::weighted_sum(problem.forward().loss, upstream); };
  const std::int64_t a_stride = row_stride_or_dim(p.anchor_row_stride, p.dim);
  const std::int64_t n_stride = row_stride_or_dim(p.negative_row_stride, p.dim);
  testing::expect_gradient(problem.anchors, p.batch, a_stride, p.dim, grads.grad_anchors, objective,
                           "grad_anchors");
  testing::expect_gradient(problem.negatives, p.batch * p.negatives, n_stride, p.dim,
                           grads.grad_negatives, objective, "grad_negatives");
}

std::string repel_name(const ::testing::TestParamInfo<RepelCase>& info) {
  const char* reductions[] = {"mean", "sum", "none"};
  return std::string(reductions[static_cast<int>(info.param.reduction)]) +
         (info.param.mean_over_active ? "_over_active" : "") + "_pad" +
         std::to_string(info.param.padding);
}

INSTANTIATE_TEST_SUITE_P(AllModes, ReferenceRepelGradients,
                         ::testing::Values(RepelCase{Reduction::kMean, false, 0},
                                           RepelCase{Reduction::kSum, false, 0},
                                           RepelCase{Reduction::kNone, false, 1},
                                           RepelCase{Reduction::kMean, true, 0},
                                           RepelCase{Reduction::kMean, true, 2}),
                         repel_name);

TEST(ReferenceRepel, MeanOverActiveDividesByTheActiveCount) {
  std::mt19937_64 engine(testing::test_seed());
  RepelProblem problem = random_problem(4, 5, 6, engine);
  problem.params.margin = 0.1f;
  const reference::RepelForward plain = problem.forward();
  problem.params.mean_over_active = true;
  const reference::RepelForward over_active = problem.forward();
  ASSERT_GT(plain.active_terms, 0.0);
  EXPECT_NEAR(over_active.loss[0], plain.loss[0] * 20.0 / plain.active_terms, kExact);
}

TEST(ReferenceRepel, NoActiveTermGivesZeroLossAndGradients) {
  std::mt19937_64 engine(testing::test_seed());
  RepelProblem problem = random_problem(3, 2, 4, engine);
  problem.params.margin = 1.5f;  // above any cosine
  for (bool over_active : {false, true}) {
    problem.params.mean_over_active = over_active;
    const reference::RepelForward out = problem.forward();
    EXPECT_EQ(out.loss[0], 0.0);
    EXPECT_EQ(out.active_terms, 0.0);
    const reference::RepelBackward grads = problem.backward({1.0});
    for (double g : grads.grad_anchors) EXPECT_EQ(g, 0.0);
    for (double g : grads.grad_negatives) EXPECT_EQ(g, 0.0);
  }
}

TEST(ReferenceRepel, NaNPropagatesAndZeroRowsStayFinite) {
  std::mt19937_64 engine(testing::test_seed());
  RepelProblem problem = random_problem(2, 3, 4, engine);
  std::fill(problem.anchors.begin(), problem.anchors.begin() + 4, 0.0);  // a zero anchor
  EXPECT_TRUE(std::isfinite(problem.forward().loss[0]));
  for (double g : problem.backward({1.0}).grad_negatives) EXPECT_TRUE(std::isfinite(g));
  problem.negatives[5] = NAN;
  for (bool over_active : {false, true}) {
    problem.params.mean_over_active = over_active;
    EXPECT_TRUE(std::isnan(problem.forward().loss[0])) << "NaN must not be clamped to 0";
  }
  problem.params.mean_over_active = false;
  problem.params.reduction = Reduction::kNone;
  EXPECT_TRUE(std::isnan(problem.forward().loss[1]));
}

TEST(ReferenceRepel, RejectsBadProblems) {
  RepelProblem problem;
  problem.params.batch = 1;
  problem.params.negatives = 1;
  problem.params.dim = 2;
  problem.params.margin = NAN;
  problem.anchors = {1, 0};
  problem.negatives = {0, 1};
  reference::RepelForward out;
  EXPECT_EQ(reference::repel_forward(problem.params, problem.anchors.data(),
                                     problem.negatives.data(), &out),
            Status::kInvalidArgument);
  EXPECT_STREQ(last_error_message(), "repel: margin must be finite, got nan");
}

}  // namespace
}  // namespace contrastive
