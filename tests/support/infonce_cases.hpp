// The InfoNCE sweep shared by the GPU tests and the CPU check of the tolerance policy: the cases
// (shapes x options x precisions), the float64 expectations, the allowed fp32 error and the naive
// same-precision results (the policy itself is stated in tolerance.hpp), and the comparison of a
// set of results against them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/infonce.hpp"
#include "contrastive/reference.hpp"
#include "support/infonce_inputs.hpp"
#include "support/naive_infonce.hpp"
#include "support/precision.hpp"
#include "support/random.hpp"
#include "support/tolerance.hpp"

namespace contrastive::testing {

struct SweepCase {
  std::int64_t batch, num_keys, dim;
  Similarity similarity;
  bool symmetric;
  float temperature;
  Reduction reduction;
  std::int64_t offset;
  std::int64_t tile_rows, tile_cols;  // 0: one tile
  std::int64_t row_padding;           // row stride = dim + padding
  Precision precision;

  infonce::Params params() const {
    infonce::Params p;
    p.batch = batch;
    p.num_keys = num_keys;
    p.dim = dim;
    p.similarity = similarity;
    p.symmetric = symmetric;
    p.temperature = temperature;
    p.reduction = reduction;
    p.positive_offset = offset;
    p.tile_rows = tile_rows;
    p.tile_cols = tile_cols;
    p.q_row_stride = row_padding == 0 ? 0 : dim + row_padding;
    p.k_row_stride = row_padding == 0 ? 0 : dim + 2 * row_padding;
    p.dtype = precision.dtype;
    p.logits_dtype = precision.logits_dtype;
    p.allow_tf32 = precision.tf32;
    return p;
  }
};

inline std::string case_name(const SweepCase& c) {
  const char* reductions[] = {"mean", "sum", "none"};
  std::string temperature = std::to_string(c.temperature);
  temperature.erase(temperature.find_last_not_of('0') + 1);
  if (temperature.back() == '.') temperature.pop_back();
  std::replace(temperature.begin(), temperature.end(), '.', 'p');
  std::string name = "B" + std::to_string(c.batch) + "_M" + std::to_string(c.num_keys) + "_D" +
                     std::to_string(c.dim) + "_" +
                     (c.similarity == Similarity::kCosine ? "cosine" : "dot") +
                     (c.symmetric ? "_symmetric" : "") + "_t" + temperature + "_" +
                     reductions[static_cast<int>(c.reduction)];
  if (c.offset != 0) name += "_offset" + std::to_string(c.offset);
  if (c.tile_rows != 0) {
    name += "_tile" + std::to_string(c.tile_rows) + "x" + std::to_string(c.tile_cols);
  }
  if (c.row_padding != 0) name += "_pad" + std::to_string(c.row_padding);
  return name + precision_suffix(c.precision);
}

inline std::string sweep_test_name(const ::testing::TestParamInfo<SweepCase>& info) {
  return case_name(info.param);
}

inline void PrintTo(const SweepCase& c, std::ostream* out) {
  *out << case_name(c);
}

// Shapes from the awkward sizes (B, M in 1, 2, 3, 7, 33, 127, 1000, 4097; D in 1, 3, 64, 768,
// 1000), kept small enough for the float64 reference.
inline constexpr std::int64_t kSweepShapes[][3] = {
    {1, 1, 1},       {1, 7, 3},        {2, 2, 64},      {3, 3, 1000},    {3, 127, 3},
    {7, 7, 768},     {7, 33, 1},       {33, 33, 64},    {33, 1000, 768}, {127, 127, 1000},
    {127, 4097, 64}, {1000, 1000, 64}, {1000, 4097, 3}, {4097, 4097, 1}};

// In f32, every shape runs cosine and dot, symmetric on and off, at the three temperatures;
// reductions, offsets, forced tiles and row padding rotate.
inline std::vector<SweepCase> sweep_cases() {
  const float temperatures[] = {0.01f, 0.1f, 1.0f};
  const Reduction reductions[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  std::vector<SweepCase> cases;
  int rotation = 0;
  for (const auto& shape : kSweepShapes) {
    const std::int64_t b = shape[0], m = shape[1], d = shape[2];
    for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
      for (bool symmetric : {false, true}) {
        for (float temperature : temperatures) {
          SweepCase c{b, m, d, similarity, symmetric, temperature, reductions[rotation % 3],
                      0, 0, 0, 0,          {}};
          if (m > b) c.offset = rotation % 2 == 0 ? m - b : (m - b) / 2;
          if (rotation % 4 == 3) {  // ragged multi-tile walk: both edges partial
            c.tile_rows = std::max<std::int64_t>(1, b / 3 + 1);
            c.tile_cols = std::max<std::int64_t>(1, m / 2 + 1);
          }
          if (rotation % 5 == 4) c.row_padding = 3;
          cases.push_back(c);
          ++rotation;
        }
      }
    }
  }
  return cases;
}

// The same shapes in every other precision (TF32, bf16, f16, bf16 with a bf16 tile): cosine and
// dot each, the other options rotating; t = 0.01 comes round in each.
inline std::vector<SweepCase> precision_sweep_cases() {
  const float temperatures[] = {0.01f, 0.1f, 1.0f};
  const Reduction reductions[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  std::vector<SweepCase> cases;
  int rotation = 0;
  for (const auto& shape : kSweepShapes) {
    const std::int64_t b = shape[0], m = shape[1], d = shape[2];
    for (const Precision& precision : other_precisions()) {
      for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
        SweepCase c{b,
                    m,
                    d,
                    similarity,
                    rotation % 2 == 1,
                    temperatures[rotation % 3],
                    reductions[(rotation / 3) % 3],
                    0,
                    0,
                    0,
                    0,
                    precision};
        if (m > b) c.offset = rotation % 2 == 0 ? m - b : (m - b) / 2;
        if (rotation % 4 == 3) {
          c.tile_rows = std::max<std::int64_t>(1, b / 3 + 1);
          c.tile_cols = std::max<std::int64_t>(1, m / 2 + 1);
        }
        if (rotation % 5 == 4) c.row_padding = 3;
        cases.push_back(c);
        ++rotation;
      }
    }
  }
  return cases;
}

// ---- Tolerances (the policy is in support/tolerance.hpp) ----------------------------------------

struct Tolerances {
  std::vector<double> loss;    // per loss element
  double lse = 0.0;            // per row / column log-sum-exp
  std::vector<double> grad_q;  // per row of grad_q
  std::vector<double> grad_k;  // per row of grad_k
  double grad_temperature = 0.0;
};

inline constexpr double kSafety = 8.0;

inline Tolerances infonce_tolerances(const infonce::Params& p, const Inputs& in,
                                     const reference::InfoNCEForward& fwd,
                                     const reference::InfoNCEBackward& bwd) {
  const double u = kFp32UnitRoundoff;
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const std::int64_t q_stride = row_stride_or_dim(p.q_row_stride, d),
                     k_stride = row_stride_or_dim(p.k_row_stride, d);
  const bool cosine = p.similarity == Similarity::kCosine;
  const double inverse_temperature = 1.0 / p.temperature;
  // Norms of the rows the GEMMs see (1 for cosine) and what the normalization divides by.
  std::vector<double> q_rows(b, 1.0), k_rows(m, 1.0), q_divisor(b, 1.0), k_divisor(m, 1.0);
  double q_max = 0.0, k_max = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    const double norm = row_norm(in.q, i, q_stride, d);
    if (cosine)
      q_divisor[i] = std::max(norm, static_cast<double>(p.eps));
    else
      q_rows[i] = norm;
    q_max = std::max(q_max, q_rows[i]);
  }
  for (std::int64_t j = 0; j < m; ++j) {
    const double norm = row_norm(in.k, j, k_stride, d);
    if (cosine)
      k_divisor[j] = std::max(norm, static_cast<double>(p.eps));
    else
      k_rows[j] = norm;
    k_max = std::max(k_max, k_rows[j]);
  }
  // The GEMMs' terms carry fp32 rounding, or TF32's when it is on (operands rounded to 10 bits).
  const double gemm_u = p.allow_tf32 && p.dtype == DType::kF32 ? kTf32UnitRoundoff : u;
  // A logit from a D-long dot product, then its log-sum-exp over M fp32 terms.
  const double logit_error =
      kSafety * std::sqrt(static_cast<double>(d)) * gemm_u * inverse_temperature * q_max * k_max;
  const double row_error = 2.0 * logit_error + (static_cast<double>(m) / 128.0 + 32.0) * u;

  Tolerances t;
  t.lse = row_error;
  const double per_row_loss = 2.0 * row_error;
  const std::size_t outputs = fwd.loss.size();
  t.loss.assign(outputs, p.reduction == Reduction::kSum ? per_row_loss * b : per_row_loss);

  // dLoss/dlogits moves by at most (weight x probability x 2 x row_error); its magnitude, plus that
  // of the softmax terms, bounds what each gradient is built from.
  std::vector<double> row_weight(b), col_weight(b);
  for (std::int64_t i = 0; i < b; ++i) {
    double w = p.reduction == Reduction::kNone ? in.grad_loss[i] : in.grad_loss[0];
    if (p.reduction == Reduction::kMean) w /= static_cast<double>(b);
    if (p.symmetric) w *= 0.5;
    row_weight[i] = std::fabs(w);
    col_weight[i] = p.symmetric ? std::fabs(w) : 0.0;
  }
  std::vector<double> q_magnitude(b, 0.0), k_magnitude(m, 0.0);
  double temperature_magnitude = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double logit = fwd.logits[i * m + j];
      double size =
          std::fabs(bwd.grad_logits[i * m + j]) + row_weight[i] * std::exp(logit - fwd.row_lse[i]);
      const std::int64_t column = j - p.positive_offset;  // among the positive columns
      if (p.symmetric && column >= 0 && column < b) {
        size += col_weight[column] * std::exp(logit - fwd.col_lse[column]);
      }
      q_magnitude[i] += size * k_rows[j];
      k_magnitude[j] += size * q_rows[i];
      temperature_magnitude += size * (std::fabs(logit) + 1.0);
    }
  }
  const double q_error = kSafety * (row_error + std::sqrt(static_cast<double>(m)) * gemm_u);
  const double k_error = kSafety * (row_error + std::sqrt(static_cast<double>(b)) * gemm_u);
  // Probabilities below fp32's range flush to 0 (t = 0.01 gives exp(-100) and less), so a row
  // built only from them may come out 0: allow rounding of the largest row as a floor.
  const double q_floor =
      kSafety * gemm_u * *std::max_element(q_magnitude.begin(), q_magnitude.end());
  const double k_floor =
      kSafety * gemm_u * *std::max_element(k_magnitude.begin(), k_magnitude.end());
  t.grad_q.resize(b);
  t.grad_k.resize(m);
  for (std::int64_t i = 0; i < b; ++i) {
    t.grad_q[i] = inverse_temperature * (q_error * q_magnitude[i] + q_floor) / q_divisor[i];
  }
  for (std::int64_t j = 0; j < m; ++j) {
    t.grad_k[j] = inverse_temperature * (k_error * k_magnitude[j] + k_floor) / k_divisor[j];
  }
  t.grad_temperature = kSafety * (row_error + std::sqrt(static_cast<double>(b * m)) * u) *
                       inverse_temperature * temperature_magnitude;
  return t;
}

// What the GPU must reproduce: the float64 forward and backward (on the inputs as rounded to the
// dtype), the fp32 bounds, and for 16-bit precisions the naive same-precision results.
struct Expected {
  reference::InfoNCEForward forward;
  reference::InfoNCEBackward backward;
  Tolerances tolerances;
  bool sixteen_bit = false;
  Results naive;  // sixteen_bit only
};

inline bool sixteen_bit(const infonce::Params& p) {
  return Precision{p.dtype, p.logits_dtype, p.allow_tf32}.sixteen_bit();
}

inline Expected expected_for(const infonce::Params& p, const Inputs& in) {
  Expected e;
  EXPECT_EQ(reference::infonce_forward(p, in.q.data(), in.k.data(), &e.forward), Status::kSuccess);
  EXPECT_EQ(
      reference::infonce_backward(p, in.q.data(), in.k.data(), in.grad_loss.data(), &e.backward),
      Status::kSuccess);
  e.tolerances = infonce_tolerances(p, in, e.forward, e.backward);
  e.sixteen_bit = sixteen_bit(p);
  if (e.sixteen_bit) e.naive = naive_infonce(p, in);
  return e;
}

/// The policy's comparison for one output: the fp32 bound, or the 16-bit rule against `naive`.
inline ::testing::AssertionResult matches(const Expected& e, const std::vector<float>& actual,
                                          const std::vector<float>& naive,
                                          const std::vector<double>& expected,
                                          const std::vector<double>& atol, std::size_t group,
                                          double rtol = kFp32RelativeTolerance) {
  return e.sixteen_bit ? within_twice_naive(actual, naive, expected, atol, group, rtol)
                       : all_close(actual, expected, atol, group, rtol);
}

/// A slice [begin, end) of a result (the saved buffer's parts).
inline std::vector<float> slice(const std::vector<float>& v, std::int64_t begin, std::int64_t end) {
  if (v.empty()) return {};
  return std::vector<float>(v.begin() + begin, v.begin() + end);
}

inline void expect_forward_matches(const infonce::Params& p, const Results& actual,
                                   const Expected& expected, const Inputs& in) {
  const Tolerances& tol = expected.tolerances;
  const Results& naive = expected.naive;
  EXPECT_TRUE(matches(expected, actual.loss, naive.loss, expected.forward.loss, tol.loss, 1))
      << "loss";
  const std::vector<float>& saved = actual.saved;
  const std::vector<double> lse_tol{tol.lse};
  const std::size_t whole = saved.size() + 1;
  EXPECT_TRUE(matches(expected, slice(saved, 0, p.batch), slice(naive.saved, 0, p.batch),
                      expected.forward.row_lse, lse_tol, whole))
      << "saved row log-sum-exp";
  std::int64_t next = p.batch;
  if (p.symmetric) {
    EXPECT_TRUE(matches(expected, slice(saved, next, next + p.batch),
                        slice(naive.saved, next, next + p.batch), expected.forward.col_lse, lse_tol,
                        whole))
        << "saved column log-sum-exp";
    next += p.batch;
  }
  if (p.similarity == Similarity::kCosine) {
    std::vector<double> inverse_norms;
    for (std::int64_t i = 0; i < p.batch; ++i) {
      const double norm = row_norm(in.q, i, row_stride_or_dim(p.q_row_stride, p.dim), p.dim);
      inverse_norms.push_back(1.0 / std::max(norm, static_cast<double>(p.eps)));
    }
    for (std::int64_t j = 0; j < p.num_keys; ++j) {
      const double norm = row_norm(in.k, j, row_stride_or_dim(p.k_row_stride, p.dim), p.dim);
      inverse_norms.push_back(1.0 / std::max(norm, static_cast<double>(p.eps)));
    }
    const std::vector<float> saved_norms(saved.begin() + next, saved.end());
    EXPECT_TRUE(all_close(saved_norms, inverse_norms, 0.0, 1e-6)) << "saved inverse norms";
  }
}

inline void expect_backward_matches(const infonce::Params& p, const Results& actual,
                                    const Expected& expected) {
  const Tolerances& tol = expected.tolerances;
  const Results& naive = expected.naive;
  const auto d = static_cast<std::size_t>(p.dim);
  EXPECT_TRUE(
      matches(expected, actual.grad_q, naive.grad_q, expected.backward.grad_q, tol.grad_q, d))
      << "grad_q";
  EXPECT_TRUE(
      matches(expected, actual.grad_k, naive.grad_k, expected.backward.grad_k, tol.grad_k, d))
      << "grad_k";
  EXPECT_TRUE(matches(expected, actual.grad_temperature, naive.grad_temperature,
                      {expected.backward.grad_temperature}, {tol.grad_temperature}, 2))
      << "grad_temperature";
}

}  // namespace contrastive::testing
