// The float64 InfoNCE reference (and in-batch MNR's, with its scale as the logit scale) at a few
// sampled rows of a problem too large for the full reference (B = M = 46341: 2^31 logits), exact
// and without the B x M matrix. The trick: with Reduction::kNone, an upstream gradient that is
// zero outside the sampled rows R makes dLoss/dlogits zero outside R's rows (and, symmetric, R's
// positive columns), so
//   - the loss, row (and column) log-sum-exp of each sampled row need only that row (column):
//     O(|R| (M + B) D);
//   - every gradient row, of Q and of K, needs only those rows and columns: O(|R| (B + M) D),
//     so all B + M gradient rows are checked, not a sample;
//   - the temperature (scale) gradient, sum(G * logits), likewise.
// The GPU still computes every logit and every zero of G, so an index that wraps past 2^31 shows
// as a wrong sampled row (the last row's last columns are the logits past 2^31), a non-zero
// gradient where the reference has none, or a memory error.
//
// Also the fp32 error bounds of these outputs: the model of infonce_tolerances
// (support/infonce_cases.hpp), its sums over G restricted to G's non-zero entries (|G| taken as
// |row term| + |column term| where both apply: a bound, not an estimate).
//
// tests/cpu/sampled_reference.cpp checks all of this against the full reference on problems
// small enough for it (CPU, every CI run).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "contrastive/infonce.hpp"
#include "contrastive/siglip.hpp"

namespace contrastive::testing {

struct SampledInfoNCE {
  std::vector<std::int64_t> rows;        ///< R, the sampled query rows
  std::vector<double> loss;              ///< per sampled row
  std::vector<double> row_lse, col_lse;  ///< per sampled row (col_lse: symmetric only)
  std::vector<double> grad_q, grad_k;    ///< (B, D) and (M, D): every row
  double sum_grad_logits = 0.0;          ///< sum(G * logits): dL/dt = -s sum, dL/ds = sum / s
  // fp32 error bounds, per element of the outputs above (per row for the gradients)
  std::vector<double> loss_tolerance;
  double lse_tolerance = 0.0;
  std::vector<double> grad_q_tolerance, grad_k_tolerance;
  double sum_grad_logits_tolerance = 0.0;  ///< of the temperature gradient: times s for dL/dt
};

namespace sampled_detail {

struct HatRows {
  std::vector<double> hat;      // (rows, D) dense: x / max(|x|, eps), or x for dot
  std::vector<double> norms;    // |x|
  std::vector<double> divisor;  // max(|x|, eps) for cosine, 1 for dot
};

inline HatRows hat_rows(const double* x, std::int64_t rows, std::int64_t stride, std::int64_t dim,
                        bool cosine, double eps) {
  HatRows out;
  out.hat.resize(static_cast<std::size_t>(rows * dim));
  out.norms.resize(static_cast<std::size_t>(rows));
  out.divisor.assign(static_cast<std::size_t>(rows), 1.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    double squares = 0.0;
    for (std::int64_t c = 0; c < dim; ++c) squares += x[r * stride + c] * x[r * stride + c];
    out.norms[r] = std::sqrt(squares);
    const double scale = cosine ? 1.0 / std::max(out.norms[r], eps) : 1.0;
    if (cosine) out.divisor[r] = std::max(out.norms[r], eps);
    for (std::int64_t c = 0; c < dim; ++c) out.hat[r * dim + c] = x[r * stride + c] * scale;
  }
  return out;
}

inline double dot(const double* a, const double* b, std::int64_t dim) {
  double sum = 0.0;
  for (std::int64_t c = 0; c < dim; ++c) sum += a[c] * b[c];
  return sum;
}

inline double log_sum_exp(const std::vector<double>& values) {
  double max = -std::numeric_limits<double>::infinity();
  for (double value : values) max = std::max(max, value);
  double sum = 0.0;
  for (double value : values) sum += std::exp(value - max);
  return max + std::log(sum);
}

// d/dx of x / max(|x|, eps) applied to g (cosine); g itself for dot. One row.
inline void normalize_backward_row(const double* hat, double norm, double eps, bool cosine,
                                   std::int64_t dim, double* g) {
  if (!cosine) return;
  if (norm > eps) {
    double projection = 0.0;
    for (std::int64_t c = 0; c < dim; ++c) projection += hat[c] * g[c];
    for (std::int64_t c = 0; c < dim; ++c) g[c] = (g[c] - hat[c] * projection) / norm;
  } else {
    for (std::int64_t c = 0; c < dim; ++c) g[c] /= eps;
  }
}

// The gradients' bounds of both models: per row, scale (error * magnitude + floor) / divisor, the
// floor a few roundings of the largest magnitude.
template <typename Sampled>
void add_gradient_tolerances(double scale, double q_error, double k_error,
                             const std::vector<double>& q_magnitude,
                             const std::vector<double>& k_magnitude, const HatRows& qh,
                             const HatRows& kh, Sampled* out) {
  constexpr double u = 1.0 / (1 << 24), safety = 8.0;
  const double q_floor = safety * u * *std::max_element(q_magnitude.begin(), q_magnitude.end());
  const double k_floor = safety * u * *std::max_element(k_magnitude.begin(), k_magnitude.end());
  for (std::size_t i = 0; i < q_magnitude.size(); ++i) {
    out->grad_q_tolerance.push_back(scale * (q_error * q_magnitude[i] + q_floor) / qh.divisor[i]);
  }
  for (std::size_t j = 0; j < k_magnitude.size(); ++j) {
    out->grad_k_tolerance.push_back(scale * (k_error * k_magnitude[j] + k_floor) / kh.divisor[j]);
  }
}

}  // namespace sampled_detail

/// `p` must have Reduction::kNone and `grad_loss` (B) must be zero outside `rows`; returns an empty
/// result (no rows) otherwise. `logit_scale` is 1 / temperature, or in-batch MNR's scale.
inline SampledInfoNCE sampled_infonce(const infonce::Params& p, double logit_scale, const double* q,
                                      const double* k, const double* grad_loss,
                                      const std::vector<std::int64_t>& rows) {
  using namespace sampled_detail;
  SampledInfoNCE out;
  if (p.reduction != Reduction::kNone) return out;
  for (std::int64_t i = 0; i < p.batch; ++i) {
    if (grad_loss[i] != 0.0 && std::find(rows.begin(), rows.end(), i) == rows.end()) return out;
  }
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim, offset = p.positive_offset;
  const bool cosine = p.similarity == Similarity::kCosine;
  const double s = logit_scale, eps = p.eps;
  const HatRows qh = hat_rows(q, b, row_stride_or_dim(p.q_row_stride, d), d, cosine, eps);
  const HatRows kh = hat_rows(k, m, row_stride_or_dim(p.k_row_stride, d), d, cosine, eps);
  auto logit = [&](std::int64_t i, std::int64_t j) {
    return s * dot(&qh.hat[i * d], &kh.hat[j * d], d);
  };
  out.rows = rows;
  out.grad_q.assign(static_cast<std::size_t>(b * d), 0.0);
  out.grad_k.assign(static_cast<std::size_t>(m * d), 0.0);
  std::vector<double> q_magnitude(b, 0.0), k_magnitude(m, 0.0);
  double scalar_magnitude = 0.0;
  // The norms of the rows the products see (1 for cosine), as infonce_tolerances weighs them.
  auto q_row = [&](std::int64_t i) { return cosine ? 1.0 : qh.norms[i]; };
  auto k_row = [&](std::int64_t j) { return cosine ? 1.0 : kh.norms[j]; };
  const double half = p.symmetric ? 0.5 : 1.0;
  std::vector<double> values;
  for (const std::int64_t r : rows) {
    const double weight = grad_loss[r] * half;
    const std::int64_t positive = r + offset;
    // The row term of G: weight (softmax_j - onehot) over every key.
    values.resize(static_cast<std::size_t>(m));
    for (std::int64_t j = 0; j < m; ++j) values[j] = logit(r, j);
    const double lse = log_sum_exp(values);
    double loss = lse - values[positive];
    std::vector<double> grad_q_hat(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t j = 0; j < m; ++j) {
      const double probability = std::exp(values[j] - lse);
      const double g = weight * (probability - (j == positive ? 1.0 : 0.0));
      out.sum_grad_logits += g * values[j];
      for (std::int64_t c = 0; c < d; ++c) {
        grad_q_hat[c] += s * g * kh.hat[j * d + c];
        out.grad_k[j * d + c] += s * g * qh.hat[r * d + c];
      }
      const double size = std::fabs(g) + std::fabs(weight) * probability;
      q_magnitude[r] += size * k_row(j);
      k_magnitude[j] += size * q_row(r);
      scalar_magnitude += size * (std::fabs(values[j]) + 1.0);
    }
    for (std::int64_t c = 0; c < d; ++c) out.grad_q[r * d + c] += grad_q_hat[c];
    out.row_lse.push_back(lse);
    if (p.symmetric) {
      // The column term: weight (softmax over the B queries of column r + offset - onehot).
      values.resize(static_cast<std::size_t>(b));
      for (std::int64_t i = 0; i < b; ++i) values[i] = logit(i, positive);
      const double col_lse = log_sum_exp(values);
      loss = 0.5 * (loss + (col_lse - values[r]));
      std::vector<double> grad_k_hat(static_cast<std::size_t>(d), 0.0);
      for (std::int64_t i = 0; i < b; ++i) {
        const double probability = std::exp(values[i] - col_lse);
        const double g = weight * (probability - (i == r ? 1.0 : 0.0));
        out.sum_grad_logits += g * values[i];
        for (std::int64_t c = 0; c < d; ++c) {
          out.grad_q[i * d + c] += s * g * kh.hat[positive * d + c];
          grad_k_hat[c] += s * g * qh.hat[i * d + c];
        }
        const double size = std::fabs(g) + std::fabs(weight) * probability;
        q_magnitude[i] += size * k_row(positive);
        k_magnitude[positive] += size * q_row(i);
        scalar_magnitude += size * (std::fabs(values[i]) + 1.0);
      }
      for (std::int64_t c = 0; c < d; ++c) out.grad_k[positive * d + c] += grad_k_hat[c];
      out.col_lse.push_back(col_lse);
    }
    out.loss.push_back(loss);
  }
  for (std::int64_t i = 0; i < b; ++i) {
    normalize_backward_row(&qh.hat[i * d], qh.norms[i], eps, cosine, d, &out.grad_q[i * d]);
  }
  for (std::int64_t j = 0; j < m; ++j) {
    normalize_backward_row(&kh.hat[j * d], kh.norms[j], eps, cosine, d, &out.grad_k[j * d]);
  }

  // fp32 bounds, the model of infonce_tolerances (support/infonce_cases.hpp).
  constexpr double u = 1.0 / (1 << 24), safety = 8.0;
  double q_max = 0.0, k_max = 0.0;
  for (std::int64_t i = 0; i < b; ++i) q_max = std::max(q_max, q_row(i));
  for (std::int64_t j = 0; j < m; ++j) k_max = std::max(k_max, k_row(j));
  const double logit_error = safety * std::sqrt(static_cast<double>(d)) * u * s * q_max * k_max;
  const double row_error = 2.0 * logit_error + (static_cast<double>(m) / 128.0 + 32.0) * u;
  out.lse_tolerance = row_error;
  out.loss_tolerance.assign(out.loss.size(), 2.0 * row_error);
  const double q_error = safety * (row_error + std::sqrt(static_cast<double>(m)) * u);
  const double k_error = safety * (row_error + std::sqrt(static_cast<double>(b)) * u);
  add_gradient_tolerances(s, q_error, k_error, q_magnitude, k_magnitude, qh, kh, &out);
  out.sum_grad_logits_tolerance =
      safety * (row_error + std::sqrt(static_cast<double>(b) * static_cast<double>(m)) * u) *
      scalar_magnitude;
  return out;
}

/// SigLIP's float64 reference at the sampled rows, by the same trick (no log-sum-exp, so a row
/// needs only itself): the loss of each sampled row and every row of both gradients, with fp32
/// bounds of the same model (a logit's error t |q| |k| sqrt(D) u, each G entry's error its
/// derivative times that, sums of |G| for the products). The lse fields stay empty;
/// sum_grad_logits is sum(G * (l - b)), from which dL/dt = sum / t.
inline SampledInfoNCE sampled_siglip(const siglip::Params& p, const double* q, const double* k,
                                     const double* grad_loss,
                                     const std::vector<std::int64_t>& rows) {
  using namespace sampled_detail;
  SampledInfoNCE out;
  if (p.reduction != Reduction::kNone) return out;
  for (std::int64_t i = 0; i < p.batch; ++i) {
    if (grad_loss[i] != 0.0 && std::find(rows.begin(), rows.end(), i) == rows.end()) return out;
  }
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const bool cosine = p.similarity == Similarity::kCosine;
  const double t = p.log_scale ? std::exp(static_cast<double>(p.scale)) : p.scale;
  const double bias = p.bias, eps = p.eps;
  const HatRows qh = hat_rows(q, b, row_stride_or_dim(p.q_row_stride, d), d, cosine, eps);
  const HatRows kh = hat_rows(k, m, row_stride_or_dim(p.k_row_stride, d), d, cosine, eps);
  auto q_row = [&](std::int64_t i) { return cosine ? 1.0 : qh.norms[i]; };
  auto k_row = [&](std::int64_t j) { return cosine ? 1.0 : kh.norms[j]; };
  double q_max = 0.0, k_max = 0.0;
  for (std::int64_t i = 0; i < b; ++i) q_max = std::max(q_max, q_row(i));
  for (std::int64_t j = 0; j < m; ++j) k_max = std::max(k_max, k_row(j));
  constexpr double u = 1.0 / (1 << 24), safety = 8.0;
  const double logit_error = safety * std::sqrt(static_cast<double>(d)) * u * t * q_max * k_max;
  out.rows = rows;
  out.grad_q.assign(static_cast<std::size_t>(b * d), 0.0);
  out.grad_k.assign(static_cast<std::size_t>(m * d), 0.0);
  std::vector<double> q_magnitude(b, 0.0), k_magnitude(m, 0.0);
  double scalar_magnitude = 0.0;
  auto softplus = [](double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); };
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  for (const std::int64_t r : rows) {
    const double weight = grad_loss[r];
    double loss = 0.0, loss_error = 0.0;
    std::vector<double> grad_q_hat(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t j = 0; j < m; ++j) {
      const bool positive = !p.negatives_only && j == r + p.positive_offset;
      const double sim = dot(&qh.hat[r * d], &kh.hat[j * d], d);
      const double l = t * sim + bias;
      const double term = softplus(positive ? -l : l);
      const double slope = sigmoid(positive ? -l : l);  // |d term / dl|
      loss += term;
      loss_error += slope * logit_error + u * term;
      const double g = weight * (positive ? -sigmoid(-l) : sigmoid(l));
      out.sum_grad_logits += g * t * sim;
      for (std::int64_t c = 0; c < d; ++c) {
        grad_q_hat[c] += t * g * kh.hat[j * d + c];
        out.grad_k[j * d + c] += t * g * qh.hat[r * d + c];
      }
      // |G| plus its own error (its slope sigma (1 - sigma) <= 1/4 times the logit's).
      const double size = std::fabs(g) + std::fabs(weight) * (0.25 * logit_error + u);
      q_magnitude[r] += size * k_row(j);
      k_magnitude[j] += size * q_row(r);
      scalar_magnitude += size * (std::fabs(t * sim) + 1.0);
    }
    for (std::int64_t c = 0; c < d; ++c) out.grad_q[r * d + c] += grad_q_hat[c];
    out.loss.push_back(loss);
    out.loss_tolerance.push_back(safety *
                                 (loss_error + (static_cast<double>(m) / 128.0 + 32.0) * u * loss));
  }
  for (std::int64_t i = 0; i < b; ++i) {
    normalize_backward_row(&qh.hat[i * d], qh.norms[i], eps, cosine, d, &out.grad_q[i * d]);
  }
  for (std::int64_t j = 0; j < m; ++j) {
    normalize_backward_row(&kh.hat[j * d], kh.norms[j], eps, cosine, d, &out.grad_k[j * d]);
  }
  const double q_error = safety * (logit_error + std::sqrt(static_cast<double>(m)) * u);
  const double k_error = safety * (logit_error + std::sqrt(static_cast<double>(b)) * u);
  add_gradient_tolerances(t, q_error, k_error, q_magnitude, k_magnitude, qh, kh, &out);
  out.sum_grad_logits_tolerance =
      safety * (logit_error + std::sqrt(static_cast<double>(b) * static_cast<double>(m)) * u) *
      scalar_magnitude;
  return out;
}

}  // namespace contrastive::testing
