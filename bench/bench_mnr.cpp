// MNR (mnr.hpp) in its two layouts, mean, each in fp32 and in bf16 at the same shapes.
//   Per-anchor negatives at the seed notebook's settings (dot, scale 1), forward and
//   forward_backward with every gradient (anchors, positives, negatives, scale), at the (B, N, D)
//   of loss_buffers.cpp. One fused kernel that reads each vector once: memory-bound, so each is
//   reported against a device-to-device copy of the same compulsory bytes (in the dtype), in the
//   same run.
//   In-batch with K shared hard negatives at sentence-transformers' settings (cosine, scale 20, not
//   symmetric, no scale gradient, fp32 logits tile), forward_backward against the cuBLAS floor of
//   its three GEMMs in the same dtype: logits B x (1 + K) B x D, dAnchors and dCandidates.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/copy_floor.hpp"
#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"
#include "contrastive/mnr.hpp"

namespace contrastive::bench {
namespace {

constexpr float kSeedScale = 1.0f;
constexpr std::uint64_t kPositiveSeed = 3;  // loss_buffers.cpp draws anchors and negatives

const std::vector<std::int64_t> kInBatchSizes = {4096, 16384};
const std::vector<std::int64_t> kHardNegativeBlocks = {0, 1, 3};
const std::vector<std::int64_t> kInBatchDims = {768};
constexpr float kSentenceTransformersScale = 20.0f;

// ---- Per-anchor negatives ----------------------------------------------------------------------

enum class PerAnchorPass { kForward, kForwardBackward };

const char* pass_name(PerAnchorPass pass) {
  return pass == PerAnchorPass::kForward ? "forward" : "forward_backward";
}

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

// The arguments forward and forward_backward share.
template <typename Args>
Args per_anchor_args(const PerAnchorBuffers& buffers) {
  Args args;
  args.anchors = buffers.shared.anchors.get();
  args.positives = buffers.positives.get();
  args.negatives = buffers.shared.negatives.get();
  args.loss = buffers.shared.outputs.loss.as_floats();
  args.saved = buffers.shared.outputs.saved.get();
  return args;
}

Status run_per_anchor(PerAnchorPass pass, const GpuFixture& gpu, const mnr::PerAnchorParams& params,
                      const PerAnchorBuffers& buffers) {
  const LossOutputs& outputs = buffers.shared.outputs;
  if (pass == PerAnchorPass::kForward) {
    return call_loss(mnr::forward, gpu, params, per_anchor_args<mnr::PerAnchorForwardArgs>(buffers),
                     outputs);
  }
  auto args = per_anchor_args<mnr::PerAnchorForwardBackwardArgs>(buffers);
  args.grad_anchors = buffers.shared.grad_anchors.get();
  args.grad_positives = buffers.grad_positives.get();
  args.grad_negatives = buffers.shared.grad_negatives.get();
  args.grad_scale = buffers.grad_scale.as_floats();
  return call_loss(mnr::forward_backward, gpu, params, args, outputs);
}

std::vector<FiniteValue> per_anchor_outputs(PerAnchorPass pass, const PerAnchorBuffers& buffers) {
  std::vector<FiniteValue> values = {{buffers.shared.outputs.loss.as_floats(), "loss"}};
  if (pass == PerAnchorPass::kForwardBackward) {
    const DType dtype = buffers.shared.dtype;
    values.push_back({buffers.shared.grad_anchors.get(), "grad_anchors[0]", dtype});
    values.push_back({buffers.grad_positives.get(), "grad_positives[0]", dtype});
    values.push_back({buffers.shared.grad_negatives.get(), "grad_negatives[0]", dtype});
    values.push_back({buffers.grad_scale.as_floats(), "grad_scale"});
  }
  return values;
}

void benchmark_per_anchor(benchmark::State& state, PerAnchorPass pass, DType dtype) {
  const AnchorNegativeShape shape = anchor_negative_shape(state);
  const mnr::PerAnchorParams params = per_anchor_params(shape, dtype);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  PerAnchorBuffers buffers;
  if (!allocate_per_anchor(gpu, shape, params, &buffers)) return;

  const std::string call = std::string("mnr::") + pass_name(pass) + " (per-anchor)";
  const Work library_work = [&] {
    return gpu.check(run_per_anchor(pass, gpu, params, buffers), call.c_str());
  };
  // One untimed call whose Status and outputs are checked, which is also the warm-up.
  if (!library_work() || !gpu.require_finite(per_anchor_outputs(pass, buffers))) return;
  const bool gradients = pass == PerAnchorPass::kForwardBackward;
  time_against_copy_floor(gpu, library_work, compulsory_bytes(buffers.input_bytes(), gradients));
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

// Anchors are the buffers' Q (B, D); the candidates [P; N_1; ...; N_K] their K ((1 + K) B, D).
Status run_in_batch(const GpuFixture& gpu, const mnr::InBatchParams& params,
                    const LogitsLossBuffers& buffers) {
  mnr::InBatchForwardBackwardArgs args;
  args.anchors = buffers.q.get();
  args.candidates = buffers.k.get();
  args.loss = buffers.outputs.loss.as_floats();
  args.saved = buffers.outputs.saved.get();
  args.grad_anchors = buffers.grad_q.get();
  args.grad_candidates = buffers.grad_k.get();
  return call_loss(mnr::forward_backward, gpu, params, args, buffers.outputs);
}

void benchmark_in_batch(benchmark::State& state, DType dtype) {
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

  const Work library_work = [&] {
    return gpu.check(run_in_batch(gpu, params, buffers), "mnr::forward_backward (in-batch)");
  };
  // One untimed call whose Status and outputs are checked; it is also the warm-up (the handle
  // chooses and caches its GEMM algorithms on first use).
  if (!library_work() ||
      !gpu.require_finite({{buffers.outputs.loss.as_floats(), "loss"},
                           {buffers.grad_q.get(), "grad_anchors[0]", dtype},
                           {buffers.grad_k.get(), "grad_candidates[0]", dtype}})) {
    return;
  }
  time_against_cublas_floor(gpu, buffers.floor_gemms(params.scale, true), library_work,
                            static_cast<double>(compulsory_bytes(buffers.input_bytes(), true)));
}

// ---- Registration ------------------------------------------------------------------------------

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    for (const PerAnchorPass pass : {PerAnchorPass::kForward, PerAnchorPass::kForwardBackward}) {
      const std::string family =
          family_name(std::string("mnr/per_anchor/") + pass_name(pass), dtype);
      at_anchor_negative_shapes(timed_on_device(
          benchmark::RegisterBenchmark(family.c_str(), benchmark_per_anchor, pass, dtype)));
    }
    const std::string in_batch = family_name("mnr/in_batch/forward_backward", dtype);
    timed_on_device(benchmark::RegisterBenchmark(in_batch.c_str(), benchmark_in_batch, dtype))
        ->ArgNames({"B", "K", "D"})
        ->ArgsProduct({kInBatchSizes, kHardNegativeBlocks, kInBatchDims});
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
