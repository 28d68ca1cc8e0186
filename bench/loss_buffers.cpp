#include "bench/loss_buffers.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "bench/reference_check.hpp"

namespace contrastive::bench {
namespace {

constexpr std::uint64_t kFirstInputSeed = 1;
constexpr std::uint64_t kSecondInputSeed = 2;

// Many negatives per anchor at a small D, 4x the batch of that, and fewer negatives at a large D.
const std::vector<std::vector<std::int64_t>> kAnchorNegativeShapes = {
    {4096, 64, 256}, {16384, 64, 256}, {4096, 16, 768}};
// The grid of forward and forward_backward: a small and a large batch, from one negative to many,
// two embedding widths.
const std::vector<std::int64_t> kGridBatches = {256, 8192};
const std::vector<std::int64_t> kGridNegatives = {1, 3, 16, 127};
const std::vector<std::int64_t> kGridDims = {384, 768};

}  // namespace

// ---- Operations --------------------------------------------------------------------------------

const char* operation_name(Operation operation) {
  switch (operation) {
    case Operation::kForward: return "forward";
    case Operation::kBackward: return "backward";
    case Operation::kForwardBackward: return "forward_backward";
  }
  return "unknown";
}

bool writes_gradients(Operation operation) {
  return operation != Operation::kForward;
}

Work LossCalls::work(GpuFixture& gpu, Operation operation) const {
  const std::string what = name + "/" + operation_name(operation);
  return [&gpu, call = call, operation, what] { return gpu.check(call(operation), what.c_str()); };
}

bool LossCalls::validate(GpuFixture& gpu, Operation operation,
                         const std::vector<FiniteValue>& values) const {
  if (operation == Operation::kBackward && !work(gpu, Operation::kForward)()) return false;
  return work(gpu, operation)() && gpu.require_finite(values);
}

// ---- LogitsLossBuffers -------------------------------------------------------------------------

bool LogitsLossBuffers::allocate(GpuFixture& gpu, const LogitsShape& logits_shape,
                                 DType input_dtype, bool with_floor) {
  shape = logits_shape;
  dtype = input_dtype;
  const auto [rows, cols, dim] = shape;
  const bool inputs =
      gpu.allocate_random_normal(element_count(rows, dim), kFirstInputSeed, dtype, &q) &&
      gpu.allocate_random_normal(element_count(cols, dim), kSecondInputSeed, dtype, &k) &&
      gpu.allocate(matrix_bytes(rows, dim, dtype), &grad_q) &&
      gpu.allocate(matrix_bytes(cols, dim, dtype), &grad_k);
  if (!inputs || !with_floor) return inputs;
  // floor_logits holds S in fp32, so G, the same (rows, cols) in dtype, fits in it too.
  return gpu.allocate(matrix_bytes(rows, cols, DType::kF32), &floor_logits) &&
         gpu.allocate(matrix_bytes(rows, dim, DType::kF32), &floor_grad_q) &&
         gpu.allocate(matrix_bytes(cols, dim, DType::kF32), &floor_grad_k);
}

std::size_t LogitsLossBuffers::input_bytes() const {
  return matrix_bytes(shape.rows, shape.dim, dtype) + matrix_bytes(shape.cols, shape.dim, dtype);
}

LogitsGemms LogitsLossBuffers::floor_gemms(float scale, bool gradients) const {
  LogitsGemms gemms;
  gemms.q = q.get();
  gemms.k = k.get();
  gemms.rows = shape.rows;
  gemms.cols = shape.cols;
  gemms.dim = shape.dim;
  gemms.dtype = dtype;
  gemms.scale = scale;
  gemms.logits = floor_logits.as_floats();
  if (gradients) {
    gemms.grad_q = floor_grad_q.as_floats();
    gemms.grad_k = floor_grad_k.as_floats();
  }
  return gemms;
}

// ---- AnchorNegativeBuffers ---------------------------------------------------------------------

bool AnchorNegativeBuffers::allocate(GpuFixture& gpu, const AnchorNegativeShape& buffer_shape,
                                     DType input_dtype) {
  shape = buffer_shape;
  dtype = input_dtype;
  const std::int64_t negative_rows = shape.batch * shape.negatives;
  return gpu.allocate_random_normal(element_count(shape.batch, shape.dim), kFirstInputSeed, dtype,
                                    &anchors) &&
         gpu.allocate_random_normal(element_count(negative_rows, shape.dim), kSecondInputSeed,
                                    dtype, &negatives) &&
         gpu.allocate(matrix_bytes(shape.batch, shape.dim, dtype), &grad_anchors) &&
         gpu.allocate(matrix_bytes(negative_rows, shape.dim, dtype), &grad_negatives);
}

std::size_t AnchorNegativeBuffers::input_bytes() const {
  return matrix_bytes(shape.batch, shape.dim, dtype) +
         matrix_bytes(shape.batch * shape.negatives, shape.dim, dtype);
}

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

bool download_block_rows(GpuFixture& gpu, const void* base, std::int64_t per_row, std::int64_t dim,
                         DType dtype, const std::vector<std::int64_t>& rows,
                         std::vector<double>* out) {
  const std::size_t block = static_cast<std::size_t>(per_row) * matrix_bytes(1, dim, dtype);
  std::vector<unsigned char> bytes;
  if (!gpu.download_rows(base, block, block, rows, &bytes)) return false;
  *out = to_doubles(bytes, dtype);
  return true;
}

bool download_anchor_rows(GpuFixture& gpu, const AnchorNegativeBuffers& buffers,
                          const void* positives, const std::vector<std::int64_t>& rows,
                          SampledAnchorRows* out) {
  const auto [batch, negatives, dim] = buffers.shape;
  (void)batch;
  out->rows = rows;
  return download_block_rows(gpu, buffers.anchors.get(), 1, dim, buffers.dtype, rows,
                             &out->anchors) &&
         download_block_rows(gpu, buffers.negatives.get(), negatives, dim, buffers.dtype, rows,
                             &out->negatives) &&
         (positives == nullptr ||
          download_block_rows(gpu, positives, 1, dim, buffers.dtype, rows, &out->positives));
}

AnchorNegativeShape anchor_negative_shape(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(2)};
}

}  // namespace contrastive::bench
