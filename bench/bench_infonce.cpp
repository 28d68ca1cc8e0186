// InfoNCE forward, backward and forward_backward at the demo's settings (cosine,
// temperature 0.1, mean, M == B, not symmetric), in fp32, bf16 and f16 (fp32 logits tile), each
// beside its cuBLAS floor in the same dtype measured in the same run: forward must do S = Q K^T;
// backward recomputes S and does dQ = G K and dK = G^T Q; forward_backward does the same three.
// forward_backward is also timed beside the unfused path (bench/unfused_infonce.hpp). Library,
// floor and unfused path are timed side by side (GpuFixture::time_side_by_side), after the
// library's outputs were compared with the float64 reference at sampled rows
// (bench/logits_losses.hpp).
//
// Large batches: CLIP's symmetric loss, forward_backward in bf16 at B = M up to 131072, on the
// tiled and on the materialized path, with each path's loss memory (workspace and saved) and its
// capacity on the card: the largest B whose inputs, gradients and loss memory fit the device. Each
// path is compared with the reference at its own shape before it is timed, so the tiled path that
// is timed is the one checked.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/logits_losses.hpp"
#include "bench/loss_buffers.hpp"
#include "bench/unfused_infonce.hpp"
#include "contrastive/infonce.hpp"

namespace contrastive::bench {
namespace {

// The 16-bit dtypes only at the batches where training runs in them and the GEMMs dominate.
const std::vector<std::int64_t> kF32BatchSizes = {1024, 4096, 16384};
const std::vector<std::int64_t> k16BitBatchSizes = {4096, 16384};
const std::vector<std::int64_t> kDims = {256, 768};
constexpr float kTemperature = 0.1f;

// M == B.
infonce::Params make_params(std::int64_t batch, std::int64_t dim, DType dtype) {
  return std::get<infonce::Params>(
      params_of("InfoNCE", logits_shape(batch, 0, dim, dtype, 1.0f / kTemperature)));
}

// forward_backward is also timed beside the unfused path (GEMM, then separate softmax, log and
// mean kernels, see bench/unfused_infonce.hpp), run once first (its loss must be finite). No
// temperature gradient: the temperature is a fixed hyperparameter in this configuration.
void benchmark_infonce(benchmark::State& state, Operation operation, DType dtype) {
  const infonce::Params params = make_params(state.range(0), state.range(1), dtype);
  GpuFixture gpu(state);
  LossBuffers buffers;
  if (!prepare_logits_loss(gpu, "infonce", params, operation, &buffers)) return;
  if (operation != Operation::kForwardBackward) {
    time_logits_loss(gpu, buffers, operation);
    return;
  }
  CublasFloor cublas(gpu);
  UnfusedInfoNCE unfused;
  if (!cublas.ready() || !unfused.allocate(gpu, params.batch, params.dim, params.dtype)) return;
  float* const loss = static_cast<float*>(buffers.at("loss"));
  const Work unfused_work = [&] {
    return unfused.enqueue(gpu, cublas.handle(), buffers.at("q"), buffers.at("k"),
                           buffers.at("grad_q"), buffers.at("grad_k"), loss, params.temperature);
  };
  if (!unfused_work() || !gpu.require_finite({{loss, "unfused loss"}})) return;
  time_logits_loss(gpu, buffers, operation, &unfused_work);
}

// ---- Large batches: the tiled and the materialized path --------------------------------------

const std::vector<std::int64_t> kLargeBatchSizes = {16384, 32768, 65536, 131072};
constexpr std::int64_t kCapacityStep = 1024;

infonce::Params clip_params(std::int64_t batch, std::int64_t dim, Tiling tiling) {
  infonce::Params params = make_params(batch, dim, DType::kBF16);
  params.symmetric = true;
  params.tiling = tiling;
  return params;
}

// What one forward_backward holds on the device besides the library's loss memory: Q, K and their
// gradients.
std::size_t operand_bytes(const infonce::Params& p) {
  return 2 * (matrix_bytes(p.batch, p.dim, p.dtype) + matrix_bytes(p.num_keys, p.dim, p.dtype));
}

// Workspace and saved: the memory the loss itself needs (0 when a size does not fit 64 bits).
std::size_t loss_bytes(const infonce::Params& p) {
  std::size_t workspace = 0, saved = 0;
  if (infonce::workspace_size(p, &workspace) != Status::kSuccess ||
      infonce::saved_size(p, &saved) != Status::kSuccess) {
    return 0;
  }
  return workspace + saved;
}

// The largest B (a multiple of kCapacityStep) whose operands and loss memory fit in `bytes`.
std::int64_t capacity(std::int64_t dim, Tiling tiling, std::size_t bytes) {
  auto fits = [&](std::int64_t batch) {
    const infonce::Params p = clip_params(batch, dim, tiling);
    const std::size_t loss = loss_bytes(p);
    return loss != 0 && loss + operand_bytes(p) <= bytes;
  };
  std::int64_t low = 0, high = kCapacityStep;
  while (fits(high) && high < (std::int64_t{1} << 30)) low = high, high *= 2;
  while (high - low > kCapacityStep) {
    const std::int64_t middle = (low + high) / 2 / kCapacityStep * kCapacityStep;
    (fits(middle) ? low : high) = middle;
  }
  return low;
}

void benchmark_large_batch(benchmark::State& state, Tiling tiling) {
  const infonce::Params params = clip_params(state.range(0), state.range(1), tiling);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  std::size_t free_bytes = 0, total_bytes = 0;
  if (!gpu.check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo")) return;
  // The reference comparison before timing holds a second loss memory (its kNone calls').
  const std::size_t loss_memory = loss_bytes(params);
  const std::size_t needed = loss_memory == 0 ? 0 : 2 * loss_memory + operand_bytes(params);
  state.counters["loss_memory_GB"] = static_cast<double>(loss_memory) * 1e-9;
  state.counters["capacity_B"] = static_cast<double>(capacity(params.dim, tiling, free_bytes));
  if (needed == 0 || needed > free_bytes) {  // recorded, not dropped
    gpu.fail("out of memory: needs (with the reference check's loss memory) " +
             std::to_string(static_cast<double>(needed) * 1e-9) + " GB, " +
             std::to_string(static_cast<double>(free_bytes) * 1e-9) + " GB free");
    return;
  }
  // No floor: its B x M logits would not fit at these batches.
  const Operation operation = Operation::kForwardBackward;
  LossBuffers buffers;
  if (!prepare_logits_loss(gpu, "infonce", params, operation, &buffers)) return;
  std::vector<double> medians;
  if (!gpu.time_side_by_side({{"median_ms", buffers.work(gpu, operation)}}, &medians)) return;
  gpu.report_work(3.0 * 2.0 * static_cast<double>(params.batch) *
                      static_cast<double>(params.num_keys) * static_cast<double>(params.dim),
                  operation_bytes(operation, buffers));
}

void register_benchmarks() {
  for (const DType dtype : kMeasuredDTypes) {
    const std::vector<std::int64_t>& batch_sizes =
        dtype == DType::kF32 ? kF32BatchSizes : k16BitBatchSizes;
    for (const Operation operation : kOperations) {
      const std::string family =
          family_name(std::string("infonce/") + operation_name(operation), dtype);
      timed_on_device(
          benchmark::RegisterBenchmark(family.c_str(), benchmark_infonce, operation, dtype))
          ->ArgNames({"B", "D"})
          ->ArgsProduct({batch_sizes, kDims});
    }
  }
  for (const Tiling tiling : {Tiling::kTiled, Tiling::kMaterialized}) {
    const std::string family =
        family_name(std::string("infonce_clip/forward_backward/") +
                        (tiling == Tiling::kTiled ? "tiled" : "materialized"),
                    DType::kBF16);
    timed_on_device(benchmark::RegisterBenchmark(family.c_str(), benchmark_large_batch, tiling))
        ->ArgNames({"B", "D"})
        ->ArgsProduct({kLargeBatchSizes, kDims});
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  return contrastive::bench::run_registered_benchmarks(argc, argv);
}
