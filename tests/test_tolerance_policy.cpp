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
                         testing::test_name);

}  // namespace
}  // namespace contrastive
