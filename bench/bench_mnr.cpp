// MNR (mnr.hpp) in its two layouts, mean, forward, backward and forward_backward, each in fp32,
// bf16 and f16 at the same shapes.
//   Per-anchor negatives at the defaults (dot product, scale 1), with every gradient
//   (anchors, positives, negatives, scale), at the (B, N, D) of loss_buffers.cpp. One fused kernel
//   that reads each vector once: memory-bound, so each is reported against the memory floor of the
//   same traffic in the dtype (bench/memory_floor.hpp), timed side by side: forward reads the
//   inputs (a read-only floor); backward and forward_backward also write their gradients (a
//   device-to-device copy). forward_backward is also timed beside the unfused path
//   (bench/unfused_anchor.hpp).
//   In-batch with K shared hard negatives at sentence-transformers' settings (cosine, scale 20, not
//   symmetric, no scale gradient, fp32 logits tile), against the cuBLAS floor of the GEMMs each
//   operation needs, in the same dtype: forward the logits B x (1 + K) B x D; backward (which
//   recomputes them) and forward_backward also dAnchors and dCandidates.
// Before timing, each compares its outputs with the float64 reference at sampled rows
// (bench/reference_check.hpp; the per-anchor scale gradient, a sum over every row, is not
// compared).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/logits_check.hpp"
#include "bench/loss_buffers.hpp"
#include "bench/memory_floor.hpp"
#include "bench/reference_check.hpp"
#include "bench/unfused_anchor.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/reference.hpp"

namespace contrastive::bench {
namespace {

constexpr float kSeedScale = 1.0f;
constexpr std::uint64_t kPositiveSeed = 3;  // loss_buffers.cpp draws anchors and negatives

const std::vector<std::int64_t> kInBatchSizes = {4096, 16384};
const std::vector<std::int64_t> kHardNegativeBlocks = {0, 1, 3};
const std::vector<std::int64_t> kInBatchDims = {768};
constexpr float kSentenceTransformersScale = 20.0f;

// ---- Per-anchor negatives ----------------------------------------------------------------------

mnr::PerAnchorParams per_anchor_params(const AnchorNegativeShape& shape, DType dtype) {
  auto params = anchor_negative_params<mnr::PerAnchorParams>(shape, dtype);
  params.similarity = Similarity::kDot;
  params.scale = kSeedScale;
  return params;
}

struct PerAnchorBuffers {
  AnchorNegativeBuffers shared;  // anchors, negatives, their gradients, loss, saved, workspace
  DeviceBuffer positives;        // (B, D) shared.dtype, random normal
  DeviceBuffer grad_positives;   // (B, D) shared.dtype
  DeviceBuffer grad_scale;       // (1) fp32

  std::size_t input_bytes() const { return shared.input_bytes() + positives.bytes(); }
};

bool allocate_per_anchor(GpuFixture& gpu, const AnchorNegativeShape& shape,
                         const mnr::PerAnchorParams& params, PerAnchorBuffers* buffers) {
  return buffers->shared.allocate(gpu, shape, params.dtype) &&
         allocate_loss_outputs(gpu, params, &buffers->shared.outputs) &&
         gpu.allocate_random_normal(element_count(shape.batch, shape.dim), kPositiveSeed,
                                    params.dtype, &buffers->positives) &&
         gpu.allocate(matrix_bytes(shape.batch, shape.dim, params.dtype),
                      &buffers->grad_positives) &&
         gpu.allocate(sizeof(float), &buffers->grad_scale);
}

// Any operation's arguments (mnr::PerAnchorForwardArgs, BackwardArgs or ForwardBackwardArgs):
// the inputs and saved, forward's loss, backward's gradients.
template <typename Args>
Args per_anchor_args(const PerAnchorBuffers& buffers) {
  Args args;
  args.anchors = buffers.shared.anchors.get();
  args.positives = buffers.positives.get();
  args.negatives = buffers.shared.negatives.get();
  args.saved = buffers.shared.outputs.saved.get();
  if constexpr (!std::is_same_v<Args, mnr::PerAnchorBackwardArgs>) {
    args.loss = buffers.shared.outputs.loss.as_floats();
  }
  if constexpr (!std::is_same_v<Args, mnr::PerAnchorForwardArgs>) {
    args.grad_anchors = buffers.shared.grad_anchors.get();
    args.grad_positives = buffers.grad_positives.get();
    args.grad_negatives = buffers.shared.grad_negatives.get();
    args.grad_scale = buffers.grad_scale.as_floats();
  }
  return args;
}

Status run_per_anchor(Operation operation, const GpuFixture& gpu,
                      const mnr::PerAnchorParams& params, const PerAnchorBuffers& buffers) {
  const LossOutputs& outputs = buffers.shared.outputs;
  switch (operation) {
    case Operation::kForward:
      return call_loss(mnr::forward, gpu, params,
                       per_anchor_args<mnr::PerAnchorForwardArgs>(buffers), outputs);
    case Operation::kBackward:
      return call_loss(mnr::backward, gpu, params,
                       per_anchor_args<mnr::PerAnchorBackwardArgs>(buffers), outputs);
    case Operation::kForwardBackward:
      return call_loss(mnr::forward_backward, gpu, params,
                       per_anchor_args<mnr::PerAnchorForwardBackwardArgs>(buffers), outputs);
  }
  return Status::kInternalError;
}

// What the untimed call must leave finite (backward's loss is its forward's).
std::vector<FiniteValue> per_anchor_outputs(Operation operation, const PerAnchorBuffers& buffers) {
  std::vector<FiniteValue> values = {{buffers.shared.outputs.loss.as_floats(), "loss"}};
  if (writes_gradients(operation)) {
    const DType dtype = buffers.shared.dtype;
    values.push_back({buffers.shared.grad_anchors.get(), "grad_anchors[0]", dtype});
    values.push_back({buffers.grad_positives.get(), "grad_positives[0]", dtype});
    values.push_back({buffers.shared.grad_negatives.get(), "grad_negatives[0]", dtype});
    values.push_back({buffers.grad_scale.as_floats(), "grad_scale"});
  }
  return values;
}

// The float64 comparison before timing (bench/reference_check.hpp): forward with kNone (B row
// losses), backward with kNone and an upstream gradient of 1 on the sampled rows, both against the
// reference on those rows (not the scale gradient, a sum over every row); then the timed
// configuration's mean loss against the mean of the rows. Writes the buffers' gradients.
bool check_per_anchor(GpuFixture& gpu, const mnr::PerAnchorParams& params,
                      const PerAnchorBuffers& buffers) {
  const AnchorNegativeBuffers& shared = buffers.shared;
  const auto [batch, negatives, dim] = shared.shape;
  const std::vector<std::int64_t> rows = sampled_rows(batch, kSampledRows);
  mnr::PerAnchorParams none = params;
  none.reduction = Reduction::kNone;
  std::vector<float> mask(static_cast<std::size_t>(batch), 0.0f);
  for (const std::int64_t r : rows) mask[static_cast<std::size_t>(r)] = 1.0f;
  const std::size_t row_bytes = mask.size() * sizeof(float);
  LossOutputs outputs;
  DeviceBuffer row_losses, grad_loss;
  if (!allocate_loss_outputs(gpu, none, &outputs) || !gpu.allocate(row_bytes, &row_losses) ||
      !gpu.allocate(row_bytes, &grad_loss) ||
      !gpu.upload(mask.data(), row_bytes, grad_loss.get())) {
    return false;
  }
  auto forward = per_anchor_args<mnr::PerAnchorForwardArgs>(buffers);
  forward.loss = row_losses.as_floats();
  forward.saved = outputs.saved.get();
  auto backward = per_anchor_args<mnr::PerAnchorBackwardArgs>(buffers);
  backward.saved = outputs.saved.get();
  backward.grad_loss = grad_loss.as_floats();
  backward.grad_scale = nullptr;
  std::vector<float> gpu_losses(mask.size());
  SampledAnchorRows inputs;
  std::vector<double> grad_anchors, grad_positives, grad_negatives;
  if (!gpu.check(call_loss(mnr::forward, gpu, none, forward, outputs),
                 "mnr/per_anchor/forward(none)") ||
      !gpu.check(call_loss(mnr::backward, gpu, none, backward, outputs),
                 "mnr/per_anchor/backward(none)") ||
      !gpu.download(row_losses.get(), row_bytes, gpu_losses.data()) ||
      !download_anchor_rows(gpu, shared, buffers.positives.get(), rows, &inputs) ||
      !download_block_rows(gpu, shared.grad_anchors.get(), 1, dim, shared.dtype, rows,
                           &grad_anchors) ||
      !download_block_rows(gpu, buffers.grad_positives.get(), 1, dim, shared.dtype, rows,
                           &grad_positives) ||
      !download_block_rows(gpu, shared.grad_negatives.get(), negatives, dim, shared.dtype, rows,
                           &grad_negatives)) {
    return false;
  }
  mnr::PerAnchorParams sub = none;
  sub.batch = static_cast<std::int64_t>(rows.size());
  reference::MnrPerAnchorForward expected;
  reference::MnrPerAnchorBackward expected_grads;
  const std::vector<double> ones(rows.size(), 1.0);
  if (!gpu.check(
          reference::mnr_per_anchor_forward(sub, inputs.anchors.data(), inputs.positives.data(),
                                            inputs.negatives.data(), &expected),
          "reference::mnr_per_anchor_forward") ||
      !gpu.check(
          reference::mnr_per_anchor_backward(sub, inputs.anchors.data(), inputs.positives.data(),
                                             inputs.negatives.data(), ones.data(), &expected_grads),
          "reference::mnr_per_anchor_backward")) {
    return false;
  }
  const double relative =
      anchor_relative_tolerance(shared.dtype, dim, largest_magnitude(expected.logits));
  Comparison comparison;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    comparison.add("row loss", static_cast<std::size_t>(rows[k]),
                   gpu_losses[static_cast<std::size_t>(rows[k])], expected.loss[k],
                   relative * (1.0 + std::fabs(expected.loss[k])));
  }
  comparison.add_all("grad_anchors (sampled rows)", grad_anchors, expected_grads.grad_anchors,
                     relative * largest_magnitude(expected_grads.grad_anchors), relative);
  comparison.add_all("grad_positives (sampled rows)", grad_positives, expected_grads.grad_positives,
                     relative * largest_magnitude(expected_grads.grad_positives), relative);
  comparison.add_all("grad_negatives (sampled rows)", grad_negatives, expected_grads.grad_negatives,
                     relative * largest_magnitude(expected_grads.grad_negatives), relative);
  float mean = 0.0f;
  if (!gpu.check(run_per_anchor(Operation::kForward, gpu, params, buffers),
                 "mnr/per_anchor/forward") ||
      !gpu.download(shared.outputs.loss.get(), sizeof(float), &mean)) {
    return false;
  }
  double sum = 0.0, magnitude = 0.0;
  for (const float loss : gpu_losses) {
    sum += loss;
    magnitude += std::fabs(loss);
  }
  const double count = static_cast<double>(batch);
  comparison.add("mean loss vs mean of the rows", 0, mean, sum / count,
                 mean_tolerance(count, magnitude));
  return gpu.report_reference(rows.size(), comparison.worst_ratio(), comparison.failure());
}

void benchmark_per_anchor(benchmark::State& state, Operation operation, DType dtype) {
  const AnchorNegativeShape shape = anchor_negative_shape(state);
  const mnr::PerAnchorParams params = per_anchor_params(shape, dtype);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  PerAnchorBuffers buffers;
  if (!allocate_per_anchor(gpu, shape, params, &buffers)) return;

  const LossCalls loss{"mnr/per_anchor",
                       [&](Operation call) { return run_per_anchor(call, gpu, params, buffers); }};
  if (!check_per_anchor(gpu, params, buffers)) return;
  if (!loss.validate(gpu, operation, per_anchor_outputs(operation, buffers))) return;
  const Work library = loss.work(gpu, operation);
  const std::size_t input_bytes = buffers.input_bytes();
  const bool writes = writes_gradients(operation);
  if (operation != Operation::kForwardBackward) {
    time_against_memory_floor(gpu, library, input_bytes, writes);
    return;
  }
  with_unfused(gpu, params, per_anchor_args<mnr::PerAnchorForwardBackwardArgs>(buffers),
               [&](const Work& unfused) {
                 return time_against_memory_floor(gpu, library, input_bytes, writes, &unfused);
               });
}

// ---- In-batch with shared hard negatives -------------------------------------------------------

mnr::InBatchParams in_batch_params(std::int64_t batch, std::int64_t hard_negatives,
                                   std::int64_t dim, DType dtype) {
  auto params = logits_loss_params<mnr::InBatchParams>(dtype);
  params.batch = batch;
  params.hard_negatives = hard_negatives;
  params.dim = dim;
  params.scale = kSentenceTransformersScale;
  return params;
}

// Any operation's arguments, as per_anchor_args(): anchors are the buffers' Q (B, D), the
// candidates [P; N_1; ...; N_K] their K ((1 + K) B, D). No scale gradient.
template <typename Args>
Args in_batch_args(const LogitsLossBuffers& buffers) {
  Args args;
  args.anchors = buffers.q.get();
  args.candidates = buffers.k.get();
  args.saved = buffers.outputs.saved.get();
  if constexpr (!std::is_same_v<Args, mnr::InBatchBackwardArgs>) {
    args.loss = buffers.outputs.loss.as_floats();
  }
  if constexpr (!std::is_same_v<Args, mnr::InBatchForwardArgs>) {
    args.grad_anchors = buffers.grad_q.get();
    args.grad_candidates = buffers.grad_k.get();
  }
  return args;
}

Status run_in_batch(Operation operation, const GpuFixture& gpu, const mnr::InBatchParams& params,
                    const LogitsLossBuffers& buffers) {
  switch (operation) {
    case Operation::kForward:
      return call_loss(mnr::forward, gpu, params, in_batch_args<mnr::InBatchForwardArgs>(buffers),
                       buffers.outputs);
    case Operation::kBackward:
      return call_loss(mnr::backward, gpu, params, in_batch_args<mnr::InBatchBackwardArgs>(buffers),
                       buffers.outputs);
    case Operation::kForwardBackward:
      return call_loss(mnr::forward_backward, gpu, params,
                       in_batch_args<mnr::InBatchForwardBackwardArgs>(buffers), buffers.outputs);
  }
  return Status::kInternalError;
}

// What the untimed call must leave finite (backward's loss is its forward's).
std::vector<FiniteValue> in_batch_outputs(Operation operation, const LogitsLossBuffers& buffers) {
  std::vector<FiniteValue> values = {{buffers.outputs.loss.as_floats(), "loss"}};
  if (writes_gradients(operation)) {
    values.push_back({buffers.grad_q.get(), "grad_anchors[0]", buffers.dtype});
    values.push_back({buffers.grad_k.get(), "grad_candidates[0]", buffers.dtype});
  }
  return values;
}

// check_logits_loss on in-batch MNR: rectangular InfoNCE of the anchors against the candidates
// at the scale, with kNone calls and a loss memory of their own.
bool check_in_batch(GpuFixture& gpu, const mnr::InBatchParams& params,
                    const LogitsLossBuffers& buffers) {
  mnr::InBatchParams none = params;
  none.reduction = Reduction::kNone;
  LossOutputs outputs;
  if (!allocate_loss_outputs(gpu, none, &outputs)) return false;
  LogitsCalls calls;
  calls.forward = [&](float* per_row_loss) {
    auto args = in_batch_args<mnr::InBatchForwardArgs>(buffers);
    args.loss = per_row_loss;
    args.saved = outputs.saved.get();
    return call_loss(mnr::forward, gpu, none, args, outputs);
  };
  calls.backward = [&](const float* grad_loss) {
    auto args = in_batch_args<mnr::InBatchBackwardArgs>(buffers);
    args.saved = outputs.saved.get();
    args.grad_loss = grad_loss;
    return call_loss(mnr::backward, gpu, none, args, outputs);
  };
  calls.timed_forward = [&] { return run_in_batch(Operation::kForward, gpu, params, buffers); };
  infonce::Params as_infonce;
  as_infonce.batch = params.batch;
  as_infonce.num_keys = (1 + params.hard_negatives) * params.batch;
  as_infonce.dim = params.dim;
  as_infonce.similarity = params.similarity;
  as_infonce.symmetric = params.symmetric;
  as_infonce.eps = params.eps;
  return check_logits_loss(gpu, as_infonce, params.scale, buffers, calls);
}

void benchmark_in_batch(benchmark::State& state, Operation operation, DType dtype) {
  const mnr::InBatchParams params =
      in_batch_params(state.range(0), state.range(1), state.range(2), dtype);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  LogitsLossBuffers buffers;
  const std::int64_t candidates = (1 + params.hard_negatives) * params.batch;
  if (!buffers.allocate(gpu, {params.batch, candidates, params.dim}, dtype) ||
      !allocate_loss_outputs(gpu, params, &buffers.outputs)) {
    return;
  }

  const LossCalls loss{"mnr/in_batch",
                       [&](Operation call) { return run_in_batch(call, gpu, params, buffers); }};
  if (!check_in_batch(gpu, params, buffers)) return;
  if (!loss.validate(gpu, operation, in_batch_outputs(operation, buffers))) return;
  // Forward must do the logits; backward recomputes them and does dAnchors and dCandidates.
  const bool gradients = writes_gradients(operation);
  time_against_cublas_floor(
      gpu, buffers.floor_gemms(params.scale, gradients), loss.work(gpu, operation),
      static_cast<double>(compulsory_bytes(buffers.input_bytes(), gradients)));
}

// ---- Registration ------------------------------------------------------------------------------

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    for (const Operation operation : kOperations) {
      const std::string per_anchor =
          family_name(std::string("mnr/per_anchor/") + operation_name(operation), dtype);
      at_anchor_negative_shapes(timed_on_device(benchmark::RegisterBenchmark(
                                    per_anchor.c_str(), benchmark_per_anchor, operation, dtype)),
                                operation);
    }
    for (const Operation operation : kOperations) {
      const std::string in_batch =
          family_name(std::string("mnr/in_batch/") + operation_name(operation), dtype);
      timed_on_device(
          benchmark::RegisterBenchmark(in_batch.c_str(), benchmark_in_batch, operation, dtype))
          ->ArgNames({"B", "K", "D"})
          ->ArgsProduct({kInBatchSizes, kHardNegativeBlocks, kInBatchDims});
    }
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
