// Float64 MNR references: per-anchor negatives as plain loops, in-batch as InfoNCE with a scale.
#include <cmath>
#include <vector>

#include "contrastive/reference.hpp"
#include "host/plan/error.hpp"
#include "host/plan/mnr_plan.hpp"
#include "host/reference/common.hpp"

namespace contrastive::reference {
namespace {

using contrastive::detail::fail;

struct PerAnchor {
  detail::Rows anchors, positives, negatives;
  std::vector<double> logits, row_lse, row_loss;  // logits (B, 1 + n)
};

PerAnchor per_anchor_forward(const mnr::PerAnchorParams& p, const double* a, const double* pos,
                             const double* neg) {
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim, t_count = n + 1;
  const bool cosine = p.similarity == Similarity::kCosine;
  PerAnchor f;
  f.anchors =
      detail::prepare_rows(a, b, row_stride_or_dim(p.anchor_row_stride, d), d, cosine, p.eps);
  f.positives =
      detail::prepare_rows(pos, b, row_stride_or_dim(p.positive_row_stride, d), d, cosine, p.eps);
  f.negatives = detail::prepare_rows(neg, b * n, row_stride_or_dim(p.negative_row_stride, d), d,
                                     cosine, p.eps);
  f.logits.resize(static_cast<std::size_t>(b * t_count));
  f.row_lse.resize(static_cast<std::size_t>(b));
  f.row_loss.resize(static_cast<std::size_t>(b));
  for (std::int64_t row = 0; row < b; ++row) {
    const double* anchor = &f.anchors.hat[row * d];
    double* logits = &f.logits[row * t_count];
    logits[0] = p.scale * detail::dot(anchor, &f.positives.hat[row * d], d);
    for (std::int64_t t = 0; t < n; ++t) {
      logits[1 + t] = p.scale * detail::dot(anchor, &f.negatives.hat[(row * n + t) * d], d);
    }
    f.row_lse[row] = detail::log_sum_exp(logits, t_count, 1);
    f.row_loss[row] = f.row_lse[row] - logits[0];
  }
  return f;
}

}  // namespace

Status mnr_per_anchor_forward(const mnr::PerAnchorParams& params, const double* anchors,
                              const double* positives, const double* negatives,
                              MnrPerAnchorForward* out) {
  CONTRASTIVE_TRY(mnr::detail::check_problem(params));
  if (anchors == nullptr || positives == nullptr || negatives == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::mnr_per_anchor_forward: null pointer");
  }
  PerAnchor f = per_anchor_forward(params, anchors, positives, negatives);
  out->loss = detail::reduce(f.row_loss, params.reduction);
  out->row_lse = std::move(f.row_lse);
  out->logits = std::move(f.logits);
  return Status::kSuccess;
}

Status mnr_per_anchor_backward(const mnr::PerAnchorParams& params, const double* anchors,
                               const double* positives, const double* negatives,
                               const double* grad_loss, MnrPerAnchorBackward* out) {
  CONTRASTIVE_TRY(mnr::detail::check_problem(params));
  if (anchors == nullptr || positives == nullptr || negatives == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::mnr_per_anchor_backward: null pointer");
  }
  const std::int64_t b = params.batch, n = params.negatives, d = params.dim, t_count = n + 1;
  const bool cosine = params.similarity == Similarity::kCosine;
  const PerAnchor f = per_anchor_forward(params, anchors, positives, negatives);
  std::vector<double> grad_a(static_cast<std::size_t>(b * d), 0.0);
  std::vector<double> grad_p(static_cast<std::size_t>(b * d), 0.0);
  std::vector<double> grad_n(static_cast<std::size_t>(b * n * d), 0.0);
  out->grad_logits.assign(static_cast<std::size_t>(b * t_count), 0.0);
  double sum_grad_logits = 0.0;
  for (std::int64_t row = 0; row < b; ++row) {
    const double weight = detail::upstream_weight(grad_loss, params.reduction, row, b);
    const double* anchor = &f.anchors.hat[row * d];
    for (std::int64_t t = 0; t < t_count; ++t) {
      const double logit = f.logits[row * t_count + t];
      const double g = weight * (std::exp(logit - f.row_lse[row]) - (t == 0));
      out->grad_logits[row * t_count + t] = g;
      sum_grad_logits += g * logit;
      // logit = scale * anchor_hat . candidate_hat
      const double* candidate =
          t == 0 ? &f.positives.hat[row * d] : &f.negatives.hat[(row * n + t - 1) * d];
      double* grad_candidate = t == 0 ? &grad_p[row * d] : &grad_n[(row * n + t - 1) * d];
      for (std::int64_t c = 0; c < d; ++c) {
        grad_a[row * d + c] += g * params.scale * candidate[c];
        grad_candidate[c] += g * params.scale * anchor[c];
      }
    }
  }
  out->grad_anchors = detail::normalize_backward(f.anchors, d, cosine, params.eps, grad_a);
  out->grad_positives = detail::normalize_backward(f.positives, d, cosine, params.eps, grad_p);
  out->grad_negatives = detail::normalize_backward(f.negatives, d, cosine, params.eps, grad_n);
  out->grad_scale = sum_grad_logits / params.scale;  // logits = scale * sim
  return Status::kSuccess;
}

Status mnr_in_batch_forward(const mnr::InBatchParams& params, const double* anchors,
                            const double* candidates, InfoNCEForward* out) {
  CONTRASTIVE_TRY(mnr::detail::check_problem(params));
  if (anchors == nullptr || candidates == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::mnr_in_batch_forward: null pointer");
  }
  *out = detail::infonce_forward_scaled(
      mnr::detail::to_infonce(params), anchors, candidates,
      detail::scale_parameter(params.scale, false, params.log_scale, params.max_scale).scale);
  return Status::kSuccess;
}

Status mnr_in_batch_backward(const mnr::InBatchParams& params, const double* anchors,
                             const double* candidates, const double* grad_loss,
                             MnrInBatchBackward* out) {
  CONTRASTIVE_TRY(mnr::detail::check_problem(params));
  if (anchors == nullptr || candidates == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::mnr_in_batch_backward: null pointer");
  }
  const detail::ScaleParameter s =
      detail::scale_parameter(params.scale, false, params.log_scale, params.max_scale);
  double sum_grad_logits = 0.0;
  InfoNCEBackward grads = detail::infonce_backward_scaled(
      mnr::detail::to_infonce(params), anchors, candidates, grad_loss, s.scale, &sum_grad_logits);
  out->grad_anchors = std::move(grads.grad_q);
  out->grad_candidates = std::move(grads.grad_k);
  out->grad_logits = std::move(grads.grad_logits);
  out->grad_scale = sum_grad_logits / s.scale * s.derivative;
  return Status::kSuccess;
}

}  // namespace contrastive::reference
