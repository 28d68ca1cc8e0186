// InfoNCE test inputs (random rows rounded to the params' dtype, NaN padding) and the results of an
// implementation under test, shared by the sweeps and the naive same-precision implementation.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "contrastive/infonce.hpp"
#include "support/precision.hpp"
#include "support/random.hpp"

namespace contrastive::testing {

struct Inputs {
  std::vector<double> q, k, grad_loss;  // q (B, q_stride), k (M, k_stride): exact in the dtype
};

// Gaussian rows rounded to the params' dtype; for dot, scaled to norms between 0.5 and 2 so that
// logits stay O(1/t) as with real embeddings. Padding is NaN: the library must never read it. The
// upstream gradient is fp32 in every precision. P: the Params of any B x M loss (InfoNCE, SigLIP).
template <typename P>
Inputs make_inputs(const P& p, std::mt19937_64& engine) {
  Inputs in;
  std::uniform_real_distribution<double> row_scale(0.5, 2.0);
  auto fill = [&](std::int64_t rows, std::int64_t stride) {
    std::vector<double> values(static_cast<std::size_t>(rows * stride), NAN);
    const std::vector<double> normal = testing::random_normal(rows * p.dim, engine);
    for (std::int64_t r = 0; r < rows; ++r) {
      const double scale = p.similarity == Similarity::kDot
                               ? row_scale(engine) / std::sqrt(static_cast<double>(p.dim))
                               : 1.0;
      for (std::int64_t c = 0; c < p.dim; ++c) {
        values[r * stride + c] = round_to(p.dtype, normal[r * p.dim + c] * scale);
      }
    }
    return values;
  };
  in.q = fill(p.batch, row_stride_or_dim(p.q_row_stride, p.dim));
  in.k = fill(p.num_keys, row_stride_or_dim(p.k_row_stride, p.dim));
  in.grad_loss = testing::random_normal_f32(p.reduction == Reduction::kNone ? p.batch : 1, engine);
  return in;
}

inline std::vector<float> to_float(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

inline std::vector<double> round_to_float(const std::vector<double>& values) {
  const std::vector<float> rounded = to_float(values);
  return std::vector<double>(rounded.begin(), rounded.end());
}

inline double row_norm(const std::vector<double>& x, std::int64_t row, std::int64_t stride,
                       std::int64_t dim) {
  double squares = 0.0;
  for (std::int64_t c = 0; c < dim; ++c) squares += x[row * stride + c] * x[row * stride + c];
  return std::sqrt(squares);
}

/// What an implementation produced, as float whatever its dtype: the loss (1 or B), the saved
/// buffer (row lse, column lse, inverse norms, as the library lays it out) and the three gradients.
struct Results {
  std::vector<float> loss, saved, grad_q, grad_k, grad_temperature;
};

}  // namespace contrastive::testing
