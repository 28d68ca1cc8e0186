// InfoNCE forward, backward and forward_backward at the default loss's settings (cosine,
// temperature 0.1, mean, M == B, not symmetric), in fp32, bf16 and f16 (fp32 logits tile), each
// beside its cuBLAS floor in the same dtype measured in the same run: forward must do S = Q K^T;
// backward recomputes S and does dQ = G K and dK = G^T Q; forward_backward does the same three.
// forward_backward is also timed beside the unfused path (bench/unfused_infonce.hpp). Library,
// floor and unfused path are timed side by side (GpuFixture::time_side_by_side), after the
// library's outputs were compared with the float64 reference at sampled rows
// (bench/logits_check.hpp).
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
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/logits_check.hpp"
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

infonce::Params make_params(std::int64_t batch, std::int64_t dim, DType dtype) {
  auto params = logits_loss_params<infonce::Params>(dtype);
  params.batch = batch;
  params.num_keys = batch;
  params.dim = dim;
  params.temperature = kTemperature;
  return params;
}

// Q is (B, D), K is (M, D).
bool allocate_buffers(GpuFixture& gpu, const infonce::Params& params, LogitsLossBuffers* buffers) {
  return buffers->allocate(gpu, {params.batch, params.num_keys, params.dim}, params.dtype) &&
         allocate_loss_outputs(gpu, params, &buffers->outputs);
}

// ---- The library ------------------------------------------------------------------------------

Status run_forward(const GpuFixture& gpu, const infonce::Params& params,
                   const LogitsLossBuffers& buffers) {
  infonce::ForwardArgs args;
  args.q = buffers.q.get();
  args.k = buffers.k.get();
  args.loss = buffers.outputs.loss.as_floats();
  args.saved = buffers.outputs.saved.get();
  return call_loss(infonce::forward, gpu, params, args, buffers.outputs);
}

// No temperature gradient: the temperature is a fixed hyperparameter in this configuration.
Status run_backward(const GpuFixture& gpu, const infonce::Params& params,
                    const LogitsLossBuffers& buffers) {
  infonce::BackwardArgs args;
  args.q = buffers.q.get();
  args.k = buffers.k.get();
  args.saved = buffers.outputs.saved.get();
  args.grad_q = buffers.grad_q.get();
  args.grad_k = buffers.grad_k.get();
  return call_loss(infonce::backward, gpu, params, args, buffers.outputs);
}

Status run_forward_backward(const GpuFixture& gpu, const infonce::Params& params,
                            const LogitsLossBuffers& buffers) {
  infonce::ForwardBackwardArgs args;
  args.q = buffers.q.get();
  args.k = buffers.k.get();
  args.loss = buffers.outputs.loss.as_floats();
  args.saved = buffers.outputs.saved.get();
  args.grad_q = buffers.grad_q.get();
  args.grad_k = buffers.grad_k.get();
  return call_loss(infonce::forward_backward, gpu, params, args, buffers.outputs);
}

Status run_operation(Operation operation, const GpuFixture& gpu, const infonce::Params& params,
                     const LogitsLossBuffers& buffers) {
  switch (operation) {
    case Operation::kForward: return run_forward(gpu, params, buffers);
    case Operation::kBackward: return run_backward(gpu, params, buffers);
    case Operation::kForwardBackward: return run_forward_backward(gpu, params, buffers);
  }
  return Status::kInternalError;
}

LossCalls loss_calls(const GpuFixture& gpu, const infonce::Params& params,
                     const LogitsLossBuffers& buffers) {
  return {"infonce", [&gpu, &params, &buffers](Operation operation) {
            return run_operation(operation, gpu, params, buffers);
          }};
}

// What the untimed call must leave finite.
std::vector<FiniteValue> finite_outputs(Operation operation, const LogitsLossBuffers& buffers) {
  std::vector<FiniteValue> values = {{buffers.outputs.loss.as_floats(), "loss"}};
  if (writes_gradients(operation)) {
    values.push_back({buffers.grad_q.get(), "grad_q[0]", buffers.dtype});
  }
  return values;
}

// ---- The floor --------------------------------------------------------------------------------

// Forward must do S = Q K^T; backward recomputes S and does dQ and dK; forward_backward does the
// same three.
LogitsGemms floor_gemms(Operation operation, const infonce::Params& params,
                        const LogitsLossBuffers& buffers) {
  return buffers.floor_gemms(1.0f / params.temperature, writes_gradients(operation));
}

// Q and K read once, and for the gradient passes dQ and dK written once.
double operation_bytes(Operation operation, const LogitsLossBuffers& buffers) {
  return static_cast<double>(compulsory_bytes(buffers.input_bytes(), writes_gradients(operation)));
}

// ---- The reference comparison ----------------------------------------------------------------

// check_logits_loss on InfoNCE itself: the kNone calls with a loss memory of their own.
bool check_against_reference(GpuFixture& gpu, const infonce::Params& params,
                             const LogitsLossBuffers& buffers) {
  infonce::Params none = params;
  none.reduction = Reduction::kNone;
  LossOutputs outputs;
  if (!allocate_loss_outputs(gpu, none, &outputs)) return false;
  LogitsCalls calls;
  calls.forward = [&](float* per_row_loss) {
    infonce::ForwardArgs args;
    args.q = buffers.q.get();
    args.k = buffers.k.get();
    args.loss = per_row_loss;
    args.saved = outputs.saved.get();
    return call_loss(infonce::forward, gpu, none, args, outputs);
  };
  calls.backward = [&](const float* grad_loss) {
    infonce::BackwardArgs args;
    args.q = buffers.q.get();
    args.k = buffers.k.get();
    args.saved = outputs.saved.get();
    args.grad_loss = grad_loss;
    args.grad_q = buffers.grad_q.get();
    args.grad_k = buffers.grad_k.get();
    return call_loss(infonce::backward, gpu, none, args, outputs);
  };
  calls.timed_forward = [&] { return run_forward(gpu, params, buffers); };
  return check_logits_loss(gpu, params, 1.0 / params.temperature, buffers, calls);
}

// ---- The benchmark ----------------------------------------------------------------------------

// forward_backward is also timed beside the unfused path (GEMM, then separate softmax, log and
// mean kernels, see bench/unfused_infonce.hpp), run once first (its loss must be finite).
void benchmark_infonce(benchmark::State& state, Operation operation, DType dtype) {
  const infonce::Params params = make_params(state.range(0), state.range(1), dtype);
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  LogitsLossBuffers buffers;
  if (!allocate_buffers(gpu, params, &buffers)) return;
  const LossCalls loss = loss_calls(gpu, params, buffers);
  if (!check_against_reference(gpu, params, buffers)) return;
  if (!loss.validate(gpu, operation, finite_outputs(operation, buffers))) return;
  const LogitsGemms gemms = floor_gemms(operation, params, buffers);
  const Work library = loss.work(gpu, operation);
  if (operation != Operation::kForwardBackward) {
    time_against_cublas_floor(gpu, gemms, library, operation_bytes(operation, buffers));
    return;
  }
  CublasFloor cublas(gpu);
  UnfusedInfoNCE unfused;
  if (!cublas.ready() || !unfused.allocate(gpu, params.batch, params.dim, params.dtype)) return;
  const Work unfused_work = [&] {
    return unfused.enqueue(gpu, cublas.handle(), buffers.q.get(), buffers.k.get(),
                           buffers.grad_q.get(), buffers.grad_k.get(),
                           buffers.outputs.loss.as_floats(), params.temperature);
  };
  if (!unfused_work() ||
      !gpu.require_finite({{buffers.outputs.loss.as_floats(), "unfused loss"}})) {
    return;
  }
  time_against_cublas_floor(gpu, gemms, library, operation_bytes(operation, buffers),
                            &unfused_work);
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
  LogitsLossBuffers buffers;
  if (!buffers.allocate(gpu, {params.batch, params.num_keys, params.dim}, params.dtype,
                        /*with_floor=*/false) ||
      !allocate_loss_outputs(gpu, params, &buffers.outputs)) {
    return;
  }
  const LossCalls loss = loss_calls(gpu, params, buffers);
  const Operation operation = Operation::kForwardBackward;
  if (!check_against_reference(gpu, params, buffers)) return;
  if (!loss.validate(gpu, operation, finite_outputs(operation, buffers))) return;
  std::vector<double> medians;
  if (!gpu.time_side_by_side({{"median_ms", loss.work(gpu, operation)}}, &medians)) return;
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
