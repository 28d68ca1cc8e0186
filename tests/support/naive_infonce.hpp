// A naive InfoNCE in the library's precision, on the CPU: plain sequential fp32 sums and the
// library's own log-sum-exp helpers, with every value the GPU path stores in a narrower type
// rounded the same way (normalized rows and the GEMMs' operands in the input dtype, logits in the
// tile dtype, dLoss/dlogits in the input dtype, gradients in the input dtype; TF32 operands
// truncated). For f32 it checks that the fp32 tolerances are attainable (TolerancePolicy); for
// 16-bit precisions it measures the error the GPU is allowed twice of (tolerance.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "contrastive/infonce.hpp"
#include "kernels/online_softmax.hpp"
#include "support/infonce_inputs.hpp"
#include "support/precision.hpp"

namespace contrastive::testing {
namespace naive_detail {

inline float round_float(DType dtype, float value) {
  return static_cast<float>(round_to(dtype, value));
}

// Rows as the GEMMs read them, (rows, dim) dense: normalized with the kernels' arithmetic and
// stored in the dtype for cosine, the inputs themselves for dot. Appends inverse norms (cosine).
// P: the Params of any B x M loss (dim, dtype, similarity, eps).
template <typename P>
std::vector<float> gemm_rows(const std::vector<double>& x, std::int64_t rows, std::int64_t stride,
                             const P& p, std::vector<float>* inverse_norms) {
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
      out[r * p.dim + c] =
          round_float(p.dtype, static_cast<float>(x[r * stride + c]) * inverse_norm);
    }
  }
  return out;
}

// d/dx of x / max(|x|, eps) applied to g, as the normalization backward kernel does it, stored in
// the dtype.
template <typename P>
std::vector<float> normalize_backward(const std::vector<double>& x, std::int64_t rows,
                                      std::int64_t stride, const P& p,
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
      const auto value = static_cast<float>(x[r * stride + c]);
      float grad;
      if (norm <= p.eps) {
        grad = g[r * p.dim + c] / p.eps;
      } else {
        const auto inverse = static_cast<float>(1.0 / norm);
        const auto projection = static_cast<float>(dot / norm);
        grad = (g[r * p.dim + c] - (value * inverse) * projection) * inverse;
      }
      out[r * p.dim + c] = round_float(p.dtype, grad);
    }
  }
  return out;
}

// The two gradient products of a B x M loss from G (B, M) as the GEMMs read it, accumulated in
// `Sum` and scaled by `alpha`: G K (B, D) and G^T Q (M, D); then the normalization backward
// (cosine) or a store in the dtype (dot) gives the caller's gradients. `operand` is each GEMM
// operand as the tensor cores take it (TF32 truncation, or as is).
template <typename Sum, typename P, typename Operand>
void gradient_products(const P& p, const Inputs& in, const std::vector<float>& g,
                       const std::vector<float>& q, const std::vector<float>& k, float alpha,
                       Operand operand, std::vector<float>* grad_q_out,
                       std::vector<float>* grad_k_out) {
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  std::vector<float> grad_q(static_cast<std::size_t>(b * d)),
      grad_k(static_cast<std::size_t>(m * d));
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t c = 0; c < d; ++c) {
      Sum sum = 0;
      for (std::int64_t j = 0; j < m; ++j) {
        sum += static_cast<Sum>(operand(g[i * m + j])) * operand(k[j * d + c]);
      }
      grad_q[i * d + c] = static_cast<float>(sum) * alpha;
    }
  }
  for (std::int64_t j = 0; j < m; ++j) {
    for (std::int64_t c = 0; c < d; ++c) {
      Sum sum = 0;
      for (std::int64_t i = 0; i < b; ++i) {
        sum += static_cast<Sum>(operand(g[i * m + j])) * operand(q[i * d + c]);
      }
      grad_k[j * d + c] = static_cast<float>(sum) * alpha;
    }
  }
  if (p.similarity == Similarity::kCosine) {
    *grad_q_out = normalize_backward(in.q, b, row_stride_or_dim(p.q_row_stride, d), p, grad_q);
    *grad_k_out = normalize_backward(in.k, m, row_stride_or_dim(p.k_row_stride, d), p, grad_k);
  } else {
    for (float& value : grad_q) value = round_float(p.dtype, value);
    for (float& value : grad_k) value = round_float(p.dtype, value);
    *grad_q_out = grad_q;
    *grad_k_out = grad_k;
  }
}

}  // namespace naive_detail

/// InfoNCE forward and backward (upstream gradient from `in`) as the precision of `p` computes it.
/// `Sum` is the products' accumulator: float (the naive implementation) or double (a differently
/// rounded one, standing in for the GPU's other summation order).
template <typename Sum = float>
Results naive_infonce(const infonce::Params& p, const Inputs& in) {
  using naive_detail::round_float;
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const float inverse_temperature = 1.0f / p.temperature;
  const bool tf32 = p.allow_tf32 && p.dtype == DType::kF32;
  auto operand = [tf32](float value) { return tf32 ? truncate_to_tf32(value) : value; };
  std::vector<float> q_norms, k_norms;
  const std::vector<float> q =
      naive_detail::gemm_rows(in.q, b, row_stride_or_dim(p.q_row_stride, d), p, &q_norms);
  const std::vector<float> k =
      naive_detail::gemm_rows(in.k, m, row_stride_or_dim(p.k_row_stride, d), p, &k_norms);
  std::vector<float> logits(static_cast<std::size_t>(b * m));
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      Sum dot = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        dot += static_cast<Sum>(operand(q[i * d + c])) * operand(k[j * d + c]);
      }
      logits[i * m + j] =
          round_float(p.logits_dtype, static_cast<float>(dot) * inverse_temperature);
    }
  }
  std::vector<float> row_lse(b), col_lse(p.symmetric ? b : 0), row_loss(b);
  for (std::int64_t i = 0; i < b; ++i) {
    kernels::LseState state = kernels::lse_empty();
    for (std::int64_t j = 0; j < m; ++j) state = kernels::lse_push(state, logits[i * m + j]);
    row_lse[i] = kernels::lse_value(state);
    row_loss[i] = row_lse[i] - logits[i * m + i + p.positive_offset];
  }
  for (std::int64_t c = 0; c < static_cast<std::int64_t>(col_lse.size()); ++c) {
    const std::int64_t column = c + p.positive_offset;
    kernels::LseState state = kernels::lse_empty();
    for (std::int64_t i = 0; i < b; ++i) state = kernels::lse_push(state, logits[i * m + column]);
    col_lse[c] = kernels::lse_value(state);
    row_loss[c] = 0.5f * (row_loss[c] + (col_lse[c] - logits[c * m + column]));
  }
  Results out;
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

  // G = dLoss/dlogits, stored in the input dtype; the temperature gradient uses it unrounded.
  float scale = p.reduction == Reduction::kMean ? 1.0f / static_cast<float>(b) : 1.0f;
  if (p.symmetric) scale *= 0.5f;
  auto weight = [&](std::int64_t i) {
    return scale * static_cast<float>(in.grad_loss[p.reduction == Reduction::kNone ? i : 0]);
  };
  std::vector<float>& grad_logits = logits;
  double grad_dot_logits = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    Sum row_sum = 0;
    for (std::int64_t j = 0; j < m; ++j) {
      const float logit = logits[i * m + j];
      float grad = weight(i) * (std::exp(logit - row_lse[i]) - (j == i + p.positive_offset));
      const std::int64_t column = j - p.positive_offset;
      if (p.symmetric && column >= 0 && column < b) {
        grad += weight(column) * (std::exp(logit - col_lse[column]) - (i == column));
      }
      grad_logits[i * m + j] = round_float(p.dtype, grad);
      row_sum += static_cast<Sum>(grad) * logit;
    }
    grad_dot_logits += row_sum;
  }
  naive_detail::gradient_products<Sum>(p, in, grad_logits, q, k, inverse_temperature, operand,
                                       &out.grad_q, &out.grad_k);
  out.grad_temperature = {static_cast<float>(-grad_dot_logits / p.temperature)};
  return out;
}

}  // namespace contrastive::testing
