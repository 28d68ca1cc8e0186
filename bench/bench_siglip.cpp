// SigLIP's sigmoid loss (siglip.hpp) forward, backward and forward_backward at open_clip's
// training settings (cosine, a learnable log-scale t' = log 10 and bias b = -10, mean over rows,
// M == B) with both scalar gradients, in fp32, bf16 and f16 (fp32 logits tile), each beside the
// cuBLAS floor of its GEMMs in the same dtype measured in the same run (bench/logits_losses.hpp):
// forward S = Q K^T; backward and forward_backward also dQ = G K and dK = G^T Q. Before timing,
// the outputs are compared with the float64 reference at sampled rows.
//
// Large batches: forward_backward in bf16 at B = 65536 and 131072 on the path the default
// workspace budget picks (tiled: the materialized logits would not fit it), with its loss memory.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/gpu_fixture.hpp"
#include "bench/logits_losses.hpp"
#include "bench/loss_buffers.hpp"
#include "contrastive/siglip.hpp"

namespace contrastive::bench {
namespace {

const std::vector<std::int64_t> kBatchSizes = {4096, 16384};
const std::vector<std::int64_t> kLargeBatchSizes = {65536, 131072};
const std::vector<std::int64_t> kDims = {768};

describe::Params open_clip_params(std::int64_t batch, std::int64_t dim, DType dtype) {
  describe::Params params = params_of("SigLIP", logits_shape(batch, 0, dim, dtype, 0.0f));
  auto& p = std::get<siglip::Params>(params);
  p.log_scale = true;
  p.scale = std::log(10.0f);
  p.bias = -10.0f;
  return params;
}

// Also the loss memory (workspace and saved) of the call, in GB.
void benchmark_siglip(benchmark::State& state, Operation operation, DType dtype) {
  const describe::Params params = open_clip_params(state.range(0), state.range(1), dtype);
  std::size_t workspace = 0, saved = 0;
  if (describe::workspace_size(params, &workspace) == Status::kSuccess &&
      describe::saved_size(params, &saved) == Status::kSuccess) {
    state.counters["loss_memory_GB"] = static_cast<double>(workspace + saved) * 1e-9;
  }
  benchmark_logits_loss(state, "siglip", params, operation, /*scalar_gradients=*/true);
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    for (const Operation operation : kOperations) {
      const std::string name =
          family_name(std::string("siglip/") + operation_name(operation), dtype);
      timed_on_device(
          benchmark::RegisterBenchmark(name.c_str(), benchmark_siglip, operation, dtype))
          ->ArgNames({"B", "D"})
          ->ArgsProduct({kBatchSizes, kDims});
    }
  }
  const std::string large = family_name("siglip_large/forward_backward", DType::kBF16);
  timed_on_device(benchmark::RegisterBenchmark(large.c_str(), benchmark_siglip,
                                               Operation::kForwardBackward, DType::kBF16))
      ->ArgNames({"B", "D"})
      ->ArgsProduct({kLargeBatchSizes, kDims});
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
