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
  const std::size_t loss_bytes = mask.size() * sizeof(float);
  std::vector<float> gpu_losses(mask.size());
  const std::string name = timed.name();
  if (!gpu.upload(mask.data(), loss_bytes, none.at("grad_loss")) ||
      !gpu.check(none.run(gpu, Operation::kForward), (name + "/forward(none)").c_str()) ||
      !gpu.check(none.run(gpu, Operation::kBackward), (name + "/backward(none)").c_str()) ||
      !gpu.download(none.at("loss"), loss_bytes, gpu_losses.data())) {
    return false;
  }
  NamedValues inputs, gradients;
  for (const describe::Role role : {describe::Role::kInput, describe::Role::kGradient}) {
    for (const char* tensor : none.tensors(role)) {
      NamedValues& into = role == describe::Role::kInput ? inputs : gradients;
      if (!download_rows(gpu, none, tensor, rows, &into[tensor])) return false;
    }
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
  Comparison comparison;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    for (std::int64_t n = 0; n < per_row; ++n) {
      const std::size_t at = k * static_cast<std::size_t>(per_row) + static_cast<std::size_t>(n);
      const auto index = static_cast<std::size_t>(rows[k] * per_row + n);
      comparison.add(per_row == 1 ? "row loss" : "loss term", index, gpu_losses[index],
                     expected.loss[at], relative * (1.0 + std::fabs(expected.loss[at])));
    }
  }
  for (const char* tensor : none.tensors(describe::Role::kGradient)) {
    const std::vector<double>& reference = expected.gradients[tensor];
    comparison.add_all(std::string(tensor) + " (sampled rows)", gradients[tensor], reference,
                       relative * largest_magnitude(reference), relative);
  }
  // The timed configuration's mean against the mean of the kNone entries (the same sums, reduced).
  float mean = 0.0f;
  if (!gpu.check(timed.run(gpu, Operation::kForward), (name + "/forward").c_str()) ||
      !gpu.download(timed.at("loss"), sizeof(float), &mean)) {
    return false;
  }
  double sum = 0.0, magnitude = 0.0;
  for (const float loss : gpu_losses) {
    sum += loss;
    magnitude += std::fabs(loss);
  }
  const double count = static_cast<double>(entries);
  comparison.add(per_row == 1 ? "mean loss vs mean of the rows" : "mean loss vs mean of the terms",
                 0, mean, sum / count, mean_tolerance(count, magnitude));
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
