// The float64 InfoNCE reference checked on its own: central finite differences for every gradient
// in every mode, hand-derived values, identities between modes, and NumPy's value of the demo
// example.
#include <algorithm>
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

using infonce::Params;
using reference::InfoNCEBackward;
using reference::InfoNCEForward;
using testing::random_normal;

constexpr double kExact = 1e-12;  // for results that are exact up to float64 rounding

struct Problem {
  Params params;
  std::vector<double> q;  // (B, q_row_stride)
  std::vector<double> k;  // (M, k_row_stride)
};

InfoNCEForward forward(const Problem& problem) {
  InfoNCEForward out;
  EXPECT_EQ(reference::infonce_forward(problem.params, problem.q.data(), problem.k.data(), &out),
            Status::kSuccess)
      << last_error_message();
  return out;
}

InfoNCEBackward backward(const Problem& problem, const std::vector<double>& upstream) {
  InfoNCEBackward out;
  EXPECT_EQ(reference::infonce_backward(problem.params, problem.q.data(), problem.k.data(),
                                        upstream.data(), &out),
            Status::kSuccess)
      << last_error_message();
  return out;
}

double objective(const Problem& problem, const std::vector<double>& upstream) {
  return testing::weighted_sum(forward(problem).loss, upstream);
}

// ---- Finite differences over every mode -----------------------------------------------------

struct FiniteDifferenceCase {
  Similarity similarity;
  bool symmetric;
  Reduction reduction;
  std::int64_t batch, num_keys, dim, offset, row_padding;
  float eps;
};

std::string case_name(const ::testing::TestParamInfo<FiniteDifferenceCase>& info) {
  const FiniteDifferenceCase& c = info.param;
  const char* reductions[] = {"mean", "sum", "none"};
  return std::string(c.similarity == Similarity::kCosine ? "cosine" : "dot") +
         (c.symmetric ? "_symmetric" : "") + "_" + reductions[static_cast<int>(c.reduction)] +
         "_B" + std::to_string(c.batch) + "_M" + std::to_string(c.num_keys) + "_D" +
         std::to_string(c.dim) + "_offset" + std::to_string(c.offset) + "_pad" +
         std::to_string(c.row_padding) + (c.eps > 1e-6f ? "_clamped" : "");
}

void PrintTo(const FiniteDifferenceCase& c, std::ostream* out) {
  *out << case_name(::testing::TestParamInfo<FiniteDifferenceCase>(c, 0));
}

class ReferenceFiniteDifferences : public ::testing::TestWithParam<FiniteDifferenceCase> {};

TEST_P(ReferenceFiniteDifferences, GradientsMatchCentralDifferences) {
  const FiniteDifferenceCase& c = GetParam();
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
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
  p.symmetric = c.symmetric;
  p.reduction = c.reduction;
  p.temperature = 0.3f;
  p.eps = c.eps;
  const std::int64_t q_stride = row_stride_or_dim(p.q_row_stride, p.dim);
  const std::int64_t k_stride = row_stride_or_dim(p.k_row_stride, p.dim);
  problem.q = random_normal(static_cast<std::size_t>(p.batch * q_stride), engine);
  problem.k = random_normal(static_cast<std::size_t>(p.num_keys * k_stride), engine);
  if (c.eps > 1e-6f) {  // put row 0 of Q and K inside the clamp: |x| < eps
    for (std::int64_t d = 0; d < p.dim; ++d) {
      problem.q[d] *= 0.1 / std::sqrt(static_cast<double>(p.dim));
      problem.k[d] *= 0.1 / std::sqrt(static_cast<double>(p.dim));
    }
  }
  const std::size_t outputs =
      c.reduction == Reduction::kNone ? static_cast<std::size_t>(p.batch) : 1;
  const std::vector<double> upstream = random_normal(outputs, engine);
  const InfoNCEBackward analytic = backward(problem, upstream);

  auto objective_value = [&] { return objective(problem, upstream); };
  testing::expect_gradient(problem.q, p.batch, q_stride, p.dim, analytic.grad_q, objective_value,
                           "grad_q");
  testing::expect_gradient(problem.k, p.num_keys, k_stride, p.dim, analytic.grad_k, objective_value,
                           "grad_k");
  testing::expect_float_derivative(p.temperature, analytic.grad_temperature, objective_value,
                                   "grad_temperature");
}

std::vector<FiniteDifferenceCase> finite_difference_cases() {
  std::vector<FiniteDifferenceCase> cases;
  for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      cases.push_back({similarity, false, reduction, 3, 3, 4, 0, 0, 1e-12f});
      cases.push_back({similarity, true, reduction, 4, 4, 3, 0, 2, 1e-12f});
      cases.push_back({similarity, false, reduction, 3, 7, 2, 2, 1, 1e-12f});
      cases.push_back({similarity, true, reduction, 3, 8, 3, 4, 0, 1e-12f});
    }
    cases.push_back({similarity, false, Reduction::kMean, 1, 1, 5, 0, 0, 1e-12f});
    cases.push_back({similarity, false, Reduction::kMean, 2, 5, 1, 3, 0, 1e-12f});
  }
  cases.push_back({Similarity::kCosine, false, Reduction::kMean, 3, 4, 3, 1, 0, 0.5f});
  cases.push_back({Similarity::kCosine, true, Reduction::kNone, 3, 3, 3, 0, 1, 0.5f});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllModes, ReferenceFiniteDifferences,
                         ::testing::ValuesIn(finite_difference_cases()), case_name);

// ---- Hand-derived values -----------------------------------------------------------------------

Problem square_problem(std::int64_t batch, std::int64_t dim, std::vector<double> q,
                       std::vector<double> k) {
  Problem problem;
  problem.params.batch = batch;
  problem.params.num_keys = batch;
  problem.params.dim = dim;
  problem.q = std::move(q);
  problem.k = std::move(k);
  return problem;
}

TEST(ReferenceInfoNCE, OneRowGivesZeroLossAndZeroGradients) {
  std::mt19937_64 engine(testing::test_seed());
  for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
    Problem problem = square_problem(1, 5, random_normal(5, engine), random_normal(5, engine));
    problem.params.similarity = similarity;
    EXPECT_NEAR(forward(problem).loss[0], 0.0, kExact);
    const InfoNCEBackward grads = backward(problem, {1.0});
    for (double g : grads.grad_q) EXPECT_NEAR(g, 0.0, kExact);
    for (double g : grads.grad_k) EXPECT_NEAR(g, 0.0, kExact);
    EXPECT_NEAR(grads.grad_temperature, 0.0, kExact);
  }
}

TEST(ReferenceInfoNCE, IdenticalRowsGiveLogB) {
  std::mt19937_64 engine(testing::test_seed());
  const std::int64_t batch = 5, dim = 7;
  const std::vector<double> row = random_normal(dim, engine);
  std::vector<double> rows;
  for (std::int64_t i = 0; i < batch; ++i) rows.insert(rows.end(), row.begin(), row.end());
  for (bool symmetric : {false, true}) {
    for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
      Problem problem = square_problem(batch, dim, rows, rows);
      problem.params.symmetric = symmetric;
      problem.params.similarity = similarity;
      EXPECT_NEAR(forward(problem).loss[0], std::log(static_cast<double>(batch)), kExact);
    }
  }
}

// q = k = (e1, e2), t = 1, cosine: logits = I, so each row loss is log(e + 1) - 1; the gradient of
// q_0 is (0, 1 / (2 (e + 1))) after the normalization projects out its own direction; and
// dLoss/dt = 1 / (e + 1) (from loss(t) = log(1 + exp(-1/t))).
TEST(ReferenceInfoNCE, TwoRowCaseWorkedOut) {
  Problem problem = square_problem(2, 2, {1, 0, 0, 1}, {1, 0, 0, 1});
  problem.params.temperature = 1.0f;
  const double e = std::exp(1.0);
  EXPECT_NEAR(forward(problem).loss[0], std::log(e + 1.0) - 1.0, kExact);
  const InfoNCEBackward grads = backward(problem, {1.0});
  const double a = 1.0 / (2.0 * (e + 1.0));
  const std::vector<double> expected_q = {0.0, a, a, 0.0};
  for (std::size_t i = 0; i < expected_q.size(); ++i) {
    EXPECT_NEAR(grads.grad_q[i], expected_q[i], kExact) << i;
  }
  EXPECT_NEAR(grads.grad_temperature, 1.0 / (e + 1.0), kExact);
}

// ---- Identities between modes ------------------------------------------------------------------

TEST(ReferenceInfoNCE, ReductionsAgree) {
  std::mt19937_64 engine(testing::test_seed());
  for (bool symmetric : {false, true}) {
    Problem problem = square_problem(6, 4, random_normal(24, engine), random_normal(24, engine));
    problem.params.symmetric = symmetric;
    problem.params.reduction = Reduction::kNone;
    const std::vector<double> rows = forward(problem).loss;
    problem.params.reduction = Reduction::kSum;
    const double sum = forward(problem).loss[0];
    problem.params.reduction = Reduction::kMean;
    const double mean = forward(problem).loss[0];
    double total = 0.0;
    for (double value : rows) total += value;
    EXPECT_NEAR(sum, total, kExact);
    EXPECT_NEAR(mean, total / 6.0, kExact);
  }
}

// Symmetric = mean of the two directions, and the column direction is InfoNCE with Q, K swapped.
TEST(ReferenceInfoNCE, SymmetricIsTheMeanOfBothDirections) {
  std::mt19937_64 engine(testing::test_seed());
  const std::vector<double> q = random_normal(15, engine), k = random_normal(15, engine);
  const double forward_direction = forward(square_problem(5, 3, q, k)).loss[0];
  const double reverse_direction = forward(square_problem(5, 3, k, q)).loss[0];
  Problem symmetric = square_problem(5, 3, q, k);
  symmetric.params.symmetric = true;
  EXPECT_NEAR(forward(symmetric).loss[0], 0.5 * (forward_direction + reverse_direction), kExact);
}

// With M > B the column direction runs over the B positive columns only (sentence-transformers'
// symmetric MNR): the same as InfoNCE of those key rows against Q.
TEST(ReferenceInfoNCE, SymmetricRectangularUsesThePositiveColumns) {
  std::mt19937_64 engine(testing::test_seed());
  const std::int64_t batch = 4, keys = 9, dim = 3, offset = 2;
  Problem problem;
  problem.params.batch = batch;
  problem.params.num_keys = keys;
  problem.params.dim = dim;
  problem.params.positive_offset = offset;
  problem.q = random_normal(batch * dim, engine);
  problem.k = random_normal(keys * dim, engine);
  const double row_direction = forward(problem).loss[0];
  const std::vector<double> positives(problem.k.begin() + offset * dim,
                                      problem.k.begin() + (offset + batch) * dim);
  const double column_direction = forward(square_problem(batch, dim, positives, problem.q)).loss[0];
  problem.params.symmetric = true;
  EXPECT_NEAR(forward(problem).loss[0], 0.5 * (row_direction + column_direction), kExact);
}

// Moving the positives to the front of K with offset 0 leaves every row loss unchanged.
TEST(ReferenceInfoNCE, OffsetMatchesReorderedKeys) {
  std::mt19937_64 engine(testing::test_seed());
  const std::int64_t batch = 3, keys = 8, dim = 4, offset = 4;
  Problem shifted;
  shifted.params.batch = batch;
  shifted.params.num_keys = keys;
  shifted.params.dim = dim;
  shifted.params.positive_offset = offset;
  shifted.params.reduction = Reduction::kNone;
  shifted.q = random_normal(batch * dim, engine);
  shifted.k = random_normal(keys * dim, engine);
  Problem front = shifted;
  front.params.positive_offset = 0;
  front.k.clear();
  for (std::int64_t j = 0; j < keys; ++j) {
    const std::int64_t source = (j + offset) % keys;  // a rotation: positives first
    front.k.insert(front.k.end(), shifted.k.begin() + source * dim,
                   shifted.k.begin() + (source + 1) * dim);
  }
  const std::vector<double> a = forward(shifted).loss, b = forward(front).loss;
  for (std::int64_t i = 0; i < batch; ++i) EXPECT_NEAR(a[i], b[i], kExact) << i;
}

TEST(ReferenceInfoNCE, StridedRowsIgnoreThePadding) {
  std::mt19937_64 engine(testing::test_seed());
  const std::int64_t batch = 4, dim = 3, stride = 5;
  Problem dense = square_problem(batch, dim, random_normal(12, engine), random_normal(12, engine));
  Problem strided = dense;
  strided.params.q_row_stride = stride;
  strided.params.k_row_stride = stride;
  strided.q.assign(batch * stride, NAN);  // padding is never read
  strided.k.assign(batch * stride, NAN);
  for (std::int64_t r = 0; r < batch; ++r) {
    for (std::int64_t d = 0; d < dim; ++d) {
      strided.q[r * stride + d] = dense.q[r * dim + d];
      strided.k[r * stride + d] = dense.k[r * dim + d];
    }
  }
  EXPECT_NEAR(forward(strided).loss[0], forward(dense).loss[0], kExact);
  const InfoNCEBackward a = backward(strided, {1.0}), b = backward(dense, {1.0});
  for (std::size_t i = 0; i < a.grad_q.size(); ++i) EXPECT_NEAR(a.grad_q[i], b.grad_q[i], kExact);
  for (std::size_t i = 0; i < a.grad_k.size(); ++i) EXPECT_NEAR(a.grad_k[i], b.grad_k[i], kExact);
}

TEST(ReferenceInfoNCE, CosineIgnoresRowScale) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = square_problem(4, 6, random_normal(24, engine), random_normal(24, engine));
  Problem scaled = problem;
  for (std::size_t i = 0; i < scaled.q.size(); ++i) scaled.q[i] *= 1.0 + static_cast<double>(i / 6);
  for (double& value : scaled.k) value *= 1e-3;
  EXPECT_NEAR(forward(scaled).loss[0], forward(problem).loss[0], kExact);
}

TEST(ReferenceInfoNCE, DotFoldsTheTemperatureIntoQ) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = square_problem(4, 5, random_normal(20, engine), random_normal(20, engine));
  problem.params.similarity = Similarity::kDot;
  problem.params.temperature = 0.25f;
  Problem folded = problem;
  folded.params.temperature = 1.0f;
  for (double& value : folded.q) value /= 0.25;
  EXPECT_NEAR(forward(folded).loss[0], forward(problem).loss[0], kExact);
}

TEST(ReferenceInfoNCE, ZeroVectorGivesFiniteResults) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = square_problem(3, 4, random_normal(12, engine), random_normal(12, engine));
  std::fill(problem.q.begin(), problem.q.begin() + 4, 0.0);
  std::fill(problem.k.begin() + 4, problem.k.begin() + 8, 0.0);
  EXPECT_TRUE(std::isfinite(forward(problem).loss[0]));
  const InfoNCEBackward grads = backward(problem, {1.0});
  for (double g : grads.grad_q) EXPECT_TRUE(std::isfinite(g));
  for (double g : grads.grad_k) EXPECT_TRUE(std::isfinite(g));
}

TEST(ReferenceInfoNCE, NaNInputGivesNaNLoss) {
  std::mt19937_64 engine(testing::test_seed());
  Problem problem = square_problem(3, 4, random_normal(12, engine), random_normal(12, engine));
  problem.k[5] = NAN;
  EXPECT_TRUE(std::isnan(forward(problem).loss[0]));
}

TEST(ReferenceInfoNCE, RejectsBadProblemsWithTheLibrarysStatus) {
  Problem problem = square_problem(2, 2, {1, 0, 0, 1}, {1, 0, 0, 1});
  problem.params.num_keys = 1;
  InfoNCEForward out;
  EXPECT_EQ(reference::infonce_forward(problem.params, problem.q.data(), problem.k.data(), &out),
            Status::kInvalidArgument);
  problem.params.num_keys = 2;
  EXPECT_EQ(reference::infonce_forward(problem.params, nullptr, problem.k.data(), &out),
            Status::kNullPointer);
}

// The reference accepts every dtype value: inputs are double here whatever the GPU path takes.
TEST(ReferenceInfoNCE, IgnoresTheGpuDtype) {
  Problem problem = square_problem(2, 2, {1, 0, 0, 1}, {1, 0, 0, 1});
  problem.params.dtype = DType::kBF16;
  InfoNCEForward out;
  EXPECT_EQ(reference::infonce_forward(problem.params, problem.q.data(), problem.k.data(), &out),
            Status::kSuccess);
}

// ---- The demo's example: B = 6, D = 8, cosine, temperature 0.1, mean
// ---------------------------------------------------------------------------

TEST(ReferenceInfoNCE, MatchesNumPyOnTheDemoExample) {
  const std::vector<double> z1 = testing::golden_numbers("seed_infonce.json", "z1");
  const std::vector<double> z2 = testing::golden_numbers("seed_infonce.json", "z2");
  const std::vector<double> similarity = testing::golden_numbers("seed_infonce.json", "similarity");
  const double loss = testing::golden_numbers("seed_infonce.json", "loss")[0];
  const double loss_f32_temperature =
      testing::golden_numbers("seed_infonce.json", "loss_f32_temperature")[0];
  Problem problem = square_problem(6, 8, z1, z2);
  problem.params.temperature = 0.1f;  // the float nearest 0.1, as the GPU path takes it
  const InfoNCEForward out = forward(problem);
  // NumPy used t = 0.1 exactly; rescale our logits by the float's t to compare the similarity.
  for (std::size_t i = 0; i < similarity.size(); ++i) {
    EXPECT_NEAR(out.logits[i] * static_cast<double>(0.1f), similarity[i], kExact) << i;
  }
  EXPECT_NEAR(out.loss[0], loss_f32_temperature, kExact);
  EXPECT_NEAR(out.loss[0], loss, 1e-7) << "NumPy's t = 0.1 is 1.5e-9 from float(0.1)";
}

}  // namespace
}  // namespace contrastive
