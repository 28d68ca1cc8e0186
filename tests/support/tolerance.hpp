// The tolerance policy, written once.
//
// fp32 results are compared element by element with the float64 reference:
//     |x - ref| <= atol + rtol * |ref|        (NaN never passes)
// rtol is small (1e-5); atol comes from an error bound of the fp32 computation, not from a
// guess: a logit sim/t formed by a D-long fp32 dot product is off by at most about
// 8 * sqrt(D) * 2^-24 * bound, bound = (1/t) for cosine or (1/t) max|q| max|k| for dot. Every
// later quantity is a Lipschitz function of the logits plus its own fp32 rounding, and its atol
// scales that logit error by the sum of the magnitudes it is built from (see infonce_tolerances
// in support/infonce_cases.hpp). The CPU test TolerancePolicy runs a naive fp32 implementation
// through the same bounds: it must pass (when written its worst error was 0.16 of the bound).
// CONTRASTIVE_TOLERANCE_REPORT=1 prints each comparison's worst error / allowed ratio.
//
// 16-bit precisions (f16 or bf16 inputs, or a bf16 logits tile) store values in 16 bits on the
// way, so their results are far from the fp32 bounds. The reference is computed in float64 on the
// inputs already rounded to the dtype, and a naive same-precision implementation on the CPU
// (support/naive_infonce.hpp, naive_anchor.hpp: sequential fp32 sums, and every value the GPU
// stores in 16 bits rounded the same way) measures what that precision costs. The GPU may err by
// at most twice as much, plus the fp32 bound as the small atol; errors are counted in units of each
// element's fp32 bound a_i, so rows of different magnitudes are held alike:
//     rho = max_j |naive_j - ref_j| / a_j,      |x_i - ref_i| <= (2 rho + 1) a_i.
// TF32 (f32 inputs, allow_tf32) keeps the fp32 rule with TF32's unit roundoff in the GEMMs' terms.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

namespace contrastive::testing {

constexpr double kFp32UnitRoundoff = 1.0 / (1 << 24);
constexpr double kFp32RelativeTolerance = 1e-5;

/// Passes when every |actual[i] - expected[i]| <= atol[i] + rtol * |expected[i]|. `atol` holds one
/// value per element or per group of `group` consecutive elements (e.g. one per row).
template <typename T>
::testing::AssertionResult all_close(const std::vector<T>& actual,
                                     const std::vector<double>& expected,
                                     const std::vector<double>& atol, std::size_t group,
                                     double rtol = kFp32RelativeTolerance) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " != expected size " << expected.size();
  }
  std::size_t failures = 0, worst = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double allowed = atol[i / group] + rtol * std::fabs(expected[i]);
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    if (!(error <= allowed)) {  // also catches NaN
      ++failures;
      const double excess = std::isnan(error) ? INFINITY : error / allowed;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  if (std::getenv("CONTRASTIVE_TOLERANCE_REPORT") != nullptr) {
    double worst_ratio = 0.0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
      const double allowed = atol[i / group] + rtol * std::fabs(expected[i]);
      const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
      if (allowed > 0) worst_ratio = std::max(worst_ratio, error / allowed);
    }
    std::printf("TOLERANCE_RATIO %.3g\n", worst_ratio);
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  std::ostringstream message;
  message.precision(9);
  message << failures << " of " << actual.size() << " elements differ; worst at [" << worst
          << "]: got " << static_cast<double>(actual[worst]) << ", expected " << expected[worst]
          << ", allowed +-" << atol[worst / group] + rtol * std::fabs(expected[worst]);
  return ::testing::AssertionFailure() << message.str();
}

/// The rule for 16-bit precisions (see the top of this file): `naive` is the naive same-precision
/// implementation's result, `atol`/`group`/`rtol` the fp32 bound of each element.
template <typename T>
::testing::AssertionResult within_twice_naive(const std::vector<T>& actual,
                                              const std::vector<float>& naive,
                                              const std::vector<double>& expected,
                                              const std::vector<double>& atol, std::size_t group,
                                              double rtol = kFp32RelativeTolerance) {
  if (naive.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "naive size " << naive.size() << " != expected size " << expected.size();
  }
  double rho = 0.0;
  for (std::size_t i = 0; i < naive.size(); ++i) {
    const double bound = atol[i / group] + rtol * std::fabs(expected[i]);
    const double error = std::fabs(static_cast<double>(naive[i]) - expected[i]);
    if (std::isnan(error) || (error > 0.0 && bound == 0.0)) {
      return ::testing::AssertionFailure() << "the naive result misses an exact value at [" << i
                                           << "]: " << naive[i] << " vs " << expected[i];
    }
    if (error > 0.0) rho = std::max(rho, error / bound);
  }
  const double factor = 2.0 * rho + 1.0;
  std::vector<double> scaled(atol);
  for (double& value : scaled) value *= factor;
  ::testing::AssertionResult result = all_close(actual, expected, scaled, group, factor * rtol);
  if (!result) result << " (naive same-precision error: " << rho << " fp32 bounds)";
  return result;
}

/// One atol for every element.
template <typename T>
::testing::AssertionResult all_close(const std::vector<T>& actual,
                                     const std::vector<double>& expected, double atol,
                                     double rtol = kFp32RelativeTolerance) {
  return all_close(actual, expected, std::vector<double>{atol}, actual.size() + 1, rtol);
}

}  // namespace contrastive::testing
