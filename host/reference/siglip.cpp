// Float64 SigLIP reference: the pairwise sigmoid loss of DESIGN.md section 2 as plain loops.
//   l_ij = t sim(q_i, k_j) + b, y_ij = 1 at j = i + offset (never with negatives_only)
//   L_i = sum_j softplus(-z_ij l_ij), z = 2y - 1;  G = w_i (sigmoid(l) - y)
//   dQ_hat = t G K_hat, dK_hat = t G^T Q_hat, dt = sum G * sim, db = sum G, dlog t = t dt
#include <algorithm>
#include <cmath>
#include <vector>

#include "contrastive/reference.hpp"
#include "host/plan/error.hpp"
#include "host/plan/siglip_plan.hpp"
#include "host/reference/common.hpp"

namespace contrastive::reference {
namespace {

using siglip::Params;

double softplus(double x) {
  if (std::isnan(x)) return x;
  return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));
}

double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

struct Forward {
  detail::Rows q, k;
  std::vector<double> sim, logits, row_loss;
};

bool is_positive(const Params& p, std::int64_t i, std::int64_t j) {
  return !p.negatives_only && j == i + p.positive_offset;
}

Forward run_forward(const Params& p, const double* q, const double* k) {
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const bool cosine = p.similarity == Similarity::kCosine;
  const double t = detail::scale_parameter(p.scale, false, p.log_scale, p.max_scale).scale;
  Forward f;
  f.q = detail::prepare_rows(q, b, row_stride_or_dim(p.q_row_stride, d), d, cosine, p.eps);
  f.k = detail::prepare_rows(k, m, row_stride_or_dim(p.k_row_stride, d), d, cosine, p.eps);
  f.sim.resize(static_cast<std::size_t>(b * m));
  f.logits.resize(static_cast<std::size_t>(b * m));
  f.row_loss.assign(static_cast<std::size_t>(b), 0.0);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double sim = detail::dot(&f.q.hat[i * d], &f.k.hat[j * d], d);
      const double logit = t * sim + p.bias;
      f.sim[i * m + j] = sim;
      f.logits[i * m + j] = logit;
      f.row_loss[i] += softplus(is_positive(p, i, j) ? -logit : logit);
    }
  }
  return f;
}

Status check_call(const Params& params, const double* q, const double* k, const void* out,
                  const char* name) {
  CONTRASTIVE_TRY(siglip::detail::check_problem(params));
  if (q == nullptr || k == nullptr || out == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "%s: q, k and out must not be null",
                                     name);
  }
  return Status::kSuccess;
}

}  // namespace

Status siglip_forward(const Params& params, const double* q, const double* k, SigLIPForward* out) {
  CONTRASTIVE_TRY(check_call(params, q, k, out, "reference::siglip_forward"));
  Forward f = run_forward(params, q, k);
  SigLIPForward result;
  result.loss = detail::reduce(f.row_loss, params.reduction);
  result.logits = std::move(f.logits);
  *out = std::move(result);
  return Status::kSuccess;
}

Status siglip_backward(const Params& params, const double* q, const double* k,
                       const double* grad_loss, SigLIPBackward* out) {
  CONTRASTIVE_TRY(check_call(params, q, k, out, "reference::siglip_backward"));
  const std::int64_t b = params.batch, m = params.num_keys, d = params.dim;
  const bool cosine = params.similarity == Similarity::kCosine;
  const detail::ScaleParameter scale =
      detail::scale_parameter(params.scale, false, params.log_scale, params.max_scale);
  const double t = scale.scale;
  const Forward f = run_forward(params, q, k);
  SigLIPBackward result;
  std::vector<double>& g = result.grad_logits;
  g.resize(static_cast<std::size_t>(b * m));
  double grad_t = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    const double w = detail::upstream_weight(grad_loss, params.reduction, i, b);
    for (std::int64_t j = 0; j < m; ++j) {
      const bool positive = is_positive(params, i, j);
      const double logit = f.logits[i * m + j];
      // sigmoid(l) - 1 = -sigmoid(-l) for the positive: no cancellation when it is confident.
      const double value = w * (positive ? -sigmoid(-logit) : sigmoid(logit));
      g[i * m + j] = value;
      grad_t += value * f.sim[i * m + j];
      result.grad_bias += value;
    }
  }
  result.grad_scale = grad_t * scale.derivative;
  detail::logits_backward(g, t, f.q, f.k, d, cosine, params.eps, &result.grad_q, &result.grad_k);
  *out = std::move(result);
  return Status::kSuccess;
}

}  // namespace contrastive::reference
