// Internal: float64 building blocks shared by the references of every loss.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "contrastive/infonce.hpp"
#include "contrastive/reference.hpp"
#include "contrastive/types.hpp"

namespace contrastive::reference::detail {

/// A logit scale from the caller's parameter: a temperature t (s = 1/t), a scale, or with
/// log_scale its log theta (s = exp(theta)); clamped at max_scale when that is > 0. `derivative`
/// is ds/d(parameter): -s^2, 1 or s, and 0 where the clamp holds.
struct ScaleParameter {
  double scale;
  double derivative;
};

inline ScaleParameter scale_parameter(float value, bool temperature, bool log_scale,
                                      float max_scale) {
  const auto v = static_cast<double>(value);
  double s = log_scale ? std::exp(v) : (temperature ? 1.0 / v : v);
  double derivative = log_scale ? s : (temperature ? -s * s : 1.0);
  if (max_scale > 0.0f && s > static_cast<double>(max_scale)) {
    s = static_cast<double>(max_scale);
    derivative = 0.0;
  }
  return {s, derivative};
}

/// Rows of x (rows, stride) as a dense (rows, dim) matrix: x / max(|x|, eps) for cosine, x itself
/// for dot. `norms` are the unclamped norms (1 for dot).
struct Rows {
  std::vector<double> hat;
  std::vector<double> norms;
};

inline Rows prepare_rows(const double* x, std::int64_t rows, std::int64_t stride, std::int64_t dim,
                         bool cosine, double eps) {
  Rows out;
  out.hat.resize(static_cast<std::size_t>(rows * dim));
  out.norms.assign(static_cast<std::size_t>(rows), 1.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const double* row = x + r * stride;
    double scale = 1.0;
    if (cosine) {
      double squares = 0.0;
      for (std::int64_t c = 0; c < dim; ++c) squares += row[c] * row[c];
      out.norms[r] = std::sqrt(squares);
      scale = 1.0 / std::max(out.norms[r], eps);
    }
    for (std::int64_t c = 0; c < dim; ++c) out.hat[r * dim + c] = row[c] * scale;
  }
  return out;
}

/// d/dx of x / max(|x|, eps) applied to `g`, the gradient of the normalized rows (cosine); `g`
/// itself for dot.
inline std::vector<double> normalize_backward(const Rows& rows, std::int64_t dim, bool cosine,
                                              double eps, const std::vector<double>& g) {
  if (!cosine) return g;
  std::vector<double> out(g.size());
  const auto count = static_cast<std::int64_t>(rows.norms.size());
  for (std::int64_t r = 0; r < count; ++r) {
    const double norm = rows.norms[r];
    const double* hat = &rows.hat[r * dim];
    const double* grad = &g[r * dim];
    if (norm > eps) {
      double projection = 0.0;
      for (std::int64_t c = 0; c < dim; ++c) projection += hat[c] * grad[c];
      for (std::int64_t c = 0; c < dim; ++c)
        out[r * dim + c] = (grad[c] - hat[c] * projection) / norm;
    } else {  // the clamped branch is x / eps: linear
      for (std::int64_t c = 0; c < dim; ++c) out[r * dim + c] = grad[c] / eps;
    }
  }
  return out;
}

inline double dot(const double* a, const double* b, std::int64_t dim) {
  double sum = 0.0;
  for (std::int64_t c = 0; c < dim; ++c) sum += a[c] * b[c];
  return sum;
}

inline double log_sum_exp(const double* values, std::int64_t count, std::int64_t stride) {
  double max = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < count; ++i) max = std::max(max, values[i * stride]);
  double sum = 0.0;
  for (std::int64_t i = 0; i < count; ++i) sum += std::exp(values[i * stride] - max);
  return max + std::log(sum);
}

/// Per-row (or per-term) losses under `reduction`: themselves (kNone), or their sum or mean.
inline std::vector<double> reduce(const std::vector<double>& rows, Reduction reduction) {
  if (reduction == Reduction::kNone) return rows;
  double total = 0.0;
  for (double value : rows) total += value;
  if (reduction == Reduction::kMean) total /= static_cast<double>(rows.size());
  return {total};
}

/// Through logits = scale * Q_hat K_hat^T (+ a constant): dQ_hat = scale G K_hat and
/// dK_hat = scale G^T Q_hat for G = dLoss/dlogits (rows of q, rows of k), then the normalization
/// backward of each (the gradients of the caller's rows).
inline void logits_backward(const std::vector<double>& g, double scale, const Rows& q,
                            const Rows& k, std::int64_t dim, bool cosine, double eps,
                            std::vector<double>* grad_q, std::vector<double>* grad_k) {
  const auto b = static_cast<std::int64_t>(q.norms.size());
  const auto m = static_cast<std::int64_t>(k.norms.size());
  std::vector<double> grad_q_hat(static_cast<std::size_t>(b * dim), 0.0);
  std::vector<double> grad_k_hat(static_cast<std::size_t>(m * dim), 0.0);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double scaled = g[i * m + j] * scale;
      for (std::int64_t c = 0; c < dim; ++c) {
        grad_q_hat[i * dim + c] += scaled * k.hat[j * dim + c];
        grad_k_hat[j * dim + c] += scaled * q.hat[i * dim + c];
      }
    }
  }
  *grad_q = normalize_backward(q, dim, cosine, eps, grad_q_hat);
  *grad_k = normalize_backward(k, dim, cosine, eps, grad_k_hat);
}

/// dLoss/d(output i) for an upstream gradient (null means 1) under `reduction` over `count`
/// outputs.
inline double upstream_weight(const double* grad_loss, Reduction reduction, std::int64_t index,
                              std::int64_t count) {
  double upstream = 1.0;
  if (grad_loss != nullptr)
    upstream = reduction == Reduction::kNone ? grad_loss[index] : grad_loss[0];
  if (reduction == Reduction::kMean) upstream /= static_cast<double>(count);
  return upstream;
}

/// The rows of q (B) and k (M) prepared for params.similarity, and sim(q_i, k_j) (B, M) row-major:
/// the logits of InfoNCE and in-batch MNR before their scale.
struct Similarities {
  Rows q, k;
  std::vector<double> sim;
};
Similarities similarities(const infonce::Params& params, const double* q, const double* k);

/// InfoNCE with logits = logit_scale * sim; the public InfoNCE uses 1 / temperature, in-batch MNR
/// its scale. `sum_grad_logits` receives sum(dLoss/dlogits * logits), from which either scalar
/// gradient follows. params.temperature is not read.
InfoNCEForward infonce_forward_scaled(const infonce::Params& params, const double* q,
                                      const double* k, double logit_scale);
InfoNCEBackward infonce_backward_scaled(const infonce::Params& params, const double* q,
                                        const double* k, const double* grad_loss,
                                        double logit_scale, double* sum_grad_logits);

}  // namespace contrastive::reference::detail
