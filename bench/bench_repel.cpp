// Repel (repel.hpp) forward_backward at the seed notebook's settings (cosine, margin 0.3, mean), in
// fp32 and in bf16, at the (B, N, D) of loss_buffers.cpp. One fused kernel that reads each row
// once: memory-bound, so it is reported against a device-to-device copy of the same compulsory
// bytes in the dtype (anchors and negatives read, their gradients written), measured in the same
// run.
// With random normal rows, cosines are about N(0, 1 / D), so nearly no term is above the margin and
// the loss is about 0; the kernel reads and writes every row either way (no branch on the hinge).
#include <cstdint>
#include <string>

#include <benchmark/benchmark.h>

#include "bench/copy_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"
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

Status run_forward_backward(const GpuFixture& gpu, const repel::Params& params,
                            const AnchorNegativeBuffers& buffers) {
  repel::ForwardBackwardArgs args;
  args.anchors = buffers.anchors.get();
  args.negatives = buffers.negatives.get();
  args.loss = buffers.outputs.loss.as_floats();
  args.saved = buffers.outputs.saved.get();
  args.grad_anchors = buffers.grad_anchors.get();
  args.grad_negatives = buffers.grad_negatives.get();
  return call_loss(repel::forward_backward, gpu, params, args, buffers.outputs);
}

void benchmark_repel(benchmark::State& state, DType dtype) {
  const AnchorNegativeShape shape = anchor_negative_shape(state);
  const repel::Params params = make_params(shape, dtype);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  AnchorNegativeBuffers buffers;
  if (!buffers.allocate(gpu, shape, dtype) ||
      !allocate_loss_outputs(gpu, params, &buffers.outputs)) {
    return;
  }

  const Work library_work = [&] {
    return gpu.check(run_forward_backward(gpu, params, buffers), "repel::forward_backward");
  };
  // One untimed call whose Status and outputs are checked, which is also the warm-up.
  if (!library_work() ||
      !gpu.require_finite({{buffers.outputs.loss.as_floats(), "loss"},
                           {buffers.grad_anchors.get(), "grad_anchors[0]", dtype},
                           {buffers.grad_negatives.get(), "grad_negatives[0]", dtype}})) {
    return;
  }
  time_against_copy_floor(gpu, library_work, compulsory_bytes(buffers.input_bytes(), true));
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    const std::string family = family_name("repel/forward_backward", dtype);
    at_anchor_negative_shapes(
        timed_on_device(benchmark::RegisterBenchmark(family.c_str(), benchmark_repel, dtype)));
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
