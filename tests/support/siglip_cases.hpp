// SigLIP's expectations under the tolerance policy (support/tolerance.hpp), shared by the GPU
// tests (gpu/siglip_gpu.cpp, the SigLIP driver of support/loss_drivers.hpp) and the CPU emulation
// of the sigmoid head (cpu/siglip_tile_emulation.cpp): the float64 reference on the inputs as
// rounded to the dtype, the fp32 error bound of every output, and a naive same-precision SigLIP
// (sequential fp32 sums, the kernels' per-logit math, every value the GPU stores in 16 bits
// rounded the same way) that measures what a 16-bit precision costs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "contrastive/siglip.hpp"
#include "host/engine/heads.hpp"
#include "host/plan/siglip_plan.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/sigmoid_math.hpp"
#include "support/infonce_inputs.hpp"
#include "support/naive_infonce.hpp"
#include "support/precision.hpp"
#include "support/tolerance.hpp"

namespace contrastive::testing {

/// What a SigLIP implementation produced, as float whatever its dtype.
struct SigLIPResults {
  std::vector<float> loss, saved, grad_q, grad_k, grad_scale, grad_bias;
};

/// The scalars as the engine resolves them on the device (kernels/logit_scalars.hpp): t, b and
/// the factor of the scale's gradient.
inline kernels::ResolvedScalars siglip_scalars(const siglip::Params& p) {
  return kernels::resolve_scalars(
      p.scale, p.log_scale ? kernels::ScaleForm::kLogScale : kernels::ScaleForm::kScale,
      p.max_scale, p.bias, logits::gradient_factor(siglip::detail::to_problem(p)));
}

inline bool siglip_positive(const siglip::Params& p, std::int64_t i, std::int64_t j) {
  return !p.negatives_only && j == i + p.positive_offset;
}

/// The upstream weight of row i as the kernels take it (the reduction's factor is not in it).
inline float siglip_upstream(const siglip::Params& p, const Inputs& in, std::int64_t i) {
  return static_cast<float>(in.grad_loss[p.reduction == Reduction::kNone ? i : 0]);
}

/// The loss from the rows' fp32 losses, as the head finishes it (a sum in double times 1/B).
inline std::vector<float> reduce_rows(const siglip::Params& p, const std::vector<float>& rows) {
  if (p.reduction == Reduction::kNone) return rows;
  double total = 0.0;
  for (float value : rows) total += value;
  const double factor = p.reduction == Reduction::kMean ? 1.0 / static_cast<double>(p.batch) : 1.0;
  return {static_cast<float>(total * factor)};
}

/// SigLIP forward and backward as the precision of `p` computes it, with plain sequential fp32
/// sums (`Sum` = double: another rounding of the same products).
template <typename Sum = float>
SigLIPResults naive_siglip(const siglip::Params& p, const Inputs& in) {
  using naive_detail::round_float;
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const float t = siglip::detail::scale_of(p);
  const logits::Problem problem = siglip::detail::to_problem(p);
  const double f = logits::gradient_factor(problem);
  const bool tf32 = p.allow_tf32 && p.dtype == DType::kF32;
  auto operand = [tf32](float value) { return tf32 ? truncate_to_tf32(value) : value; };
  std::vector<float> q_norms, k_norms;
  const std::vector<float> q =
      naive_detail::gemm_rows(in.q, b, row_stride_or_dim(p.q_row_stride, d), p, &q_norms);
  const std::vector<float> k =
      naive_detail::gemm_rows(in.k, m, row_stride_or_dim(p.k_row_stride, d), p, &k_norms);
  std::vector<float> g(static_cast<std::size_t>(b * m)), row_loss(b);
  double dot_sum = 0.0, g_sum = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    Sum loss = 0, dot_row = 0, g_row = 0;
    for (std::int64_t j = 0; j < m; ++j) {
      Sum dot = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        dot += static_cast<Sum>(operand(q[i * d + c])) * operand(k[j * d + c]);
      }
      const float logit = round_float(p.logits_dtype, static_cast<float>(dot)) * t;
      const float l = logit + p.bias;
      const bool positive = siglip_positive(p, i, j);
      const float grad = kernels::sigmoid_xent_grad(l, positive, siglip_upstream(p, in, i));
      loss += kernels::sigmoid_xent(l, positive);
      dot_row += kernels::grad_times_logit(grad, logit);
      g_row += grad;
      g[i * m + j] = round_float(p.dtype, grad);  // G as the gradient GEMMs read it
    }
    row_loss[i] = static_cast<float>(loss);
    dot_sum += static_cast<float>(dot_row);
    g_sum += static_cast<float>(g_row);
  }
  SigLIPResults out;
  out.loss = reduce_rows(p, row_loss);
  out.saved = q_norms;
  out.saved.insert(out.saved.end(), k_norms.begin(), k_norms.end());
  const auto alpha = static_cast<float>(static_cast<double>(t) * f);
  naive_detail::gradient_products<Sum>(p, in, g, q, k, alpha, operand, &out.grad_q, &out.grad_k);
  out.grad_scale = {static_cast<float>(siglip_scalars(p).scale_gradient_factor * dot_sum)};
  out.grad_bias = {static_cast<float>(f * g_sum)};
  return out;
}

// ---- The fp32 bounds ---------------------------------------------------------------------------

struct SigLIPTolerances {
  std::vector<double> loss;    // per loss element
  std::vector<double> grad_q;  // per row of grad_q
  std::vector<double> grad_k;  // per row of grad_k
  double grad_scale = 0.0, grad_bias = 0.0;
};

inline constexpr double kSigLIPSafety = 8.0;

// A logit t sim + b from a D-long fp32 dot product is off by e = 8 (sqrt(D) u_gemm t |q| |k| +
// u (|t sim| + |b|)). Every later quantity is a Lipschitz function of the logits (softplus' <= 1,
// sigmoid' <= 1/4) plus its own fp32 sums: a row of M terms errs by at most (M / 128 + 32) u of
// its magnitude in the kernels' block sums, and a naive sequential sum is held to the same.
inline SigLIPTolerances siglip_tolerances(const siglip::Params& p, const Inputs& in,
                                          const reference::SigLIPForward& fwd,
                                          const reference::SigLIPBackward& bwd) {
  const double u = kFp32UnitRoundoff, safety = kSigLIPSafety;
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const bool cosine = p.similarity == Similarity::kCosine;
  const double t = siglip::detail::scale_of(p), bias = std::fabs(static_cast<double>(p.bias));
  const double f = logits::gradient_factor(siglip::detail::to_problem(p));
  std::vector<double> q_rows(b, 1.0), k_rows(m, 1.0), q_divisor(b, 1.0), k_divisor(m, 1.0);
  const std::int64_t q_stride = row_stride_or_dim(p.q_row_stride, d),
                     k_stride = row_stride_or_dim(p.k_row_stride, d);
  for (std::int64_t i = 0; i < b; ++i) {
    const double norm = row_norm(in.q, i, q_stride, d);
    (cosine ? q_divisor[i] : q_rows[i]) = cosine ? std::max(norm, double{p.eps}) : norm;
  }
  for (std::int64_t j = 0; j < m; ++j) {
    const double norm = row_norm(in.k, j, k_stride, d);
    (cosine ? k_divisor[j] : k_rows[j]) = cosine ? std::max(norm, double{p.eps}) : norm;
  }
  const double gemm_u = p.allow_tf32 && p.dtype == DType::kF32 ? kTf32UnitRoundoff : u;
  const double sum_u = (static_cast<double>(m) / 128.0 + 32.0) * u;
  SigLIPTolerances tol;
  std::vector<double> row_loss_error(b, 0.0), q_magnitude(b, 0.0), k_magnitude(m, 0.0);
  std::vector<double> q_shift(b, 0.0), k_shift(m, 0.0);
  double scale_error = 0.0, scale_magnitude = 0.0, bias_error = 0.0, bias_magnitude = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    const double w = std::fabs(static_cast<double>(siglip_upstream(p, in, i))) * f;
    double row_magnitude = 0.0;
    for (std::int64_t j = 0; j < m; ++j) {
      const double logit = fwd.logits[i * m + j], sim = (logit - p.bias) / t;
      const double e =
          safety * (std::sqrt(static_cast<double>(d)) * gemm_u * t * q_rows[i] * k_rows[j] +
                    u * (std::fabs(logit - p.bias) + bias));
      const double z = siglip_positive(p, i, j) ? 1.0 : -1.0;
      const double sigmoid = 1.0 / (1.0 + std::exp(z * logit));  // |dsoftplus(-z l)/dl|
      row_loss_error[i] += sigmoid * e;
      row_magnitude += std::log1p(std::exp(-std::fabs(logit))) + std::max(-z * logit, 0.0);
      const double grad = std::fabs(bwd.grad_logits[i * m + j]);
      const double moved = 0.25 * w * e + safety * u * grad;  // |G| moves by this at most
      q_shift[i] += moved * k_rows[j];
      k_shift[j] += moved * q_rows[i];
      q_magnitude[i] += grad * k_rows[j];
      k_magnitude[j] += grad * q_rows[i];
      scale_error += moved * std::fabs(sim) + grad * e / t;
      scale_magnitude += grad * std::fabs(sim);
      bias_error += moved;
      bias_magnitude += grad;
    }
    row_loss_error[i] += safety * sum_u * row_magnitude;
  }
  double total_error = 0.0;
  for (double value : row_loss_error) total_error += value;
  if (p.reduction == Reduction::kNone) {
    tol.loss = row_loss_error;
  } else {
    const double factor = p.reduction == Reduction::kMean ? 1.0 / static_cast<double>(b) : 1.0;
    tol.loss = {factor * total_error + safety * u * std::fabs(fwd.loss[0])};
  }
  const double q_gemm = safety * std::sqrt(static_cast<double>(m)) * gemm_u;
  const double k_gemm = safety * std::sqrt(static_cast<double>(b)) * gemm_u;
  // A row built only from entries that round away entirely: the largest row's rounding as a floor.
  const double q_floor =
      safety * gemm_u * *std::max_element(q_magnitude.begin(), q_magnitude.end());
  const double k_floor =
      safety * gemm_u * *std::max_element(k_magnitude.begin(), k_magnitude.end());
  tol.grad_q.resize(b);
  tol.grad_k.resize(m);
  for (std::int64_t i = 0; i < b; ++i) {
    tol.grad_q[i] = t * (q_shift[i] + q_gemm * q_magnitude[i] + q_floor) / q_divisor[i];
  }
  for (std::int64_t j = 0; j < m; ++j) {
    tol.grad_k[j] = t * (k_shift[j] + k_gemm * k_magnitude[j] + k_floor) / k_divisor[j];
  }
  const double scalar_u = safety * (sum_u + std::sqrt(static_cast<double>(b)) * u);
  tol.grad_scale = (scale_error + scalar_u * scale_magnitude) * (p.log_scale ? t : 1.0);
  tol.grad_bias = bias_error + scalar_u * bias_magnitude;
  return tol;
}

// ---- Expectations ------------------------------------------------------------------------------

struct SigLIPExpected {
  reference::SigLIPForward forward;
  reference::SigLIPBackward backward;
  SigLIPTolerances tolerances;
  bool sixteen_bit = false;
  SigLIPResults naive;  // sixteen_bit only
};

inline SigLIPExpected expected_for(const siglip::Params& p, const Inputs& in) {
  SigLIPExpected e;
  EXPECT_EQ(reference::siglip_forward(p, in.q.data(), in.k.data(), &e.forward), Status::kSuccess)
      << last_error_message();
  EXPECT_EQ(
      reference::siglip_backward(p, in.q.data(), in.k.data(), in.grad_loss.data(), &e.backward),
      Status::kSuccess);
  e.tolerances = siglip_tolerances(p, in, e.forward, e.backward);
  e.sixteen_bit = Precision{p.dtype, p.logits_dtype, p.allow_tf32}.sixteen_bit();
  if (e.sixteen_bit) e.naive = naive_siglip(p, in);
  return e;
}

inline ::testing::AssertionResult matches(const SigLIPExpected& e, const std::vector<float>& actual,
                                          const std::vector<float>& naive,
                                          const std::vector<double>& expected,
                                          const std::vector<double>& atol, std::size_t group) {
  return e.sixteen_bit ? within_twice_naive(actual, naive, expected, atol, group)
                       : all_close(actual, expected, atol, group);
}

/// `actual` against the expectations: the loss and saved inverse norms (`forward`), the four
/// gradients (`backward`). A gradient left empty in `actual` was not asked for.
inline void expect_matches(const siglip::Params& p, const SigLIPResults& actual,
                           const SigLIPExpected& expected, const Inputs& in, bool forward,
                           bool backward) {
  const SigLIPTolerances& tol = expected.tolerances;
  const SigLIPResults& naive = expected.naive;
  if (forward) {
    EXPECT_TRUE(matches(expected, actual.loss, naive.loss, expected.forward.loss, tol.loss, 1))
        << "loss";
    std::vector<double> inverse_norms;
    if (p.similarity == Similarity::kCosine) {
      for (std::int64_t i = 0; i < p.batch; ++i) {
        const double norm = row_norm(in.q, i, row_stride_or_dim(p.q_row_stride, p.dim), p.dim);
        inverse_norms.push_back(1.0 / std::max(norm, static_cast<double>(p.eps)));
      }
      for (std::int64_t j = 0; j < p.num_keys; ++j) {
        const double norm = row_norm(in.k, j, row_stride_or_dim(p.k_row_stride, p.dim), p.dim);
        inverse_norms.push_back(1.0 / std::max(norm, static_cast<double>(p.eps)));
      }
    }
    EXPECT_TRUE(all_close(actual.saved, inverse_norms, 0.0, 1e-6)) << "saved inverse norms";
  }
  if (!backward) return;
  const auto d = static_cast<std::size_t>(p.dim);
  EXPECT_TRUE(
      matches(expected, actual.grad_q, naive.grad_q, expected.backward.grad_q, tol.grad_q, d))
      << "grad_q";
  EXPECT_TRUE(
      matches(expected, actual.grad_k, naive.grad_k, expected.backward.grad_k, tol.grad_k, d))
      << "grad_k";
  EXPECT_TRUE(matches(expected, actual.grad_scale, naive.grad_scale, {expected.backward.grad_scale},
                      {tol.grad_scale}, 2))
      << "grad_scale";
  EXPECT_TRUE(matches(expected, actual.grad_bias, naive.grad_bias, {expected.backward.grad_bias},
                      {tol.grad_bias}, 2))
      << "grad_bias";
}

// ---- The GPU sweep's cases (gpu/siglip_gpu.cpp; their bounds are checked on the CPU too) -------

struct SigLIPCase {
  std::int64_t batch, num_keys, dim;
  Similarity similarity;
  Reduction reduction;
  bool log_scale, negatives_only;
  float scale, bias;  // scale: t, or log t with log_scale
  std::int64_t offset;
  std::int64_t tile_rows, tile_cols;  // 0: the tiling policy decides
  bool l2_tiles;                      // Tiling::kTiled with a small cache share
  std::int64_t row_padding;           // row stride = dim + padding
  Precision precision;

  siglip::Params params() const {
    siglip::Params p;
    p.batch = batch;
    p.num_keys = num_keys;
    p.dim = dim;
    p.similarity = similarity;
    p.reduction = reduction;
    p.log_scale = log_scale;
    p.negatives_only = negatives_only;
    p.scale = scale;
    p.bias = bias;
    p.positive_offset = offset;
    p.tile_rows = tile_rows;
    p.tile_cols = tile_cols;
    if (l2_tiles) {
      p.tiling = Tiling::kTiled;
      p.tile_cache_bytes = 64 << 10;  // a few rows of a wide tile: many tiles
    }
    p.q_row_stride = row_padding == 0 ? 0 : dim + row_padding;
    p.k_row_stride = row_padding == 0 ? 0 : dim + 2 * row_padding;
    p.dtype = precision.dtype;
    p.logits_dtype = precision.logits_dtype;
    p.allow_tf32 = precision.tf32;
    return p;
  }
};

inline std::string case_name(const SigLIPCase& c) {
  const char* reductions[] = {"mean", "sum", "none"};
  auto number = [](float value) {  // 2.302585 -> "2p302585", -10 -> "m10"
    std::string text = std::to_string(value);
    text.erase(text.find_last_not_of('0') + 1);
    if (text.back() == '.') text.pop_back();
    std::replace(text.begin(), text.end(), '.', 'p');
    std::replace(text.begin(), text.end(), '-', 'm');
    return text;
  };
  std::string name = "B" + std::to_string(c.batch) + "_M" + std::to_string(c.num_keys) + "_D" +
                     std::to_string(c.dim) + "_" +
                     (c.similarity == Similarity::kCosine ? "cosine" : "dot") + "_" +
                     reductions[static_cast<int>(c.reduction)] + (c.log_scale ? "_logt" : "_t") +
                     number(c.scale) + "_b" + number(c.bias);
  if (c.negatives_only) name += "_negativesonly";
  if (c.offset != 0) name += "_offset" + std::to_string(c.offset);
  if (c.tile_rows != 0) {
    name += "_tile" + std::to_string(c.tile_rows) + "x" + std::to_string(c.tile_cols);
  }
  if (c.l2_tiles) name += "_l2tiles";
  if (c.row_padding != 0) name += "_pad" + std::to_string(c.row_padding);
  return name + precision_suffix(c.precision);
}

inline void PrintTo(const SigLIPCase& c, std::ostream* out) {
  *out << case_name(c);
}

// B, M, D from the awkward sizes, small enough for the float64 reference.
inline constexpr std::int64_t kSigLIPShapes[][3] = {
    {1, 1, 1},       {1, 7, 3},        {2, 2, 64},     {3, 3, 1000},    {3, 127, 3},
    {7, 7, 768},     {7, 33, 1},       {33, 33, 64},   {33, 1000, 768}, {127, 127, 1000},
    {127, 4097, 64}, {1000, 1000, 64}, {1000, 4097, 3}};

// The scalars: SigLIP's initialization (t = 10, b = -10) given as t and as log t, t = 1 without a
// bias, and t = 100 (logits out to +-110).
struct SigLIPScalars {
  bool log_scale;
  float scale, bias;
};
inline constexpr SigLIPScalars kSigLIPScalars[] = {{false, 10.0f, -10.0f},
                                                   {true, 2.302585f, -10.0f},
                                                   {false, 1.0f, 0.0f},
                                                   {false, 100.0f, -10.0f}};

// The options rotate over the shapes: reductions, scalars, offsets, negatives-only blocks (whose
// M is then also cut below B), forced ragged tiles, L2 tiles and row padding.
inline std::vector<SigLIPCase> siglip_sweep_cases(const std::vector<Precision>& precisions) {
  const Reduction reductions[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  std::vector<SigLIPCase> out;
  int rotation = 0;
  for (const auto& shape : kSigLIPShapes) {
    for (const Precision& precision : precisions) {
      for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
        const SigLIPScalars& scalars = kSigLIPScalars[rotation % 4];
        SigLIPCase c{};
        c.batch = shape[0];
        c.num_keys = shape[1];
        c.dim = shape[2];
        c.similarity = similarity;
        c.reduction = reductions[rotation % 3];
        c.log_scale = scalars.log_scale;
        c.scale = scalars.scale;
        c.bias = scalars.bias;
        c.negatives_only = rotation % 5 == 2;
        c.precision = precision;
        if (c.negatives_only && rotation % 2 == 0)
          c.num_keys = std::max<std::int64_t>(1, c.batch / 2);
        if (!c.negatives_only && c.num_keys > c.batch) {
          c.offset = rotation % 2 == 0 ? c.num_keys - c.batch : (c.num_keys - c.batch) / 2;
        }
        if (rotation % 4 == 3) {  // ragged multi-tile walk: both edges partial
          c.tile_rows = std::max<std::int64_t>(1, c.batch / 3 + 1);
          c.tile_cols = std::max<std::int64_t>(1, c.num_keys / 2 + 1);
        } else if (rotation % 7 == 5) {
          c.l2_tiles = true;
        }
        if (rotation % 5 == 4) c.row_padding = 3;
        out.push_back(c);
        ++rotation;
      }
    }
  }
  return out;
}

}  // namespace contrastive::testing
