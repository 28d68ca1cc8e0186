// The GPU tests' tolerances, checked on the CPU: a naive fp32 implementation of InfoNCE (plain
// sequential fp32 sums, the library's own log-sum-exp helpers) must pass every sweep case under
// the same tolerances the GPU results are held to. If it did not, the tolerances would be tighter
// than fp32 arithmetic allows; a GPU failing them while this passes points at the GPU code.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/online_softmax.hpp"
#include "support/anchor_cases.hpp"
#include "support/infonce_cases.hpp"

namespace contrastive {
namespace {

using kernels::LseState;
using testing::Inputs;
using testing::Results;
using testing::SweepCase;

class TolerancePolicy : public ::testing::TestWithParam<SweepCase> {};

TEST_P(TolerancePolicy, NaiveFp32PassesTheGpuTolerances) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const infonce::Params p = GetParam().params();
  const Inputs in = testing::make_inputs(p, engine);
  const testing::Expected expected = testing::expected_for(p, in);
  const Results naive = testing::naive_infonce(p, in);
  testing::expect_forward_matches(p, naive, expected, in);
  testing::expect_backward_matches(p, naive, expected);
}

INSTANTIATE_TEST_SUITE_P(Sweep, TolerancePolicy, ::testing::ValuesIn(testing::sweep_cases()),
                         testing::sweep_test_name);

// The other precisions: TF32's naive emulation (truncated operands) must pass the fp32 rule with
// TF32's roundoff, and for 16-bit precisions an implementation that rounds its sums differently
// (double accumulators, as a GPU's other summation order would) must pass the 16-bit rule.
class PrecisionPolicy : public ::testing::TestWithParam<SweepCase> {};

TEST_P(PrecisionPolicy, OtherSummationOrdersPassTheRule) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const infonce::Params p = GetParam().params();
  const Inputs in = testing::make_inputs(p, engine);
  const testing::Expected expected = testing::expected_for(p, in);
  std::vector<Results> others{testing::naive_infonce<double>(p, in)};
  if (!expected.sixteen_bit) others.push_back(testing::naive_infonce<float>(p, in));
  for (const Results& other : others) {
    testing::expect_forward_matches(p, other, expected, in);
    testing::expect_backward_matches(p, other, expected);
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, PrecisionPolicy,
                         ::testing::ValuesIn(testing::precision_sweep_cases()),
                         testing::sweep_test_name);

// The 16-bit rule is not vacuous: a gradient row off by 5 % or a loss off by 1 % fails it.
TEST(PrecisionPolicy, TheSixteenBitRuleRejectsWrongResults) {
  std::mt19937_64 engine(testing::test_seed());
  SweepCase c{33,
              33,
              64,
              Similarity::kCosine,
              false,
              0.1f,
              Reduction::kMean,
              0,
              0,
              0,
              0,
              {DType::kBF16, DType::kBF16, false}};
  const infonce::Params p = c.params();
  const Inputs in = testing::make_inputs(p, engine);
  const testing::Expected e = testing::expected_for(p, in);
  ASSERT_TRUE(e.sixteen_bit);
  const auto d = static_cast<std::size_t>(p.dim);
  std::vector<float> grad_q = e.naive.grad_q;
  EXPECT_TRUE(testing::within_twice_naive(grad_q, e.naive.grad_q, e.backward.grad_q,
                                          e.tolerances.grad_q, d));
  for (std::size_t i = 5 * d; i < 6 * d; ++i) grad_q[i] *= 1.05f;
  EXPECT_FALSE(testing::within_twice_naive(grad_q, e.naive.grad_q, e.backward.grad_q,
                                           e.tolerances.grad_q, d));
  const std::vector<float> loss{e.naive.loss[0] * 1.01f};
  EXPECT_FALSE(
      testing::within_twice_naive(loss, e.naive.loss, e.forward.loss, e.tolerances.loss, 1));
}

// What bf16 costs, measured with the naive same-precision implementation (which rounds as the GPU
// does): the worst error of each output relative to its largest magnitude, for f32 inputs, and bf16
// inputs with an f32 and a bf16 tile. Printed for the README; bounded here.
TEST(PrecisionPolicy, Bf16TileAccuracyCost) {
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto relative = [](const std::vector<float>& x, const std::vector<double>& ref) {
    double error = 0.0, largest = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      error = std::max(error, std::fabs(x[i] - ref[i]));
      largest = std::max(largest, std::fabs(ref[i]));
    }
    return largest > 0.0 ? error / largest : error;
  };
  const testing::Precision precisions[] = {{DType::kF32, DType::kF32, false},
                                           {DType::kBF16, DType::kF32, false},
                                           {DType::kBF16, DType::kBF16, false}};
  for (float temperature : {0.1f, 0.01f}) {
    std::printf("B = M = 512, D = 256, cosine, t = %g: worst error / largest magnitude\n",
                temperature);
    std::printf("  %-16s %10s %10s %10s %10s\n", "inputs, tile", "loss", "grad_q", "grad_k",
                "grad_t");
    for (const testing::Precision& precision : precisions) {
      std::mt19937_64 engine(seed);  // the same draw for every precision
      SweepCase c{
          512, 512, 256,      Similarity::kCosine, false, temperature, Reduction::kMean, 0, 0,
          0,   0,   precision};
      const infonce::Params p = c.params();
      const Inputs in = testing::make_inputs(p, engine);
      reference::InfoNCEForward fwd;
      reference::InfoNCEBackward bwd;
      ASSERT_EQ(reference::infonce_forward(p, in.q.data(), in.k.data(), &fwd), Status::kSuccess);
      ASSERT_EQ(reference::infonce_backward(p, in.q.data(), in.k.data(), in.grad_loss.data(), &bwd),
                Status::kSuccess);
      const Results naive = testing::naive_infonce(p, in);
      const double errors[] = {relative(naive.loss, fwd.loss), relative(naive.grad_q, bwd.grad_q),
                               relative(naive.grad_k, bwd.grad_k),
                               relative(naive.grad_temperature, {bwd.grad_temperature})};
      std::printf("  %-16s %10.2e %10.2e %10.2e %10.2e\n",
                  (std::string(dtype_name(p.dtype)) + ", " + dtype_name(p.logits_dtype)).c_str(),
                  errors[0], errors[1], errors[2], errors[3]);
      const double bound = precision.sixteen_bit() ? 0.1 : 1e-4;  // sanity, not the policy
      for (double error : errors) EXPECT_LT(error, bound) << testing::precision_suffix(precision);
    }
  }
}

class MnrTolerancePolicy : public ::testing::TestWithParam<testing::MnrCase> {};

TEST_P(MnrTolerancePolicy, NaiveFp32PassesTheGpuTolerances) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const mnr::PerAnchorParams p = GetParam().params();
  const testing::MnrInputs in = testing::make_mnr_inputs(p, engine);
  testing::expect_matches(p, testing::naive_mnr(p, in), testing::expected_for(p, in), true, true);
}

INSTANTIATE_TEST_SUITE_P(Sweep, MnrTolerancePolicy, ::testing::ValuesIn(testing::mnr_cases()),
                         testing::mnr_test_name);

class RepelTolerancePolicy : public ::testing::TestWithParam<testing::RepelCase> {};

TEST_P(RepelTolerancePolicy, NaiveFp32PassesTheGpuTolerances) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  repel::Params p = GetParam().params();
  const testing::RepelInputs in = testing::make_repel_inputs(p, engine);
  p.margin = testing::clear_margin(p, in, 1e-5);
  testing::expect_matches(p, testing::naive_repel(p, in), testing::expected_for(p, in), true, true);
}

INSTANTIATE_TEST_SUITE_P(Sweep, RepelTolerancePolicy, ::testing::ValuesIn(testing::repel_cases()),
                         testing::repel_test_name);

// 16-bit per-anchor losses: the naive same-precision results the GPU is held against are finite
// (scale 100 included) and within a few units of the dtype's rounding of the largest magnitude
// (the kernels compute in fp32 and round only the gradients they store), plus the fp32 bound
// (cancellation: a D = 1 cosine gradient is 0 up to fp32 noise) and, for f16, its subnormal
// spacing (mean-reduced gradients of large batches fall below f16's normal range without loss
// scaling).
::testing::AssertionResult within_dtype_rounding(DType dtype, const std::vector<float>& actual,
                                                 const std::vector<double>& expected,
                                                 const std::vector<double>& atol,
                                                 std::size_t group) {
  const double unit = dtype == DType::kBF16 ? 0x1p-8 : 0x1p-11;
  const double subnormal = dtype == DType::kF16 ? 0x1p-24 : 0.0;
  double largest = 0.0;
  for (double value : expected) largest = std::max(largest, std::fabs(value));
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (!(std::fabs(actual[i] - expected[i]) <=
          4.0 * unit * largest + subnormal + atol[i / group])) {
      return ::testing::AssertionFailure() << "[" << i << "]: " << actual[i] << " vs "
                                           << expected[i] << " (largest " << largest << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// The naive 16-bit results of an anchor loss lie within the dtype's rounding of the float64
// reference: the loss, the anchors' gradient, the positives' (MNR; null for Repel) and the
// negatives'.
void expect_naive_anchor_near_reference(DType dtype, std::int64_t dim,
                                        const testing::AnchorResults& naive,
                                        const testing::AnchorTolerances& t,
                                        const std::vector<double>& loss,
                                        const std::vector<double>& grad_anchors,
                                        const std::vector<double>* grad_positives,
                                        const std::vector<double>& grad_negatives) {
  const auto d = static_cast<std::size_t>(dim);
  EXPECT_TRUE(within_dtype_rounding(dtype, naive.loss, loss, t.loss, 1)) << "loss";
  EXPECT_TRUE(within_dtype_rounding(dtype, naive.grad_anchors, grad_anchors, t.grad_anchors, d));
  if (grad_positives != nullptr) {
    EXPECT_TRUE(within_dtype_rounding(dtype, naive.grad_first, *grad_positives, t.grad_first, d));
  }
  EXPECT_TRUE(within_dtype_rounding(dtype, naive.grad_rest, grad_negatives, t.grad_rest, d));
}

class MnrPrecisionPolicy : public ::testing::TestWithParam<testing::MnrCase> {};

TEST_P(MnrPrecisionPolicy, NaiveSixteenBitIsFiniteAndNearTheReference) {
  std::mt19937_64 engine(testing::test_seed());
  const mnr::PerAnchorParams p = GetParam().params();
  const testing::MnrInputs in = testing::make_mnr_inputs(p, engine);
  const testing::MnrExpected e = testing::expected_for(p, in);
  ASSERT_TRUE(e.sixteen_bit);
  expect_naive_anchor_near_reference(p.dtype, p.dim, e.naive, e.tolerances, e.forward.loss,
                                     e.backward.grad_anchors, &e.backward.grad_positives,
                                     e.backward.grad_negatives);
}

INSTANTIATE_TEST_SUITE_P(Sweep, MnrPrecisionPolicy,
                         ::testing::ValuesIn(testing::mnr_precision_cases()),
                         testing::mnr_test_name);

class RepelPrecisionPolicy : public ::testing::TestWithParam<testing::RepelCase> {};

TEST_P(RepelPrecisionPolicy, NaiveSixteenBitIsFiniteAndNearTheReference) {
  std::mt19937_64 engine(testing::test_seed());
  repel::Params p = GetParam().params();
  const testing::RepelInputs in = testing::make_repel_inputs(p, engine);
  p.margin = testing::clear_margin(p, in, 1e-5);
  const testing::RepelExpected e = testing::expected_for(p, in);
  ASSERT_TRUE(e.sixteen_bit);
  expect_naive_anchor_near_reference(p.dtype, p.dim, e.naive, e.tolerances, e.forward.loss,
                                     e.backward.grad_anchors, nullptr, e.backward.grad_negatives);
}

INSTANTIATE_TEST_SUITE_P(Sweep, RepelPrecisionPolicy,
                         ::testing::ValuesIn(testing::repel_precision_cases()),
                         testing::repel_test_name);

}  // namespace
}  // namespace contrastive
