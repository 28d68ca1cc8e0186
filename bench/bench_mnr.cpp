// MNR (mnr.hpp) in its two layouts, mean, forward, backward and forward_backward, each in fp32,
// bf16 and f16 at the same shapes.
//   Per-anchor negatives at the demo's settings (dot, scale 1), with every gradient
//   (anchors, positives, negatives, scale), at the (B, N, D) of bench/anchor_losses.hpp, each
//   against the memory floor of its traffic and, forward_backward, the unfused path
//   (bench/anchor_losses.hpp).
//   In-batch with K shared hard negatives at sentence-transformers' settings (cosine, scale 20, not
//   symmetric, no scale gradient, fp32 logits tile), against the cuBLAS floor of the GEMMs each
//   operation needs, in the same dtype (bench/logits_losses.hpp).
// Before timing, each compares its outputs with the float64 reference at sampled rows (the
// per-anchor scale gradient, a sum over every row, is not compared).
#include <cstdint>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/anchor_losses.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/logits_losses.hpp"
#include "bench/loss_buffers.hpp"

namespace contrastive::bench {
namespace {

constexpr float kDemoScale = 1.0f;

const std::vector<std::int64_t> kInBatchSizes = {4096, 16384};
const std::vector<std::int64_t> kHardNegativeBlocks = {0, 1, 3};
const std::vector<std::int64_t> kInBatchDims = {768};
constexpr float kSentenceTransformersScale = 20.0f;

void benchmark_per_anchor(benchmark::State& state, Operation operation, DType dtype) {
  describe::Shape shape = anchor_negative_shape(state, dtype);
  shape.similarity = Similarity::kDot;
  shape.logit_scale = kDemoScale;
  benchmark_anchor_loss(state, "mnr/per_anchor", params_of("MnrPerAnchor", shape),
                        /*scalar_gradient=*/true, operation);
}

void benchmark_in_batch(benchmark::State& state, Operation operation, DType dtype) {
  const describe::Shape shape = logits_shape(state.range(0), state.range(1), state.range(2), dtype,
                                             kSentenceTransformersScale);
  benchmark_logits_loss(state, "mnr/in_batch", params_of("MnrInBatch", shape), operation);
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    register_anchor_loss("mnr/per_anchor", benchmark_per_anchor, dtype);
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
