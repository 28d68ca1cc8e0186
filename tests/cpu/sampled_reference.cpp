// The sampled-row reference of the large-index GPU tests (support/sampled_reference.hpp) against
// the full float64 reference, on problems small enough for it: the sampled rows' losses and
// log-sum-exps, every gradient row of Q and K, and the temperature (or scale) gradient, for
// InfoNCE (cosine and dot, symmetric or not, with an offset) and in-batch MNR. Its tolerances
// cover a one-ulp move of every fp32 input and stay far below the values. CPU only.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "support/random.hpp"
#include "support/sampled_reference.hpp"

namespace contrastive {
namespace {

using testing::sampled_infonce;
using testing::SampledInfoNCE;

constexpr double kClose = 1e-11;  // float64 sums in another order

::testing::AssertionResult near(const std::vector<double>& actual,
                                const std::vector<double>& expected) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure() << "sizes " << actual.size() << " vs " << expected.size();
  }
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (!(std::fabs(actual[i] - expected[i]) <= kClose * (1.0 + std::fabs(expected[i])))) {
      return ::testing::AssertionFailure()
             << "[" << i << "]: " << actual[i] << " vs " << expected[i];
    }
  }
  return ::testing::AssertionSuccess();
}

struct Problem {
  infonce::Params params;
  std::vector<double> q, k, grad_loss;
  std::vector<std::int64_t> rows;
};

Problem make_problem(bool symmetric, Similarity similarity, std::uint64_t seed) {
  Problem problem;
  infonce::Params& p = problem.params;
  p.batch = 11;
  p.num_keys = 23;
  p.dim = 6;
  p.positive_offset = symmetric ? 5 : 12;
  p.q_row_stride = 7;  // one element of padding
  p.similarity = similarity;
  p.symmetric = symmetric;
  p.reduction = Reduction::kNone;
  p.temperature = 0.25f;
  std::mt19937_64 engine(seed);
  problem.q = testing::random_normal(static_cast<std::size_t>(p.batch * 7), engine);
  problem.k = testing::random_normal(static_cast<std::size_t>(p.num_keys * p.dim), engine);
  problem.rows = {0, 4, 10};
  problem.grad_loss.assign(static_cast<std::size_t>(p.batch), 0.0);
  for (const std::int64_t r : problem.rows) problem.grad_loss[r] = 0.5 + static_cast<double>(r);
  return problem;
}

class SampledReference : public ::testing::TestWithParam<std::tuple<bool, Similarity>> {};

TEST_P(SampledReference, InfoNCEMatchesTheFullReference) {
  const auto [symmetric, similarity] = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const Problem problem = make_problem(symmetric, similarity, seed);
  const infonce::Params& p = problem.params;
  reference::InfoNCEForward forward;
  reference::InfoNCEBackward backward;
  ASSERT_EQ(reference::infonce_forward(p, problem.q.data(), problem.k.data(), &forward),
            Status::kSuccess);
  ASSERT_EQ(reference::infonce_backward(p, problem.q.data(), problem.k.data(),
                                        problem.grad_loss.data(), &backward),
            Status::kSuccess);
  const double s = 1.0 / static_cast<double>(p.temperature);
  const SampledInfoNCE sampled = sampled_infonce(p, s, problem.q.data(), problem.k.data(),
                                                 problem.grad_loss.data(), problem.rows);
  ASSERT_EQ(sampled.rows, problem.rows);
  std::vector<double> loss, row_lse, col_lse;
  for (const std::int64_t r : problem.rows) {
    loss.push_back(forward.loss[r]);
    row_lse.push_back(forward.row_lse[r]);
    if (symmetric) col_lse.push_back(forward.col_lse[r]);
  }
  EXPECT_TRUE(near(sampled.loss, loss)) << "loss";
  EXPECT_TRUE(near(sampled.row_lse, row_lse)) << "row lse";
  EXPECT_TRUE(near(sampled.col_lse, col_lse)) << "column lse";
  EXPECT_TRUE(near(sampled.grad_q, backward.grad_q)) << "grad_q";
  EXPECT_TRUE(near(sampled.grad_k, backward.grad_k)) << "grad_k";
  EXPECT_TRUE(near({-s * sampled.sum_grad_logits}, {backward.grad_temperature}))
      << "grad_temperature";
  // Without the symmetric column terms, rows outside the sample get no gradient at all.
  if (!symmetric) {
    for (std::int64_t c = 0; c < p.dim; ++c) EXPECT_EQ(sampled.grad_q[1 * p.dim + c], 0.0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, SampledReference,
    ::testing::Combine(::testing::Bool(), ::testing::Values(Similarity::kCosine, Similarity::kDot)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param) ? "Symmetric" : "Rows") +
             (std::get<1>(info.param) == Similarity::kCosine ? "Cosine" : "Dot");
    });

TEST(SampledReferenceInBatch, MatchesTheFullInBatchReference) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  mnr::InBatchParams p;
  p.batch = 9;
  p.hard_negatives = 2;
  p.dim = 5;
  p.symmetric = true;
  p.reduction = Reduction::kNone;
  p.scale = 20.0f;
  std::mt19937_64 engine(seed);
  const std::vector<double> anchors = testing::random_normal(45, engine);
  const std::vector<double> candidates = testing::random_normal(27 * 5, engine);
  std::vector<double> grad_loss(9, 0.0);
  grad_loss[2] = 1.5;
  grad_loss[8] = -0.75;
  reference::InfoNCEForward forward;
  reference::MnrInBatchBackward backward;
  ASSERT_EQ(reference::mnr_in_batch_forward(p, anchors.data(), candidates.data(), &forward),
            Status::kSuccess);
  ASSERT_EQ(reference::mnr_in_batch_backward(p, anchors.data(), candidates.data(), grad_loss.data(),
                                             &backward),
            Status::kSuccess);
  infonce::Params equivalent;
  equivalent.batch = 9;
  equivalent.num_keys = 27;
  equivalent.dim = 5;
  equivalent.symmetric = true;
  equivalent.reduction = Reduction::kNone;
  const SampledInfoNCE sampled = sampled_infonce(equivalent, p.scale, anchors.data(),
                                                 candidates.data(), grad_loss.data(), {2, 8});
  EXPECT_TRUE(near(sampled.loss, {forward.loss[2], forward.loss[8]}));
  EXPECT_TRUE(near(sampled.grad_q, backward.grad_anchors));
  EXPECT_TRUE(near(sampled.grad_k, backward.grad_candidates));
  EXPECT_TRUE(near({sampled.sum_grad_logits / p.scale}, {backward.grad_scale})) << "grad_scale";
}

// The bounds cover what one fp32 rounding of every input moves the results by, and are not vacuous
// (a loss bound is far below the loss). The GPU test holds the library to them.
TEST(SampledReferenceTolerances, CoverInputRoundingAndAreTight) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const Problem problem = make_problem(true, Similarity::kCosine, seed);
  const infonce::Params& p = problem.params;
  const double s = 1.0 / static_cast<double>(p.temperature);
  const SampledInfoNCE exact = sampled_infonce(p, s, problem.q.data(), problem.k.data(),
                                               problem.grad_loss.data(), problem.rows);
  // The same computation on inputs perturbed by one fp32 rounding each: what fp32 arithmetic can
  // move the results by, at least.
  std::vector<double> q = problem.q, k = problem.k;
  for (double& value : q) value = static_cast<float>(value * (1.0 + 1.0 / (1 << 24)));
  for (double& value : k) value = static_cast<float>(value * (1.0 - 1.0 / (1 << 24)));
  const SampledInfoNCE rounded =
      sampled_infonce(p, s, q.data(), k.data(), problem.grad_loss.data(), problem.rows);
  for (std::size_t i = 0; i < exact.loss.size(); ++i) {
    EXPECT_LE(std::fabs(rounded.loss[i] - exact.loss[i]), exact.loss_tolerance[i]);
    EXPECT_LT(exact.loss_tolerance[i], 1e-3 * std::fabs(exact.loss[i]) + 1e-4);
  }
  for (std::int64_t i = 0; i < p.batch; ++i) {
    for (std::int64_t c = 0; c < p.dim; ++c) {
      const std::size_t at = static_cast<std::size_t>(i * p.dim + c);
      EXPECT_LE(std::fabs(rounded.grad_q[at] - exact.grad_q[at]), exact.grad_q_tolerance[i])
          << "grad_q row " << i;
    }
  }
  EXPECT_LE(std::fabs(rounded.sum_grad_logits - exact.sum_grad_logits),
            exact.sum_grad_logits_tolerance);
}

TEST(SampledReferenceInputs, RefusesAnUpstreamGradientOutsideTheSample) {
  Problem problem = make_problem(false, Similarity::kCosine, 1);
  problem.grad_loss[3] = 1.0;  // row 3 is not sampled
  const SampledInfoNCE sampled =
      sampled_infonce(problem.params, 4.0, problem.q.data(), problem.k.data(),
                      problem.grad_loss.data(), problem.rows);
  EXPECT_TRUE(sampled.rows.empty());
  problem.params.reduction = Reduction::kMean;
  problem.grad_loss[3] = 0.0;
  EXPECT_TRUE(sampled_infonce(problem.params, 4.0, problem.q.data(), problem.k.data(),
                              problem.grad_loss.data(), problem.rows)
                  .rows.empty());
}

}  // namespace
}  // namespace contrastive
