// The small set compute-sanitizer's racecheck, initcheck and synccheck run over in
// scripts/gpu-check.sh (memcheck runs this and more): every loss, every pass, f32 and bf16,
// symmetric InfoNCE / in-batch MNR in one tile and in forced small tiles (the tile loop's
// accumulating paths), with a workspace left as cudaMalloc returns it, so that initcheck sees any
// read of scratch the call did not write first. Results are checked against the float64 reference
// too. Shapes are tiny: the sanitizers slow every kernel down many times. Skips without a GPU.
#include <cuda_runtime_api.h>

#include <memory>
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

using testing::LossDriver;
using testing::LossFactory;
using testing::Shape;

using SmokeParam = std::tuple<LossFactory, DType>;

std::string smoke_name(const ::testing::TestParamInfo<SmokeParam>& info) {
  return std::string(std::get<0>(info.param).name) + "_" + dtype_name(std::get<1>(info.param));
}

class SanitizerSmoke : public testing::GpuFixture<::testing::TestWithParam<SmokeParam>> {};

TEST_P(SanitizerSmoke, EveryPassWithAnUninitializedWorkspace) {
  const auto& [factory, dtype] = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  for (const bool small_tiles : {false, true}) {
    SCOPED_TRACE(small_tiles ? "3 x 4 tiles" : "one tile");
    const std::unique_ptr<LossDriver> driver = factory.make();
    driver->set_workspace_uninitialized(true);
    Shape s;
    s.batch = 5;
    s.candidates = 2;
    s.dim = 24;
    s.dtype = dtype;
    s.symmetric = true;
    if (small_tiles) {
      s.tile_rows = 3;  // InfoNCE M = 7, in-batch M = 15: ragged multi-tile walks
      s.tile_cols = 4;
    }
    driver->make(s, seed);
    driver->upload();
    testing::expect_every_pass_matches(*driver, handle_, stream_);
  }
}

INSTANTIATE_TEST_SUITE_P(Losses, SanitizerSmoke,
                         ::testing::Combine(::testing::ValuesIn(testing::all_losses()),
                                            ::testing::Values(DType::kF32, DType::kBF16)),
                         smoke_name);

}  // namespace
}  // namespace contrastive
