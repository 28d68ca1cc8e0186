// The GPU tests' tolerances, checked on the CPU: a naive fp32 implementation of InfoNCE (plain
// sequential fp32 sums, the library's own log-sum-exp helpers) must pass every sweep case under
// the same tolerances the GPU results are held to. If it did not, the tolerances would be tighter
// than fp32 arithmetic allows; a GPU failing them while this passes points at the GPU code.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/online_softmax.hpp"
#include "support/anchor_cases.hpp"
#include "support/infonce_cases.hpp"

namespace contrastive {
namespace {

using kernels::LseState;
using testing::Fp32Results;
using testing::Inputs;
using testing::SweepCase;

// Rows as fp32 (normalized with the kernels' arithmetic for cosine); appends inverse norms.
std::vector<float> prepare_rows(const std::vector<double>& x, std::int64_t rows,
                                std::int64_t stride, const infonce::Params& p,
                                std::vector<float>* inverse_norms) {
  std::vector<float> out(static_cast<std::size_t>(rows * p.dim));
  for (std::int64_t r = 0; r < rows; ++r) {
    float inverse_norm = 1.0f;
    if (p.similarity == Similarity::kCosine) {
      double squares = 0.0;
      for (std::int64_t c = 0; c < p.dim; ++c) squares += x[r * stride + c] * x[r * stride + c];
      inverse_norm =
          1.0f / kernels::nan_propagating_max(static_cast<float>(std::sqrt(squares)), p.eps);
      inverse_norms->push_back(inverse_norm);
    }
    for (std::int64_t c = 0; c < p.dim; ++c) {
      out[r * p.dim + c] = static_cast<float>(x[r * stride + c]) * inverse_norm;
    }
  }
  return out;
}

// d/dx of x / max(|x|, eps) applied to g, as the normalization backward kernel does it.
std::vector<float> normalize_backward(const std::vector<double>& x, std::int64_t rows,
                                      std::int64_t stride, const infonce::Params& p,
                                      const std::vector<float>& g) {
  std::vector<float> out(g.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    double squares = 0.0, dot = 0.0;
    for (std::int64_t c = 0; c < p.dim; ++c) {
      const double value = static_cast<float>(x[r * stride + c]);
      squares += value * value;
      dot += value * g[r * p.dim + c];
    }
    const double norm = std::sqrt(squares);
    for (std::int64_t c = 0; c < p.dim; ++c) {
      const float value = static_cast<float>(x[r * stride + c]);
      if (norm <= p.eps) {
        out[r * p.dim + c] = g[r * p.dim + c] / p.eps;
      } else {
        const auto inverse = static_cast<float>(1.0 / norm);
        const auto projection = static_cast<float>(dot / norm);
        out[r * p.dim + c] = (g[r * p.dim + c] - (value * inverse) * projection) * inverse;
      }
    }
  }
  return out;
}

Fp32Results naive_fp32(const infonce::Params& p, const Inputs& in) {
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const float inverse_temperature = 1.0f / p.temperature;
  std::vector<float> q_norms, k_norms;
  const std::vector<float> q =
      prepare_rows(in.q, b, testing::stride_of(p.q_row_stride, d), p, &q_norms);
  const std::vector<float> k =
      prepare_rows(in.k, m, testing::stride_of(p.k_row_stride, d), p, &k_norms);
  std::vector<float> logits(static_cast<std::size_t>(b * m));
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      float dot = 0.0f;
      for (std::int64_t c = 0; c < d; ++c) dot += q[i * d + c] * k[j * d + c];
      logits[i * m + j] = dot * inverse_temperature;
    }
  }
  std::vector<float> row_lse(b), col_lse(p.symmetric ? b : 0), row_loss(b);
  for (std::int64_t i = 0; i < b; ++i) {
    LseState state = kernels::lse_empty();
    for (std::int64_t j = 0; j < m; ++j) state = kernels::lse_push(state, logits[i * m + j]);
    row_lse[i] = kernels::lse_value(state);
    row_loss[i] = row_lse[i] - logits[i * m + i + p.positive_offset];
  }
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(col_lse.size()); ++c) {
    const std::int64_t column = c + p.positive_offset;
    LseState state = kernels::lse_empty();
    for (std::int64_t i = 0; i < b; ++i) state = kernels::lse_push(state, logits[i * m + column]);
    col_lse[c] = kernels::lse_value(state);
    row_loss[c] = 0.5f * (row_loss[c] + (col_lse[c] - logits[c * m + column]));
  }
  Fp32Results out;
  if (p.reduction == Reduction::kNone) {
    out.loss = row_loss;
  } else {
    double total = 0.0;
    for (float value : row_loss) total += value;
    out.loss = {static_cast<float>(p.reduction == Reduction::kMean ? total / b : total)};
  }
  out.saved = row_lse;
  out.saved.insert(out.saved.end(), col_lse.begin(), col_lse.end());
  out.saved.insert(out.saved.end(), q_norms.begin(), q_norms.end());
  out.saved.insert(out.saved.end(), k_norms.begin(), k_norms.end());

  // G in place of the logits, then the two products and the temperature gradient.
  float scale = p.reduction == Reduction::kMean ? 1.0f / static_cast<float>(b) : 1.0f;
  if (p.symmetric) scale *= 0.5f;
  auto weight = [&](std::int64_t i) {
    return scale * static_cast<float>(in.grad_loss[p.reduction == Reduction::kNone ? i : 0]);
  };
  double grad_dot_logits = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    float row_sum = 0.0f;
    for (std::int64_t j = 0; j < m; ++j) {
      const float logit = logits[i * m + j];
      float grad = weight(i) * (std::exp(logit - row_lse[i]) - (j == i + p.positive_offset));
      const std::int64_t column = j - p.positive_offset;
      if (p.symmetric && column >= 0 && column < b) {
        grad += weight(column) * (std::exp(logit - col_lse[column]) - (i == column));
      }
      logits[i * m + j] = grad;
      row_sum += grad * logit;
    }
    grad_dot_logits += row_sum;
  }
  std::vector<float> grad_q(static_cast<std::size_t>(b * d)),
      grad_k(static_cast<std::size_t>(m * d));
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t c = 0; c < d; ++c) {
      float sum = 0.0f;
      for (std::int64_t j = 0; j < m; ++j) sum += logits[i * m + j] * k[j * d + c];
      grad_q[i * d + c] = sum * inverse_temperature;
    }
  }
  for (std::int64_t j = 0; j < m; ++j) {
    for (std::int64_t c = 0; c < d; ++c) {
      float sum = 0.0f;
      for (std::int64_t i = 0; i < b; ++i) sum += logits[i * m + j] * q[i * d + c];
      grad_k[j * d + c] = sum * inverse_temperature;
    }
  }
  if (p.similarity == Similarity::kCosine) {
    out.grad_q = normalize_backward(in.q, b, testing::stride_of(p.q_row_stride, d), p, grad_q);
    out.grad_k = normalize_backward(in.k, m, testing::stride_of(p.k_row_stride, d), p, grad_k);
  } else {
    out.grad_q = grad_q;
    out.grad_k = grad_k;
  }
  out.grad_temperature = {static_cast<float>(-grad_dot_logits / p.temperature)};
  return out;
}

class TolerancePolicy : public ::testing::TestWithParam<SweepCase> {};

TEST_P(TolerancePolicy, NaiveFp32PassesTheGpuTolerances) {
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CONTRASTIVE_TEST_SEED reproduces it)");
  std::mt19937_64 engine(seed);
  const infonce::Params p = GetParam().params();
  const Inputs in = testing::make_inputs(p, engine);
  const testing::Expected expected = testing::expected_for(p, in);
  const Fp32Results naive = naive_fp32(p, in);
  testing::expect_forward_matches(p, naive, expected, in);
  testing::expect_backward_matches(p, naive, expected);
}

INSTANTIATE_TEST_SUITE_P(Sweep, TolerancePolicy, ::testing::ValuesIn(testing::sweep_cases()),
                         testing::sweep_test_name);

// ---- Per-anchor losses: the fused kernel's formulas, sequentially, in fp32
// ------------------------

// One anchor's candidates: similarities with double sums (as the kernel), the rest in fp32.
struct NaiveAnchor {
  std::vector<float> sim, inv_norm, projection;
  float anchor_inv_norm = 1.0f, anchor_projection = 0.0f;
};

NaiveAnchor naive_similarities(const double* anchor, const std::vector<const double*>& rows,
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
void naive_gradients(const double* anchor, const std::vector<const double*>& rows, std::int64_t dim,
                     bool cosine, const NaiveAnchor& v, const std::vector<float>& weight,
                     float* grad_anchor, const std::vector<float*>& grad_rows) {
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

testing::AnchorResults naive_mnr(const mnr::PerAnchorParams& p, const testing::MnrInputs& in) {
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim;
  const std::int64_t a_stride = testing::dense_or(p.anchor_row_stride, d);
  const std::int64_t p_stride = testing::dense_or(p.positive_row_stride, d);
  const std::int64_t n_stride = testing::dense_or(p.negative_row_stride, d);
  testing::AnchorResults out;
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
    LseState state = kernels::lse_empty();
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
  return out;
}

testing::AnchorResults naive_repel(const repel::Params& p, const testing::RepelInputs& in) {
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim;
  const std::int64_t a_stride = testing::dense_or(p.anchor_row_stride, d);
  const std::int64_t n_stride = testing::dense_or(p.negative_row_stride, d);
  testing::AnchorResults out;
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
  return out;
}

class MnrTolerancePolicy : public ::testing::TestWithParam<testing::MnrCase> {};

TEST_P(MnrTolerancePolicy, NaiveFp32PassesTheGpuTolerances) {
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CONTRASTIVE_TEST_SEED reproduces it)");
  std::mt19937_64 engine(seed);
  const mnr::PerAnchorParams p = GetParam().params();
  const testing::MnrInputs in = testing::make_mnr_inputs(p, engine);
  testing::expect_matches(p, naive_mnr(p, in), testing::expected_for(p, in), true, true);
}

INSTANTIATE_TEST_SUITE_P(Sweep, MnrTolerancePolicy, ::testing::ValuesIn(testing::mnr_cases()),
                         testing::mnr_test_name);

class RepelTolerancePolicy : public ::testing::TestWithParam<testing::RepelCase> {};

TEST_P(RepelTolerancePolicy, NaiveFp32PassesTheGpuTolerances) {
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CONTRASTIVE_TEST_SEED reproduces it)");
  std::mt19937_64 engine(seed);
  repel::Params p = GetParam().params();
  const testing::RepelInputs in = testing::make_repel_inputs(p, engine);
  p.margin = testing::clear_margin(p, in, 1e-5);
  testing::expect_matches(p, naive_repel(p, in), testing::expected_for(p, in), true, true);
}

INSTANTIATE_TEST_SUITE_P(Sweep, RepelTolerancePolicy, ::testing::ValuesIn(testing::repel_cases()),
                         testing::repel_test_name);

}  // namespace
}  // namespace contrastive
