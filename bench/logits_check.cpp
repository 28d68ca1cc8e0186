#include "bench/logits_check.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "bench/reference_check.hpp"
#include "tests/support/sampled_reference.hpp"

namespace contrastive::bench {
namespace {

// Fewer rows than the per-anchor losses: each costs O((B + M) D) in float64.
constexpr int kSampledLogitRows = 4;

}  // namespace

bool check_logits_loss(GpuFixture& gpu, const infonce::Params& as_infonce, double logit_scale,
                       const LogitsLossBuffers& buffers, const LogitsCalls& calls) {
  const auto [batch, keys, dim] = buffers.shape;
  const std::vector<std::int64_t> rows = sampled_rows(batch, kSampledLogitRows);
  std::vector<float> mask(static_cast<std::size_t>(batch), 0.0f);
  for (const std::int64_t r : rows) mask[static_cast<std::size_t>(r)] = 1.0f;
  DeviceBuffer per_row, grad_loss;
  const std::size_t row_bytes = mask.size() * sizeof(float);
  std::vector<float> gpu_losses(mask.size());
  if (!gpu.allocate(row_bytes, &per_row) || !gpu.allocate(row_bytes, &grad_loss) ||
      !gpu.upload(mask.data(), row_bytes, grad_loss.get()) ||
      !gpu.check(calls.forward(per_row.as_floats()), "forward(none)") ||
      !gpu.check(calls.backward(grad_loss.as_floats()), "backward(none)") ||
      !gpu.download(per_row.get(), row_bytes, gpu_losses.data())) {
    return false;
  }
  // Every input and gradient, as doubles (the inputs exactly as stored).
  std::vector<unsigned char> bytes(buffers.q.bytes());
  std::vector<double> q, k, grad_q, grad_k;
  if (!gpu.download(buffers.q.get(), matrix_bytes(batch, dim, buffers.dtype), bytes.data())) {
    return false;
  }
  bytes.resize(matrix_bytes(batch, dim, buffers.dtype));
  q = to_doubles(bytes, buffers.dtype);
  bytes.resize(matrix_bytes(keys, dim, buffers.dtype));
  if (!gpu.download(buffers.k.get(), bytes.size(), bytes.data())) return false;
  k = to_doubles(bytes, buffers.dtype);
  if (!gpu.download(buffers.grad_k.get(), bytes.size(), bytes.data())) return false;
  grad_k = to_doubles(bytes, buffers.dtype);
  bytes.resize(matrix_bytes(batch, dim, buffers.dtype));
  if (!gpu.download(buffers.grad_q.get(), bytes.size(), bytes.data())) return false;
  grad_q = to_doubles(bytes, buffers.dtype);

  infonce::Params none = as_infonce;
  none.reduction = Reduction::kNone;
  std::vector<double> upstream(mask.begin(), mask.end());
  const testing::SampledInfoNCE expected =
      testing::sampled_infonce(none, logit_scale, q.data(), k.data(), upstream.data(), rows);
  if (expected.rows.empty()) return gpu.fail("reference check: the sampled reference refused");

  const DType dtype = buffers.dtype;
  Comparison comparison;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double reference = expected.loss[i];
    comparison.add("per-row loss", static_cast<std::size_t>(rows[i]),
                   gpu_losses[static_cast<std::size_t>(rows[i])], reference,
                   logits_tolerance(dtype, expected.loss_tolerance[i], 1.0, reference));
  }
  auto compare_rows = [&](const char* what, const std::vector<double>& actual,
                          const std::vector<double>& reference,
                          const std::vector<double>& row_tolerance) {
    const double largest = largest_magnitude(reference);
    for (std::size_t i = 0; i < actual.size(); ++i) {
      const std::size_t row = i / static_cast<std::size_t>(dim);
      comparison.add(what, i, actual[i], reference[i],
                     logits_tolerance(dtype, row_tolerance[row], largest, reference[i]));
    }
  };
  compare_rows("grad_q", grad_q, expected.grad_q, expected.grad_q_tolerance);
  compare_rows("grad_k", grad_k, expected.grad_k, expected.grad_k_tolerance);

  // The timed configuration's mean loss against the mean of the per-row losses.
  float mean = 0.0f;
  if (!gpu.check(calls.timed_forward(), "forward") ||
      !gpu.download(buffers.outputs.loss.get(), sizeof(float), &mean)) {
    return false;
  }
  double sum = 0.0, magnitude = 0.0;
  for (const float loss : gpu_losses) {
    sum += loss;
    magnitude += std::fabs(loss);
  }
  const double count = static_cast<double>(batch);
  comparison.add("mean loss vs mean of the rows", 0, mean, sum / count,
                 mean_tolerance(count, magnitude));
  return gpu.report_reference(rows.size(), comparison.worst_ratio(), comparison.failure());
}

}  // namespace contrastive::bench
