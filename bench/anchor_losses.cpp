#include "bench/anchor_losses.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <variant>
#include <vector>

#include "bench/memory_floor.hpp"
#include "bench/reference_check.hpp"
#include "bench/unfused_anchor.hpp"

namespace contrastive::bench {
namespace {

// Many negatives per anchor at a small D, 4x the batch of that, and fewer negatives at a large D.
const std::vector<std::vector<std::int64_t>> kAnchorNegativeShapes = {
    {4096, 64, 256}, {16384, 64, 256}, {4096, 16, 768}};
// The grid of forward and forward_backward: a small and a large batch, from one negative to many,
// two embedding widths.
const std::vector<std::int64_t> kGridBatches = {256, 8192};
const std::vector<std::int64_t> kGridNegatives = {1, 3, 16, 127};
const std::vector<std::int64_t> kGridDims = {384, 768};

// Rows the reference comparison samples.
constexpr int kSampledRows = 8;

}  // namespace

benchmark::internal::Benchmark* at_anchor_negative_shapes(benchmark::internal::Benchmark* benchmark,
                                                          Operation operation) {
  benchmark->ArgNames({"B", "N", "D"});
  for (const std::vector<std::int64_t>& shape : kAnchorNegativeShapes) benchmark->Args(shape);
  if (operation != Operation::kBackward) {
    for (const std::int64_t batch : kGridBatches) {
      for (const std::int64_t negatives : kGridNegatives) {
        for (const std::int64_t dim : kGridDims) benchmark->Args({batch, negatives, dim});
      }
    }
  }
  return benchmark;
}

void register_anchor_loss(const std::string& family,
                          void (*run)(benchmark::State&, Operation, DType), DType dtype) {
  for (const Operation operation : kOperations) {
    const std::string name = family_name(family + "/" + operation_name(operation), dtype);
    at_anchor_negative_shapes(
        timed_on_device(benchmark::RegisterBenchmark(name.c_str(), run, operation, dtype)),
        operation);
  }
}

describe::Shape anchor_negative_shape(const benchmark::State& state, DType dtype) {
  describe::Shape shape;
  shape.batch = state.range(0);
  shape.candidates = state.range(1);
  shape.dim = state.range(2);
  shape.dtype = dtype;
  shape.reduction = Reduction::kMean;
  return shape;
}

bool check_anchor_loss(GpuFixture& gpu, const LossBuffers& timed) {
  LossBuffers none;
  if (!none.allocate_per_row(gpu, timed)) return false;
  const std::int64_t batch = batch_of(timed.params());
  const std::int64_t entries = none.extent("loss").rows;
  const std::int64_t per_row = entries / batch;  // 1: a loss per row; N: per term
  const std::vector<std::int64_t> rows = sampled_rows(batch, kSampledRows);
  std::vector<float> mask(static_cast<std::size_t>(entries), 0.0f);
  for (const std::int64_t r : rows) std::fill_n(mask.begin() + r * per_row, per_row, 1.0f);
  std::vector<float> gpu_losses;
  if (!run_per_row(gpu, none, mask, &gpu_losses)) return false;
  NamedValues inputs;
  std::vector<std::pair<std::string, std::vector<double>>> gradients;
  for (const char* tensor : none.tensors(describe::Role::kInput)) {
    if (!download_rows(gpu, none, tensor, rows, &inputs[tensor])) return false;
  }
  for (const char* tensor : none.tensors(describe::Role::kGradient)) {
    gradients.emplace_back(tensor, std::vector<double>());
    if (!download_rows(gpu, none, tensor, rows, &gradients.back().second)) return false;
  }
  describe::Params sub = none.params();
  std::visit([&](auto& p) { p.batch = static_cast<std::int64_t>(rows.size()); }, sub);
  const std::vector<double> ones(rows.size() * static_cast<std::size_t>(per_row), 1.0);
  AnchorReference expected;
  if (!gpu.check(anchor_reference(sub, inputs, ones, &expected),
                 "float64 reference on the sampled rows")) {
    return false;
  }
  const describe::Extent first_input = none.extent(none.tensors(describe::Role::kInput).front());
  const double relative =
      anchor_relative_tolerance(first_input.dtype, first_input.cols, expected.largest_logit);
  // The sampled entries of the library's losses.
  std::vector<std::size_t> index;
  std::vector<double> losses;
  for (const std::int64_t r : rows) {
    for (std::int64_t n = 0; n < per_row; ++n) {
      index.push_back(static_cast<std::size_t>(r * per_row + n));
      losses.push_back(gpu_losses[index.back()]);
    }
  }
  const bool terms = per_row > 1;
  Comparison comparison;
  add_anchor_results(comparison, relative, terms ? "loss term" : "row loss", index, losses,
                     gradients, expected);
  if (!add_timed_mean(gpu, timed, gpu_losses,
                      terms ? "mean loss vs mean of the terms" : "mean loss vs mean of the rows",
                      &comparison)) {
    return false;
  }
  return gpu.report_reference(rows.size(), comparison.worst_ratio(), comparison.failure());
}

void benchmark_anchor_loss(benchmark::State& state, const std::string& name,
                           const describe::Params& params, bool scalar_gradient,
                           Operation operation) {
  GpuFixture gpu(state);
  if (!gpu.ready()) return;
  LossBuffers buffers;
  if (!buffers.allocate(gpu, name, params, scalar_gradient) || !check_anchor_loss(gpu, buffers) ||
      !buffers.validate(gpu, operation)) {
    return;
  }
  const Work library = buffers.work(gpu, operation);
  const std::size_t input_bytes = buffers.input_bytes();
  const bool writes = writes_gradients(operation);
  if (operation != Operation::kForwardBackward) {
    time_against_memory_floor(gpu, library, input_bytes, writes);
    return;
  }
  with_unfused(gpu, buffers, [&](const Work& unfused) {
    return time_against_memory_floor(gpu, library, input_bytes, writes, &unfused);
  });
}

}  // namespace contrastive::bench
