// The float64 SigLIP reference checked on its own: central finite differences of every gradient
// (Q, K, the scale as t or log t, the bias) in every mode, hand-derived values, stability at large
// |l|, the NaN policy, identities between modes, and open_clip's SigLipLoss formula written out
// independently.
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "support/finite_difference.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using reference::SigLIPBackward;
using reference::SigLIPForward;
using siglip::Params;
using testing::random_normal;

constexpr double kExact = 1e-12;  // for results that are exact up to float64 rounding

struct Problem {
  Params params;
  std::vector<double> q;  // (B, q_row_stride)
  std::vector<double> k;  // (M, k_row_stride)
};

SigLIPForward forward(const Problem& problem) {
  return testing::reference_output<SigLIPForward>([&](SigLIPForward* out) {
    return reference::siglip_forward(problem.params, problem.q.data(), problem.k.data(), out);
  });
}

SigLIPBackward backward(const Problem& problem, const std::vector<double>& upstream) {
  return testing::reference_output<SigLIPBackward>([&](SigLIPBackward* out) {
    return reference::siglip_backward(problem.params, problem.q.data(), problem.k.data(),
                                      upstream.empty() ? nullptr : upstream.data(), out);
  });
}

Problem problem_of(std::int64_t batch, std::int64_t keys, std::int64_t dim, std::vector<double> q,
                   std::vector<double> k) {
  Problem problem;
  problem.params.batch = batch;
  problem.params.num_keys = keys;
  problem.params.dim = dim;
  problem.q = std::move(q);
  problem.k = std::move(k);
  return problem;
}

Problem random_problem(std::int64_t batch, std::int64_t keys, std::int64_t dim,
                       std::mt19937_64& engine) {
  return problem_of(batch, keys, dim, random_normal(static_cast<std::size_t>(batch * dim), engine),
                    random_normal(static_cast<std::size_t>(keys * dim), engine));
}

double sum_of(const std::vector<double>& values) {
  double total = 0.0;
  for (double value : values) total += value;
  return total;
}

// ---- Finite differences over every mode -----------------------------------------------------

struct FiniteDifferenceCase {
  Similarity similarity;
  Reduction reduction;
  bool log_scale, negatives_only;
  std::int64_t batch, num_keys, dim, offset, row_padding;
};

std::string case_name(const FiniteDifferenceCase& c) {
  const char* reductions[] = {"mean", "sum", "none"};
  return std::string(c.similarity == Similarity::kCosine ? "cosine" : "dot") + "_" +
         reductions[static_cast<int>(c.reduction)] + (c.log_scale ? "_logscale" : "") +
         (c.negatives_only ? "_negativesonly" : "") + "_B" + std::to_string(c.batch) + "_M" +
         std::to_string(c.num_keys) + "_D" + std::to_string(c.dim) + "_offset" +
         std::to_string(c.offset) + "_pad" + std::to_string(c.row_padding);
}

void PrintTo(const FiniteDifferenceCase& c, std::ostream* out) {
  *out << case_name(c);
}

class SigLIPFiniteDifferences : public ::testing::TestWithParam<FiniteDifferenceCase> {};

TEST_P(SigLIPFiniteDifferences, GradientsMatchCentralDifferences) {
  const FiniteDifferenceCase& c = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  Problem problem;
  Params& p = problem.params;
  p.batch = c.batch;
  p.num_keys = c.num_keys;
  p.dim = c.dim;
  p.positive_offset = c.offset;
  p.q_row_stride = c.row_padding == 0 ? 0 : c.dim + c.row_padding;
  p.k_row_stride = c.row_padding == 0 ? 0 : c.dim + 2 * c.row_padding;
  p.similarity = c.similarity;
  p.reduction = c.reduction;
  p.negatives_only = c.negatives_only;
  p.log_scale = c.log_scale;
  p.scale = c.log_scale ? 0.7f : 2.5f;  // logits of order 1: every sigmoid away from 0 and 1
  p.bias = -1.5f;
  const std::int64_t q_stride = row_stride_or_dim(p.q_row_stride, p.dim);
  const std::int64_t k_stride = row_stride_or_dim(p.k_row_stride, p.dim);
  problem.q = random_normal(static_cast<std::size_t>(p.batch * q_stride), engine);
  problem.k = random_normal(static_cast<std::size_t>(p.num_keys * k_stride), engine);
  const std::size_t outputs =
      c.reduction == Reduction::kNone ? static_cast<std::size_t>(p.batch) : 1;
  const std::vector<double> upstream = random_normal(outputs, engine);
  const SigLIPBackward analytic = backward(problem, upstream);

  auto objective = [&] { return testing::weighted_sum(forward(problem).loss, upstream); };
  testing::expect_gradient(problem.q, p.batch, q_stride, p.dim, analytic.grad_q, objective,
                           "grad_q");
  testing::expect_gradient(problem.k, p.num_keys, k_stride, p.dim, analytic.grad_k, objective,
                           "grad_k");
  testing::expect_float_derivative(p.scale, analytic.grad_scale, objective,
                                   c.log_scale ? "grad_scale (log t)" : "grad_scale (t)");
  testing::expect_float_derivative(p.bias, analytic.grad_bias, objective, "grad_bias");
}

std::vector<FiniteDifferenceCase> finite_difference_cases() {
  std::vector<FiniteDifferenceCase> cases;
  for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      for (bool log_scale : {false, true}) {
        cases.push_back({similarity, reduction, log_scale, false, 3, 3, 4, 0, 0});
        cases.push_back({similarity, reduction, log_scale, false, 3, 7, 2, 2, 1});
        cases.push_back({similarity, reduction, log_scale, true, 4, 2, 3, 0, 2});
      }
    }
    cases.push_back({similarity, Reduction::kMean, false, false, 1, 1, 5, 0, 0});
    cases.push_back({similarity, Reduction::kSum, true, false, 2, 5, 1, 3, 0});
    cases.push_back({similarity, Reduction::kNone, false, true, 3, 6, 3, 0, 1});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllModes, SigLIPFiniteDifferences,
                         ::testing::ValuesIn(finite_difference_cases()),
                         [](const auto& info) { return case_name(info.param); });

// ---- Hand-derived values -----------------------------------------------------------------------

// q = k = (e1, e2), t = 2, b = -1: every logit is 2 * [i == j] - 1, so the positive's is +1 and the
// negatives' -1, and every term is softplus(-1) = log(1 + 1/e). With s = sigmoid(-1): G = -s on
// the diagonal, +s off it (the mean's 1/2 applied), so dLoss/db = 0, dLoss/dt = (1/2) sum G sim =
// -s and dLoss/dlog t = t (-s). dLoss/dq_hat_0 = t/2 (G_00 k_0 + G_01 k_1) = (-s, s); cosine
// projects out q_0's own direction, leaving (0, s).
TEST(ReferenceSigLIP, TwoRowCaseWorkedOut) {
  const double s = 1.0 / (1.0 + std::exp(1.0));
  for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    for (bool log_scale : {false, true}) {
      SCOPED_TRACE(std::string(similarity == Similarity::kCosine ? "cosine" : "dot") +
                   (log_scale ? ", log_scale" : ""));
      Problem problem = problem_of(2, 2, 2, {1, 0, 0, 1}, {1, 0, 0, 1});
      problem.params.similarity = similarity;
      problem.params.log_scale = log_scale;
      problem.params.scale = log_scale ? std::log(2.0f) : 2.0f;
      problem.params.bias = -1.0f;
      const double t = log_scale ? std::exp(static_cast<double>(std::log(2.0f))) : 2.0;
      const SigLIPForward out = forward(problem);
      const std::vector<double> logits = {t - 1.0, -1.0, -1.0, t - 1.0};
      for (std::size_t i = 0; i < logits.size(); ++i) {
        EXPECT_NEAR(out.logits[i], logits[i], kExact) << i;
      }
      EXPECT_NEAR(out.loss[0], std::log1p(std::exp(1.0 - t)) + std::log1p(std::exp(-1.0)), kExact);
      const SigLIPBackward grads = backward(problem, {});
      if (!log_scale) {
        EXPECT_NEAR(out.loss[0], 2.0 * std::log1p(std::exp(-1.0)), kExact);
        EXPECT_NEAR(grads.grad_bias, 0.0, kExact);
        EXPECT_NEAR(grads.grad_scale, -s, kExact);
        const std::vector<double> expected_q = similarity == Similarity::kCosine
                                                   ? std::vector<double>{0, s, s, 0}
                                                   : std::vector<double>{-s, s, s, -s};
        for (std::size_t i = 0; i < expected_q.size(); ++i) {
          EXPECT_NEAR(grads.grad_q[i], expected_q[i], kExact) << i;
          EXPECT_NEAR(grads.grad_k[i], expected_q[i], kExact) << i;  // symmetric in q and k
        }
        const std::vector<double> g = {-s / 2, s / 2, s / 2, -s / 2};
        for (std::size_t i = 0; i < g.size(); ++i) {
          EXPECT_NEAR(grads.grad_logits[i], g[i], kExact) << i;
        }
      } else {  // t = 2 up to float rounding of log 2: dLoss/dlog t = t dLoss/dt
        const double st = 1.0 / (1.0 + std::exp(t - 1.0));
        EXPECT_NEAR(grads.grad_scale, t * (-st), kExact);
      }
    }
  }
}

// One row, one key, D = 1: l = t q k + b, the loss softplus(-l) (positive) or softplus(l)
// (negatives_only), with sum, so every value is closed-form.
TEST(ReferenceSigLIP, OneLogitClosedForm) {
  for (bool negatives_only : {false, true}) {
    for (double q : {0.5, -1.25}) {
      Problem problem = problem_of(1, 1, 1, {q}, {2.0});
      problem.params.similarity = Similarity::kDot;
      problem.params.reduction = Reduction::kSum;
      problem.params.negatives_only = negatives_only;
      problem.params.scale = 3.0f;
      problem.params.bias = 0.25f;
      const double l = 3.0 * q * 2.0 + 0.25;
      const double z = negatives_only ? -1.0 : 1.0;
      const double sigmoid = 1.0 / (1.0 + std::exp(-l));
      const double g = sigmoid - (negatives_only ? 0.0 : 1.0);
      EXPECT_NEAR(forward(problem).loss[0], std::log1p(std::exp(-z * l)), kExact);
      const SigLIPBackward grads = backward(problem, {2.0});  // an upstream of 2
      EXPECT_NEAR(grads.grad_bias, 2.0 * g, kExact);
      EXPECT_NEAR(grads.grad_scale, 2.0 * g * q * 2.0, kExact);
      EXPECT_NEAR(grads.grad_q[0], 2.0 * g * 3.0 * 2.0, kExact);
      EXPECT_NEAR(grads.grad_k[0], 2.0 * g * 3.0 * q, kExact);
    }
  }
}

// ---- Stability at large |l| -------------------------------------------------------------------

// l = +-100 (one row, one key, cosine sim 1, t = 1, bias l - 1): the loss is |l| on the wrong side
// and exp(-100) on the right one, never inf or 0 from an overflow; the confident positive's
// gradient is -sigmoid(-100) = -exp(-100), not a cancelled 0.
TEST(ReferenceSigLIP, LargeLogitsStayFiniteAndKeepTheirGradient) {
  const double tail = std::exp(-100.0);
  struct Case {
    double logit;
    bool negatives_only;
    double loss, grad;
  };
  const Case cases[] = {
      {100.0, false, tail, -tail},   // confident positive
      {-100.0, false, 100.0, -1.0},  // positive on the wrong side
      {100.0, true, 100.0, 1.0},     // negative on the wrong side
      {-100.0, true, tail, tail},    // confident negative
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("l = " + std::to_string(c.logit) + (c.negatives_only ? ", negative" : ""));
    Problem problem = problem_of(1, 1, 3, {0.3, -0.4, 1.2}, {0.6, -0.8, 2.4});  // cosine sim 1
    problem.params.scale = 1.0f;
    problem.params.bias = static_cast<float>(c.logit - 1.0);
    problem.params.negatives_only = c.negatives_only;
    const SigLIPForward out = forward(problem);
    ASSERT_TRUE(std::isfinite(out.loss[0]));
    EXPECT_NEAR(out.logits[0], c.logit, 1e-12);
    EXPECT_NEAR(out.loss[0], c.loss, 1e-12 * c.loss);
    const SigLIPBackward grads = backward(problem, {});
    EXPECT_NE(grads.grad_bias, 0.0);
    EXPECT_NEAR(grads.grad_bias, c.grad, 1e-12 * std::fabs(c.grad));
    EXPECT_NEAR(grads.grad_scale, c.grad, 1e-12 * std::fabs(c.grad)) << "sim = 1";
  }
}

// t = 100 and every sim in {+-1}: logits +-100 throughout, the loss finite and exact.
TEST(ReferenceSigLIP, ScaleOneHundredGivesExactLosses) {
  Problem problem = problem_of(2, 2, 2, {1, 0, 0, 1}, {-1, 0, 0, -1});
  problem.params.scale = 100.0f;
  problem.params.bias = 0.0f;
  problem.params.reduction = Reduction::kNone;
  // positives at sim -1 (l = -100): 100 each; negatives at sim 0: log 2
  const SigLIPForward out = forward(problem);
  for (double loss : out.loss) EXPECT_NEAR(loss, 100.0 + std::log(2.0), 1e-12);
}

// ---- NaN policy -------------------------------------------------------------------------------

TEST(ReferenceSigLIP, NaNInputGivesNaNOutputs) {
  std::mt19937_64 engine(testing::test_seed());
  for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    Problem problem = random_problem(3, 4, 4, engine);
    problem.params.similarity = similarity;
    problem.params.reduction = Reduction::kNone;
    problem.q[5] = NAN;  // row 1 of Q
    const SigLIPForward out = forward(problem);
    EXPECT_FALSE(std::isnan(out.loss[0]));
    EXPECT_TRUE(std::isnan(out.loss[1]));
    EXPECT_FALSE(std::isnan(out.loss[2]));
    const SigLIPBackward grads = backward(problem, {1.0, 1.0, 1.0});
    for (std::int64_t c = 0; c < 4; ++c) EXPECT_TRUE(std::isnan(grads.grad_q[4 + c])) << c;
    for (double g : grads.grad_k) EXPECT_TRUE(std::isnan(g)) << "every key meets row 1";
    EXPECT_TRUE(std::isnan(grads.grad_scale));
    EXPECT_TRUE(std::isnan(grads.grad_bias));
    problem.params.reduction = Reduction::kMean;
    EXPECT_TRUE(std::isnan(forward(problem).loss[0]));
  }
}

TEST(ReferenceSigLIP, NaNUpstreamGradientGivesNaNGradients) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = random_problem(3, 3, 4, engine);
  const SigLIPBackward grads = backward(problem, {NAN});
  for (double g : grads.grad_q) EXPECT_TRUE(std::isnan(g));
  for (double g : grads.grad_k) EXPECT_TRUE(std::isnan(g));
  EXPECT_TRUE(std::isnan(grads.grad_scale));
  EXPECT_TRUE(std::isnan(grads.grad_bias));
}

// ---- open_clip's SigLipLoss, written out ------------------------------------------------------

// open_clip (loss.py, SigLipLoss._loss): logits = logit_scale * image @ text.T + logit_bias,
// labels = 2 * eye - 1 (or -ones for negative_only), loss = -logsigmoid(labels * logits).sum() /
// batch, on L2-normalized features; here with the positives at column i + offset. Computed in the
// plainest way: -log(1 / (1 + exp(-z l))).
double open_clip_loss(const Problem& problem) {
  const Params& p = problem.params;
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  auto normalized = [d](const std::vector<double>& x, std::int64_t row) {
    std::vector<double> out(x.begin() + row * d, x.begin() + (row + 1) * d);
    double norm = 0.0;
    for (double v : out) norm += v * v;
    for (double& v : out) v /= std::sqrt(norm);
    return out;
  };
  const double logit_scale = p.log_scale ? std::exp(static_cast<double>(p.scale)) : p.scale;
  double total = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    const std::vector<double> image = normalized(problem.q, i);
    for (std::int64_t j = 0; j < m; ++j) {
      const std::vector<double> text = normalized(problem.k, j);
      double dot = 0.0;
      for (std::int64_t c = 0; c < d; ++c) dot += image[c] * text[c];
      const double logit = logit_scale * dot + p.bias;
      const double label = !p.negatives_only && j == i + p.positive_offset ? 1.0 : -1.0;
      total += -std::log(1.0 / (1.0 + std::exp(-label * logit)));
    }
  }
  return total / static_cast<double>(b);
}

TEST(ReferenceSigLIP, MatchesOpenClipsFormula) {
  std::mt19937_64 engine(testing::test_seed());
  struct Shape {
    std::int64_t batch, keys, dim, offset;
    bool negatives_only, log_scale;
  };
  const Shape shapes[] = {{5, 5, 8, 0, false, true},  // open_clip's init: t' = log 10, b = -10
                          {4, 9, 3, 5, false, false},
                          {6, 2, 7, 0, true, true}};
  for (const Shape& s : shapes) {
    Problem problem = random_problem(s.batch, s.keys, s.dim, engine);
    problem.params.positive_offset = s.offset;
    problem.params.negatives_only = s.negatives_only;
    problem.params.log_scale = s.log_scale;
    problem.params.scale = s.log_scale ? std::log(10.0f) : 10.0f;
    problem.params.bias = -10.0f;
    const double expected = open_clip_loss(problem);
    EXPECT_NEAR(forward(problem).loss[0], expected, 1e-12 * std::fabs(expected));
  }
}

// ---- Identities between modes ------------------------------------------------------------------

TEST(ReferenceSigLIP, ReductionsAgree) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = random_problem(6, 9, 4, engine);
  problem.params.positive_offset = 2;
  problem.params.reduction = Reduction::kNone;
  const double total = sum_of(forward(problem).loss);
  problem.params.reduction = Reduction::kSum;
  EXPECT_NEAR(forward(problem).loss[0], total, kExact);
  problem.params.reduction = Reduction::kMean;
  EXPECT_NEAR(forward(problem).loss[0], total / 6.0, kExact);
  // and the gradients: mean with upstream u is sum with u / B is none with u / B per row
  const SigLIPBackward mean = backward(problem, {3.0});
  problem.params.reduction = Reduction::kNone;
  const SigLIPBackward none = backward(problem, std::vector<double>(6, 0.5));
  EXPECT_NEAR(mean.grad_scale, none.grad_scale, kExact);
  EXPECT_NEAR(mean.grad_bias, none.grad_bias, kExact);
  for (std::size_t i = 0; i < mean.grad_q.size(); ++i) {
    EXPECT_NEAR(mean.grad_q[i], none.grad_q[i], kExact);
  }
}

// softplus(x) - softplus(-x) = x: relabelling the positives as negatives adds each positive logit.
TEST(ReferenceSigLIP, NegativesOnlyAddsThePositiveLogits) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = random_problem(4, 7, 5, engine);
  problem.params.positive_offset = 3;
  problem.params.reduction = Reduction::kNone;
  const SigLIPForward labelled = forward(problem);
  problem.params.negatives_only = true;
  const SigLIPForward negatives = forward(problem);
  for (std::int64_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(negatives.loss[i] - labelled.loss[i], labelled.logits[i * 7 + i + 3], 1e-10) << i;
  }
  // The bias's gradient of a negatives-only block is the sum of the sigmoids, all positive.
  const SigLIPBackward grads = backward(problem, {1, 1, 1, 1});
  double sigmoids = 0.0;
  for (double logit : negatives.logits) sigmoids += 1.0 / (1.0 + std::exp(-logit));
  EXPECT_NEAR(grads.grad_bias, sigmoids, kExact);
}

// With log_scale the loss is that of t = exp(scale) and the gradient is t dLoss/dt.
TEST(ReferenceSigLIP, LogScaleIsTheChainRule) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = random_problem(5, 5, 6, engine);
  problem.params.log_scale = true;
  problem.params.scale = 1.5f;
  const double t = std::exp(1.5);
  const SigLIPForward log_forward = forward(problem);
  const SigLIPBackward log_backward = backward(problem, {});
  problem.params.log_scale = false;
  problem.params.scale = static_cast<float>(t);
  const double rounding = 1e-7;  // t as a float
  EXPECT_NEAR(forward(problem).loss[0], log_forward.loss[0], rounding * log_forward.loss[0]);
  const SigLIPBackward plain = backward(problem, {});
  EXPECT_NEAR(log_backward.grad_scale, t * plain.grad_scale,
              rounding * std::fabs(log_backward.grad_scale) + 1e-12);
  EXPECT_NEAR(log_backward.grad_bias, plain.grad_bias, rounding * std::fabs(plain.grad_bias));
}

TEST(ReferenceSigLIP, StridedRowsIgnoreThePadding) {
  std::mt19937_64 engine(testing::test_seed());
  const std::int64_t batch = 3, keys = 5, dim = 3, stride = 5;
  Problem dense = random_problem(batch, keys, dim, engine);
  dense.params.positive_offset = 1;
  Problem strided = dense;
  strided.params.q_row_stride = stride;
  strided.params.k_row_stride = stride + 1;
  strided.q.assign(batch * stride, NAN);  // padding is never read
  strided.k.assign(keys * (stride + 1), NAN);
  for (std::int64_t d = 0; d < dim; ++d) {
    for (std::int64_t r = 0; r < batch; ++r) strided.q[r * stride + d] = dense.q[r * dim + d];
    for (std::int64_t r = 0; r < keys; ++r) strided.k[r * (stride + 1) + d] = dense.k[r * dim + d];
  }
  EXPECT_NEAR(forward(strided).loss[0], forward(dense).loss[0], kExact);
  const SigLIPBackward a = backward(strided, {}), b = backward(dense, {});
  ASSERT_EQ(a.grad_q.size(), static_cast<std::size_t>(batch * dim)) << "gradients are dense";
  for (std::size_t i = 0; i < a.grad_q.size(); ++i) EXPECT_NEAR(a.grad_q[i], b.grad_q[i], kExact);
  for (std::size_t i = 0; i < a.grad_k.size(); ++i) EXPECT_NEAR(a.grad_k[i], b.grad_k[i], kExact);
  EXPECT_NEAR(a.grad_scale, b.grad_scale, kExact);
}

TEST(ReferenceSigLIP, CosineIgnoresRowScale) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = random_problem(4, 4, 6, engine);
  Problem scaled = problem;
  for (std::size_t i = 0; i < scaled.q.size(); ++i) scaled.q[i] *= 1.0 + static_cast<double>(i / 6);
  for (double& value : scaled.k) value *= 1e-3;
  EXPECT_NEAR(forward(scaled).loss[0], forward(problem).loss[0], kExact);
}

TEST(ReferenceSigLIP, RejectsBadProblemsWithTheLibrarysStatus) {
  Problem problem = problem_of(2, 2, 2, {1, 0, 0, 1}, {1, 0, 0, 1});
  SigLIPForward out;
  problem.params.scale = 0.0f;
  EXPECT_EQ(reference::siglip_forward(problem.params, problem.q.data(), problem.k.data(), &out),
            Status::kInvalidArgument);
  EXPECT_STREQ(last_error_message(), "siglip: scale must be finite and > 0, got 0");
  problem.params.scale = 10.0f;
  EXPECT_EQ(reference::siglip_forward(problem.params, nullptr, problem.k.data(), &out),
            Status::kNullPointer);
  EXPECT_STREQ(last_error_message(), "reference::siglip_forward: q, k and out must not be null");
  SigLIPBackward grads;
  EXPECT_EQ(reference::siglip_backward(problem.params, problem.q.data(), nullptr, nullptr, &grads),
            Status::kNullPointer);
  // The reference accepts every dtype (its inputs are double), and a logits dtype the GPU path
  // does not support: only the problem's math is checked.
  problem.params.dtype = DType::kF16;
  problem.params.logits_dtype = DType::kF16;
  EXPECT_EQ(reference::siglip_forward(problem.params, problem.q.data(), problem.k.data(), &out),
            Status::kSuccess);
}

}  // namespace
}  // namespace contrastive
