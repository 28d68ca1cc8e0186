// No output element left unwritten, for every loss: every output of each call (the loss, `saved`,
// every gradient, the temperature or scale gradient) is pre-filled with the dtype's NaN, or with
// 0xFF bytes (DeviceArray's poison, also a NaN in every dtype), before forward, backward and
// forward_backward; afterwards every element must be finite and match the float64 reference.
// Reductions mean and none (one loss per row or term), symmetric InfoNCE / in-batch MNR (the column
// statistics in `saved`), f32 and bf16. Each test skips without a GPU.
#include <cuda_runtime_api.h>

#include <random>
#include <string>
#include <tuple>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/device.hpp"
#include "support/loss_drivers.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::Fill;
using testing::LossDriver;
using testing::LossFactory;
using testing::Shape;

using PoisonParam = std::tuple<LossFactory, Fill>;

std::string poison_name(const ::testing::TestParamInfo<PoisonParam>& info) {
  return std::string(std::get<0>(info.param).name) +
         (std::get<1>(info.param) == Fill::kNaN ? "_NaNFill" : "_PoisonBytes");
}

class ReliabilityPoison : public testing::GpuFixture<::testing::TestWithParam<PoisonParam>> {};

TEST_P(ReliabilityPoison, EveryOutputElementIsWritten) {
  const auto& [factory, fill] = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = factory.make();
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Reduction reduction : {Reduction::kMean, Reduction::kNone}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) +
                   (reduction == Reduction::kNone ? ", reduction none" : ", reduction mean"));
      Shape s;
      s.batch = 37;
      s.candidates = 5;
      s.dim = 72;
      s.dtype = dtype;
      s.reduction = reduction;
      s.symmetric = true;
      driver->make(s, seed);
      driver->upload();
      for (const Pass pass : testing::kPasses) {
        SCOPED_TRACE(testing::pass_name(pass));
        driver->fill_outputs(pass, fill);
        ASSERT_TRUE(testing::run_and_wait(*driver, pass, handle_, stream_));
        EXPECT_TRUE(testing::all_finite(driver->download(pass)));
        driver->expect_matches_reference(pass);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Poison, ReliabilityPoison,
                         ::testing::Combine(::testing::ValuesIn(testing::all_losses()),
                                            ::testing::Values(Fill::kNaN, Fill::kPoisonBytes)),
                         poison_name);

}  // namespace
}  // namespace contrastive
