// Float64 Repel reference: mean over (b, n) of max(cos(u_b, x_bn) - margin, 0), as plain loops.
#include <cmath>
#include <limits>
#include <vector>

#include "contrastive/reference.hpp"
#include "host/plan/error.hpp"
#include "host/plan/repel_plan.hpp"
#include "host/reference/common.hpp"

namespace contrastive::reference {
namespace {

using contrastive::detail::fail;

struct Similarities {
  detail::Rows anchors, negatives;
  std::vector<double> values;  // (B, N)
};

Similarities similarities(const repel::Params& p, const double* u, const double* x) {
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim;
  Similarities s;
  s.anchors = detail::prepare_rows(u, b, row_stride_or_dim(p.anchor_row_stride, d), d, true, p.eps);
  s.negatives =
      detail::prepare_rows(x, b * n, row_stride_or_dim(p.negative_row_stride, d), d, true, p.eps);
  s.values.resize(static_cast<std::size_t>(b * n));
  for (std::int64_t row = 0; row < b; ++row) {
    for (std::int64_t t = 0; t < n; ++t) {
      s.values[row * n + t] =
          detail::dot(&s.anchors.hat[row * d], &s.negatives.hat[(row * n + t) * d], d);
    }
  }
  return s;
}

bool active(double similarity, double margin) {
  return similarity - margin > 0.0;
}

// max(s - margin, 0) that keeps NaN.
double term(double similarity, double margin) {
  if (std::isnan(similarity)) return std::numeric_limits<double>::quiet_NaN();
  return active(similarity, margin) ? similarity - margin : 0.0;
}

double count_active(const std::vector<double>& values, double margin) {
  double count = 0.0;
  for (double value : values) count += active(value, margin) ? 1.0 : 0.0;
  return count;
}

}  // namespace

Status repel_forward(const repel::Params& params, const double* anchors, const double* negatives,
                     RepelForward* out) {
  CONTRASTIVE_TRY(repel::detail::check_problem(params));
  if (anchors == nullptr || negatives == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::repel_forward: null pointer");
  }
  const Similarities s = similarities(params, anchors, negatives);
  std::vector<double> terms(s.values.size());
  double total = 0.0;
  for (std::size_t i = 0; i < terms.size(); ++i)
    total += terms[i] = term(s.values[i], params.margin);
  out->active_terms = count_active(s.values, params.margin);
  if (params.reduction == Reduction::kNone) {
    out->loss = terms;
  } else if (params.reduction == Reduction::kSum) {
    out->loss = {total};
  } else if (params.mean_over_active) {
    out->loss = {std::isnan(total) ? total
                                   : (out->active_terms > 0 ? total / out->active_terms : 0.0)};
  } else {
    out->loss = {total / static_cast<double>(terms.size())};
  }
  out->similarities = s.values;
  return Status::kSuccess;
}

Status repel_backward(const repel::Params& params, const double* anchors, const double* negatives,
                      const double* grad_loss, RepelBackward* out) {
  CONTRASTIVE_TRY(repel::detail::check_problem(params));
  if (anchors == nullptr || negatives == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "reference::repel_backward: null pointer");
  }
  const std::int64_t b = params.batch, n = params.negatives, d = params.dim;
  const Similarities s = similarities(params, anchors, negatives);
  const double active_terms = count_active(s.values, params.margin);
  std::vector<double> grad_u(static_cast<std::size_t>(b * d), 0.0);
  std::vector<double> grad_x(static_cast<std::size_t>(b * n * d), 0.0);
  for (std::int64_t row = 0; row < b; ++row) {
    for (std::int64_t t = 0; t < n; ++t) {
      const std::int64_t index = row * n + t;
      double weight = detail::upstream_weight(grad_loss, params.reduction, index, b * n);
      if (params.mean_over_active) {  // the count is piecewise constant: no gradient through it
        weight =
            (grad_loss != nullptr ? grad_loss[0] : 1.0) / (active_terms > 0 ? active_terms : 1.0);
      }
      const double similarity = s.values[index];
      const double g =
          std::isnan(similarity) ? similarity : (active(similarity, params.margin) ? weight : 0.0);
      for (std::int64_t c = 0; c < d; ++c) {
        grad_u[row * d + c] += g * s.negatives.hat[index * d + c];
        grad_x[index * d + c] += g * s.anchors.hat[row * d + c];
      }
    }
  }
  out->grad_anchors = detail::normalize_backward(s.anchors, d, true, params.eps, grad_u);
  out->grad_negatives = detail::normalize_backward(s.negatives, d, true, params.eps, grad_x);
  return Status::kSuccess;
}

}  // namespace contrastive::reference
