// Repel (repel.hpp) forward, backward and forward_backward at the defaults (cosine,
// margin 0.3, mean), in fp32, bf16 and f16, at the (B, N, D) of loss_buffers.cpp. One fused kernel
// per operation that reads each row once: memory-bound, so each is reported against the memory
// floor of the same traffic in the dtype (bench/memory_floor.hpp), timed side by side: forward
// reads anchors and negatives (a read-only floor); backward and forward_backward also write their
// gradients (a device-to-device copy). forward_backward is also timed beside the unfused path
// (bench/unfused_anchor.hpp). Before timing, the outputs are compared with the float64 reference
// at sampled rows (bench/reference_check.hpp).
// With random normal rows, cosines are about N(0, 1 / D), so nearly no term is above the margin and
// the loss is about 0; the kernel reads and writes every row either way (no branch on the hinge).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"
#include "bench/memory_floor.hpp"
#include "bench/reference_check.hpp"
#include "bench/unfused_anchor.hpp"
#include "contrastive/reference.hpp"
#include "contrastive/repel.hpp"

namespace contrastive::bench {
namespace {

constexpr float kSeedMargin = 0.3f;

repel::Params make_params(const AnchorNegativeShape& shape, DType dtype) {
  auto params = anchor_negative_params<repel::Params>(shape, dtype);
  params.margin = kSeedMargin;
  params.mean_over_active = false;
  return params;
}

// Any operation's arguments (repel::ForwardArgs, BackwardArgs or ForwardBackwardArgs): the inputs
// and saved, forward's loss, backward's gradients.
template <typename Args>
Args repel_args(const AnchorNegativeBuffers& buffers) {
  Args args;
  args.anchors = buffers.anchors.get();
  args.negatives = buffers.negatives.get();
  args.saved = buffers.outputs.saved.get();
  if constexpr (!std::is_same_v<Args, repel::BackwardArgs>) {
    args.loss = buffers.outputs.loss.as_floats();
  }
  if constexpr (!std::is_same_v<Args, repel::ForwardArgs>) {
    args.grad_anchors = buffers.grad_anchors.get();
    args.grad_negatives = buffers.grad_negatives.get();
  }
  return args;
}

Status run_operation(Operation operation, const GpuFixture& gpu, const repel::Params& params,
                     const AnchorNegativeBuffers& buffers) {
  switch (operation) {
    case Operation::kForward:
      return call_loss(repel::forward, gpu, params, repel_args<repel::ForwardArgs>(buffers),
                       buffers.outputs);
    case Operation::kBackward:
      return call_loss(repel::backward, gpu, params, repel_args<repel::BackwardArgs>(buffers),
                       buffers.outputs);
    case Operation::kForwardBackward:
      return call_loss(repel::forward_backward, gpu, params,
                       repel_args<repel::ForwardBackwardArgs>(buffers), buffers.outputs);
  }
  return Status::kInternalError;
}

// What the untimed call must leave finite (backward's loss is its forward's).
std::vector<FiniteValue> finite_outputs(Operation operation, const AnchorNegativeBuffers& buffers) {
  std::vector<FiniteValue> values = {{buffers.outputs.loss.as_floats(), "loss"}};
  if (writes_gradients(operation)) {
    values.push_back({buffers.grad_anchors.get(), "grad_anchors[0]", buffers.dtype});
    values.push_back({buffers.grad_negatives.get(), "grad_negatives[0]", buffers.dtype});
  }
  return values;
}

// The float64 comparison before timing (bench/reference_check.hpp): forward with kNone (the
// (B, N) terms), backward with kNone and an upstream gradient of 1 on the sampled rows' terms,
// both against the reference on those rows; then the timed configuration's mean loss against the
// mean of the terms. Uses the buffers' gradients and a workspace of its own.
bool check_against_reference(GpuFixture& gpu, const repel::Params& params,
                             const AnchorNegativeBuffers& buffers) {
  const auto [batch, negatives, dim] = buffers.shape;
  const std::int64_t terms = batch * negatives;
  const std::vector<std::int64_t> rows = sampled_rows(batch, kSampledRows);
  repel::Params none = params;
  none.reduction = Reduction::kNone;
  LossOutputs outputs;
  DeviceBuffer term_losses, grad_loss;
  std::vector<float> mask(static_cast<std::size_t>(terms), 0.0f);
  for (const std::int64_t r : rows) {
    std::fill_n(mask.begin() + r * negatives, negatives, 1.0f);
  }
  if (!allocate_loss_outputs(gpu, none, &outputs) ||
      !gpu.allocate(mask.size() * sizeof(float), &term_losses) ||
      !gpu.allocate(mask.size() * sizeof(float), &grad_loss) ||
      !gpu.upload(mask.data(), mask.size() * sizeof(float), grad_loss.get())) {
    return false;
  }
  repel::ForwardArgs forward;
  forward.anchors = buffers.anchors.get();
  forward.negatives = buffers.negatives.get();
  forward.loss = term_losses.as_floats();
  forward.saved = outputs.saved.get();
  repel::BackwardArgs backward;
  backward.anchors = buffers.anchors.get();
  backward.negatives = buffers.negatives.get();
  backward.saved = outputs.saved.get();
  backward.grad_loss = grad_loss.as_floats();
  backward.grad_anchors = buffers.grad_anchors.get();
  backward.grad_negatives = buffers.grad_negatives.get();
  std::vector<float> gpu_terms(mask.size());
  SampledAnchorRows inputs;
  std::vector<double> grad_anchors, grad_negatives;
  if (!gpu.check(call_loss(repel::forward, gpu, none, forward, outputs), "repel/forward(none)") ||
      !gpu.check(call_loss(repel::backward, gpu, none, backward, outputs),
                 "repel/backward(none)") ||
      !gpu.download(term_losses.get(), mask.size() * sizeof(float), gpu_terms.data()) ||
      !download_anchor_rows(gpu, buffers, nullptr, rows, &inputs) ||
      !download_block_rows(gpu, buffers.grad_anchors.get(), 1, dim, buffers.dtype, rows,
                           &grad_anchors) ||
      !download_block_rows(gpu, buffers.grad_negatives.get(), negatives, dim, buffers.dtype, rows,
                           &grad_negatives)) {
    return false;
  }
  repel::Params sub = none;
  sub.batch = static_cast<std::int64_t>(rows.size());
  reference::RepelForward expected;
  reference::RepelBackward expected_grads;
  const std::vector<double> ones(static_cast<std::size_t>(sub.batch * negatives), 1.0);
  if (!gpu.check(
          reference::repel_forward(sub, inputs.anchors.data(), inputs.negatives.data(), &expected),
          "reference::repel_forward") ||
      !gpu.check(reference::repel_backward(sub, inputs.anchors.data(), inputs.negatives.data(),
                                           ones.data(), &expected_grads),
                 "reference::repel_backward")) {
    return false;
  }
  const double relative = anchor_relative_tolerance(buffers.dtype, dim, 1.0);  // |cos| <= 1
  Comparison comparison;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    for (std::int64_t n = 0; n < negatives; ++n) {
      const std::size_t at = k * static_cast<std::size_t>(negatives) + static_cast<std::size_t>(n);
      comparison.add("loss term", static_cast<std::size_t>(rows[k] * negatives + n),
                     gpu_terms[static_cast<std::size_t>(rows[k] * negatives + n)],
                     expected.loss[at], relative * (1.0 + std::fabs(expected.loss[at])));
    }
  }
  comparison.add_all("grad_anchors (sampled rows)", grad_anchors, expected_grads.grad_anchors,
                     relative * largest_magnitude(expected_grads.grad_anchors), relative);
  comparison.add_all("grad_negatives (sampled rows)", grad_negatives, expected_grads.grad_negatives,
                     relative * largest_magnitude(expected_grads.grad_negatives), relative);
  // The timed configuration's mean against the mean of the kNone terms (the same sums, reduced).
  double sum = 0.0, magnitude = 0.0;
  for (const float term : gpu_terms) {
    sum += term;
    magnitude += std::fabs(term);
  }
  float mean = 0.0f;
  repel::ForwardArgs mean_args = forward;
  mean_args.loss = buffers.outputs.loss.as_floats();
  mean_args.saved = buffers.outputs.saved.get();
  if (!gpu.check(call_loss(repel::forward, gpu, params, mean_args, buffers.outputs),
                 "repel/forward") ||
      !gpu.download(buffers.outputs.loss.get(), sizeof(float), &mean)) {
    return false;
  }
  const double count = static_cast<double>(terms);
  comparison.add("mean loss vs mean of the terms", 0, mean, sum / count,
                 mean_tolerance(count, magnitude));
  return gpu.report_reference(rows.size(), comparison.worst_ratio(), comparison.failure());
}

void benchmark_repel(benchmark::State& state, Operation operation, DType dtype) {
  const AnchorNegativeShape shape = anchor_negative_shape(state);
  const repel::Params params = make_params(shape, dtype);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  AnchorNegativeBuffers buffers;
  if (!buffers.allocate(gpu, shape, dtype) ||
      !allocate_loss_outputs(gpu, params, &buffers.outputs)) {
    return;
  }

  const LossCalls loss{"repel",
                       [&](Operation call) { return run_operation(call, gpu, params, buffers); }};
  if (!check_against_reference(gpu, params, buffers)) return;
  if (!loss.validate(gpu, operation, finite_outputs(operation, buffers))) return;
  const Work library = loss.work(gpu, operation);
  const std::size_t input_bytes = buffers.input_bytes();
  const bool writes = writes_gradients(operation);
  if (operation != Operation::kForwardBackward) {
    time_against_memory_floor(gpu, library, input_bytes, writes);
    return;
  }
  with_unfused(gpu, params, repel_args<repel::ForwardBackwardArgs>(buffers),
               [&](const Work& unfused) {
                 return time_against_memory_floor(gpu, library, input_bytes, writes, &unfused);
               });
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    for (const Operation operation : kOperations) {
      const std::string family =
          family_name(std::string("repel/") + operation_name(operation), dtype);
      at_anchor_negative_shapes(timed_on_device(benchmark::RegisterBenchmark(
                                    family.c_str(), benchmark_repel, operation, dtype)),
                                operation);
    }
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
