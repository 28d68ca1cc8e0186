// Float64 InfoNCE reference: the formulas of DESIGN.md section 2 written as plain loops.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "contrastive/reference.hpp"
#include "host/error.hpp"
#include "host/infonce_plan.hpp"

namespace contrastive::reference {
namespace {

using contrastive::Reduction;
using contrastive::Similarity;
using contrastive::detail::fail;
using infonce::Params;

// Rows of x (rows, stride) as a dense (rows, dim) matrix, L2-normalized with norm clamped to eps
// (cosine) or copied (dot). `norms` receives the unclamped norms.
std::vector<double> prepare_rows(const double* x, std::int64_t rows, std::int64_t stride,
                                 std::int64_t dim, const Params& p, std::vector<double>* norms) {
  std::vector<double> out(static_cast<std::size_t>(rows * dim));
  norms->assign(static_cast<std::size_t>(rows), 1.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const double* row = x + r * stride;
    double scale = 1.0;
    if (p.similarity == Similarity::kCosine) {
      double squares = 0.0;
      for (std::int64_t c = 0; c < dim; ++c) squares += row[c] * row[c];
      const double norm = std::sqrt(squares);
      (*norms)[r] = norm;
      scale = 1.0 / std::max(norm, static_cast<double>(p.eps));
    }
    for (std::int64_t c = 0; c < dim; ++c) out[r * dim + c] = row[c] * scale;
  }
  return out;
}

double log_sum_exp(const double* values, std::int64_t count, std::int64_t stride) {
  double max = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < count; ++i) max = std::max(max, values[i * stride]);
  double sum = 0.0;
  for (std::int64_t i = 0; i < count; ++i) sum += std::exp(values[i * stride] - max);
  return max + std::log(sum);
}

struct Forward {
  std::vector<double> q_hat, k_hat, q_norm, k_norm, logits, row_lse, col_lse, row_loss;
};

Forward run_forward(const Params& p, const double* q, const double* k) {
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  Forward f;
  f.q_hat = prepare_rows(q, b, infonce::detail::q_stride(p), d, p, &f.q_norm);
  f.k_hat = prepare_rows(k, m, infonce::detail::k_stride(p), d, p, &f.k_norm);
  const double inverse_temperature = 1.0 / static_cast<double>(p.temperature);
  f.logits.assign(static_cast<std::size_t>(b * m), 0.0);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      double dot = 0.0;
      for (std::int64_t c = 0; c < d; ++c) dot += f.q_hat[i * d + c] * f.k_hat[j * d + c];
      f.logits[i * m + j] = dot * inverse_temperature;
    }
  }
  f.row_lse.resize(static_cast<std::size_t>(b));
  f.row_loss.resize(static_cast<std::size_t>(b));
  for (std::int64_t i = 0; i < b; ++i) {
    f.row_lse[i] = log_sum_exp(&f.logits[i * m], m, 1);
    f.row_loss[i] = f.row_lse[i] - f.logits[i * m + i + p.positive_offset];
  }
  if (p.symmetric) {  // the column direction over the positive columns
    f.col_lse.resize(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t column = i + p.positive_offset;
      f.col_lse[i] = log_sum_exp(&f.logits[column], b, m);
      f.row_loss[i] = 0.5 * (f.row_loss[i] + (f.col_lse[i] - f.logits[i * m + column]));
    }
  }
  return f;
}

// dLoss/d(row loss i) for an upstream gradient, before the symmetric halving.
std::vector<double> row_weights(const Params& p, const double* grad_loss) {
  std::vector<double> weights(static_cast<std::size_t>(p.batch));
  for (std::int64_t i = 0; i < p.batch; ++i) {
    double upstream = 1.0;
    if (grad_loss != nullptr)
      upstream = p.reduction == Reduction::kNone ? grad_loss[i] : grad_loss[0];
    if (p.reduction == Reduction::kMean) upstream /= static_cast<double>(p.batch);
    weights[i] = p.symmetric ? 0.5 * upstream : upstream;
  }
  return weights;
}

// Normalization backward: d/dx of x / max(|x|, eps), applied to the gradient `g` of x_hat.
void normalize_backward(std::int64_t rows, std::int64_t dim, const std::vector<double>& x_hat,
                        const std::vector<double>& norms, double eps, const std::vector<double>& g,
                        std::vector<double>* out) {
  out->assign(static_cast<std::size_t>(rows * dim), 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    const double norm = norms[r];
    if (norm > eps) {
      double projection = 0.0;
      for (std::int64_t c = 0; c < dim; ++c) projection += x_hat[r * dim + c] * g[r * dim + c];
      for (std::int64_t c = 0; c < dim; ++c) {
        (*out)[r * dim + c] = (g[r * dim + c] - x_hat[r * dim + c] * projection) / norm;
      }
    } else {  // the clamped branch is x / eps: linear
      for (std::int64_t c = 0; c < dim; ++c) (*out)[r * dim + c] = g[r * dim + c] / eps;
    }
  }
}

}  // namespace

Status infonce_forward(const Params& params, const double* q, const double* k,
                       InfoNCEForward* out) {
  CONTRASTIVE_TRY(infonce::detail::check_problem(params));
  if (q == nullptr || k == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::infonce_forward: q, k and out must not be null");
  }
  Forward f = run_forward(params, q, k);
  if (params.reduction == Reduction::kNone) {
    out->loss = f.row_loss;
  } else {
    double total = 0.0;
    for (double loss : f.row_loss) total += loss;
    if (params.reduction == Reduction::kMean) total /= static_cast<double>(params.batch);
    out->loss.assign(1, total);
  }
  out->row_lse = std::move(f.row_lse);
  out->col_lse = std::move(f.col_lse);
  out->logits = std::move(f.logits);
  return Status::kSuccess;
}

Status infonce_backward(const Params& params, const double* q, const double* k,
                        const double* grad_loss, InfoNCEBackward* out) {
  CONTRASTIVE_TRY(infonce::detail::check_problem(params));
  if (q == nullptr || k == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::infonce_backward: q, k and out must not be null");
  }
  const std::int64_t b = params.batch, m = params.num_keys, d = params.dim;
  const Forward f = run_forward(params, q, k);
  const std::vector<double> weights = row_weights(params, grad_loss);

  // G = dLoss/dlogits: w_i (softmax_row - onehot) (+ w_j (softmax_col - onehot) when symmetric).
  std::vector<double> g(static_cast<std::size_t>(b * m));
  double g_dot_logits = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double logit = f.logits[i * m + j];
      double value =
          weights[i] * (std::exp(logit - f.row_lse[i]) - (j == i + params.positive_offset));
      const std::int64_t column = j - params.positive_offset;  // index among the positive columns
      if (params.symmetric && column >= 0 && column < b) {
        value += weights[column] * (std::exp(logit - f.col_lse[column]) - (i == column));
      }
      g[i * m + j] = value;
      g_dot_logits += value * logit;
    }
  }
  const double inverse_temperature = 1.0 / static_cast<double>(params.temperature);
  out->grad_temperature = -inverse_temperature * g_dot_logits;

  // Through logits = q_hat . k_hat / temperature.
  std::vector<double> grad_q_hat(static_cast<std::size_t>(b * d), 0.0);
  std::vector<double> grad_k_hat(static_cast<std::size_t>(m * d), 0.0);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double scaled = g[i * m + j] * inverse_temperature;
      for (std::int64_t c = 0; c < d; ++c) {
        grad_q_hat[i * d + c] += scaled * f.k_hat[j * d + c];
        grad_k_hat[j * d + c] += scaled * f.q_hat[i * d + c];
      }
    }
  }
  if (params.similarity == Similarity::kCosine) {
    const double eps = params.eps;
    normalize_backward(b, d, f.q_hat, f.q_norm, eps, grad_q_hat, &out->grad_q);
    normalize_backward(m, d, f.k_hat, f.k_norm, eps, grad_k_hat, &out->grad_k);
  } else {
    out->grad_q = std::move(grad_q_hat);
    out->grad_k = std::move(grad_k_hat);
  }
  out->grad_logits = std::move(g);
  return Status::kSuccess;
}

}  // namespace contrastive::reference
