// Repel (repel.hpp) forward, backward and forward_backward at the demo's settings (cosine,
// margin 0.3, mean), in fp32, bf16 and f16, at the (B, N, D) of bench/anchor_losses.hpp, each
// against the memory floor of its traffic and, forward_backward, the unfused path; compared with
// the float64 reference at sampled rows (every (b, n) term's loss) before timing.
// With random normal rows, cosines are about N(0, 1 / D), so nearly no term is above the margin and
// the loss is about 0; the kernel reads and writes every row either way (no branch on the hinge).
#include <string>
#include <variant>

#include <benchmark/benchmark.h>

#include "bench/anchor_losses.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"

namespace contrastive::bench {
namespace {

constexpr float kDemoMargin = 0.3f;

void benchmark_repel(benchmark::State& state, Operation operation, DType dtype) {
  describe::Params params = params_of("Repel", anchor_negative_shape(state, dtype));
  std::get<repel::Params>(params).margin = kDemoMargin;
  std::get<repel::Params>(params).mean_over_active = false;
  benchmark_anchor_loss(state, "repel", params, /*scalar_gradient=*/false, operation);
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) register_anchor_loss("repel", benchmark_repel, dtype);
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
