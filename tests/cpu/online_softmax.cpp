// The per-row log-sum-exp helpers shared by the kernels and the host, run on the CPU.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/online_softmax.hpp"
#include "support/random.hpp"

namespace contrastive::kernels {
namespace {

double log_sum_exp(const std::vector<float>& values) {
  double max = -INFINITY;
  for (float v : values) max = std::max(max, static_cast<double>(v));
  double sum = 0.0;
  for (float v : values) sum += std::exp(v - max);
  return max + std::log(sum);
}

LseState push_all(const std::vector<float>& values, std::size_t begin, std::size_t end) {
  LseState state = lse_empty();
  for (std::size_t i = begin; i < end; ++i) state = lse_push(state, values[i]);
  return state;
}

std::vector<float> random_logits(std::size_t count, float spread, std::mt19937_64& engine) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(count);
  for (float& value : values) value = normal(engine);
  return values;
}

TEST(OnlineSoftmax, PushMatchesFloat64LogSumExp) {
  std::mt19937_64 engine(testing::test_seed());
  for (float spread : {0.1f, 1.0f, 30.0f, 1000.0f}) {
    const std::vector<float> values = random_logits(1000, spread, engine);
    const double expected = log_sum_exp(values);
    EXPECT_NEAR(lse_value(push_all(values, 0, values.size())), expected,
                1e-5 * (1.0 + std::fabs(expected)))
        << "spread " << spread;
  }
}

// Splitting a row over threads or tiles and merging in any order gives the same lse.
TEST(OnlineSoftmax, MergeOfPartsMatchesOnePass) {
  std::mt19937_64 engine(testing::test_seed());
  const std::vector<float> values = random_logits(777, 5.0f, engine);
  const double expected = log_sum_exp(values);
  for (std::size_t parts : {2u, 3u, 32u, 777u}) {
    std::vector<LseState> states;
    const std::size_t chunk = (values.size() + parts - 1) / parts;
    for (std::size_t begin = 0; begin < values.size(); begin += chunk) {
      states.push_back(push_all(values, begin, std::min(values.size(), begin + chunk)));
    }
    LseState forward_order = lse_empty(), reverse_order = lse_empty();
    for (std::size_t i = 0; i < states.size(); ++i) {
      forward_order = lse_merge(forward_order, states[i]);
      reverse_order = lse_merge(states[states.size() - 1 - i], reverse_order);
    }
    EXPECT_NEAR(lse_value(forward_order), expected, 1e-5 * std::fabs(expected)) << parts;
    EXPECT_NEAR(lse_value(reverse_order), expected, 1e-5 * std::fabs(expected)) << parts;
  }
}

TEST(OnlineSoftmax, EmptyStatesStayEmptyAndNeutral) {
  const LseState empty = lse_merge(lse_empty(), lse_empty());
  EXPECT_EQ(empty.max, -INFINITY);
  EXPECT_EQ(empty.sum, 0.0f);
  EXPECT_EQ(lse_value(empty), -INFINITY);
  const LseState one = lse_push(lse_empty(), 2.5f);
  const LseState merged = lse_merge(lse_empty(), one);
  EXPECT_EQ(merged.max, one.max);
  EXPECT_EQ(merged.sum, one.sum);
  EXPECT_FLOAT_EQ(lse_value(one), 2.5f);
}

TEST(OnlineSoftmax, EqualValuesGiveValuePlusLogCount) {
  LseState state = lse_empty();
  for (int i = 0; i < 64; ++i) state = lse_push(state, 7.0f);
  EXPECT_NEAR(lse_value(state), 7.0 + std::log(64.0), 1e-5);
}

TEST(OnlineSoftmax, NaNPropagatesThroughPushAndMerge) {
  EXPECT_TRUE(std::isnan(nan_propagating_max(NAN, 1.0f)));
  EXPECT_TRUE(std::isnan(nan_propagating_max(1.0f, NAN)));
  EXPECT_EQ(nan_propagating_max(-INFINITY, 3.0f), 3.0f);
  LseState state = lse_push(lse_push(lse_empty(), 1.0f), NAN);
  state = lse_push(state, 100.0f);  // a later larger value must not wash the NaN out
  EXPECT_TRUE(std::isnan(lse_value(state)));
  const LseState clean = lse_push(lse_empty(), 3.0f);
  const LseState poisoned = lse_push(lse_empty(), NAN);
  EXPECT_TRUE(std::isnan(lse_value(lse_merge(clean, poisoned))));
  EXPECT_TRUE(std::isnan(lse_value(lse_merge(poisoned, clean))));
}

// A -inf logit (a masked candidate, or a dot product that overflowed) leaves the sum: pushed into
// an empty state first, last or in between, and merged from either side, the lse is that of the
// finite values. Before, pushing it into the empty state computed exp(-inf - (-inf)) = NaN.
TEST(OnlineSoftmax, MinusInfinityLeavesTheSum) {
  const std::vector<float> finite = {0.5f, -2.0f, 3.0f};
  const double expected = log_sum_exp(finite);
  for (std::size_t at = 0; at <= finite.size(); ++at) {
    std::vector<float> values = finite;
    values.insert(values.begin() + static_cast<std::ptrdiff_t>(at), -INFINITY);
    EXPECT_NEAR(lse_value(push_all(values, 0, values.size())), expected, 1e-6) << at;
    // split at every point: the part holding only -inf is an empty state
    for (std::size_t split = 0; split <= values.size(); ++split) {
      const LseState left = push_all(values, 0, split),
                     right = push_all(values, split, values.size());
      EXPECT_NEAR(lse_value(lse_merge(left, right)), expected, 1e-6) << at << " " << split;
      EXPECT_NEAR(lse_value(lse_merge(right, left)), expected, 1e-6) << at << " " << split;
    }
  }
  const LseState only = lse_push(lse_empty(), -INFINITY);
  EXPECT_EQ(only.max, -INFINITY);
  EXPECT_EQ(only.sum, 0.0f);
  EXPECT_EQ(lse_value(only), -INFINITY);  // every candidate masked: lse -inf, not NaN
}

TEST(OnlineSoftmax, NaNStillPropagatesNextToMinusInfinity) {
  for (const std::vector<float>& values :
       {std::vector<float>{NAN, -INFINITY}, std::vector<float>{-INFINITY, NAN},
        std::vector<float>{1.0f, NAN, -INFINITY, 2.0f}, std::vector<float>{-INFINITY, NAN, 5.0f}}) {
    EXPECT_TRUE(std::isnan(lse_value(push_all(values, 0, values.size()))));
    for (std::size_t split = 0; split <= values.size(); ++split) {
      const LseState left = push_all(values, 0, split),
                     right = push_all(values, split, values.size());
      EXPECT_TRUE(std::isnan(lse_value(lse_merge(left, right)))) << split;
    }
  }
}

// The per-element gradient: a -inf logit gets exactly 0 and adds 0 (not 0 * -inf = NaN) to the
// temperature's sum; NaN in the logit or the lse stays NaN in both.
TEST(OnlineSoftmax, GradientOfMinusInfinityIsZero) {
  const float lse = 2.0f;
  EXPECT_EQ(softmax_xent_grad(-INFINITY, lse, false, 1.0f), 0.0f);
  EXPECT_EQ(grad_times_logit(softmax_xent_grad(-INFINITY, lse, false, 1.0f), -INFINITY), 0.0f);
  EXPECT_EQ(softmax_xent_grad(-INFINITY, lse, true, 1.0f), -1.0f);  // a masked positive
  EXPECT_TRUE(std::isinf(grad_times_logit(-1.0f, -INFINITY)));
  EXPECT_TRUE(std::isnan(softmax_xent_grad(NAN, lse, false, 1.0f)));
  EXPECT_TRUE(std::isnan(softmax_xent_grad(1.0f, NAN, false, 1.0f)));
  EXPECT_TRUE(std::isnan(grad_times_logit(NAN, 1.0f)));
  EXPECT_TRUE(std::isnan(grad_times_logit(0.5f, NAN)));
  // finite values: upstream (softmax - onehot), and the plain product
  EXPECT_FLOAT_EQ(softmax_xent_grad(1.0f, lse, false, 3.0f), 3.0f * std::exp(-1.0f));
  EXPECT_FLOAT_EQ(softmax_xent_grad(1.0f, lse, true, 3.0f), 3.0f * (std::exp(-1.0f) - 1.0f));
  EXPECT_EQ(grad_times_logit(0.25f, -8.0f), -2.0f);
  EXPECT_EQ(grad_times_logit(0.0f, 5.0f), 0.0f);
}

TEST(OnlineSoftmax, LargeLogitsDoNotOverflow) {
  const std::vector<float> values = {8000.0f, 7999.0f, -8000.0f};
  const double expected = log_sum_exp(values);
  EXPECT_NEAR(lse_value(push_all(values, 0, values.size())), expected, 1e-3);
}

}  // namespace
}  // namespace contrastive::kernels
