// SigLIP on the GPU against the float64 reference (support/siglip_cases.hpp holds the tolerance
// policy's bounds for it): awkward shapes (B = 1, M = B, M > B with offsets, odd D, strided rows),
// cosine and dot, every reduction, t as given or as log t, the bias, negatives-only blocks
// (M below, at and above B), materialized, explicitly tiled and L2-tiled walks, in f32 (Sweep/)
// and in TF32, bf16, f16 and bf16 inputs with a bf16 logits tile (Precision/). Each case runs
// forward, backward from what forward saved and forward_backward (the fused single walk), with
// every output poisoned before each call (support/loss_drivers.hpp, SigLIPDriver). Fresh random
// inputs every run. Each test skips, with the reason, when no GPU is usable.
#include <string>

#include <gtest/gtest.h>

#include "contrastive/siglip.hpp"
#include "support/device.hpp"
#include "support/loss_drivers.hpp"
#include "support/precision.hpp"
#include "support/random.hpp"
#include "support/siglip_cases.hpp"

namespace contrastive {
namespace {

using testing::Precision;
using testing::siglip_sweep_cases;
using testing::SigLIPCase;

class SigLIPGpu : public testing::GpuFixture<::testing::TestWithParam<SigLIPCase>> {};

TEST_P(SigLIPGpu, EveryPassMatchesTheFloat64Reference) {
  const siglip::Params p = GetParam().params();
  ASSERT_EQ(siglip::check(p), Status::kSuccess) << last_error_message();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  testing::SigLIPDriver driver;
  driver.make(p, seed);
  driver.upload();
  testing::expect_every_pass_matches(driver, handle_, stream_);
}

INSTANTIATE_TEST_SUITE_P(Sweep, SigLIPGpu, ::testing::ValuesIn(siglip_sweep_cases({Precision{}})),
                         [](const auto& info) { return testing::case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(Precision, SigLIPGpu,
                         ::testing::ValuesIn(siglip_sweep_cases(testing::other_precisions())),
                         [](const auto& info) { return testing::case_name(info.param); });

// The walk is chosen by the tiling policy; a forced tiny tile and L2 tiles give the same results
// as the materialized walk within the policy's bounds, at B = 300, M = 1000 (many ragged tiles).
class SigLIPGpuWalks : public testing::GpuFixture<> {};

TEST_F(SigLIPGpuWalks, MaterializedAndTiledWalksAgreeWithTheReference) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  for (int walk = 0; walk < 3; ++walk) {
    SigLIPCase c = siglip_sweep_cases({Precision{DType::kBF16, DType::kBF16, false}})[0];
    c.batch = 300;
    c.num_keys = 1000;
    c.dim = 96;
    c.offset = 500;
    c.log_scale = true;  // open_clip's initialization: log t = log 10, b = -10
    c.scale = 2.302585f;
    c.bias = -10.0f;
    if (walk == 1) c.tile_rows = 37, c.tile_cols = 129;
    if (walk == 2) c.l2_tiles = true;
    SCOPED_TRACE(testing::case_name(c));
    testing::SigLIPDriver driver;
    driver.make(c.params(), seed);
    driver.upload();
    testing::expect_every_pass_matches(driver, handle_, stream_, testing::Fill::kNaN);
  }
}

}  // namespace
}  // namespace contrastive
