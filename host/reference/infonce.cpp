// Float64 InfoNCE reference: the formulas of DESIGN.md section 2 written as plain loops.
#include <cmath>
#include <utility>
#include <vector>

#include "contrastive/reference.hpp"
#include "host/plan/error.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/reference/common.hpp"

namespace contrastive::reference {
namespace detail {
namespace {

using infonce::Params;

struct Forward {
  Rows q, k;
  std::vector<double> logits, row_lse, col_lse, row_loss;
};

Forward run_forward(const Params& p, const double* q, const double* k, double logit_scale) {
  const std::int64_t b = p.batch, m = p.num_keys;
  Similarities s = similarities(p, q, k);
  Forward f;
  f.q = std::move(s.q);
  f.k = std::move(s.k);
  f.logits = std::move(s.sim);
  for (double& logit : f.logits) logit *= logit_scale;
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

}  // namespace

Similarities similarities(const Params& p, const double* q, const double* k) {
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const bool cosine = p.similarity == Similarity::kCosine;
  Similarities s;
  s.q = prepare_rows(q, b, infonce::detail::q_stride(p), d, cosine, p.eps);
  s.k = prepare_rows(k, m, infonce::detail::k_stride(p), d, cosine, p.eps);
  s.sim.resize(static_cast<std::size_t>(b * m));
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j)
      s.sim[i * m + j] = dot(&s.q.hat[i * d], &s.k.hat[j * d], d);
  }
  return s;
}

InfoNCEForward infonce_forward_scaled(const Params& params, const double* q, const double* k,
                                      double logit_scale) {
  Forward f = run_forward(params, q, k, logit_scale);
  InfoNCEForward out;
  out.loss = reduce(f.row_loss, params.reduction);
  out.row_lse = std::move(f.row_lse);
  out.col_lse = std::move(f.col_lse);
  out.logits = std::move(f.logits);
  return out;
}

InfoNCEBackward infonce_backward_scaled(const Params& params, const double* q, const double* k,
                                        const double* grad_loss, double logit_scale,
                                        double* sum_grad_logits) {
  const std::int64_t b = params.batch, m = params.num_keys, d = params.dim;
  const bool cosine = params.similarity == Similarity::kCosine;
  const Forward f = run_forward(params, q, k, logit_scale);
  std::vector<double> weights(static_cast<std::size_t>(b));
  for (std::int64_t i = 0; i < b; ++i) {
    weights[i] =
        upstream_weight(grad_loss, params.reduction, i, b) * (params.symmetric ? 0.5 : 1.0);
  }
  // G = dLoss/dlogits: w_i (softmax_row - onehot), plus w_c (softmax_col - onehot) on the positive
  // columns c = j - offset when symmetric.
  InfoNCEBackward out;
  std::vector<double>& g = out.grad_logits;
  g.resize(static_cast<std::size_t>(b * m));
  *sum_grad_logits = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double logit = f.logits[i * m + j];
      double value =
          weights[i] * (std::exp(logit - f.row_lse[i]) - (j == i + params.positive_offset));
      const std::int64_t column = j - params.positive_offset;
      if (params.symmetric && column >= 0 && column < b) {
        value += weights[column] * (std::exp(logit - f.col_lse[column]) - (i == column));
      }
      g[i * m + j] = value;
      *sum_grad_logits += value * logit;
    }
  }
  logits_backward(g, logit_scale, f.q, f.k, d, cosine, params.eps, &out.grad_q, &out.grad_k);
  return out;
}

}  // namespace detail

Status infonce_forward(const infonce::Params& params, const double* q, const double* k,
                       InfoNCEForward* out) {
  CONTRASTIVE_TRY(infonce::detail::check_problem(params));
  if (q == nullptr || k == nullptr || out == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer,
                                     "reference::infonce_forward: q, k and out must not be null");
  }
  const detail::ScaleParameter s = detail::scale_parameter(params.temperature, /*temperature=*/true,
                                                           params.log_scale, params.max_scale);
  *out = detail::infonce_forward_scaled(params, q, k, s.scale);
  return Status::kSuccess;
}

Status infonce_backward(const infonce::Params& params, const double* q, const double* k,
                        const double* grad_loss, InfoNCEBackward* out) {
  CONTRASTIVE_TRY(infonce::detail::check_problem(params));
  if (q == nullptr || k == nullptr || out == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer,
                                     "reference::infonce_backward: q, k and out must not be null");
  }
  const detail::ScaleParameter s = detail::scale_parameter(params.temperature, /*temperature=*/true,
                                                           params.log_scale, params.max_scale);
  double sum_grad_logits = 0.0;
  *out = detail::infonce_backward_scaled(params, q, k, grad_loss, s.scale, &sum_grad_logits);
  // logits = s sim: dLoss/ds = sum(G * logits) / s, times ds/d(the parameter)
  out->grad_temperature = sum_grad_logits / s.scale * s.derivative;
  return Status::kSuccess;
}

}  // namespace contrastive::reference
