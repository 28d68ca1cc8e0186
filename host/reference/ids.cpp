// Float64 reference of InfoNCE and in-batch MNR with ids: the rules of include/contrastive/ids.hpp
// as plain loops over the B x M logits, a mask of kept keys per row (and per positive column).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "contrastive/reference.hpp"
#include "host/plan/error.hpp"
#include "host/plan/ids_plan.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/plan/mnr_plan.hpp"
#include "host/reference/common.hpp"

namespace contrastive::reference {
namespace {

using contrastive::detail::fail;
using ids::IdOptions;
using ids::IdType;

/// logsumexp of values[i * stride] over the i with kept[i * kept_stride]; -infinity over none.
double kept_log_sum_exp(const double* values, const std::uint8_t* kept, std::int64_t count,
                        std::int64_t stride, std::int64_t kept_stride) {
  double max = -std::numeric_limits<double>::infinity();
  for (std::int64_t i = 0; i < count; ++i) {
    if (kept[i * kept_stride]) max = std::max(max, values[i * stride]);
  }
  if (max == -std::numeric_limits<double>::infinity()) return max;  // none kept (or all -inf)
  double sum = 0.0;
  for (std::int64_t i = 0; i < count; ++i) {
    if (kept[i * kept_stride]) sum += std::exp(values[i * stride] - max);
  }
  return max + std::log(sum);
}

struct Forward {
  detail::Rows q, k;
  std::vector<double> logits;          // (B, M)
  std::vector<std::uint8_t> kept;      // (B, M): the row direction
  std::vector<std::uint8_t> col_kept;  // (B, B): [r * B + i] row r in positive column i
  std::vector<double> row_lse, col_lse, row_loss;
  std::vector<std::int64_t> positives;  // (B) |P(i)| (multi-positive), else 1
  std::int64_t positive_rows = 0;
};

Forward run_forward(const infonce::Params& p, const IdOptions& o, const double* q, const double* k,
                    const std::int64_t* query_ids, const std::int64_t* key_ids,
                    double logit_scale) {
  const std::int64_t b = p.batch, m = p.num_keys, offset = p.positive_offset;
  const bool with_ids = o.type != IdType::kNone;
  const double margin = o.false_negative_margin;
  detail::Similarities s = detail::similarities(p, q, k);
  const std::vector<double>& sim = s.sim;
  Forward f;
  f.logits.resize(sim.size());
  for (std::size_t e = 0; e < sim.size(); ++e) f.logits[e] = logit_scale * sim[e];
  // A key other than the positive leaves a single-positive row when it shares the row's id, or
  // when its similarity passes the threshold set by the positive's.
  const auto masked_negative = [&](std::int64_t i, std::int64_t j, std::int64_t positive_row,
                                   std::int64_t positive_col, bool column) {
    if (with_ids) {
      const std::int64_t query_id = column ? key_ids[positive_col] : query_ids[i];
      const std::int64_t other_id = column ? query_ids[i] : key_ids[j];
      if (query_id == other_id) return true;
    }
    return o.false_negative_threshold &&
           sim[i * m + j] > sim[positive_row * m + positive_col] - margin;
  };
  f.kept.assign(static_cast<std::size_t>(b * m), 1);
  f.row_lse.resize(static_cast<std::size_t>(b));
  f.row_loss.assign(static_cast<std::size_t>(b), 0.0);
  f.positives.assign(static_cast<std::size_t>(b), 1);
  for (std::int64_t i = 0; i < b; ++i) {
    const std::int64_t positive = i + offset;
    std::uint8_t* kept = &f.kept[i * m];
    for (std::int64_t j = 0; j < m; ++j) {
      if (o.multi_positive) {
        kept[j] = !(o.exclude_self && j == positive);
      } else if (j != positive) {
        kept[j] = !masked_negative(i, j, i, positive, false);
      }
    }
    f.row_lse[i] = kept_log_sum_exp(&f.logits[i * m], kept, m, 1, 1);
    if (!o.multi_positive) {
      f.row_loss[i] = f.row_lse[i] - f.logits[i * m + positive];
      ++f.positive_rows;
      continue;
    }
    std::int64_t count = 0;
    double positive_sum = 0.0;
    for (std::int64_t j = 0; j < m; ++j) {
      if (kept[j] && key_ids[j] == query_ids[i]) {
        ++count;
        positive_sum += f.logits[i * m + j];
      }
    }
    f.positives[i] = count;
    if (count > 0) {  // a row with no positive contributes 0
      f.row_loss[i] = f.row_lse[i] - positive_sum / static_cast<double>(count);
      ++f.positive_rows;
    }
  }
  if (p.symmetric) {  // single-positive only: the column direction over the positive columns
    f.col_kept.assign(static_cast<std::size_t>(b * b), 1);
    f.col_lse.resize(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t column = i + offset;
      for (std::int64_t r = 0; r < b; ++r) {
        if (r != i) f.col_kept[r * b + i] = !masked_negative(r, column, i, column, true);
      }
      f.col_lse[i] = kept_log_sum_exp(&f.logits[column], &f.col_kept[i], b, m, b);
      f.row_loss[i] = 0.5 * (f.row_loss[i] + (f.col_lse[i] - f.logits[i * m + column]));
    }
  }
  f.q = std::move(s.q);
  f.k = std::move(s.k);
  return f;
}

/// The loss's divisor under kMean: the rows with a positive (multi-positive) or B.
std::int64_t mean_count(const IdOptions& o, const Forward& f, std::int64_t batch) {
  return o.multi_positive ? f.positive_rows : batch;
}

IdsForward forward_result(const infonce::Params& p, const IdOptions& o, Forward f) {
  IdsForward out;
  if (p.reduction == Reduction::kMean) {
    double total = 0.0;
    for (double value : f.row_loss) total += value;
    const std::int64_t count = mean_count(o, f, p.batch);
    out.loss = {count > 0 ? total / static_cast<double>(count) : 0.0};
  } else {
    out.loss = detail::reduce(f.row_loss, p.reduction);
  }
  out.row_lse = std::move(f.row_lse);
  out.col_lse = std::move(f.col_lse);
  out.logits = std::move(f.logits);
  out.positive_rows = f.positive_rows;
  out.kept = std::move(f.kept);
  return out;
}

/// G = dLoss/dlogits, its sum(G * logits) and the gradients of q and k.
InfoNCEBackward backward_result(const infonce::Params& p, const IdOptions& o, const Forward& f,
                                const double* grad_loss, double logit_scale,
                                const std::int64_t* query_ids, const std::int64_t* key_ids,
                                double* sum_grad_logits) {
  const std::int64_t b = p.batch, m = p.num_keys, offset = p.positive_offset;
  const std::int64_t count = mean_count(o, f, b);
  std::vector<double> weights(static_cast<std::size_t>(b), 0.0);
  for (std::int64_t i = 0; i < b; ++i) {
    if (count > 0) {
      weights[i] =
          detail::upstream_weight(grad_loss, p.reduction, i, count) * (p.symmetric ? 0.5 : 1.0);
    }
  }
  InfoNCEBackward out;
  std::vector<double>& g = out.grad_logits;
  g.assign(static_cast<std::size_t>(b * m), 0.0);
  *sum_grad_logits = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    if (o.multi_positive && f.positives[i] == 0) continue;  // no positive: no gradient
    const double inverse_count = 1.0 / static_cast<double>(f.positives[i]);
    for (std::int64_t j = 0; j < m; ++j) {
      if (!f.kept[i * m + j]) continue;
      const double target = o.multi_positive ? (key_ids[j] == query_ids[i]) * inverse_count
                                             : static_cast<double>(j == i + offset);
      g[i * m + j] = weights[i] * (std::exp(f.logits[i * m + j] - f.row_lse[i]) - target);
    }
  }
  if (p.symmetric) {
    for (std::int64_t i = 0; i < b; ++i) {
      const std::int64_t column = i + offset;
      for (std::int64_t r = 0; r < b; ++r) {
        if (!f.col_kept[r * b + i]) continue;
        g[r * m + column] +=
            weights[i] * (std::exp(f.logits[r * m + column] - f.col_lse[i]) - (r == i));
      }
    }
  }
  for (std::size_t e = 0; e < g.size(); ++e) *sum_grad_logits += g[e] * f.logits[e];
  detail::logits_backward(g, logit_scale, f.q, f.k, p.dim, p.similarity == Similarity::kCosine,
                          p.eps, &out.grad_q, &out.grad_k);
  return out;
}

Status check_call(const char* call, const char* loss, const IdOptions& o, bool symmetric,
                  const void* q, const void* k, const std::int64_t* query_ids,
                  const std::int64_t* key_ids, const void* out) {
  CONTRASTIVE_TRY(ids::detail::check_options(loss, o, symmetric));
  if (q == nullptr || k == nullptr || out == nullptr) {
    return fail(Status::kNullPointer, "%s: the inputs and out must not be null", call);
  }
  if (o.type != IdType::kNone && (query_ids == nullptr || key_ids == nullptr)) {
    return fail(Status::kNullPointer, "%s: the query and key ids must not be null with ids", call);
  }
  return Status::kSuccess;
}

}  // namespace

Status infonce_ids_forward(const infonce::Params& params, const IdOptions& options, const double* q,
                           const double* k, const std::int64_t* query_ids,
                           const std::int64_t* key_ids, IdsForward* out) {
  CONTRASTIVE_TRY(infonce::detail::check_problem(params));
  CONTRASTIVE_TRY(check_call("reference::infonce_ids_forward", "infonce", options, params.symmetric,
                             q, k, query_ids, key_ids, out));
  const double logit_scale = detail::scale_parameter(params.temperature, /*temperature=*/true,
                                                     params.log_scale, params.max_scale)
                                 .scale;
  *out = forward_result(params, options,
                        run_forward(params, options, q, k, query_ids, key_ids, logit_scale));
  return Status::kSuccess;
}

Status infonce_ids_backward(const infonce::Params& params, const IdOptions& options,
                            const double* q, const double* k, const std::int64_t* query_ids,
                            const std::int64_t* key_ids, const double* grad_loss,
                            InfoNCEBackward* out) {
  CONTRASTIVE_TRY(infonce::detail::check_problem(params));
  CONTRASTIVE_TRY(check_call("reference::infonce_ids_backward", "infonce", options,
                             params.symmetric, q, k, query_ids, key_ids, out));
  const detail::ScaleParameter s = detail::scale_parameter(params.temperature, /*temperature=*/true,
                                                           params.log_scale, params.max_scale);
  const double logit_scale = s.scale;
  const Forward f = run_forward(params, options, q, k, query_ids, key_ids, logit_scale);
  double sum_grad_logits = 0.0;
  *out = backward_result(params, options, f, grad_loss, logit_scale, query_ids, key_ids,
                         &sum_grad_logits);
  // logits = s sim: dLoss/ds = sum(G * logits) / s, times ds/d(the parameter); the mask does not
  // depend on s
  out->grad_temperature = sum_grad_logits / logit_scale * s.derivative;
  return Status::kSuccess;
}

Status mnr_in_batch_ids_forward(const mnr::InBatchParams& params, const IdOptions& options,
                                const double* anchors, const double* candidates,
                                const std::int64_t* anchor_ids, const std::int64_t* candidate_ids,
                                IdsForward* out) {
  CONTRASTIVE_TRY(mnr::detail::check_problem(params));
  CONTRASTIVE_TRY(check_call("reference::mnr_in_batch_ids_forward", mnr::detail::kInBatch, options,
                             params.symmetric, anchors, candidates, anchor_ids, candidate_ids,
                             out));
  const infonce::Params p = mnr::detail::to_infonce(params);
  const double scale =
      detail::scale_parameter(params.scale, false, params.log_scale, params.max_scale).scale;
  *out = forward_result(
      p, options, run_forward(p, options, anchors, candidates, anchor_ids, candidate_ids, scale));
  return Status::kSuccess;
}

Status mnr_in_batch_ids_backward(const mnr::InBatchParams& params, const IdOptions& options,
                                 const double* anchors, const double* candidates,
                                 const std::int64_t* anchor_ids, const std::int64_t* candidate_ids,
                                 const double* grad_loss, MnrInBatchBackward* out) {
  CONTRASTIVE_TRY(mnr::detail::check_problem(params));
  CONTRASTIVE_TRY(check_call("reference::mnr_in_batch_ids_backward", mnr::detail::kInBatch, options,
                             params.symmetric, anchors, candidates, anchor_ids, candidate_ids,
                             out));
  const infonce::Params p = mnr::detail::to_infonce(params);
  const detail::ScaleParameter s =
      detail::scale_parameter(params.scale, false, params.log_scale, params.max_scale);
  const Forward f =
      run_forward(p, options, anchors, candidates, anchor_ids, candidate_ids, s.scale);
  double sum_grad_logits = 0.0;
  InfoNCEBackward grads = backward_result(p, options, f, grad_loss, s.scale, anchor_ids,
                                          candidate_ids, &sum_grad_logits);
  out->grad_anchors = std::move(grads.grad_q);
  out->grad_candidates = std::move(grads.grad_k);
  out->grad_logits = std::move(grads.grad_logits);
  out->grad_scale = sum_grad_logits / s.scale * s.derivative;  // logits = scale * sim
  return Status::kSuccess;
}

}  // namespace contrastive::reference
