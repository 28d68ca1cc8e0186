// The benchmarks of the losses over anchors and per-anchor negatives (per-anchor MNR, Repel), from
// their descriptions: the (B, N, D) they are measured at, the comparison with the float64
// reference before timing, and the timing. Each is one fused kernel per operation that reads
// each vector once: memory-bound, so each is reported against the memory floor of the same
// traffic in the dtype (bench/memory_floor.hpp), timed side by side: forward reads the inputs (a
// read-only floor); backward and forward_backward also write their gradients (a device-to-device
// copy). forward_backward is also timed beside the unfused path (bench/unfused_anchor.hpp).
#pragma once

#include <string>

#include <benchmark/benchmark.h>

#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"

namespace contrastive::bench {

/// Registers the (B, N, D) at which the anchor-and-negatives losses are measured in `operation`,
/// as arguments "B", "N", "D". Every operation at (4096, 64, 256), (16384, 64, 256),
/// (4096, 16, 768); forward and forward_backward also on the grid B in {256, 8192} x
/// N in {1, 3, 16, 127} x D in {384, 768}.
benchmark::internal::Benchmark* at_anchor_negative_shapes(benchmark::internal::Benchmark* benchmark,
                                                          Operation operation);
/// Registers `run` (operation, dtype) as "<family>/<operation>/<dtype>" for every operation at
/// `dtype`, each at the shapes of at_anchor_negative_shapes().
void register_anchor_loss(const std::string& family,
                          void (*run)(benchmark::State&, Operation, DType), DType dtype);
/// The state's (B, N, D) as a Shape (candidates = N), inputs in `dtype`, mean.
describe::Shape anchor_negative_shape(const benchmark::State& state, DType dtype);

/// The float64 comparison before timing (bench/reference_check.hpp): forward with kNone (every
/// row's loss, or every (b, n) term's), backward with kNone and an upstream gradient of 1 on the
/// sampled rows' entries, both against the reference on those rows (every input's gradient; not
/// a scalar gradient, a sum over every row); then the timed configuration's mean loss against the
/// mean of the per-row losses. Writes the buffers' gradients.
bool check_anchor_loss(GpuFixture& gpu, const LossBuffers& timed);

/// One benchmark of `operation` of the loss at `params`: allocated, compared with the reference,
/// validated, then timed against its memory floor (and its unfused path for forward_backward).
void benchmark_anchor_loss(benchmark::State& state, const std::string& name,
                           const describe::Params& params, bool scalar_gradient,
                           Operation operation);

}  // namespace contrastive::bench
