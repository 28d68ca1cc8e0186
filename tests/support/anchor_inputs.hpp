// Inputs of the per-anchor losses (MNR with per-anchor negatives, Repel): random rows rounded to
// the params' dtype with NaN padding, and the results of an implementation under test. Shared by
// the sweeps and the naive same-precision implementations.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"
#include "support/precision.hpp"
#include "support/random.hpp"

namespace contrastive::testing {

/// Rows (rows, stride) of N(0, 1) entries rounded to `dtype`, NaN in the padding (never read).
/// With `unit_scale`, rows are scaled to norms between 0.5 and 2 (for dot similarity).
inline std::vector<double> random_rows(std::int64_t rows, std::int64_t stride, std::int64_t dim,
                                       bool unit_scale, DType dtype, std::mt19937_64& engine) {
  std::vector<double> values(static_cast<std::size_t>(rows * stride), NAN);
  std::uniform_real_distribution<double> row_scale(0.5, 2.0);
  const std::vector<double> normal = random_normal(rows * dim, engine);
  for (std::int64_t r = 0; r < rows; ++r) {
    const double scale = unit_scale ? row_scale(engine) / std::sqrt(static_cast<double>(dim)) : 1.0;
    for (std::int64_t c = 0; c < dim; ++c) {
      values[r * stride + c] = round_to(dtype, normal[r * dim + c] * scale);
    }
  }
  return values;
}

inline double norm_of(const std::vector<double>& x, std::int64_t row, std::int64_t stride,
                      std::int64_t dim) {
  double squares = 0.0;
  for (std::int64_t c = 0; c < dim; ++c) squares += x[row * stride + c] * x[row * stride + c];
  return std::sqrt(squares);
}

/// What an implementation produced for a per-anchor loss, as float whatever its dtype.
struct AnchorResults {
  std::vector<float> loss, saved, grad_anchors, grad_first, grad_rest, grad_scale;
};

struct MnrInputs {
  std::vector<double> anchors, positives, negatives, grad_loss;
};

inline MnrInputs make_mnr_inputs(const mnr::PerAnchorParams& p, std::mt19937_64& engine) {
  const bool dot = p.similarity == Similarity::kDot;
  MnrInputs in;
  in.anchors = random_rows(p.batch, row_stride_or_dim(p.anchor_row_stride, p.dim), p.dim, dot,
                           p.dtype, engine);
  in.positives = random_rows(p.batch, row_stride_or_dim(p.positive_row_stride, p.dim), p.dim, dot,
                             p.dtype, engine);
  in.negatives = random_rows(p.batch * p.negatives, row_stride_or_dim(p.negative_row_stride, p.dim),
                             p.dim, dot, p.dtype, engine);
  in.grad_loss = random_normal_f32(p.reduction == Reduction::kNone ? p.batch : 1, engine);
  return in;
}

struct RepelInputs {
  std::vector<double> anchors, negatives, grad_loss;
};

/// Negatives mix their anchor's direction with noise, x = alpha sqrt(D) u_hat + noise, alpha in
/// [-3, 3], so cosines spread over (-0.95, 0.95) instead of crowding at 0 in high dimensions.
inline RepelInputs make_repel_inputs(const repel::Params& p, std::mt19937_64& engine) {
  RepelInputs in;
  const std::int64_t a_stride = row_stride_or_dim(p.anchor_row_stride, p.dim);
  const std::int64_t n_stride = row_stride_or_dim(p.negative_row_stride, p.dim);
  in.anchors = random_rows(p.batch, a_stride, p.dim, false, p.dtype, engine);
  in.negatives = random_rows(p.batch * p.negatives, n_stride, p.dim, false, p.dtype, engine);
  std::uniform_real_distribution<double> alpha(-3.0, 3.0);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const double anchor_norm = norm_of(in.anchors, b, a_stride, p.dim);
    for (std::int64_t t = 0; t < p.negatives; ++t) {
      const double weight = alpha(engine) * std::sqrt(static_cast<double>(p.dim)) / anchor_norm;
      for (std::int64_t c = 0; c < p.dim; ++c) {
        double& x = in.negatives[(b * p.negatives + t) * n_stride + c];
        x = round_to(p.dtype, x + weight * in.anchors[b * a_stride + c]);
      }
    }
  }
  in.grad_loss =
      random_normal_f32(p.reduction == Reduction::kNone ? p.batch * p.negatives : 1, engine);
  return in;
}

}  // namespace contrastive::testing
