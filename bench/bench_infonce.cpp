// InfoNCE forward, backward and forward_backward at the seed notebook's settings (cosine,
// temperature 0.1, mean, fp32, M == B, not symmetric), each beside its cuBLAS floor measured in the
// same run: forward must do S = Q K^T; backward recomputes S and does dQ = G K and dK = G^T Q;
// forward_backward does the same three.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "contrastive/infonce.hpp"

namespace contrastive::bench {
namespace {

const std::vector<std::int64_t> kBatchSizes = {1024, 4096, 16384};
const std::vector<std::int64_t> kDims = {256, 768};
constexpr float kTemperature = 0.1f;
constexpr std::uint64_t kQuerySeed = 1;
constexpr std::uint64_t kKeySeed = 2;
constexpr int kFloorRuns = 7;  // odd, so the median is one measured run
constexpr std::size_t kMeanLossCount = 1;

enum class Operation { kForward, kBackward, kForwardBackward };

const char* operation_name(Operation operation) {
  switch (operation) {
    case Operation::kForward: return "forward";
    case Operation::kBackward: return "backward";
    case Operation::kForwardBackward: return "forward_backward";
  }
  return "unknown";
}

std::string call_name(Operation operation) {
  return std::string("infonce::") + operation_name(operation);
}

infonce::Params make_params(std::int64_t batch, std::int64_t dim) {
  infonce::Params params;
  params.batch = batch;
  params.num_keys = batch;
  params.dim = dim;
  params.dtype = DType::kF32;
  params.similarity = Similarity::kCosine;
  params.reduction = Reduction::kMean;
  params.temperature = kTemperature;
  params.symmetric = false;
  params.allow_tf32 = false;
  return params;
}

struct InfonceBuffers {
  DeviceBuffer q;             // (B, D) random normal
  DeviceBuffer k;             // (M, D) random normal
  DeviceBuffer loss;          // (1)
  DeviceBuffer saved;         // saved_size() bytes
  DeviceBuffer workspace;     // workspace_size() bytes
  DeviceBuffer grad_q;        // (B, D)
  DeviceBuffer grad_k;        // (M, D)
  DeviceBuffer floor_logits;  // (B, M): the floor's S, reused as its G
};

std::size_t float_bytes(std::int64_t rows, std::int64_t cols) {
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols) * sizeof(float);
}

bool allocate_buffers(GpuFixture& gpu, const infonce::Params& params, InfonceBuffers* buffers) {
  std::size_t workspace_bytes = 0;
  std::size_t saved_bytes = 0;
  if (!gpu.check(infonce::workspace_size(params, &workspace_bytes), "infonce::workspace_size") ||
      !gpu.check(infonce::saved_size(params, &saved_bytes), "infonce::saved_size")) {
    return false;
  }
  const std::size_t q_bytes = float_bytes(params.batch, params.dim);
  const std::size_t k_bytes = float_bytes(params.num_keys, params.dim);
  return gpu.allocate(q_bytes, &buffers->q) && gpu.allocate(k_bytes, &buffers->k) &&
         gpu.allocate(kMeanLossCount * sizeof(float), &buffers->loss) &&
         gpu.allocate(saved_bytes, &buffers->saved) &&
         gpu.allocate(workspace_bytes, &buffers->workspace) &&
         gpu.allocate(q_bytes, &buffers->grad_q) && gpu.allocate(k_bytes, &buffers->grad_k) &&
         gpu.allocate(float_bytes(params.batch, params.num_keys), &buffers->floor_logits) &&
         gpu.fill_random_normal(buffers->q, q_bytes / sizeof(float), kQuerySeed) &&
         gpu.fill_random_normal(buffers->k, k_bytes / sizeof(float), kKeySeed);
}

// ---- The library ------------------------------------------------------------------------------

Status run_forward(const GpuFixture& gpu, const infonce::Params& params,
                   const InfonceBuffers& buffers) {
  infonce::ForwardArgs args;
  args.q = buffers.q.get();
  args.k = buffers.k.get();
  args.loss = buffers.loss.as_floats();
  args.saved = buffers.saved.get();
  return infonce::forward(gpu.handle(), params, args, buffers.workspace.get(),
                          buffers.workspace.bytes(), gpu.stream());
}

// No temperature gradient: the temperature is a fixed hyperparameter in this configuration.
Status run_backward(const GpuFixture& gpu, const infonce::Params& params,
                    const InfonceBuffers& buffers) {
  infonce::BackwardArgs args;
  args.q = buffers.q.get();
  args.k = buffers.k.get();
  args.saved = buffers.saved.get();
  args.grad_q = buffers.grad_q.get();
  args.grad_k = buffers.grad_k.get();
  return infonce::backward(gpu.handle(), params, args, buffers.workspace.get(),
                           buffers.workspace.bytes(), gpu.stream());
}

Status run_forward_backward(const GpuFixture& gpu, const infonce::Params& params,
                            const InfonceBuffers& buffers) {
  infonce::ForwardBackwardArgs args;
  args.q = buffers.q.get();
  args.k = buffers.k.get();
  args.loss = buffers.loss.as_floats();
  args.saved = buffers.saved.get();
  args.grad_q = buffers.grad_q.get();
  args.grad_k = buffers.grad_k.get();
  return infonce::forward_backward(gpu.handle(), params, args, buffers.workspace.get(),
                                   buffers.workspace.bytes(), gpu.stream());
}

Status run_operation(Operation operation, const GpuFixture& gpu, const infonce::Params& params,
                     const InfonceBuffers& buffers) {
  switch (operation) {
    case Operation::kForward: return run_forward(gpu, params, buffers);
    case Operation::kBackward: return run_backward(gpu, params, buffers);
    case Operation::kForwardBackward: return run_forward_backward(gpu, params, buffers);
  }
  return Status::kInternalError;
}

bool require_finite(GpuFixture& gpu, const float* device_value, const char* what) {
  float value = 0.0f;
  if (!gpu.download(device_value, 1, &value)) return false;
  if (std::isfinite(value)) return true;
  return gpu.fail(std::string(what) + " is not finite: " + std::to_string(value));
}

// One untimed call whose Status and outputs are checked; it is also the library's warm-up (the
// handle chooses and caches its GEMM algorithms on first use). Backward first needs what forward
// saves.
bool validate(GpuFixture& gpu, Operation operation, const infonce::Params& params,
              const InfonceBuffers& buffers) {
  if (operation == Operation::kBackward &&
      !gpu.check(run_forward(gpu, params, buffers), "infonce::forward")) {
    return false;
  }
  const std::string name = call_name(operation);
  if (!gpu.check(run_operation(operation, gpu, params, buffers), name.c_str()) ||
      !gpu.synchronize() || !require_finite(gpu, buffers.loss.as_floats(), "loss")) {
    return false;
  }
  return operation == Operation::kForward ||
         require_finite(gpu, buffers.grad_q.as_floats(), "grad_q[0]");
}

// ---- The floor --------------------------------------------------------------------------------

// Forward: S = Q K^T. Backward and forward_backward: S (recomputed, or computed once), dQ and dK.
constexpr int kForwardGemms = 1;
constexpr int kGradientGemms = 3;

int floor_gemm_count(Operation operation) {
  return operation == Operation::kForward ? kForwardGemms : kGradientGemms;
}

// The GEMMs `operation` must do. S goes to the floor's own buffer and stands in for G (only the
// time matters); dQ and dK overwrite the library's gradients, which were validated before.
bool enqueue_floor(Operation operation, CublasFloor& floor, const infonce::Params& params,
                   const InfonceBuffers& buffers) {
  const float* q = buffers.q.as_floats();
  const float* k = buffers.k.as_floats();
  float* logits = buffers.floor_logits.as_floats();

  const std::int64_t b = params.batch, m = params.num_keys, d = params.dim;
  const float scale = 1.0f / params.temperature;
  if (!floor.enqueue(detail::logits_product(q, d, k, d, b, m, d, logits, m, scale))) return false;
  if (operation == Operation::kForward) return true;
  // G stands in as the logits buffer; dQ and dK overwrite the library's validated gradients.
  return floor.enqueue(detail::grad_q_product(logits, m, k, d, b, m, d, buffers.grad_q.as_floats(),
                                              scale, false)) &&
         floor.enqueue(detail::grad_k_product(logits, m, q, d, b, m, d, buffers.grad_k.as_floats(),
                                              scale, false));
}

// ---- Counters ---------------------------------------------------------------------------------

double operation_flops(Operation operation, const infonce::Params& params) {
  return floor_gemm_count(operation) * gemm_flops(params.batch, params.num_keys, params.dim);
}

// Compulsory traffic: Q and K read once, and for the gradient passes dQ and dK written once. The
// logits are not counted: a fused kernel need not store them.
double operation_bytes(Operation operation, const infonce::Params& params) {
  const double inputs = static_cast<double>(float_bytes(params.batch, params.dim) +
                                            float_bytes(params.num_keys, params.dim));
  return operation == Operation::kForward ? inputs : 2.0 * inputs;
}

// ---- The benchmark ----------------------------------------------------------------------------

void benchmark_infonce(benchmark::State& state, Operation operation) {
  const infonce::Params params = make_params(state.range(0), state.range(1));
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  InfonceBuffers buffers;
  if (!allocate_buffers(gpu, params, &buffers)) return;
  if (!validate(gpu, operation, params, buffers)) return;

  CublasFloor floor(gpu);
  if (!floor.ready()) return;
  const Work floor_work = [&] { return enqueue_floor(operation, floor, params, buffers); };
  double floor_milliseconds = 0.0;
  if (!gpu.median_milliseconds(floor_work, kFloorRuns, &floor_milliseconds)) return;

  const std::string name = call_name(operation);
  const Work library_work = [&] {
    return gpu.check(run_operation(operation, gpu, params, buffers), name.c_str());
  };
  double library_milliseconds = 0.0;
  if (!gpu.time_iterations(library_work, &library_milliseconds)) return;

  gpu.report_work(operation_flops(operation, params), operation_bytes(operation, params));
  gpu.report_floor(library_milliseconds, floor_milliseconds);
}

void register_benchmarks() {
  for (const Operation operation :
       {Operation::kForward, Operation::kBackward, Operation::kForwardBackward}) {
    const std::string family = std::string("infonce/") + operation_name(operation);
    benchmark::RegisterBenchmark(family.c_str(), benchmark_infonce, operation)
        ->ArgNames({"B", "D"})
        ->ArgsProduct({kBatchSizes, kDims})
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace contrastive::bench

int main(int argc, char** argv) {
  contrastive::bench::register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
