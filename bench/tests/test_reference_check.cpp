// The host side of the benchmarks' comparison with the float64 reference
// (bench/reference_check.hpp): the sampled rows, the conversion of downloaded values, the
// comparison and its message, and the mean's tolerance against fp32 sums as a GPU reduction forms
// them. CPU only.
#include "bench/reference_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "host/describe/losses.hpp"
#include "kernels/numeric.hpp"
#include "support/anchor_inputs.hpp"
#include "support/naive_anchor.hpp"
#include "support/naive_infonce.hpp"
#include "support/sampled_reference.hpp"

namespace contrastive::bench {
namespace {

template <typename T>
std::vector<unsigned char> stored(const std::vector<float>& values) {
  std::vector<unsigned char> bytes(values.size() * sizeof(T));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const T value = kernels::from_float<T>(values[i]);
    std::memcpy(bytes.data() + i * sizeof(T), &value, sizeof(T));
  }
  return bytes;
}

TEST(SampledRows, FirstLastAndSpreadBetween) {
  EXPECT_EQ(sampled_rows(10, 4), (std::vector<std::int64_t>{0, 3, 6, 9}));
  EXPECT_EQ(sampled_rows(3, 8), (std::vector<std::int64_t>{0, 1, 2}));
  EXPECT_EQ(sampled_rows(1, 8), (std::vector<std::int64_t>{0}));
  EXPECT_TRUE(sampled_rows(0, 8).empty());
  EXPECT_TRUE(sampled_rows(5, 0).empty());
  const std::vector<std::int64_t> rows = sampled_rows(131072, 8);
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(rows.front(), 0);
  EXPECT_EQ(rows.back(), 131071);
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_LT(rows[i - 1], rows[i]);
}

TEST(ToDoubles, EveryDTypeAsStored) {
  const std::vector<float> values = {1.5f, -2.25f, 0.0f, 1024.0f};
  const std::vector<double> expected(values.begin(), values.end());
  EXPECT_EQ(to_doubles(stored<float>(values), DType::kF32), expected);
  EXPECT_EQ(to_doubles(stored<__half>(values), DType::kF16), expected);
  EXPECT_EQ(to_doubles(stored<__nv_bfloat16>(values), DType::kBF16), expected);
  // A value that bf16 rounds: what was stored, not what was meant.
  const std::vector<double> rounded =
      to_doubles(stored<__nv_bfloat16>({1.0f / 3.0f}), DType::kBF16);
  EXPECT_NE(rounded[0], static_cast<double>(1.0f / 3.0f));
  EXPECT_NEAR(rounded[0], 1.0 / 3.0, unit_roundoff(DType::kBF16) / 3.0);
}

TEST(UnitRoundoff, OfEachStorage) {
  EXPECT_EQ(unit_roundoff(DType::kF32), std::ldexp(1.0, -24));
  EXPECT_EQ(unit_roundoff(DType::kF16), std::ldexp(1.0, -11));
  EXPECT_EQ(unit_roundoff(DType::kBF16), std::ldexp(1.0, -8));
}

TEST(Comparison, PassesWithinAndFailsOutsideTheBound) {
  Comparison comparison;
  comparison.add("x", 0, 1.0, 1.0, 0.0);
  comparison.add("x", 1, 1.05, 1.0, 0.1);
  EXPECT_EQ(comparison.failure(), "");
  EXPECT_DOUBLE_EQ(comparison.worst_ratio(), 0.5);
  comparison.add("grad_q", 7, 2.0, 1.0, 0.5);
  comparison.add("grad_q", 8, 3.0, 1.0, 0.5);
  EXPECT_EQ(comparison.compared(), 4u);
  EXPECT_DOUBLE_EQ(comparison.worst_ratio(), 4.0);
  const std::string failure = comparison.failure();
  EXPECT_NE(failure.find("grad_q[7] = 2, reference 1, allowed +-0.5"), std::string::npos)
      << failure;
  EXPECT_NE(failure.find("(2 of 4 values out of bounds)"), std::string::npos) << failure;
}

TEST(Comparison, NanNeverPassesAndSizesMustMatch) {
  Comparison nan;
  nan.add("loss", 0, std::numeric_limits<double>::quiet_NaN(), 1.0, 1e9);
  EXPECT_NE(nan.failure(), "");
  EXPECT_TRUE(std::isinf(nan.worst_ratio()));
  Comparison sizes;
  sizes.add_all("grad_k", {1.0, 2.0}, {1.0}, 1.0, 0.0);
  EXPECT_NE(sizes.failure().find("grad_k: 2 values, reference 1"), std::string::npos);
  Comparison relative;
  relative.add_all("g", {100.5, -0.001}, {100.0, 0.0}, 0.01, 0.01);  // 0.5 <= 0.01 + 1
  EXPECT_EQ(relative.failure(), "");
}

TEST(Comparison, LogitsGradientOfTheWrongSizeFails) {
  Comparison comparison;
  add_logits_gradient(comparison, "grad_k", DType::kF32, 2, {1.0, 2.0}, {1.0, 2.0, 3.0, 4.0},
                      {0.1, 0.1});
  EXPECT_NE(comparison.failure().find("grad_k: 2 values, reference 4"), std::string::npos);
}

// The reference the per-anchor benchmarks compare with, found through each loss's description:
// every gradient tensor the description names gets the reference's gradient of its input, the
// loss one entry per loss element; the losses over logits are left to their own comparison.
TEST(AnchorReference, NamesEveryGradientOfTheDescription) {
  std::mt19937_64 engine(5);
  std::normal_distribution<double> normal;
  for (const describe::Loss& loss : describe::all_losses()) {
    SCOPED_TRACE(loss.name);
    describe::Shape shape;
    shape.batch = 3;
    shape.candidates = 2;
    shape.dim = 5;
    shape.reduction = Reduction::kNone;
    const describe::Params params = loss.params(shape);
    NamedValues inputs;
    std::size_t loss_entries = 0;
    for (const describe::Tensor& tensor : loss.tensors) {
      const describe::Extent e = describe::extent(params, tensor.name);
      if (tensor.role == describe::Role::kLoss) loss_entries = static_cast<std::size_t>(e.rows);
      if (tensor.role != describe::Role::kInput) continue;
      std::vector<double>& values = inputs[tensor.name];
      values.resize(static_cast<std::size_t>(e.elements()));
      for (double& value : values) value = normal(engine);
    }
    const std::vector<double> upstream(loss_entries, 1.0);
    AnchorReference expected;
    const Status status = anchor_reference(params, inputs, upstream, &expected);
    if (std::holds_alternative<infonce::Params>(params) ||
        std::holds_alternative<mnr::InBatchParams>(params) ||
        std::holds_alternative<siglip::Params>(params)) {
      EXPECT_EQ(status, Status::kNotSupported);
      continue;
    }
    ASSERT_EQ(status, Status::kSuccess);
    EXPECT_EQ(expected.loss.size(), loss_entries);
    EXPECT_GT(expected.largest_logit, 0.0);
    std::size_t gradients = 0;
    for (const describe::Tensor& tensor : loss.tensors) {
      if (tensor.role != describe::Role::kGradient) continue;
      ++gradients;
      const auto found = expected.gradients.find(tensor.name);
      ASSERT_NE(found, expected.gradients.end()) << tensor.name;
      const std::vector<double>& input = inputs.at(tensor.gradient_of);
      EXPECT_EQ(found->second.size(), input.size()) << tensor.name;
      EXPECT_GT(largest_magnitude(found->second), 0.0) << tensor.name;
    }
    EXPECT_EQ(expected.gradients.size(), gradients);
  }
}

// The mean check's bound holds for fp32 sums as a GPU forms them (per-block partial sums, then the
// partials) and even for one sequential fp32 sum; it fails a mean off by one row in a thousand.
TEST(MeanTolerance, HoldsForFp32SumsAndCatchesAWrongMean) {
  std::mt19937 engine(7);
  std::uniform_real_distribution<float> loss(0.0f, 12.0f);
  for (const std::size_t count : {std::size_t{1000}, std::size_t{1} << 20}) {
    std::vector<float> values(count);
    double exact = 0.0, magnitude = 0.0;
    for (float& value : values) {
      value = loss(engine);
      exact += value;
      magnitude += std::fabs(value);
    }
    const double n = static_cast<double>(count);
    float sequential = 0.0f;
    for (const float value : values) sequential += value;
    float blocked = 0.0f;
    for (std::size_t start = 0; start < count; start += 256) {
      float partial = 0.0f;
      for (std::size_t i = start; i < std::min(count, start + 256); ++i) partial += values[i];
      blocked += partial;
    }
    const double allowed = mean_tolerance(n, magnitude);
    EXPECT_LE(std::fabs(static_cast<double>(blocked) / n - exact / n), allowed) << count;
    EXPECT_LE(std::fabs(static_cast<double>(sequential) / n - exact / n), allowed) << count;
    EXPECT_GT(std::fabs((exact - 6.0 * n / 1000.0) / n - exact / n), allowed) << count;
  }
}

// The per-anchor comparison (add_anchor_results, as the benchmarks make it) against what a
// same-precision implementation of the fused kernel errs by (tests/support/naive_anchor.hpp: its
// sums and roundings), at the benchmarks' widest shapes and their inputs (unit normal rows, dot
// products of magnitude ~sqrt(D) for MNR; for Repel, cosines spread so that many terms are above
// the margin): it passes with room to spare, and each gradient off by 5 % of its largest entry
// fails.
std::vector<double> as_doubles(const std::vector<float>& values) {
  return std::vector<double>(values.begin(), values.end());
}

// The parameters of the per-anchor loss described as `loss` at the benchmarks' settings and widest
// shape (B = 8 rows of it), with Reduction::kNone.
describe::Params widest(const std::string& loss, DType dtype) {
  const bool mnr = loss == "MnrPerAnchor";
  describe::Shape shape;
  shape.batch = 8;
  shape.candidates = 127;
  shape.dim = 768;
  shape.dtype = dtype;
  shape.similarity = mnr ? Similarity::kDot : Similarity::kCosine;
  shape.reduction = Reduction::kNone;
  shape.logit_scale = mnr ? 1.0f : 0.0f;
  return describe::loss_named(loss).params(shape);
}

using NamedGradients = std::vector<std::pair<std::string, std::vector<double>>>;

// Inputs of a per-anchor loss by tensor name, an upstream gradient of ones, and the naive kernel's
// loss entries and gradients (by gradient tensor name) on them.
struct NaiveRun {
  NamedValues inputs;
  std::vector<double> upstream, loss;
  NamedGradients gradients;
};

NaiveRun naive_run(const describe::Params& params) {
  NaiveRun run;
  if (const auto* p = std::get_if<mnr::PerAnchorParams>(&params)) {
    std::mt19937_64 engine(11);
    testing::MnrInputs in;
    in.anchors = testing::random_rows(p->batch, p->dim, p->dim, false, p->dtype, engine);
    in.positives = testing::random_rows(p->batch, p->dim, p->dim, false, p->dtype, engine);
    in.negatives =
        testing::random_rows(p->batch * p->negatives, p->dim, p->dim, false, p->dtype, engine);
    in.grad_loss.assign(static_cast<std::size_t>(p->batch), 1.0);
    const testing::AnchorResults naive = testing::naive_mnr(*p, in);
    run.inputs = {
        {"anchors", in.anchors}, {"positives", in.positives}, {"negatives", in.negatives}};
    run.upstream = in.grad_loss;
    run.loss = as_doubles(naive.loss);
    run.gradients = {{"grad_anchors", as_doubles(naive.grad_anchors)},
                     {"grad_positives", as_doubles(naive.grad_first)},
                     {"grad_negatives", as_doubles(naive.grad_rest)}};
  } else if (const auto* p = std::get_if<repel::Params>(&params)) {
    std::mt19937_64 engine(12);
    testing::RepelInputs in = testing::make_repel_inputs(*p, engine);
    in.grad_loss.assign(static_cast<std::size_t>(p->batch * p->negatives), 1.0);
    const testing::AnchorResults naive = testing::naive_repel(*p, in);
    run.inputs = {{"anchors", in.anchors}, {"negatives", in.negatives}};
    run.upstream = in.grad_loss;
    run.loss = as_doubles(naive.loss);
    run.gradients = {{"grad_anchors", as_doubles(naive.grad_anchors)},
                     {"grad_negatives", as_doubles(naive.grad_rest)}};
  }
  return run;
}

class AnchorTolerance : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(AnchorTolerance, PassesTheNaiveKernelAndFailsAWrongGradient) {
  const auto [loss, dtype] = GetParam();
  const describe::Params params = widest(loss, dtype);
  const NaiveRun naive = naive_run(params);
  AnchorReference expected;
  ASSERT_EQ(anchor_reference(params, naive.inputs, naive.upstream, &expected), Status::kSuccess);
  if (std::holds_alternative<repel::Params>(params)) {
    ASSERT_EQ(std::get<repel::Params>(params).margin, 0.3f);  // the benchmarks' margin
    // A term within rounding of the margin may be active on one side only: the inputs' seed has
    // none (the comparison would say so).
    ASSERT_GT(std::count_if(expected.loss.begin(), expected.loss.end(),
                            [](double term) { return term > 0.0; }),
              50);
  }
  const double relative = anchor_relative_tolerance(dtype, describe::extent(params, "anchors").cols,
                                                    expected.largest_logit);
  std::vector<std::size_t> index(naive.loss.size());
  std::iota(index.begin(), index.end(), std::size_t{0});
  auto compare = [&](const NamedGradients& gradients) {
    Comparison comparison;
    add_anchor_results(comparison, relative, "loss", index, naive.loss, gradients, expected);
    return comparison;
  };
  const Comparison right = compare(naive.gradients);
  EXPECT_EQ(right.failure(), "");
  EXPECT_LT(right.worst_ratio(), 0.5) << "less room than expected";
  // The smallest entry of each gradient, moved by 5 % of the largest.
  for (std::size_t g = 0; g < naive.gradients.size(); ++g) {
    NamedGradients wrong = naive.gradients;
    const std::vector<double>& reference = expected.gradients.at(wrong[g].first);
    const auto smallest =
        std::min_element(reference.begin(), reference.end(),
                         [](double x, double y) { return std::fabs(x) < std::fabs(y); });
    wrong[g].second[static_cast<std::size_t>(smallest - reference.begin())] +=
        0.05 * largest_magnitude(reference);
    EXPECT_NE(compare(wrong).failure(), "") << wrong[g].first;
  }
}

// The logits comparison's tolerance (bench/logits_losses.cpp) against the naive same-precision
// InfoNCE (tests/support/naive_infonce.hpp: sequential fp32 sums, normalized rows, logits' gradient
// and gradients rounded to the dtype), one direction and CLIP's symmetric form: it passes, and a
// gradient off by 5 % of the largest entry fails.
class LogitsTolerance : public ::testing::TestWithParam<std::tuple<DType, bool>> {};

TEST_P(LogitsTolerance, PassesTheNaiveInfoNCEAndFailsAWrongGradient) {
  const auto [dtype, symmetric] = GetParam();
  constexpr std::int64_t kDim = 256;
  infonce::Params p;
  p.batch = p.num_keys = 64;
  p.dim = kDim;
  p.dtype = dtype;
  p.temperature = 0.1f;
  p.symmetric = symmetric;
  p.reduction = Reduction::kNone;
  std::mt19937_64 engine(13);
  testing::Inputs in = testing::make_inputs(p, engine);
  const std::vector<std::int64_t> rows = sampled_rows(p.batch, 4);
  in.grad_loss.assign(static_cast<std::size_t>(p.batch), 0.0);
  for (const std::int64_t r : rows) in.grad_loss[static_cast<std::size_t>(r)] = 1.0;
  const testing::Results naive = testing::naive_infonce(p, in);
  const testing::SampledInfoNCE expected = testing::sampled_infonce(
      p, 1.0 / p.temperature, in.q.data(), in.k.data(), in.grad_loss.data(), rows);
  ASSERT_EQ(expected.rows, rows);
  auto compare = [&](const std::vector<double>& grad_q) {
    Comparison comparison;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      comparison.add("loss", i, naive.loss[static_cast<std::size_t>(rows[i])], expected.loss[i],
                     logits_tolerance(dtype, expected.loss_tolerance[i], 1.0, expected.loss[i]));
    }
    add_logits_gradient(comparison, "grad_q", dtype, kDim, grad_q, expected.grad_q,
                        expected.grad_q_tolerance);
    add_logits_gradient(comparison, "grad_k", dtype, kDim, as_doubles(naive.grad_k),
                        expected.grad_k, expected.grad_k_tolerance);
    return comparison;
  };
  const Comparison right = compare(as_doubles(naive.grad_q));
  EXPECT_EQ(right.failure(), "");
  EXPECT_LT(right.worst_ratio(), 0.5) << "less room than expected";
  std::vector<double> wrong = as_doubles(naive.grad_q);
  wrong[static_cast<std::size_t>(rows[1] * kDim + 7)] += 0.05 * largest_magnitude(expected.grad_q);
  EXPECT_NE(compare(wrong).failure(), "");
}

INSTANTIATE_TEST_SUITE_P(DTypes, LogitsTolerance,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<DType, bool>>& info) {
                           return std::string(dtype_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_symmetric" : "");
                         });

INSTANTIATE_TEST_SUITE_P(LossesAndDTypes, AnchorTolerance,
                         ::testing::Combine(::testing::Values("MnrPerAnchor", "Repel"),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16)),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, DType>>& info) {
                           return std::get<0>(info.param) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace contrastive::bench
