// Central finite differences for the float64 references' gradient checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/status.hpp"

namespace contrastive::testing {

/// The output of one reference call, `call(&out)`, which must succeed.
template <typename Out, typename Call>
Out reference_output(Call call) {
  Out out;
  EXPECT_EQ(call(&out), Status::kSuccess) << last_error_message();
  return out;
}

/// Relative step of the central differences; the error of the difference quotient is ~step^2.
constexpr double kFiniteDifferenceStep = 1e-6;
constexpr double kFiniteDifferenceTolerance = 1e-6;

/// Compares `analytic` (rows, dim) dense with central differences of `objective` with respect to
/// the rows of `values` (rows, stride), perturbed in place one element at a time.
inline void expect_gradient(std::vector<double>& values, std::int64_t rows, std::int64_t stride,
                            std::int64_t dim, const std::vector<double>& analytic,
                            const std::function<double()>& objective, const std::string& name) {
  ASSERT_EQ(analytic.size(), static_cast<std::size_t>(rows * dim)) << name;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < dim; ++c) {
      double& x = values[r * stride + c];
      const double saved = x;
      const double step = kFiniteDifferenceStep * std::max(1.0, std::fabs(saved));
      x = saved + step;
      const double plus = objective();
      x = saved - step;
      const double minus = objective();
      x = saved;
      const double numeric = (plus - minus) / (2.0 * step);
      EXPECT_NEAR(analytic[r * dim + c], numeric,
                  kFiniteDifferenceTolerance * (1.0 + std::fabs(numeric)))
          << name << "[" << r << ", " << c << "]";
    }
  }
}

/// The same for a float parameter (a temperature, a scale): steps between two exactly
/// representable neighbours, since the parameter cannot take a double's value; the step is
/// `relative_step` of the value (smaller where the loss curves more, as at SigLIP's scale).
inline void expect_float_derivative(float& parameter, double analytic,
                                    const std::function<double()>& objective,
                                    const std::string& name, float relative_step = 1.0f / 1024) {
  const float saved = parameter;
  const float above = saved * (1.0f + relative_step), below = saved * (1.0f - relative_step);
  parameter = above;
  const double plus = objective();
  parameter = below;
  const double minus = objective();
  parameter = saved;
  const double numeric = (plus - minus) / (static_cast<double>(above) - static_cast<double>(below));
  EXPECT_NEAR(analytic, numeric, 1e-5 * (1.0 + std::fabs(numeric))) << name;
}

/// sum_i upstream_i * loss_i: the scalar whose gradient a backward with `upstream` computes.
inline double weighted_sum(const std::vector<double>& loss, const std::vector<double>& upstream) {
  double total = 0.0;
  for (std::size_t i = 0; i < loss.size(); ++i) total += upstream[i] * loss[i];
  return total;
}

}  // namespace contrastive::testing
