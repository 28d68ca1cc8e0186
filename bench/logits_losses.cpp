#include "bench/logits_losses.hpp"

#include <cmath>
#include <variant>
#include <vector>

#include "bench/reference_check.hpp"
#include "tests/support/sampled_reference.hpp"

namespace contrastive::bench {
namespace {

// Fewer rows than the per-anchor losses: each costs O((B + M) D) in float64.
constexpr int kSampledLogitRows = 4;

// The logit scale S = scale * sim of each loss over logits (the cuBLAS floor's alpha).
double logit_scale_of(const infonce::Params& p) {
  return 1.0 / p.temperature;
}
double logit_scale_of(const mnr::InBatchParams& p) {
  return p.scale;
}
double logit_scale_of(const siglip::Params& p) {
  return p.log_scale ? std::exp(static_cast<double>(p.scale)) : p.scale;
}
template <typename LossParams>
double logit_scale_of(const LossParams&) {
  return 0.0;
}

// The float64 reference at the sampled rows (tests/support/sampled_reference.hpp), with
// Reduction::kNone and `upstream` zero outside them. In-batch MNR is rectangular InfoNCE of the
// anchors against the (1 + K) B candidates at the scale.
testing::SampledInfoNCE sampled_reference(const infonce::Params& p, const double* q,
                                          const double* k, const double* upstream,
                                          const std::vector<std::int64_t>& rows) {
  infonce::Params none = p;
  none.reduction = Reduction::kNone;
  return testing::sampled_infonce(none, logit_scale_of(p), q, k, upstream, rows);
}
testing::SampledInfoNCE sampled_reference(const mnr::InBatchParams& p, const double* q,
                                          const double* k, const double* upstream,
                                          const std::vector<std::int64_t>& rows) {
  describe::Shape shape = logits_shape(p.batch, p.hard_negatives * p.batch, p.dim, p.dtype, 1.0f);
  shape.similarity = p.similarity;
  shape.symmetric = p.symmetric;
  shape.eps = p.eps;
  shape.reduction = Reduction::kNone;
  return testing::sampled_infonce(std::get<infonce::Params>(params_of("InfoNCE", shape)), p.scale,
                                  q, k, upstream, rows);
}
testing::SampledInfoNCE sampled_reference(const siglip::Params& p, const double* q, const double* k,
                                          const double* upstream,
                                          const std::vector<std::int64_t>& rows) {
  siglip::Params none = p;
  none.reduction = Reduction::kNone;
  return testing::sampled_siglip(none, q, k, upstream, rows);
}
// The per-anchor losses are compared by bench/anchor_losses.hpp: no rows, which the check reports
// as a refusal.
template <typename LossParams>
testing::SampledInfoNCE sampled_reference(const LossParams&, const double*, const double*,
                                          const double*, const std::vector<std::int64_t>&) {
  return {};
}

double logit_scale_of(const describe::Params& params) {
  return std::visit([](const auto& p) { return logit_scale_of(p); }, params);
}

}  // namespace

describe::Shape logits_shape(std::int64_t batch, std::int64_t candidates, std::int64_t dim,
                             DType dtype, float logit_scale) {
  describe::Shape shape;
  shape.batch = batch;
  shape.candidates = candidates;
  shape.dim = dim;
  shape.dtype = dtype;
  shape.similarity = Similarity::kCosine;
  shape.reduction = Reduction::kMean;
  shape.symmetric = false;
  shape.logit_scale = logit_scale;
  return shape;
}

bool check_logits_loss(GpuFixture& gpu, const LossBuffers& timed) {
  LossBuffers none;
  if (!none.allocate_per_row(gpu, timed)) return false;
  const std::int64_t batch = batch_of(timed.params());
  const std::vector<std::int64_t> rows = sampled_rows(batch, kSampledLogitRows);
  std::vector<float> mask(static_cast<std::size_t>(batch), 0.0f);
  for (const std::int64_t r : rows) mask[static_cast<std::size_t>(r)] = 1.0f;
  std::vector<float> gpu_losses;
  if (!run_per_row(gpu, none, mask, &gpu_losses)) return false;
  // Every input and gradient, as doubles (the inputs exactly as stored).
  const std::vector<const char*> inputs = none.tensors(describe::Role::kInput);
  const std::vector<const char*> gradients = none.tensors(describe::Role::kGradient);
  std::vector<double> q, k, grad_q, grad_k;
  if (!download_all(gpu, none, inputs.at(0), &q) || !download_all(gpu, none, inputs.at(1), &k) ||
      !download_all(gpu, none, gradients.at(0), &grad_q) ||
      !download_all(gpu, none, gradients.at(1), &grad_k)) {
    return false;
  }
  const std::vector<double> upstream(mask.begin(), mask.end());
  const testing::SampledInfoNCE expected = std::visit(
      [&](const auto& p) {
        return sampled_reference(p, q.data(), k.data(), upstream.data(), rows);
      },
      none.params());
  if (expected.rows.empty()) return gpu.fail("reference check: the sampled reference refused");

  const describe::Extent q_extent = none.extent(inputs.at(0));
  Comparison comparison;
  const DType dtype = q_extent.dtype;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double reference = expected.loss[i];
    comparison.add("per-row loss", static_cast<std::size_t>(rows[i]),
                   gpu_losses[static_cast<std::size_t>(rows[i])], reference,
                   logits_tolerance(dtype, expected.loss_tolerance[i], 1.0, reference));
  }
  add_logits_gradient(comparison, "grad_q", dtype, q_extent.cols, grad_q, expected.grad_q,
                      expected.grad_q_tolerance);
  add_logits_gradient(comparison, "grad_k", dtype, q_extent.cols, grad_k, expected.grad_k,
                      expected.grad_k_tolerance);

  if (!add_timed_mean(gpu, timed, gpu_losses, "mean loss vs mean of the rows", &comparison)) {
    return false;
  }
  return gpu.report_reference(rows.size(), comparison.worst_ratio(), comparison.failure());
}

bool LogitsFloor::allocate(GpuFixture& gpu, const LossBuffers& buffers) {
  const std::vector<const char*> inputs = buffers.tensors(describe::Role::kInput);
  const describe::Extent q = buffers.extent(inputs.at(0)), k = buffers.extent(inputs.at(1));
  // `logits` holds S in fp32, so G, the same (rows, cols) in dtype, fits in it too.
  return gpu.allocate(matrix_bytes(q.rows, k.rows, DType::kF32), &logits) &&
         gpu.allocate(matrix_bytes(q.rows, q.cols, DType::kF32), &grad_q) &&
         gpu.allocate(matrix_bytes(k.rows, k.cols, DType::kF32), &grad_k);
}

LogitsGemms LogitsFloor::gemms(const LossBuffers& buffers, bool gradients) const {
  const std::vector<const char*> inputs = buffers.tensors(describe::Role::kInput);
  const describe::Extent q = buffers.extent(inputs.at(0)), k = buffers.extent(inputs.at(1));
  LogitsGemms gemms;
  gemms.q = buffers.at(inputs.at(0));
  gemms.k = buffers.at(inputs.at(1));
  gemms.rows = q.rows;
  gemms.cols = k.rows;
  gemms.dim = q.cols;
  gemms.dtype = q.dtype;
  gemms.scale = static_cast<float>(logit_scale_of(buffers.params()));
  gemms.logits = logits.as_floats();
  if (gradients) {
    gemms.grad_q = grad_q.as_floats();
    gemms.grad_k = grad_k.as_floats();
  }
  return gemms;
}

bool prepare_logits_loss(GpuFixture& gpu, const std::string& name, const describe::Params& params,
                         Operation operation, LossBuffers* buffers, bool scalar_gradients) {
  return gpu.ready() && buffers->allocate(gpu, name, params, scalar_gradients) &&
         check_logits_loss(gpu, *buffers) && buffers->validate(gpu, operation);
}

double operation_bytes(Operation operation, const LossBuffers& buffers) {
  return static_cast<double>(compulsory_bytes(buffers.input_bytes(), writes_gradients(operation)));
}

bool time_logits_loss(GpuFixture& gpu, const LossBuffers& buffers, Operation operation,
                      const Work* unfused) {
  LogitsFloor floor;
  if (!floor.allocate(gpu, buffers)) return false;
  return time_against_cublas_floor(gpu, floor.gemms(buffers, writes_gradients(operation)),
                                   buffers.work(gpu, operation),
                                   operation_bytes(operation, buffers), unfused);
}

void benchmark_logits_loss(benchmark::State& state, const std::string& name,
                           const describe::Params& params, Operation operation,
                           bool scalar_gradients) {
  GpuFixture gpu(state);
  LossBuffers buffers;
  if (!prepare_logits_loss(gpu, name, params, operation, &buffers, scalar_gradients)) return;
  time_logits_loss(gpu, buffers, operation);
}

}  // namespace contrastive::bench
