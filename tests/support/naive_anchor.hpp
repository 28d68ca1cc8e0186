// Naive same-precision implementations of the per-anchor losses on the CPU: the fused kernel's
// formulas, sequentially, with the kernel's double sums for the similarities and fp32 elsewhere,
// on inputs already in the dtype, and the gradients rounded to the dtype as the kernel stores
// them. For f32 they check that the fp32 tolerances are attainable; for 16-bit dtypes they measure
// the error the GPU is allowed twice of (tolerance.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/online_softmax.hpp"
#include "support/anchor_inputs.hpp"
#include "support/precision.hpp"

namespace contrastive::testing {

/// The gradients as the kernel stores them, in the dtype.
inline void round_gradients(DType dtype, AnchorResults* out) {
  for (std::vector<float>* grads : {&out->grad_anchors, &out->grad_first, &out->grad_rest}) {
    for (float& value : *grads) value = static_cast<float>(round_to(dtype, value));
  }
}

// One anchor's candidates: similarities with double sums (as the kernel), the rest in fp32.
struct NaiveAnchor {
  std::vector<float> sim, inv_norm, projection;
  float anchor_inv_norm = 1.0f, anchor_projection = 0.0f;
};

inline NaiveAnchor naive_similarities(const double* anchor, const std::vector<const double*>& rows,
                                      std::int64_t dim, bool cosine, float eps) {
  NaiveAnchor out;
  double anchor_squares = 0.0;
  for (std::int64_t d = 0; d < dim; ++d) anchor_squares += anchor[d] * anchor[d];
  if (cosine) {
    const double norm = std::sqrt(anchor_squares);
    out.anchor_inv_norm = 1.0f / kernels::nan_propagating_max(static_cast<float>(norm), eps);
    out.anchor_projection = !(norm <= eps) ? 1.0f : 0.0f;
  }
  for (const double* row : rows) {
    double dot = 0.0, squares = 0.0;
    for (std::int64_t d = 0; d < dim; ++d) {
      dot += anchor[d] * row[d];
      squares += row[d] * row[d];
    }
    if (cosine) {
      const double norm = std::sqrt(squares);
      const float inv = 1.0f / kernels::nan_propagating_max(static_cast<float>(norm), eps);
      const auto sim = static_cast<float>(dot * out.anchor_inv_norm * inv);
      out.sim.push_back(sim);
      out.inv_norm.push_back(inv);
      out.projection.push_back(!(norm <= eps) ? sim : 0.0f);
    } else {
      out.sim.push_back(static_cast<float>(dot));
      out.inv_norm.push_back(1.0f);
      out.projection.push_back(0.0f);
    }
  }
  return out;
}

// Phase 2: gradients of the candidates and the anchor from the weights dLoss/dsim.
inline void naive_gradients(const double* anchor, const std::vector<const double*>& rows,
                            std::int64_t dim, bool cosine, const NaiveAnchor& v,
                            const std::vector<float>& weight, float* grad_anchor,
                            const std::vector<float*>& grad_rows) {
  float weighted_sim = 0.0f;
  for (std::size_t t = 0; t < rows.size(); ++t) weighted_sim += weight[t] * v.sim[t];
  for (std::int64_t d = 0; d < dim; ++d) {
    const auto a = static_cast<float>(anchor[d]);
    const float a_hat = a * v.anchor_inv_norm;
    float accumulated = 0.0f;
    for (std::size_t t = 0; t < rows.size(); ++t) {
      const auto c = static_cast<float>(rows[t][d]);
      if (cosine) {
        const float c_hat = c * v.inv_norm[t];
        grad_rows[t][d] = weight[t] * (a_hat - c_hat * v.projection[t]) * v.inv_norm[t];
        accumulated += weight[t] * c_hat;
      } else {
        grad_rows[t][d] = weight[t] * a;
        accumulated += weight[t] * c;
      }
    }
    grad_anchor[d] =
        cosine ? (accumulated - a_hat * v.anchor_projection * weighted_sim) * v.anchor_inv_norm
               : accumulated;
  }
}

inline AnchorResults naive_mnr(const mnr::PerAnchorParams& p, const MnrInputs& in) {
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim;
  const std::int64_t a_stride = row_stride_or_dim(p.anchor_row_stride, d);
  const std::int64_t p_stride = row_stride_or_dim(p.positive_row_stride, d);
  const std::int64_t n_stride = row_stride_or_dim(p.negative_row_stride, d);
  AnchorResults out;
  out.grad_anchors.resize(b * d);
  out.grad_first.resize(b * d);
  out.grad_rest.resize(b * n * d);
  std::vector<float> row_loss(b);
  double scale_sum = 0.0;
  const float mean = p.reduction == Reduction::kMean ? 1.0f / static_cast<float>(b) : 1.0f;
  for (std::int64_t row = 0; row < b; ++row) {
    std::vector<const double*> rows{&in.positives[row * p_stride]};
    std::vector<float*> grads{&out.grad_first[row * d]};
    for (std::int64_t t = 0; t < n; ++t) {
      rows.push_back(&in.negatives[(row * n + t) * n_stride]);
      grads.push_back(&out.grad_rest[(row * n + t) * d]);
    }
    const double* anchor = &in.anchors[row * a_stride];
    const NaiveAnchor v =
        naive_similarities(anchor, rows, d, p.similarity == Similarity::kCosine, p.eps);
    kernels::LseState state = kernels::lse_empty();
    for (float sim : v.sim) state = kernels::lse_push(state, p.scale * sim);
    const float lse = kernels::lse_value(state);
    out.saved.push_back(lse);
    row_loss[row] = lse - p.scale * v.sim[0];
    const float row_weight =
        static_cast<float>(in.grad_loss[p.reduction == Reduction::kNone ? row : 0]) * mean;
    std::vector<float> weight(rows.size());
    float grad_dot_logit = 0.0f;
    for (std::size_t t = 0; t < rows.size(); ++t) {
      const float logit = p.scale * v.sim[t];
      const float grad_logit = row_weight * (std::exp(logit - lse) - (t == 0 ? 1.0f : 0.0f));
      weight[t] = grad_logit * p.scale;
      grad_dot_logit += grad_logit * logit;
    }
    scale_sum += grad_dot_logit;
    naive_gradients(anchor, rows, d, p.similarity == Similarity::kCosine, v, weight,
                    &out.grad_anchors[row * d], grads);
  }
  if (p.reduction == Reduction::kNone) {
    out.loss = row_loss;
  } else {
    double total = 0.0;
    for (float value : row_loss) total += value;
    out.loss = {static_cast<float>(total * mean)};
  }
  out.grad_scale = {static_cast<float>(scale_sum / p.scale)};
  round_gradients(p.dtype, &out);
  return out;
}

inline AnchorResults naive_repel(const repel::Params& p, const RepelInputs& in) {
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim;
  const std::int64_t a_stride = row_stride_or_dim(p.anchor_row_stride, d);
  const std::int64_t n_stride = row_stride_or_dim(p.negative_row_stride, d);
  AnchorResults out;
  out.grad_anchors.resize(b * d);
  out.grad_rest.resize(b * n * d);
  std::vector<NaiveAnchor> anchors;
  double total = 0.0, active = 0.0;
  std::vector<float> terms;
  for (std::int64_t row = 0; row < b; ++row) {
    std::vector<const double*> rows;
    for (std::int64_t t = 0; t < n; ++t) rows.push_back(&in.negatives[(row * n + t) * n_stride]);
    anchors.push_back(naive_similarities(&in.anchors[row * a_stride], rows, d, true, p.eps));
    for (float sim : anchors.back().sim) {
      const float excess = sim - p.margin;
      terms.push_back(excess > 0.0f || excess != excess ? excess : 0.0f);
      total += terms.back();
      active += excess > 0.0f ? 1.0 : 0.0;
    }
  }
  out.saved = {static_cast<float>(active)};
  if (p.reduction == Reduction::kNone) {
    out.loss = terms;
  } else if (p.reduction == Reduction::kSum) {
    out.loss = {static_cast<float>(total)};
  } else {
    out.loss = {static_cast<float>(p.mean_over_active ? (active > 0 ? total / active : 0.0)
                                                      : total / static_cast<double>(b * n))};
  }
  float scale = p.reduction == Reduction::kMean ? 1.0f / static_cast<float>(b * n) : 1.0f;
  if (p.mean_over_active) scale = active > 0 ? 1.0f / static_cast<float>(active) : 0.0f;
  for (std::int64_t row = 0; row < b; ++row) {
    std::vector<const double*> rows;
    std::vector<float*> grads;
    std::vector<float> weight;
    for (std::int64_t t = 0; t < n; ++t) {
      rows.push_back(&in.negatives[(row * n + t) * n_stride]);
      grads.push_back(&out.grad_rest[(row * n + t) * d]);
      const float excess = anchors[row].sim[t] - p.margin;
      const float w =
          static_cast<float>(in.grad_loss[p.reduction == Reduction::kNone ? row * n + t : 0]) *
          scale;
      weight.push_back(excess > 0.0f ? w : 0.0f);
    }
    naive_gradients(&in.anchors[row * a_stride], rows, d, true, anchors[row], weight,
                    &out.grad_anchors[row * d], grads);
  }
  round_gradients(p.dtype, &out);
  return out;
}

}  // namespace contrastive::testing
