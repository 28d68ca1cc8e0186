// The NaN policy (docs/reliability.md) on the GPU, for every loss and dtype: a NaN anywhere in the
// inputs gives a NaN loss (never a silent 0 or a finite value), NaN in every gradient element of
// the row that holds it, and a NaN temperature or scale gradient; +-inf behaves the same under
// cosine similarity (the normalized row is inf / inf); under dot similarity an infinite query or
// anchor element gives a loss that is not finite. A NaN upstream gradient gives NaN gradients (the
// softmax losses). Every case also checks that the call succeeded and left no CUDA error. Each test
// skips without a GPU.
#include <cuda_runtime_api.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/device.hpp"
#include "support/loss_drivers.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::LossDriver;
using testing::LossFactory;
using testing::RowSet;
using testing::Shape;

struct Injection {
  const char* name;
  double value;
};

const Injection kInjections[] = {{"NaN", std::numeric_limits<double>::quiet_NaN()},
                                 {"+inf", std::numeric_limits<double>::infinity()},
                                 {"-inf", -std::numeric_limits<double>::infinity()}};

std::string describe(const std::vector<float>& values) {
  std::string text;
  for (std::size_t i = 0; i < values.size() && i < 8; ++i) text += std::to_string(values[i]) + " ";
  return text + (values.size() > 8 ? "..." : "");
}

using NaNParam = std::tuple<LossFactory, DType>;

std::string nan_name(const ::testing::TestParamInfo<NaNParam>& info) {
  return std::string(std::get<0>(info.param).name) + "_" + dtype_name(std::get<1>(info.param));
}

class ReliabilityNaN : public testing::GpuFixture<::testing::TestWithParam<NaNParam>> {};

TEST_P(ReliabilityNaN, NonFiniteInputNeverGivesAFiniteLoss) {
  const auto& [factory, dtype] = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = factory.make();
  std::vector<Similarity> similarities{Similarity::kCosine};
  if (driver->has_similarity_choice()) similarities.push_back(Similarity::kDot);
  for (const Similarity similarity : similarities) {
    Shape s;
    s.batch = 6;
    s.candidates = 3;
    s.dim = 20;
    s.dtype = dtype;
    s.similarity = similarity;
    s.symmetric = true;
    driver->make(s, seed);
    const std::size_t set_count = driver->row_sets().size();
    for (std::size_t set = 0; set < set_count; ++set) {
      for (const Injection& injection : kInjections) {
        const bool is_nan = std::isnan(injection.value);
        const bool cosine = similarity == Similarity::kCosine;
        // Under dot similarity an infinite candidate may meet only -inf logits (a masked
        // candidate, finite loss): the rule covers the query or anchor row. A pairwise sigmoid
        // prices each logit alone: an infinite query row may meet only logits on their labels'
        // side, each costing 0, so there the rule covers NaN only.
        if (!is_nan && !cosine && (set != 0 || driver->finite_loss_at_infinite_logits())) continue;
        driver->make(s, seed);
        const RowSet row_set = driver->row_sets()[set];
        const std::int64_t row =
            row_set.rows - 1;  // the last row: far from any index 0 special case
        row_set.at(row, row_set.dim / 2) = injection.value;
        driver->upload();
        SCOPED_TRACE(std::string(cosine ? "cosine" : "dot") + ", " + injection.name + " in " +
                     row_set.name + " row " + std::to_string(row));
        ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, handle_, stream_));
        const std::vector<float> loss = driver->download("loss");
        if (is_nan || cosine) {
          EXPECT_TRUE(std::isnan(loss[0])) << "loss " << loss[0];
        } else {
          EXPECT_FALSE(std::isfinite(loss[0])) << "loss " << loss[0];
        }
        if (!is_nan && !cosine) continue;
        const std::vector<float> gradient = driver->download(row_set.gradient);
        const std::vector<float> gradient_row(gradient.begin() + row * row_set.dim,
                                              gradient.begin() + (row + 1) * row_set.dim);
        for (float value : gradient_row) {
          ASSERT_TRUE(std::isnan(value))
              << row_set.gradient << " row " << row << ": " << describe(gradient_row);
        }
        for (const std::string& scalar : driver->scalar_gradients()) {
          const float value = driver->download(scalar)[0];
          EXPECT_TRUE(std::isnan(value)) << scalar << " " << value;
        }
      }
    }
  }
}

// A NaN upstream gradient reaches every gradient of the softmax losses (Repel's inactive terms pass
// 0, as PyTorch's relu backward does: see docs/reliability.md).
TEST_P(ReliabilityNaN, NaNUpstreamGradientGivesNaNGradients) {
  const auto& [factory, dtype] = GetParam();
  const std::unique_ptr<LossDriver> driver = factory.make();
  if (!driver->has_logit_scale()) GTEST_SKIP() << driver->name() << ": a hinge, see the docs";
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  Shape s;
  s.batch = 5;
  s.dim = 12;
  s.dtype = dtype;
  driver->make(s, seed);
  driver->upload();
  testing::DeviceTensor& grad_loss = driver->upstream_gradient();
  grad_loss.upload(std::vector<double>(grad_loss.size(), std::numeric_limits<double>::quiet_NaN()));
  testing::settle();
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, handle_, stream_));
  EXPECT_TRUE(std::isfinite(driver->download("loss")[0])) << "the loss does not read grad_loss";
  for (const RowSet& set : driver->row_sets()) {
    for (float value : driver->download(set.gradient)) {
      ASSERT_TRUE(std::isnan(value)) << set.gradient << " has " << value;
    }
  }
  for (const std::string& scalar : driver->scalar_gradients()) {
    EXPECT_TRUE(std::isnan(driver->download(scalar)[0])) << scalar;
  }
}

INSTANTIATE_TEST_SUITE_P(NaNPolicy, ReliabilityNaN,
                         ::testing::Combine(::testing::ValuesIn(testing::all_losses()),
                                            ::testing::Values(DType::kF32, DType::kBF16,
                                                              DType::kF16)),
                         nan_name);

}  // namespace
}  // namespace contrastive
