// The per-logit math of the pairwise sigmoid loss (kernels/sigmoid_math.hpp), shared by the
// kernels and the host, against long double formulas over the whole float range: softplus,
// sigmoid, the loss of one logit and its gradient; finite and accurate at any |l|, NaN kept, and
// the right limits at +-inf.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/sigmoid_math.hpp"
#include "support/random.hpp"

namespace contrastive::kernels {
namespace {

using Long = long double;

// |x - expected| within `ulps` float ulps of expected, or a few subnormal steps (results below
// FLT_MIN keep only a few bits).
::testing::AssertionResult close_in_ulps(float x, Long expected, double ulps = 4.0) {
  const Long allowed = static_cast<Long>(ulps) * std::ldexp(1.0L, -24) * std::fabs(expected) +
                       4.0L * std::numeric_limits<float>::denorm_min();
  const Long error = std::fabs(static_cast<Long>(x) - expected);
  if (error <= allowed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got " << x << ", expected " << static_cast<double>(expected) << " (error "
         << static_cast<double>(error) << ")";
}

Long softplus_exact(Long x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}
Long sigmoid_exact(Long x) {
  return 1.0L / (1.0L + std::exp(-x));
}

// Logits from 1e-30 to 1e4 in magnitude, both signs, and 0, plus random ones in [-120, 120].
std::vector<float> logits_to_test() {
  std::vector<float> values = {0.0f, -0.0f};
  for (double magnitude = 1e-30; magnitude < 1e4; magnitude *= 1.37) {
    values.push_back(static_cast<float>(magnitude));
    values.push_back(static_cast<float>(-magnitude));
  }
  std::mt19937_64 engine(testing::test_seed());
  std::uniform_real_distribution<float> uniform(-120.0f, 120.0f);
  for (int i = 0; i < 2000; ++i) values.push_back(uniform(engine));
  return values;
}

TEST(SigmoidMath, SoftplusIsAccurateEverywhere) {
  for (float x : logits_to_test()) {
    const float value = softplus(x);
    EXPECT_TRUE(std::isfinite(value)) << x;
    EXPECT_GE(value, 0.0f) << x;
    EXPECT_TRUE(close_in_ulps(value, softplus_exact(x))) << "softplus(" << x << ")";
  }
  EXPECT_EQ(softplus(0.0f), std::log(2.0f));
  EXPECT_EQ(softplus(100.0f), 100.0f);  // log1p(exp(-100)) is below half an ulp of 100
  EXPECT_GT(softplus(-100.0f), 0.0f) << "exp(-100) is a float: the tail is kept";
  EXPECT_EQ(softplus(std::numeric_limits<float>::max()), std::numeric_limits<float>::max());
}

TEST(SigmoidMath, SigmoidIsAccurateEverywhere) {
  for (float x : logits_to_test()) {
    const float value = sigmoid(x);
    EXPECT_GE(value, 0.0f) << x;
    EXPECT_LE(value, 1.0f) << x;
    EXPECT_TRUE(close_in_ulps(value, sigmoid_exact(x))) << "sigmoid(" << x << ")";
  }
  EXPECT_EQ(sigmoid(0.0f), 0.5f);
  EXPECT_GT(sigmoid(-100.0f), 0.0f) << "no overflow of exp(100) into 1 / inf";
  EXPECT_EQ(sigmoid(-std::numeric_limits<float>::max()), 0.0f);
  EXPECT_EQ(sigmoid(std::numeric_limits<float>::max()), 1.0f);
}

// The loss of one logit: softplus(-l) for the positive (label 1), softplus(l) for a negative.
TEST(SigmoidMath, XentIsTheBinaryCrossEntropyOfTheLogit) {
  for (float l : logits_to_test()) {
    EXPECT_TRUE(close_in_ulps(sigmoid_xent(l, true), softplus_exact(-static_cast<Long>(l))))
        << "positive " << l;
    EXPECT_TRUE(close_in_ulps(sigmoid_xent(l, false), softplus_exact(l))) << "negative " << l;
  }
  // -log(sigmoid(z l)) at |l| = 100: |l| for the wrong side, exp(-100) for the right one.
  EXPECT_EQ(sigmoid_xent(-100.0f, true), 100.0f);
  EXPECT_EQ(sigmoid_xent(100.0f, false), 100.0f);
  EXPECT_TRUE(close_in_ulps(sigmoid_xent(100.0f, true), std::exp(-100.0L)));
  EXPECT_TRUE(close_in_ulps(sigmoid_xent(-100.0f, false), std::exp(-100.0L)));
}

// dLoss/dl = sigmoid(l) - y, times the upstream weight; the positive's is -sigmoid(-l), which
// keeps a confident positive's small gradient (sigmoid(l) - 1 rounds to 0 from l = 17 on).
TEST(SigmoidMath, GradientIsSigmoidMinusTheLabel) {
  for (float l : logits_to_test()) {
    EXPECT_TRUE(close_in_ulps(sigmoid_xent_grad(l, true, 1.0f), -sigmoid_exact(-Long{l})))
        << "positive " << l;
    EXPECT_TRUE(close_in_ulps(sigmoid_xent_grad(l, false, 1.0f), sigmoid_exact(l)))
        << "negative " << l;
    for (float w : {0.5f, -3.0f, 1e-20f}) {
      EXPECT_EQ(sigmoid_xent_grad(l, true, w), w * sigmoid_xent_grad(l, true, 1.0f)) << l;
      EXPECT_EQ(sigmoid_xent_grad(l, false, w), w * sigmoid_xent_grad(l, false, 1.0f)) << l;
    }
  }
  EXPECT_EQ(sigmoid(20.0f) - 1.0f, 0.0f) << "the cancellation the positive's form avoids";
  const float confident = sigmoid_xent_grad(20.0f, true, 1.0f);
  EXPECT_LT(confident, 0.0f);
  EXPECT_TRUE(close_in_ulps(confident, -sigmoid_exact(-20.0L)));
  EXPECT_LT(sigmoid_xent_grad(100.0f, true, 1.0f), 0.0f) << "exp(-100) is a float";
  EXPECT_EQ(sigmoid_xent_grad(-100.0f, true, 1.0f), -1.0f);
  EXPECT_EQ(sigmoid_xent_grad(100.0f, false, 1.0f), 1.0f);
}

TEST(SigmoidMath, NaNStaysNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(softplus(nan)));
  EXPECT_TRUE(std::isnan(sigmoid(nan)));
  for (bool positive : {true, false}) {
    EXPECT_TRUE(std::isnan(sigmoid_xent(nan, positive)));
    EXPECT_TRUE(std::isnan(sigmoid_xent_grad(nan, positive, 1.0f)));
    EXPECT_TRUE(std::isnan(sigmoid_xent_grad(0.3f, positive, nan))) << "a NaN upstream gradient";
  }
}

TEST(SigmoidMath, InfinitiesTakeTheirLimits) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(softplus(inf), inf);
  EXPECT_EQ(softplus(-inf), 0.0f);
  EXPECT_EQ(sigmoid(inf), 1.0f);
  EXPECT_EQ(sigmoid(-inf), 0.0f);
  EXPECT_EQ(sigmoid_xent(inf, true), 0.0f);
  EXPECT_EQ(sigmoid_xent(-inf, true), inf);
  EXPECT_EQ(sigmoid_xent(inf, false), inf);
  EXPECT_EQ(sigmoid_xent(-inf, false), 0.0f);
  EXPECT_EQ(sigmoid_xent_grad(inf, true, 1.0f), 0.0f);
  EXPECT_EQ(sigmoid_xent_grad(-inf, true, 1.0f), -1.0f);
  EXPECT_EQ(sigmoid_xent_grad(inf, false, 1.0f), 1.0f);
  EXPECT_EQ(sigmoid_xent_grad(-inf, false, 1.0f), 0.0f);
}

}  // namespace
}  // namespace contrastive::kernels
