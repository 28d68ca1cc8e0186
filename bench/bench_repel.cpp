// Repel (repel.hpp) forward, backward and forward_backward at the seed notebook's settings (cosine,
// margin 0.3, mean), in fp32, bf16 and f16, at the (B, N, D) of loss_buffers.cpp. One fused kernel
// per operation that reads each row once: memory-bound, so each is reported against a
// device-to-device copy of the same compulsory bytes in the dtype, measured in the same run:
// forward reads anchors and negatives; backward and forward_backward read them and write their
// gradients. forward_backward is also timed beside the unfused path (bench/unfused_anchor.hpp).
// With random normal rows, cosines are about N(0, 1 / D), so nearly no term is above the margin and
// the loss is about 0; the kernel reads and writes every row either way (no branch on the hinge).
#include <string>
#include <type_traits>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/copy_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"
#include "bench/unfused_anchor.hpp"
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
  if (!loss.validate(gpu, operation, finite_outputs(operation, buffers))) return;
  if (!time_against_copy_floor(
          gpu, loss.work(gpu, operation),
          compulsory_bytes(buffers.input_bytes(), writes_gradients(operation)))) {
    return;
  }
  if (operation == Operation::kForwardBackward) {
    time_unfused(gpu, params, repel_args<repel::ForwardBackwardArgs>(buffers));
  }
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    for (const Operation operation : kOperations) {
      const std::string family =
          family_name(std::string("repel/") + operation_name(operation), dtype);
      at_anchor_negative_shapes(timed_on_device(
          benchmark::RegisterBenchmark(family.c_str(), benchmark_repel, operation, dtype)));
    }
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
