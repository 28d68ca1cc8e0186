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
#include "support/sampled_reference.hpp"
#include "support/tolerance.hpp"

namespace contrastive {
namespace {

using testing::all_close;
using testing::DeviceArray;
using testing::DeviceTensor;
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
  DeviceTensor q, k;  // the params' dtype, as the gradients
  DeviceArray<float> grad_loss, loss, saved;
  DeviceTensor grad_q, grad_k;
  DeviceArray<float> grad_temperature;
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
        q(p.dtype, in.q.size()),
        k(p.dtype, in.k.size()),
        grad_loss(in.grad_loss.size()),
        loss(loss_count),
        saved(saved_floats),
        grad_q(p.dtype, p.batch * p.dim),
        grad_k(p.dtype, p.num_keys * p.dim),
        grad_temperature(1),
        workspace(workspace_bytes) {
    q.upload(in.q);
    k.upload(in.k);
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

testing::Results download(const DeviceProblem& gpu) {
  return {gpu.loss.download(), gpu.saved.download(), gpu.grad_q.download(), gpu.grad_k.download(),
          gpu.grad_temperature.download()};
}

TEST_P(InfoNCEGpu, MatchesTheFloat64Reference) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
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
INSTANTIATE_TEST_SUITE_P(Precision, InfoNCEGpu,
                         ::testing::ValuesIn(testing::precision_sweep_cases()),
                         testing::sweep_test_name);

// ---- Single scenarios
// -----------------------------------------------------------------------------

class InfoNCEGpuScenario : public testing::GpuFixture<> {};

TEST_F(InfoNCEGpuScenario, DemoExample) {
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

// 16-bit rows that start one element past a 16-byte boundary cannot take the kernels' 16-byte
// vectors: the scalar path must give the same results (bf16 and f16, inputs and gradients).
TEST_F(InfoNCEGpuScenario, SixteenBitRowsOffTheVectorAlignment) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    std::mt19937_64 engine(testing::test_seed());
    infonce::Params p;
    p.batch = 24;
    p.num_keys = 40;
    p.dim = 64;  // a multiple of 8 elements: only the base address breaks the alignment
    p.dtype = dtype;
    const Inputs in = make_inputs(p, engine);
    const Expected expected = expected_for(p, in);
    auto after_one = [](const std::vector<double>& values) {
      std::vector<double> shifted{0.0};
      shifted.insert(shifted.end(), values.begin(), values.end());
      return shifted;
    };
    const std::size_t element = dtype_size(dtype);
    auto at_one = [element](const DeviceTensor& t) {
      return static_cast<void*>(static_cast<char*>(t.data()) + element);
    };
    DeviceProblem gpu(p, in);  // loss, saved, grad_loss and the workspace
    DeviceTensor q(dtype, in.q.size() + 1), k(dtype, in.k.size() + 1);
    DeviceTensor grad_q(dtype, in.q.size() + 1), grad_k(dtype, in.k.size() + 1);
    q.upload(after_one(in.q));
    k.upload(after_one(in.k));
    infonce::ForwardBackwardArgs args = gpu.forward_backward_args();
    args.q = at_one(q);
    args.k = at_one(k);
    args.grad_q = at_one(grad_q);
    args.grad_k = at_one(grad_k);
    ASSERT_EQ(infonce::forward_backward(handle_, p, args, gpu.workspace.data(), gpu.workspace_bytes,
                                        stream_),
              Status::kSuccess)
        << last_error_message();
    synchronize();
    testing::Results results = download(gpu);
    const std::vector<float> all_q = grad_q.download(), all_k = grad_k.download();
    results.grad_q.assign(all_q.begin() + 1, all_q.end());
    results.grad_k.assign(all_k.begin() + 1, all_k.end());
    testing::expect_forward_matches(p, results, expected, in);
    testing::expect_backward_matches(p, results, expected);
  }
}

// The tiled path (L2-sized tiles, here forced small by a 1 MiB cache share so that the problem
// crosses 129 x 2 tiles, both edges partial) and the materialized path agree with the reference,
// and so with each other to rounding, in f32 and bf16; kAuto picks the tiled path once the
// materialized workspace exceeds its budget.
TEST_F(InfoNCEGpuScenario, TiledAndMaterializedPathsAgree) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    std::mt19937_64 engine(testing::test_seed());
    infonce::Params p;
    p.batch = 4097;
    p.num_keys = 12289;
    p.dim = 8;
    p.positive_offset = 5000;
    p.symmetric = true;
    p.dtype = dtype;
    const Inputs in = make_inputs(p, engine);
    const Expected expected = expected_for(p, in);
    infonce::Params materialized = p, tiled = p, automatic = p;
    materialized.tiling = Tiling::kMaterialized;
    tiled.tiling = Tiling::kTiled;
    tiled.tile_cache_bytes = automatic.tile_cache_bytes = std::size_t{1} << 20;
    std::size_t materialized_bytes = 0, tiled_bytes = 0;
    ASSERT_EQ(infonce::workspace_size(materialized, &materialized_bytes), Status::kSuccess);
    ASSERT_EQ(infonce::workspace_size(tiled, &tiled_bytes), Status::kSuccess);
    EXPECT_LT(tiled_bytes * 10, materialized_bytes);
    automatic.workspace_budget = materialized_bytes - 1;
    std::size_t automatic_bytes = 0;
    ASSERT_EQ(infonce::workspace_size(automatic, &automatic_bytes), Status::kSuccess);
    EXPECT_EQ(automatic_bytes, tiled_bytes);
    for (const infonce::Params& variant : {materialized, tiled}) {
      SCOPED_TRACE(variant.tiling == Tiling::kTiled ? "tiled" : "materialized");
      DeviceProblem gpu(variant, in);
      ASSERT_EQ(infonce::forward_backward(handle_, variant, gpu.forward_backward_args(),
                                          gpu.workspace.data(), gpu.workspace_bytes, stream_),
                Status::kSuccess)
          << last_error_message();
      synchronize();
      testing::expect_forward_matches(variant, download(gpu), expected, in);
      testing::expect_backward_matches(variant, download(gpu), expected);
      // backward alone recomputes every tile from what forward saved
      gpu.poison_outputs();
      ASSERT_EQ(infonce::backward(handle_, variant, gpu.backward_args(), gpu.workspace.data(),
                                  gpu.workspace_bytes, stream_),
                Status::kSuccess)
          << last_error_message();
      synchronize();
      testing::expect_backward_matches(variant, download(gpu), expected);
    }
  }
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

double relative_l2(const std::vector<float>& value, const std::vector<double>& reference,
                   const std::vector<std::int64_t>& rows, std::int64_t dim) {
  double error = 0.0, norm = 0.0;
  for (const std::int64_t row : rows) {
    for (std::int64_t c = 0; c < dim; ++c) {
      const double expected = reference[row * dim + c];
      error += (value[row * dim + c] - expected) * (value[row * dim + c] - expected);
      norm += expected * expected;
    }
  }
  return std::sqrt(error / norm);
}

// fp16 at B = M = 4096, D = 128, temperature 0.07 (cosine, mean): the negatives' entries of G are
// about 1/M. With the mean's 1/B stored in the fp16 G they fell below fp16's subnormals (about
// half flushed to 0, dQ's relative error about 7e-3, tests/cpu/infonce_tile_emulation.cpp); with
// 1/B in the GEMMs' alpha the error is that of fp16 inputs and outputs (about 4e-4). The tolerance
// is on the float64 error itself: the naive same-precision rule flushes the same values.
TEST_F(InfoNCEGpuScenario, Fp16GradientsAtLargeBatchKeepSmallEntries) {
  constexpr double kTolerance = 1.5e-3;  // relative L2 of dQ over the sampled rows
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = p.num_keys = 4096;
  p.dim = 128;
  p.temperature = 0.07f;
  p.dtype = DType::kF16;
  Inputs in = make_inputs(p, engine);
  in.grad_loss = {1.0};
  DeviceProblem gpu(p, in);
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  // Each row of dQ depends only on its own row of G: the per-row reference with upstream 1/B on
  // the sampled rows is the mean's gradient for those rows.
  std::vector<std::int64_t> rows;
  for (std::int64_t i = 0; i < p.batch; i += 64) rows.push_back(i + (i / 64) % 64);
  infonce::Params per_row = p;
  per_row.reduction = Reduction::kNone;
  std::vector<double> grad_loss(static_cast<std::size_t>(p.batch), 0.0);
  for (const std::int64_t row : rows) grad_loss[row] = 1.0 / static_cast<double>(p.batch);
  const testing::SampledInfoNCE expected =
      testing::sampled_infonce(per_row, 1.0 / static_cast<double>(p.temperature), in.q.data(),
                               in.k.data(), grad_loss.data(), rows);
  ASSERT_EQ(expected.rows.size(), rows.size());
  const std::vector<float> grad_q = gpu.grad_q.download();
  for (const std::int64_t row : rows) {
    for (std::int64_t c = 0; c < p.dim; ++c) ASSERT_TRUE(std::isfinite(grad_q[row * p.dim + c]));
  }
  const double error = relative_l2(grad_q, expected.grad_q, rows, p.dim);
  RecordProperty("grad_q_relative_l2", std::to_string(error));
  EXPECT_LE(error, kTolerance);
}

// A -inf logit (here an f32 dot product that overflows: one key has a coordinate of -3e38 and
// every query a positive one) leaves the log-sum-exp: the loss and every gradient stay finite and
// match float64, where the logit is a large finite negative number whose softmax weight is 0.
// Before, the online log-sum-exp computed exp(-inf - (-inf)) = NaN and the temperature gradient
// 0 * -inf = NaN.
TEST_F(InfoNCEGpuScenario, MinusInfinityLogitLeavesTheSoftmax) {
  std::mt19937_64 engine(testing::test_seed());
  for (bool tiled : {false, true}) {
    SCOPED_TRACE(tiled ? "tiles of 3 x 4" : "one tile");
    infonce::Params p;
    p.batch = 4;
    p.num_keys = 9;
    p.dim = 8;
    p.similarity = Similarity::kDot;
    p.temperature = 0.1f;
    if (tiled) p.tile_rows = 3, p.tile_cols = 4;
    Inputs in = make_inputs(p, engine);
    for (std::int64_t i = 0; i < p.batch; ++i) in.q[i * p.dim] = 1.0 + std::fabs(in.q[i * p.dim]);
    constexpr std::int64_t kMasked = 5;  // not a positive (B = 4, offset 0)
    in.k[kMasked * p.dim] = -3e38;
    in.grad_loss = {1.0};
    reference::InfoNCEForward forward;
    reference::InfoNCEBackward backward;
    ASSERT_EQ(reference::infonce_forward(p, in.q.data(), in.k.data(), &forward), Status::kSuccess);
    ASSERT_EQ(reference::infonce_backward(p, in.q.data(), in.k.data(), nullptr, &backward),
              Status::kSuccess);
    ASSERT_TRUE(std::isfinite(forward.loss[0]));
    DeviceProblem gpu(p, in);
    ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(),
                                        gpu.workspace.data(), gpu.workspace_bytes, stream_),
              Status::kSuccess)
        << last_error_message();
    synchronize();
    auto expect_near = [](const std::vector<float>& actual, const std::vector<double>& expected) {
      ASSERT_EQ(actual.size(), expected.size());
      for (std::size_t i = 0; i < actual.size(); ++i) {
        ASSERT_TRUE(std::isfinite(actual[i])) << i;
        EXPECT_NEAR(actual[i], expected[i], 1e-5 + 1e-4 * std::fabs(expected[i])) << i;
      }
    };
    expect_near(gpu.loss.download(), forward.loss);
    expect_near(gpu.grad_q.download(), backward.grad_q);
    expect_near(gpu.grad_k.download(), backward.grad_k);
    expect_near(gpu.grad_temperature.download(), {backward.grad_temperature});
    const std::vector<float> grad_k = gpu.grad_k.download();
    for (std::int64_t c = 0; c < p.dim; ++c) EXPECT_EQ(grad_k[kMasked * p.dim + c], 0.0f);
  }
}

}  // namespace
}  // namespace contrastive
