// InfoNCE on the GPU against the float64 reference: awkward shapes, temperatures 0.01 / 0.1 / 1,
// cosine and dot, symmetric on and off, every reduction, offsets, strided rows and forced small
// tiles. Fresh random inputs every run; every output poisoned with NaN before each call.
// Each test skips, with the reason, when no GPU is usable.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "examples/seed_inputs.hpp"
#include "support/device.hpp"
#include "support/infonce_cases.hpp"
#include "support/random.hpp"
#include "support/tolerance.hpp"

namespace contrastive {
namespace {

using testing::all_close;
using testing::DeviceArray;
using testing::Expected;
using testing::expected_for;
using testing::Inputs;
using testing::make_inputs;
using testing::round_to_float;
using testing::SweepCase;
using testing::to_float;
using testing::Tolerances;

// ---- The GPU side -----------------------------------------------------------------------------

struct DeviceProblem {
  infonce::Params params;
  std::size_t workspace_bytes = 0, saved_floats = 0, loss_count = 0;
  DeviceArray<float> q, k, grad_loss, loss, saved, grad_q, grad_k, grad_temperature;
  DeviceArray<unsigned char> workspace;

  static std::size_t saved_count(const infonce::Params& p) {
    std::size_t bytes = 0;
    EXPECT_EQ(infonce::saved_size(p, &bytes), Status::kSuccess);
    return bytes / sizeof(float);
  }
  static std::size_t workspace_count(const infonce::Params& p) {
    std::size_t bytes = 0;
    EXPECT_EQ(infonce::workspace_size(p, &bytes), Status::kSuccess);
    return bytes;
  }

  DeviceProblem(const infonce::Params& p, const Inputs& in)
      : params(p),
        workspace_bytes(workspace_count(p)),
        saved_floats(saved_count(p)),
        loss_count(p.reduction == Reduction::kNone ? p.batch : 1),
        q(in.q.size()),
        k(in.k.size()),
        grad_loss(in.grad_loss.size()),
        loss(loss_count),
        saved(saved_floats),
        grad_q(p.batch * p.dim),
        grad_k(p.num_keys * p.dim),
        grad_temperature(1),
        workspace(workspace_bytes) {
    q.upload(to_float(in.q));
    k.upload(to_float(in.k));
    grad_loss.upload(to_float(in.grad_loss));
  }

  void poison_outputs() {
    loss.poison();
    grad_q.poison();
    grad_k.poison();
    grad_temperature.poison();
  }

  infonce::ForwardArgs forward_args() { return {q.data(), k.data(), loss.data(), saved.data()}; }
  infonce::BackwardArgs backward_args() {
    return {q.data(),      k.data(),      saved.data(),           grad_loss.data(),
            grad_q.data(), grad_k.data(), grad_temperature.data()};
  }
  infonce::ForwardBackwardArgs forward_backward_args() {
    return {q.data(),         k.data(),      loss.data(),   saved.data(),
            grad_loss.data(), grad_q.data(), grad_k.data(), grad_temperature.data()};
  }
};

class InfoNCEGpu : public testing::GpuFixture<::testing::TestWithParam<SweepCase>> {};

testing::Fp32Results download(const DeviceProblem& gpu) {
  return {gpu.loss.download(), gpu.saved.download(), gpu.grad_q.download(), gpu.grad_k.download(),
          gpu.grad_temperature.download()};
}

TEST_P(InfoNCEGpu, MatchesTheFloat64Reference) {
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CONTRASTIVE_TEST_SEED reproduces it)");
  std::mt19937_64 engine(seed);
  const infonce::Params p = GetParam().params();
  const Inputs in = make_inputs(p, engine);
  const Expected expected = expected_for(p, in);
  DeviceProblem gpu(p, in);

  // forward, then backward from what it saved
  ASSERT_EQ(infonce::forward(handle_, p, gpu.forward_args(), gpu.workspace.data(),
                             gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  testing::expect_forward_matches(p, download(gpu), expected, in);
  ASSERT_EQ(infonce::backward(handle_, p, gpu.backward_args(), gpu.workspace.data(),
                              gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  testing::expect_backward_matches(p, download(gpu), expected);

  // forward_backward in one call, everything poisoned again
  gpu.poison_outputs();
  gpu.saved.poison();
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  testing::expect_forward_matches(p, download(gpu), expected, in);
  testing::expect_backward_matches(p, download(gpu), expected);

  // Deterministic by default: the same call again gives the same bits.
  const std::vector<float> grad_q = gpu.grad_q.download(), grad_k = gpu.grad_k.download();
  const std::vector<float> loss = gpu.loss.download();
  gpu.poison_outputs();
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess);
  synchronize();
  EXPECT_EQ(std::memcmp(loss.data(), gpu.loss.download().data(), loss.size() * 4), 0);
  EXPECT_EQ(std::memcmp(grad_q.data(), gpu.grad_q.download().data(), grad_q.size() * 4), 0);
  EXPECT_EQ(std::memcmp(grad_k.data(), gpu.grad_k.download().data(), grad_k.size() * 4), 0);
}

INSTANTIATE_TEST_SUITE_P(Sweep, InfoNCEGpu, ::testing::ValuesIn(testing::sweep_cases()),
                         testing::sweep_test_name);

// ---- Single scenarios
// -----------------------------------------------------------------------------

class InfoNCEGpuScenario : public testing::GpuFixture<> {};

TEST_F(InfoNCEGpuScenario, SeedNotebookExample) {
  const seed::InfoNCEInputs seed = seed::infonce_inputs();
  infonce::Params p;
  p.batch = p.num_keys = seed::InfoNCEInputs::kBatch;
  p.dim = seed::InfoNCEInputs::kDim;
  p.temperature = seed::InfoNCEInputs::kTemperature;
  // The GPU takes fp32: compare with the reference on the same rounded inputs.
  const Inputs rounded{round_to_float(seed.z1), round_to_float(seed.z2), {1.0}};
  const Expected expected = expected_for(p, rounded);
  DeviceProblem gpu(p, rounded);
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  testing::expect_forward_matches(p, download(gpu), expected, rounded);
  testing::expect_backward_matches(p, download(gpu), expected);
}

// A frozen tower: skipping grad_k (or all but the temperature) leaves the rest unchanged.
TEST_F(InfoNCEGpuScenario, OptionalGradientOutputs) {
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = 33;
  p.num_keys = 64;
  p.dim = 24;
  p.positive_offset = 5;
  const Inputs in = make_inputs(p, engine);
  const Expected expected = expected_for(p, in);
  const auto& bwd = expected.backward;
  const Tolerances& tol = expected.tolerances;
  DeviceProblem gpu(p, in);
  infonce::ForwardBackwardArgs args = gpu.forward_backward_args();
  args.grad_k = nullptr;
  ASSERT_EQ(infonce::forward_backward(handle_, p, args, gpu.workspace.data(), gpu.workspace_bytes,
                                      stream_),
            Status::kSuccess);
  synchronize();
  EXPECT_TRUE(all_close(gpu.grad_q.download(), bwd.grad_q, tol.grad_q, p.dim));
  for (float value : gpu.grad_k.download()) ASSERT_TRUE(std::isnan(value)) << "grad_k was written";
  gpu.poison_outputs();
  infonce::BackwardArgs only_temperature = gpu.backward_args();
  only_temperature.grad_q = only_temperature.grad_k = nullptr;
  ASSERT_EQ(infonce::backward(handle_, p, only_temperature, gpu.workspace.data(),
                              gpu.workspace_bytes, stream_),
            Status::kSuccess);
  synchronize();
  EXPECT_TRUE(
      all_close(gpu.grad_temperature.download(), {bwd.grad_temperature}, tol.grad_temperature));
  for (float value : gpu.grad_q.download()) ASSERT_TRUE(std::isnan(value)) << "grad_q was written";
}

// The C API runs the same code: bit-identical results to the C++ call.
TEST_F(InfoNCEGpuScenario, CApiMatchesCpp) {
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = p.num_keys = 40;
  p.dim = 32;
  p.symmetric = true;
  const Inputs in = make_inputs(p, engine);
  DeviceProblem cpp(p, in), c(p, in);
  ASSERT_EQ(infonce::forward_backward(handle_, p, cpp.forward_backward_args(), cpp.workspace.data(),
                                      cpp.workspace_bytes, stream_),
            Status::kSuccess);
  contrastive_handle_t handle = nullptr;
  ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS);
  contrastive_infonce_params_t params;
  contrastive_infonce_params_init(&params);
  params.batch = params.num_keys = p.batch;
  params.dim = p.dim;
  params.symmetric = 1;
  EXPECT_EQ(contrastive_infonce_forward_backward(
                handle, &params, c.q.data(), c.k.data(), c.loss.data(), c.saved.data(),
                c.grad_loss.data(), c.grad_q.data(), c.grad_k.data(), c.grad_temperature.data(),
                c.workspace.data(), c.workspace_bytes, stream_),
            CONTRASTIVE_SUCCESS)
      << contrastive_last_error();
  synchronize();
  EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(cpp.loss.download(), c.loss.download());
  EXPECT_EQ(cpp.grad_q.download(), c.grad_q.download());
  EXPECT_EQ(cpp.grad_k.download(), c.grad_k.download());
  EXPECT_EQ(cpp.grad_temperature.download(), c.grad_temperature.download());
}

// A zero row among the inputs: finite loss and gradients (eps clamps the norm).
TEST_F(InfoNCEGpuScenario, ZeroVectorStaysFinite) {
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = p.num_keys = 16;
  p.dim = 8;
  Inputs in = make_inputs(p, engine);
  std::fill(in.q.begin(), in.q.begin() + p.dim, 0.0);
  std::fill(in.k.begin() + 3 * p.dim, in.k.begin() + 4 * p.dim, 0.0);
  DeviceProblem gpu(p, in);
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess);
  synchronize();
  for (float value : gpu.loss.download()) EXPECT_TRUE(std::isfinite(value));
  for (float value : gpu.grad_q.download()) ASSERT_TRUE(std::isfinite(value));
  for (float value : gpu.grad_k.download()) ASSERT_TRUE(std::isfinite(value));
}

}  // namespace
}  // namespace contrastive
