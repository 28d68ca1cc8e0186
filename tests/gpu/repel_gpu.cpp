// Repel on the GPU against the float64 reference: awkward shapes (B in 1, 3, 33, 1000; N in 1, 2,
// 7, 64; D in 1, 3, 64, 768, 1000), cosine,
// every reduction, strided rows, fresh random inputs, every output poisoned before each call, and
// a bitwise repeat. Each test skips, with the reason, when no GPU is usable.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "support/anchor_calls.hpp"
#include "support/anchor_cases.hpp"
#include "support/device.hpp"
#include "support/golden.hpp"
#include "support/infonce_cases.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::AnchorResults;
using testing::check_every_call;
using testing::DeviceArray;
using testing::DeviceTensor;
using testing::to_float;

// ---- Repel
// ----------------------------------------------------------------------------------------

struct RepelDevice {
  repel::Params params;
  std::size_t workspace_bytes = 0;
  DeviceTensor anchors, negatives;  // the params' dtype, as the gradients
  DeviceArray<float> grad_loss, loss, saved;
  DeviceTensor grad_anchors, grad_negatives;
  DeviceArray<unsigned char> workspace;

  static std::size_t workspace_count(const repel::Params& p) {
    std::size_t bytes = 0;
    EXPECT_EQ(repel::workspace_size(p, &bytes), Status::kSuccess) << last_error_message();
    return bytes;
  }

  RepelDevice(const repel::Params& p, const testing::RepelInputs& in)
      : params(p),
        workspace_bytes(workspace_count(p)),
        anchors(p.dtype, in.anchors.size()),
        negatives(p.dtype, in.negatives.size()),
        grad_loss(in.grad_loss.size()),
        loss(p.reduction == Reduction::kNone ? p.batch * p.negatives : 1),
        saved([&p] {
          std::size_t bytes = 0;
          EXPECT_EQ(repel::saved_size(p, &bytes), Status::kSuccess) << last_error_message();
          return bytes / sizeof(float);
        }()),
        grad_anchors(p.dtype, p.batch * p.dim),
        grad_negatives(p.dtype, p.batch * p.negatives * p.dim),
        workspace(workspace_bytes) {
    anchors.upload(in.anchors);
    negatives.upload(in.negatives);
    grad_loss.upload(to_float(in.grad_loss));
  }
  void poison() {
    for (DeviceArray<float>* array : {&loss, &saved}) array->poison();
    for (DeviceTensor* tensor : {&grad_anchors, &grad_negatives}) tensor->poison();
  }
  repel::ForwardBackwardArgs args() {
    return {anchors.data(),   negatives.data(),    loss.data(),          saved.data(),
            grad_loss.data(), grad_anchors.data(), grad_negatives.data()};
  }
  AnchorResults results() const {
    return {loss.download(),           saved.download(),
            grad_anchors.download(),   {},
            grad_negatives.download(), {}};
  }
  Status forward(const Handle& handle, cudaStream_t stream) {
    const auto a = args();
    return repel::forward(handle, params, {a.anchors, a.negatives, a.loss, a.saved},
                          workspace.data(), workspace_bytes, stream);
  }
  Status backward(const Handle& handle, cudaStream_t stream) {
    const auto a = args();
    return repel::backward(
        handle, params,
        {a.anchors, a.negatives, a.saved, a.grad_loss, a.grad_anchors, a.grad_negatives},
        workspace.data(), workspace_bytes, stream);
  }
  Status forward_backward(const Handle& handle, cudaStream_t stream) {
    return repel::forward_backward(handle, params, args(), workspace.data(), workspace_bytes,
                                   stream);
  }
};

class RepelGpu : public testing::GpuFixture<::testing::TestWithParam<testing::RepelCase>> {};

constexpr double kHingeClearance = 1e-5;  // far above the similarities' fp32 error

TEST_P(RepelGpu, MatchesTheFloat64Reference) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  repel::Params p = GetParam().params();
  const testing::RepelInputs in = testing::make_repel_inputs(p, engine);
  p.margin = testing::clear_margin(p, in, kHingeClearance);
  RepelDevice gpu(p, in);
  check_every_call(gpu, handle_, stream_, p, testing::expected_for(p, in));
}

INSTANTIATE_TEST_SUITE_P(Sweep, RepelGpu, ::testing::ValuesIn(testing::repel_cases()),
                         testing::repel_test_name);
INSTANTIATE_TEST_SUITE_P(Precision, RepelGpu, ::testing::ValuesIn(testing::repel_precision_cases()),
                         testing::repel_test_name);

class RepelGpuScenario : public testing::GpuFixture<> {};

// NaN in a negative: the loss is NaN (never clamped to 0), for the plain mean and the mean over
// active terms alike; a zero anchor row gives finite results.
TEST_F(RepelGpuScenario, NaNPropagatesAndZeroRowsStayFinite) {
  std::mt19937_64 engine(testing::test_seed());
  repel::Params p;
  p.batch = 4;
  p.negatives = 3;
  p.dim = 8;
  testing::RepelInputs in = testing::make_repel_inputs(p, engine);
  std::fill(in.anchors.begin(), in.anchors.begin() + p.dim, 0.0);
  {
    RepelDevice gpu(p, in);
    ASSERT_EQ(repel::forward_backward(handle_, p, gpu.args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
              Status::kSuccess);
    synchronize();
    EXPECT_TRUE(std::isfinite(gpu.loss.download()[0]));
    for (float g : gpu.grad_anchors.download()) ASSERT_TRUE(std::isfinite(g));
  }
  in.negatives[5] = NAN;
  for (bool over_active : {false, true}) {
    p.mean_over_active = over_active;
    RepelDevice gpu(p, in);
    ASSERT_EQ(repel::forward(
                  handle_, p,
                  {gpu.anchors.data(), gpu.negatives.data(), gpu.loss.data(), gpu.saved.data()},
                  gpu.workspace.data(), gpu.workspace_bytes, stream_),
              Status::kSuccess);
    synchronize();
    EXPECT_TRUE(std::isnan(gpu.loss.download()[0])) << "NaN was clamped away";
  }
}

}  // namespace
}  // namespace contrastive
