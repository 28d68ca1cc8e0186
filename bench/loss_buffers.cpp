#include "bench/loss_buffers.hpp"

#include <vector>

namespace contrastive::bench {
namespace {

constexpr std::uint64_t kFirstInputSeed = 1;
constexpr std::uint64_t kSecondInputSeed = 2;

// Many negatives per anchor at a small D, 4x the batch of that, and fewer negatives at a large D.
const std::vector<std::vector<std::int64_t>> kAnchorNegativeShapes = {
    {4096, 64, 256}, {16384, 64, 256}, {4096, 16, 768}};

std::size_t float_count(std::int64_t rows, std::int64_t cols) {
  return float_bytes(rows, cols) / sizeof(float);
}

}  // namespace

// ---- LogitsLossBuffers -------------------------------------------------------------------------

bool LogitsLossBuffers::allocate(GpuFixture& gpu, const LogitsShape& logits_shape) {
  shape = logits_shape;
  const auto [rows, cols, dim] = shape;
  return gpu.allocate_random_normal(float_count(rows, dim), kFirstInputSeed, &q) &&
         gpu.allocate_random_normal(float_count(cols, dim), kSecondInputSeed, &k) &&
         gpu.allocate(float_bytes(rows, dim), &grad_q) &&
         gpu.allocate(float_bytes(cols, dim), &grad_k) &&
         gpu.allocate(float_bytes(rows, cols), &floor_logits);
}

std::size_t LogitsLossBuffers::input_bytes() const {
  return float_bytes(shape.rows, shape.dim) + float_bytes(shape.cols, shape.dim);
}

LogitsGemms LogitsLossBuffers::floor_gemms(float scale, bool gradients) const {
  LogitsGemms gemms;
  gemms.q = q.as_floats();
  gemms.k = k.as_floats();
  gemms.rows = shape.rows;
  gemms.cols = shape.cols;
  gemms.dim = shape.dim;
  gemms.scale = scale;
  gemms.logits = floor_logits.as_floats();
  if (gradients) {
    gemms.grad_q = grad_q.as_floats();
    gemms.grad_k = grad_k.as_floats();
  }
  return gemms;
}

// ---- AnchorNegativeBuffers ---------------------------------------------------------------------

bool AnchorNegativeBuffers::allocate(GpuFixture& gpu, const AnchorNegativeShape& buffer_shape) {
  shape = buffer_shape;
  const std::int64_t negative_rows = shape.batch * shape.negatives;
  return gpu.allocate_random_normal(float_count(shape.batch, shape.dim), kFirstInputSeed,
                                    &anchors) &&
         gpu.allocate_random_normal(float_count(negative_rows, shape.dim), kSecondInputSeed,
                                    &negatives) &&
         gpu.allocate(float_bytes(shape.batch, shape.dim), &grad_anchors) &&
         gpu.allocate(float_bytes(negative_rows, shape.dim), &grad_negatives);
}

std::size_t AnchorNegativeBuffers::input_bytes() const {
  return float_bytes(shape.batch, shape.dim) +
         float_bytes(shape.batch * shape.negatives, shape.dim);
}

benchmark::internal::Benchmark* at_anchor_negative_shapes(
    benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgNames({"B", "N", "D"});
  for (const std::vector<std::int64_t>& shape : kAnchorNegativeShapes) benchmark->Args(shape);
  return benchmark;
}

AnchorNegativeShape anchor_negative_shape(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2)};
}

}  // namespace contrastive::bench
