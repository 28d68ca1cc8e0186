// Sweeps for the per-anchor losses (MNR with per-anchor negatives, Repel), shared by the GPU tests
// and the CPU check of their tolerances: cases over the awkward shapes, fp32-exact random inputs,
// the float64 expectations, the allowed fp32 error and the comparison of a set of fp32 results.
//
// Error model (policy in tolerance.hpp): the kernels form each similarity with double sums, so a
// similarity is off by a few fp32 roundings: eps_sim = 8 u (cosine) or 8 u |a| |c| (dot). Logits
// are scale * sim; the row's log-sum-exp adds fp32 rounding over its candidates. A gradient row is
// bounded by eps times the sum of the magnitudes it is built from (dLoss/dsim and the derivative of
// the similarity), with a floor at fp32 rounding of the largest row (underflowed probabilities).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/mnr.hpp"
#include "contrastive/reference.hpp"
#include "contrastive/repel.hpp"
#include "support/anchor_inputs.hpp"
#include "support/naive_anchor.hpp"
#include "support/precision.hpp"
#include "support/random.hpp"
#include "support/tolerance.hpp"

namespace contrastive::testing {

inline constexpr double kAnchorSafety = 8.0;

/// Per-row bounds: candidate rows as the inputs lay them out (first: positives; rest: negatives).
struct AnchorTolerances {
  std::vector<double> loss;
  double saved = 0.0;  // MNR: row lse; Repel: the active count (exact)
  std::vector<double> grad_anchors, grad_first, grad_rest;
  double grad_scale = 0.0;
};

/// Bounds from per-(anchor, candidate) magnitudes: `size` = |dLoss/dsim| plus the softmax terms
/// that move with the logits, `candidate_slope` / `anchor_slope` bound dsim/dc and dsim/da.
struct GradientMagnitudes {
  std::vector<double> anchors, candidates;  // per anchor row, per candidate (b * count + t)
};

inline std::vector<double> with_floor(const std::vector<double>& magnitudes, double error) {
  const double largest =
      magnitudes.empty() ? 0.0 : *std::max_element(magnitudes.begin(), magnitudes.end());
  std::vector<double> tolerance(magnitudes.size());
  for (std::size_t i = 0; i < magnitudes.size(); ++i) {
    tolerance[i] = error * magnitudes[i] + kAnchorSafety * kFp32UnitRoundoff * largest;
  }
  return tolerance;
}

/// Compares with the fp32 bounds, or for a 16-bit dtype (`naive` set: the naive same-precision
/// results) with the 16-bit rule of tolerance.hpp.
inline void expect_anchor_results(const AnchorResults& actual, const std::vector<double>& loss,
                                  const std::vector<double>& saved,
                                  const std::vector<double>& grad_anchors,
                                  const std::vector<double>& grad_first,
                                  const std::vector<double>& grad_rest, const double* grad_scale,
                                  const AnchorTolerances& tol, const AnchorResults* naive,
                                  std::int64_t dim, bool forward, bool backward) {
  const auto d = static_cast<std::size_t>(dim);
  auto close = [naive](const std::vector<float>& x, std::vector<float> AnchorResults::*field,
                       const std::vector<double>& expected, const std::vector<double>& atol,
                       std::size_t group) {
    return naive != nullptr ? within_twice_naive(x, naive->*field, expected, atol, group)
                            : all_close(x, expected, atol, group);
  };
  const std::size_t whole = 1u << 31;  // one bound for the whole vector
  if (forward) {
    EXPECT_TRUE(close(actual.loss, &AnchorResults::loss, loss, tol.loss, 1)) << "loss";
    // The saved buffer starts with the checked state; similarities and inverse norms follow.
    std::vector<float> head = actual.saved;
    if (head.size() > saved.size()) head.resize(saved.size());
    EXPECT_TRUE(close(head, &AnchorResults::saved, saved, {tol.saved}, whole)) << "saved";
  }
  if (!backward) return;
  EXPECT_TRUE(
      close(actual.grad_anchors, &AnchorResults::grad_anchors, grad_anchors, tol.grad_anchors, d))
      << "grad_anchors";
  if (!grad_first.empty()) {
    EXPECT_TRUE(close(actual.grad_first, &AnchorResults::grad_first, grad_first, tol.grad_first, d))
        << "grad_positives";
  }
  EXPECT_TRUE(close(actual.grad_rest, &AnchorResults::grad_rest, grad_rest, tol.grad_rest, d))
      << "grad_negatives";
  if (grad_scale != nullptr) {
    EXPECT_TRUE(
        close(actual.grad_scale, &AnchorResults::grad_scale, {*grad_scale}, {tol.grad_scale}, 2))
        << "grad_scale";
  }
}

/// The B x n grid of the anchor sweeps: B in {1, 3, 33, 1000}, n in {1, 2, 7, 64}, `variants`
/// cases per cell, D in {1, 3, 64, 768, 1000} rotating from `dim_offset`. Calls
/// add(B, n, D, variant, index) for each case whose float64 reference stays quick
/// (B (n + extra_rows) D <= 3e7); `index` counts every case, skipped ones too.
template <typename Add>
void for_each_anchor_shape(std::int64_t extra_rows, int variants, int dim_offset, Add add) {
  const std::int64_t batches[] = {1, 3, 33, 1000};
  const std::int64_t negatives[] = {1, 2, 7, 64};
  const std::int64_t dims[] = {1, 3, 64, 768, 1000};
  int index = 0;
  for (std::int64_t b : batches) {
    for (std::int64_t n : negatives) {
      for (int variant = 0; variant < variants; ++variant, ++index) {
        const std::int64_t d = dims[(index + dim_offset) % 5];
        if (b * (n + extra_rows) * d > 30'000'000) continue;
        add(b, n, d, variant, index);
      }
    }
  }
}

inline constexpr Reduction kReductions[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};

// ---- Per-anchor MNR
// -------------------------------------------------------------------------------

/// The fields every per-anchor loss's params share: B, N (n), D, the reduction and the dtype.
template <typename Params>
Params anchor_case_params(std::int64_t batch, std::int64_t negatives, std::int64_t dim,
                          Reduction reduction, DType dtype) {
  Params p;
  p.batch = batch;
  p.negatives = negatives;
  p.dim = dim;
  p.reduction = reduction;
  p.dtype = dtype;
  return p;
}

struct MnrCase {
  std::int64_t batch, negatives, dim;
  Similarity similarity;
  Reduction reduction;
  float scale;
  std::int64_t padding;
  DType dtype;

  mnr::PerAnchorParams params() const {
    mnr::PerAnchorParams p =
        anchor_case_params<mnr::PerAnchorParams>(batch, negatives, dim, reduction, dtype);
    p.similarity = similarity;
    p.scale = scale;
    if (padding != 0) {
      p.anchor_row_stride = dim + padding;
      p.positive_row_stride = dim + 2 * padding;
      p.negative_row_stride = dim + 3 * padding;
    }
    return p;
  }
};

inline std::string case_name(const MnrCase& c) {
  const char* reductions[] = {"mean", "sum", "none"};
  std::string name = "B" + std::to_string(c.batch) + "_n" + std::to_string(c.negatives) + "_D" +
                     std::to_string(c.dim) + "_" +
                     (c.similarity == Similarity::kCosine ? "cosine" : "dot") + "_s" +
                     std::to_string(static_cast<int>(c.scale)) + "_" +
                     reductions[static_cast<int>(c.reduction)];
  if (c.padding != 0) name += "_pad" + std::to_string(c.padding);
  return name + precision_suffix({c.dtype, DType::kF32, false});
}
inline std::string mnr_test_name(const ::testing::TestParamInfo<MnrCase>& info) {
  return case_name(info.param);
}
inline void PrintTo(const MnrCase& c, std::ostream* out) {
  *out << case_name(c);
}

/// B in {1, 3, 33, 1000}, n in {1, 2, 7, 64}, D in {1, 3, 64, 768, 1000}: every B with every n, D
/// rotating, cosine and dot; scales 1 and 20, reductions and padding rotating.
inline std::vector<MnrCase> mnr_cases() {
  std::vector<MnrCase> cases;
  for_each_anchor_shape(
      2, 2, 0, [&](std::int64_t b, std::int64_t n, std::int64_t d, int variant, int i) {
        cases.push_back({b, n, d, variant == 0 ? Similarity::kDot : Similarity::kCosine,
                         kReductions[i % 3], i % 2 == 0 ? 1.0f : 20.0f, i % 4 == 3 ? 3 : 0,
                         DType::kF32});
      });
  return cases;
}

/// The same B x n grid in bf16 and f16 (one case each per B and n, similarity alternating), scales
/// 1, 20 and 100 rotating: a large scale with 16-bit inputs must stay finite.
inline std::vector<MnrCase> mnr_precision_cases() {
  const float scales[] = {1.0f, 20.0f, 100.0f};
  std::vector<MnrCase> cases;
  for_each_anchor_shape(
      2, 2, 2, [&](std::int64_t b, std::int64_t n, std::int64_t d, int variant, int i) {
        const int r = i + 1;
        cases.push_back({b, n, d, r % 2 == 0 ? Similarity::kDot : Similarity::kCosine,
                         kReductions[r % 3], scales[(r / 2) % 3], r % 5 == 4 ? 3 : 0,
                         variant == 0 ? DType::kBF16 : DType::kF16});
      });
  return cases;
}

struct MnrExpected {
  reference::MnrPerAnchorForward forward;
  reference::MnrPerAnchorBackward backward;
  AnchorTolerances tolerances;
  bool sixteen_bit = false;
  AnchorResults naive;  // sixteen_bit only
};

inline MnrExpected expected_for(const mnr::PerAnchorParams& p, const MnrInputs& in) {
  MnrExpected e;
  EXPECT_EQ(reference::mnr_per_anchor_forward(p, in.anchors.data(), in.positives.data(),
                                              in.negatives.data(), &e.forward),
            Status::kSuccess);
  EXPECT_EQ(
      reference::mnr_per_anchor_backward(p, in.anchors.data(), in.positives.data(),
                                         in.negatives.data(), in.grad_loss.data(), &e.backward),
      Status::kSuccess);
  const double u = kFp32UnitRoundoff;
  const std::int64_t b = p.batch, n = p.negatives, count = n + 1, d = p.dim;
  const bool cosine = p.similarity == Similarity::kCosine;
  auto candidate_norm = [&](std::int64_t row, std::int64_t t) {
    return t == 0 ? norm_of(in.positives, row, row_stride_or_dim(p.positive_row_stride, d), d)
                  : norm_of(in.negatives, row * n + t - 1,
                            row_stride_or_dim(p.negative_row_stride, d), d);
  };
  double largest_norm_product = 1.0;
  if (!cosine) {
    for (std::int64_t row = 0; row < b; ++row) {
      for (std::int64_t t = 0; t < count; ++t) {
        largest_norm_product =
            std::max(largest_norm_product,
                     norm_of(in.anchors, row, row_stride_or_dim(p.anchor_row_stride, d), d) *
                         candidate_norm(row, t));
      }
    }
  }
  const double sim_error = kAnchorSafety * u * largest_norm_product;
  const double row_error =
      2.0 * p.scale * sim_error + (static_cast<double>(count) / 32.0 + 16.0) * u;
  AnchorTolerances& t = e.tolerances;
  t.saved = row_error;
  t.loss.assign(e.forward.loss.size(),
                p.reduction == Reduction::kSum ? 2.0 * row_error * b : 2.0 * row_error);
  GradientMagnitudes m;
  m.anchors.assign(static_cast<std::size_t>(b), 0.0);
  m.candidates.assign(static_cast<std::size_t>(b * count), 0.0);
  double scale_magnitude = 0.0;
  for (std::int64_t row = 0; row < b; ++row) {
    double weight = p.reduction == Reduction::kNone ? in.grad_loss[row] : in.grad_loss[0];
    if (p.reduction == Reduction::kMean) weight /= static_cast<double>(b);
    const double anchor_norm =
        norm_of(in.anchors, row, row_stride_or_dim(p.anchor_row_stride, d), d);
    for (std::int64_t c = 0; c < count; ++c) {
      const double logit = e.forward.logits[row * count + c];
      const double size = p.scale * (std::fabs(e.backward.grad_logits[row * count + c]) +
                                     std::fabs(weight) * std::exp(logit - e.forward.row_lse[row]));
      const double c_norm = candidate_norm(row, c);
      // |dsim/dc| <= 2 / max(|c|, eps) (cosine) or |a|; |dsim/da| likewise with the roles swapped.
      m.candidates[row * count + c] = size * (cosine ? 2.0 / std::max(c_norm, 1e-12) : anchor_norm);
      m.anchors[row] += size * (cosine ? 2.0 / std::max(anchor_norm, 1e-12) : c_norm);
      scale_magnitude += size / p.scale * (std::fabs(logit) + 1.0);
    }
  }
  const double grad_error =
      kAnchorSafety * (row_error + (static_cast<double>(count) / 32.0 + 8.0) * u);
  t.grad_anchors = with_floor(m.anchors, grad_error);
  const std::vector<double> candidates = with_floor(m.candidates, grad_error);
  for (std::int64_t row = 0; row < b; ++row) {
    t.grad_first.push_back(candidates[row * count]);
    for (std::int64_t c = 1; c < count; ++c) t.grad_rest.push_back(candidates[row * count + c]);
  }
  t.grad_scale =
      kAnchorSafety * (row_error + std::sqrt(static_cast<double>(b * count)) * u) * scale_magnitude;
  e.sixteen_bit = p.dtype != DType::kF32;
  if (e.sixteen_bit) e.naive = naive_mnr(p, in);
  return e;
}

inline void expect_matches(const mnr::PerAnchorParams& p, const AnchorResults& actual,
                           const MnrExpected& e, bool forward, bool backward) {
  expect_anchor_results(actual, e.forward.loss, e.forward.row_lse, e.backward.grad_anchors,
                        e.backward.grad_positives, e.backward.grad_negatives,
                        &e.backward.grad_scale, e.tolerances, e.sixteen_bit ? &e.naive : nullptr,
                        p.dim, forward, backward);
}

// ---- Repel
// ----------------------------------------------------------------------------------------

struct RepelCase {
  std::int64_t batch, negatives, dim;
  Reduction reduction;
  bool mean_over_active;
  std::int64_t padding;
  DType dtype;

  repel::Params params() const {
    repel::Params p = anchor_case_params<repel::Params>(batch, negatives, dim, reduction, dtype);
    p.mean_over_active = mean_over_active;
    if (padding != 0) {
      p.anchor_row_stride = dim + padding;
      p.negative_row_stride = dim + 2 * padding;
    }
    return p;
  }
};

inline std::string case_name(const RepelCase& c) {
  const char* reductions[] = {"mean", "sum", "none"};
  std::string name = "B" + std::to_string(c.batch) + "_N" + std::to_string(c.negatives) + "_D" +
                     std::to_string(c.dim) + "_" + reductions[static_cast<int>(c.reduction)];
  if (c.mean_over_active) name += "_over_active";
  if (c.padding != 0) name += "_pad" + std::to_string(c.padding);
  return name + precision_suffix({c.dtype, DType::kF32, false});
}
inline std::string repel_test_name(const ::testing::TestParamInfo<RepelCase>& info) {
  return case_name(info.param);
}
inline void PrintTo(const RepelCase& c, std::ostream* out) {
  *out << case_name(c);
}

/// mean, sum, none, mean over active by turns.
inline RepelCase repel_case(std::int64_t b, std::int64_t n, std::int64_t d, int mode,
                            std::int64_t padding, DType dtype) {
  return {
      b,         n,
      d,         mode == 1 ? Reduction::kSum : (mode == 2 ? Reduction::kNone : Reduction::kMean),
      mode == 3, padding,
      dtype};
}

inline std::vector<RepelCase> repel_cases() {
  std::vector<RepelCase> cases;
  for_each_anchor_shape(1, 2, 0, [&](std::int64_t b, std::int64_t n, std::int64_t d, int, int i) {
    const int r = i + 1;
    cases.push_back(repel_case(b, n, d, r % 4, r % 3 == 2 ? 2 : 0, DType::kF32));
  });
  return cases;
}

/// The same B x N grid in bf16 and f16, one case each per B and N, the options rotating.
inline std::vector<RepelCase> repel_precision_cases() {
  std::vector<RepelCase> cases;
  for_each_anchor_shape(1, 2, 3,
                        [&](std::int64_t b, std::int64_t n, std::int64_t d, int variant, int i) {
                          const int r = i + 1;
                          cases.push_back(repel_case(b, n, d, r % 4, r % 3 == 1 ? 2 : 0,
                                                     variant == 0 ? DType::kBF16 : DType::kF16));
                        });
  return cases;
}

/// A margin at least `clearance` away from every similarity, so that fp32 rounding cannot flip a
/// term across the hinge: the middle of the widest gap between the middling similarities (or 0.3,
/// the default, when it is clear already).
inline float clear_margin(const repel::Params& p, const RepelInputs& in, double clearance) {
  reference::RepelForward out;
  EXPECT_EQ(reference::repel_forward(p, in.anchors.data(), in.negatives.data(), &out),
            Status::kSuccess);
  std::vector<double> sorted = out.similarities;
  std::sort(sorted.begin(), sorted.end());
  auto clear = [&](double margin) {
    const auto above = std::lower_bound(sorted.begin(), sorted.end(), margin);
    return (above == sorted.end() || *above - margin > clearance) &&
           (above == sorted.begin() || margin - *(above - 1) > clearance);
  };
  if (clear(static_cast<float>(0.3))) return 0.3f;
  // Prefer the middle half (about half the terms active); the whole range if nothing clears.
  auto widest_gap = [&](std::size_t begin, std::size_t end) {
    std::size_t widest = begin;
    for (std::size_t i = begin; i + 1 < end; ++i) {
      if (sorted[i + 1] - sorted[i] > sorted[widest + 1] - sorted[widest]) widest = i;
    }
    return widest;
  };
  std::size_t widest = widest_gap(sorted.size() / 4, 3 * sorted.size() / 4 + 1);
  if (widest + 1 >= sorted.size() || sorted[widest + 1] - sorted[widest] <= 2.5 * clearance) {
    widest = widest_gap(0, sorted.size());
  }
  const auto margin = sorted.size() < 2
                          ? static_cast<float>(sorted[0] - 0.5)
                          : static_cast<float>(0.5 * (sorted[widest] + sorted[widest + 1]));
  EXPECT_TRUE(clear(margin)) << "no margin clears every similarity by " << clearance;
  return margin;
}

struct RepelExpected {
  reference::RepelForward forward;
  reference::RepelBackward backward;
  AnchorTolerances tolerances;
  bool sixteen_bit = false;
  AnchorResults naive;  // sixteen_bit only
};

inline RepelExpected expected_for(const repel::Params& p, const RepelInputs& in) {
  RepelExpected e;
  EXPECT_EQ(reference::repel_forward(p, in.anchors.data(), in.negatives.data(), &e.forward),
            Status::kSuccess);
  EXPECT_EQ(reference::repel_backward(p, in.anchors.data(), in.negatives.data(),
                                      in.grad_loss.data(), &e.backward),
            Status::kSuccess);
  const double u = kFp32UnitRoundoff;
  const std::int64_t b = p.batch, n = p.negatives, d = p.dim, terms = b * n;
  const double sim_error = kAnchorSafety * u;
  AnchorTolerances& t = e.tolerances;
  t.saved = 0.0;  // the count of active terms is exact when no similarity is near the margin
  const double active = std::max(e.forward.active_terms, 1.0);
  double per_term = sim_error + 2.0 * u;
  if (p.reduction == Reduction::kSum) per_term *= static_cast<double>(terms);
  if (p.mean_over_active) per_term *= static_cast<double>(terms) / active;
  t.loss.assign(e.forward.loss.size(), per_term);
  GradientMagnitudes m;
  m.anchors.assign(static_cast<std::size_t>(b), 0.0);
  m.candidates.assign(static_cast<std::size_t>(terms), 0.0);
  for (std::int64_t row = 0; row < b; ++row) {
    const double anchor_norm =
        norm_of(in.anchors, row, row_stride_or_dim(p.anchor_row_stride, d), d);
    for (std::int64_t c = 0; c < n; ++c) {
      double weight = p.reduction == Reduction::kNone ? in.grad_loss[row * n + c] : in.grad_loss[0];
      if (p.reduction == Reduction::kMean) weight /= p.mean_over_active ? active : terms;
      const double c_norm =
          norm_of(in.negatives, row * n + c, row_stride_or_dim(p.negative_row_stride, d), d);
      m.candidates[row * n + c] = std::fabs(weight) * 2.0 / std::max(c_norm, 1e-12);
      m.anchors[row] += std::fabs(weight) * 2.0 / std::max(anchor_norm, 1e-12);
    }
  }
  const double grad_error = kAnchorSafety * (static_cast<double>(n) / 32.0 + 8.0) * u;
  t.grad_anchors = with_floor(m.anchors, grad_error);
  t.grad_rest = with_floor(m.candidates, grad_error);
  e.sixteen_bit = p.dtype != DType::kF32;
  if (e.sixteen_bit) e.naive = naive_repel(p, in);
  return e;
}

inline void expect_matches(const repel::Params& p, const AnchorResults& actual,
                           const RepelExpected& e, bool forward, bool backward) {
  expect_anchor_results(actual, e.forward.loss, {e.forward.active_terms}, e.backward.grad_anchors,
                        {}, e.backward.grad_negatives, nullptr, e.tolerances,
                        e.sixteen_bit ? &e.naive : nullptr, p.dim, forward, backward);
}

}  // namespace contrastive::testing
