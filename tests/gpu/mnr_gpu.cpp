// Per-anchor and in-batch MNR on the GPU against the float64 references: awkward shapes (B in 1,
// 3, 33, 1000; n in 1, 2, 7, 64; D in 1, 3, 64, 768, 1000), dot and cosine,
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

std::size_t query(Status (*size)(const mnr::PerAnchorParams&, std::size_t*),
                  const mnr::PerAnchorParams& p) {
  std::size_t bytes = 0;
  EXPECT_EQ(size(p, &bytes), Status::kSuccess) << last_error_message();
  return bytes;
}

// ---- Per-anchor MNR
// -------------------------------------------------------------------------------

struct MnrDevice {
  mnr::PerAnchorParams params;
  std::size_t workspace_bytes;
  DeviceTensor anchors, positives, negatives;  // the params' dtype, as the gradients
  DeviceArray<float> grad_loss, loss, saved;
  DeviceTensor grad_anchors, grad_positives, grad_negatives;
  DeviceArray<float> grad_scale;
  DeviceArray<unsigned char> workspace;

  MnrDevice(const mnr::PerAnchorParams& p, const testing::MnrInputs& in)
      : params(p),
        workspace_bytes(query(&mnr::workspace_size, p)),
        anchors(p.dtype, in.anchors.size()),
        positives(p.dtype, in.positives.size()),
        negatives(p.dtype, in.negatives.size()),
        grad_loss(in.grad_loss.size()),
        loss(p.reduction == Reduction::kNone ? p.batch : 1),
        saved(query(&mnr::saved_size, p) / sizeof(float)),
        grad_anchors(p.dtype, p.batch * p.dim),
        grad_positives(p.dtype, p.batch * p.dim),
        grad_negatives(p.dtype, p.batch * p.negatives * p.dim),
        grad_scale(1),
        workspace(workspace_bytes) {
    anchors.upload(in.anchors);
    positives.upload(in.positives);
    negatives.upload(in.negatives);
    grad_loss.upload(to_float(in.grad_loss));
  }
  void poison() {
    for (DeviceArray<float>* array : {&loss, &saved, &grad_scale}) array->poison();
    for (DeviceTensor* tensor : {&grad_anchors, &grad_positives, &grad_negatives}) tensor->poison();
  }
  mnr::PerAnchorForwardBackwardArgs args() {
    return {anchors.data(),        positives.data(), negatives.data(),    loss.data(),
            saved.data(),          grad_loss.data(), grad_anchors.data(), grad_positives.data(),
            grad_negatives.data(), grad_scale.data()};
  }
  AnchorResults results() const {
    return {loss.download(),           saved.download(),          grad_anchors.download(),
            grad_positives.download(), grad_negatives.download(), grad_scale.download()};
  }
  Status forward(const Handle& handle, cudaStream_t stream) {
    const auto a = args();
    return mnr::forward(handle, params, {a.anchors, a.positives, a.negatives, a.loss, a.saved},
                        workspace.data(), workspace_bytes, stream);
  }
  Status backward(const Handle& handle, cudaStream_t stream) {
    const auto a = args();
    return mnr::backward(handle, params,
                         {a.anchors, a.positives, a.negatives, a.saved, a.grad_loss, a.grad_anchors,
                          a.grad_positives, a.grad_negatives, a.grad_scale},
                         workspace.data(), workspace_bytes, stream);
  }
  Status forward_backward(const Handle& handle, cudaStream_t stream) {
    return mnr::forward_backward(handle, params, args(), workspace.data(), workspace_bytes, stream);
  }
};

class MnrPerAnchorGpu : public testing::GpuFixture<::testing::TestWithParam<testing::MnrCase>> {};

TEST_P(MnrPerAnchorGpu, MatchesTheFloat64Reference) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const mnr::PerAnchorParams p = GetParam().params();
  const testing::MnrInputs in = testing::make_mnr_inputs(p, engine);
  MnrDevice gpu(p, in);
  check_every_call(gpu, handle_, stream_, p, testing::expected_for(p, in));
}

INSTANTIATE_TEST_SUITE_P(Sweep, MnrPerAnchorGpu, ::testing::ValuesIn(testing::mnr_cases()),
                         testing::mnr_test_name);
INSTANTIATE_TEST_SUITE_P(Precision, MnrPerAnchorGpu,
                         ::testing::ValuesIn(testing::mnr_precision_cases()),
                         testing::mnr_test_name);

class MnrGpuScenario : public testing::GpuFixture<> {};

// The demo's MNR example (d = 4, n = 3, dot product, scale 1) prints 1.6965; the GPU must agree
// with the float64 golden values to fp32 rounding.
TEST_F(MnrGpuScenario, DemoExample) {
  mnr::PerAnchorParams p;
  p.batch = 1;
  p.negatives = 3;
  p.dim = 4;
  testing::MnrInputs in{testing::golden_numbers("seed_mnr.json", "anchor"),
                        testing::golden_numbers("seed_mnr.json", "positive"),
                        testing::golden_numbers("seed_mnr.json", "negatives"),
                        {1.0}};
  for (auto* values : {&in.anchors, &in.positives, &in.negatives}) {
    for (double& value : *values) value = static_cast<float>(value);  // what the GPU sees
  }
  const testing::MnrExpected expected = testing::expected_for(p, in);
  MnrDevice gpu(p, in);
  ASSERT_EQ(mnr::forward_backward(handle_, p, gpu.args(), gpu.workspace.data(), gpu.workspace_bytes,
                                  stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  testing::expect_matches(p, gpu.results(), expected, true, true);
  EXPECT_NEAR(gpu.loss.download()[0], 1.6965, 5e-5);
}

// Only the scale gradient requested: the inputs' gradients stay unwritten.
TEST_F(MnrGpuScenario, OnlyTheScaleGradient) {
  std::mt19937_64 engine(testing::test_seed());
  mnr::PerAnchorParams p;
  p.batch = 17;
  p.negatives = 5;
  p.dim = 32;
  p.similarity = Similarity::kCosine;
  p.scale = 20.0f;
  const testing::MnrInputs in = testing::make_mnr_inputs(p, engine);
  const testing::MnrExpected expected = testing::expected_for(p, in);
  MnrDevice gpu(p, in);
  mnr::PerAnchorForwardBackwardArgs args = gpu.args();
  args.grad_anchors = args.grad_positives = args.grad_negatives = nullptr;
  ASSERT_EQ(
      mnr::forward_backward(handle_, p, args, gpu.workspace.data(), gpu.workspace_bytes, stream_),
      Status::kSuccess);
  synchronize();
  EXPECT_TRUE(testing::all_close(gpu.grad_scale.download(), {expected.backward.grad_scale},
                                 expected.tolerances.grad_scale));
  for (float value : gpu.grad_negatives.download()) ASSERT_TRUE(std::isnan(value));
}

// ---- In-batch MNR: the InfoNCE loop with the scale; its names and its scale gradient ------------

struct InBatchCase {
  std::int64_t batch, hard_negatives, dim;
  bool symmetric;
  Reduction reduction;
  std::int64_t tile_rows, tile_cols;
  testing::Precision precision;
};

std::string in_batch_name(const ::testing::TestParamInfo<InBatchCase>& info);
void PrintTo(const InBatchCase& c, std::ostream* out) {
  *out << in_batch_name(::testing::TestParamInfo<InBatchCase>(c, 0));
}

class MnrInBatchGpu : public testing::GpuFixture<::testing::TestWithParam<InBatchCase>> {};

// The same problem as InfoNCE (temperature 1/scale, exact for a power-of-two scale) gives the
// InfoNCE tolerances; the scale gradient is -t^2 times the temperature gradient.
TEST_P(MnrInBatchGpu, MatchesTheFloat64Reference) {
  const InBatchCase& c = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  mnr::InBatchParams p;
  p.batch = c.batch;
  p.hard_negatives = c.hard_negatives;
  p.dim = c.dim;
  p.symmetric = c.symmetric;
  p.reduction = c.reduction;
  p.scale = 16.0f;
  p.tile_rows = c.tile_rows;
  p.tile_cols = c.tile_cols;
  p.dtype = c.precision.dtype;
  p.logits_dtype = c.precision.logits_dtype;
  p.allow_tf32 = c.precision.tf32;
  infonce::Params equivalent;
  equivalent.batch = p.batch;
  equivalent.num_keys = (1 + p.hard_negatives) * p.batch;
  equivalent.dim = p.dim;
  equivalent.symmetric = p.symmetric;
  equivalent.reduction = p.reduction;
  equivalent.temperature = 1.0f / p.scale;
  equivalent.dtype = p.dtype;
  equivalent.logits_dtype = p.logits_dtype;
  equivalent.allow_tf32 = p.allow_tf32;
  const testing::Inputs in = testing::make_inputs(equivalent, engine);
  const testing::Expected expected = testing::expected_for(equivalent, in);
  reference::MnrInBatchBackward mnr_expected;
  ASSERT_EQ(reference::mnr_in_batch_backward(p, in.q.data(), in.k.data(), in.grad_loss.data(),
                                             &mnr_expected),
            Status::kSuccess);

  std::size_t workspace_bytes = 0, saved_bytes = 0;
  ASSERT_EQ(mnr::workspace_size(p, &workspace_bytes), Status::kSuccess);
  ASSERT_EQ(mnr::saved_size(p, &saved_bytes), Status::kSuccess);
  DeviceTensor anchors(p.dtype, in.q.size()), candidates(p.dtype, in.k.size());
  DeviceArray<float> grad_loss(in.grad_loss.size());
  DeviceArray<float> loss(p.reduction == Reduction::kNone ? p.batch : 1);
  DeviceArray<float> saved(saved_bytes / sizeof(float)), grad_scale(1);
  DeviceTensor grad_anchors(p.dtype, p.batch * p.dim);
  DeviceTensor grad_candidates(p.dtype, equivalent.num_keys * p.dim);
  DeviceArray<unsigned char> workspace(workspace_bytes);
  anchors.upload(in.q);
  candidates.upload(in.k);
  grad_loss.upload(to_float(in.grad_loss));
  ASSERT_EQ(mnr::forward_backward(
                handle_, p,
                {anchors.data(), candidates.data(), loss.data(), saved.data(), grad_loss.data(),
                 grad_anchors.data(), grad_candidates.data(), grad_scale.data()},
                workspace.data(), workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  const testing::Results results{
      loss.download(), saved.download(), grad_anchors.download(), grad_candidates.download(), {}};
  testing::expect_forward_matches(equivalent, results, expected, in);
  const auto d = static_cast<std::size_t>(p.dim);
  const testing::Results& naive = expected.naive;
  EXPECT_TRUE(testing::matches(expected, results.grad_q, naive.grad_q, expected.backward.grad_q,
                               expected.tolerances.grad_q, d))
      << "grad_anchors";
  EXPECT_TRUE(testing::matches(expected, results.grad_k, naive.grad_k, expected.backward.grad_k,
                               expected.tolerances.grad_k, d))
      << "grad_candidates";
  // d/ds = -t^2 d/dt with s = 1/t.
  const double t = 1.0 / p.scale;
  const std::vector<float> naive_scale =
      expected.sixteen_bit
          ? std::vector<float>{static_cast<float>(-t * t * naive.grad_temperature[0])}
          : std::vector<float>{};
  EXPECT_TRUE(testing::matches(expected, grad_scale.download(), naive_scale,
                               {mnr_expected.grad_scale},
                               {expected.tolerances.grad_temperature * t * t}, 2))
      << "grad_scale";
}

std::string in_batch_name(const ::testing::TestParamInfo<InBatchCase>& info) {
  const InBatchCase& c = info.param;
  const char* reductions[] = {"mean", "sum", "none"};
  std::string name = "B" + std::to_string(c.batch) + "_K" + std::to_string(c.hard_negatives) +
                     "_D" + std::to_string(c.dim) + (c.symmetric ? "_symmetric_" : "_") +
                     reductions[static_cast<int>(c.reduction)];
  if (c.tile_rows != 0) {
    name += "_tile" + std::to_string(c.tile_rows) + "x" + std::to_string(c.tile_cols);
  }
  return name + testing::precision_suffix(c.precision);
}

std::vector<InBatchCase> in_batch_cases() {
  return {{1, 0, 3, false, Reduction::kMean, 0, 0, {}},
          {3, 1, 64, true, Reduction::kSum, 0, 0, {}},
          {33, 3, 768, false, Reduction::kNone, 0, 0, {}},
          {33, 3, 64, true, Reduction::kMean, 10, 40, {}},
          {127, 1, 1000, true, Reduction::kNone, 0, 0, {}},
          {1000, 3, 64, true, Reduction::kMean, 0, 0, {}},
          {1000, 1, 3, false, Reduction::kSum, 300, 700, {}}};
}

// Each case again in two of the other precisions, rotating.
std::vector<InBatchCase> in_batch_precision_cases() {
  const std::vector<testing::Precision> precisions = testing::other_precisions();
  std::vector<InBatchCase> cases;
  std::size_t rotation = 0;
  for (InBatchCase c : in_batch_cases()) {
    for (int twice = 0; twice < 2; ++twice) {
      c.precision = precisions[rotation++ % precisions.size()];
      cases.push_back(c);
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Sweep, MnrInBatchGpu, ::testing::ValuesIn(in_batch_cases()),
                         in_batch_name);
INSTANTIATE_TEST_SUITE_P(Precision, MnrInBatchGpu, ::testing::ValuesIn(in_batch_precision_cases()),
                         in_batch_name);

}  // namespace
}  // namespace contrastive
