// The bad-parameter cases of the plan tests (cpu/*_plan.cpp): check(), workspace_size() and
// saved_size() agree on the status and message of each bad parameter, and the size queries write
// nothing when they fail.
#pragma once

#include <cstddef>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::testing {

inline constexpr std::size_t kUntouched = 12345;

template <typename Params>
struct BadParamsCase {
  std::string name;
  std::function<void(Params&)> edit;
  Status status;
  std::string message;
};

template <typename Params>
void PrintTo(const BadParamsCase<Params>& c, std::ostream* out) {
  *out << c.name;
}

// The three entry points that validate `p` agree on the status, and the size queries write
// nothing when they fail.
template <typename Params>
void expect_rejected(const Params& p, Status status, const std::string& message) {
  EXPECT_EQ(check(p), status);
  EXPECT_EQ(last_error_message(), message);
  std::size_t bytes = kUntouched;
  EXPECT_EQ(workspace_size(p, &bytes), status);
  EXPECT_EQ(last_error_message(), message);
  EXPECT_EQ(saved_size(p, &bytes), status);
  EXPECT_EQ(last_error_message(), message);
  EXPECT_EQ(bytes, kUntouched) << "a failed size query must leave its output untouched";
}

/// expect_rejected for one case: `valid` edited by it.
template <typename Params>
void expect_rejected(Params valid, const BadParamsCase<Params>& c) {
  c.edit(valid);
  expect_rejected(valid, c.status, c.message);
}

/// Both size queries refuse a null output, in `prefix`'s words ("repel: bytes is null").
template <typename Params>
void expect_null_size_output(const Params& valid, const std::string& prefix) {
  EXPECT_EQ(workspace_size(valid, nullptr), Status::kNullPointer);
  EXPECT_EQ(last_error_message(), prefix + ": bytes is null");
  EXPECT_EQ(saved_size(valid, nullptr), Status::kNullPointer);
  EXPECT_EQ(last_error_message(), prefix + ": bytes is null");
}

/// The bad sizes and enum values every loss checks alike (host/plan/checks.hpp), with the message
/// each gets after `prefix` ("mnr (per-anchor)"), followed by the loss's own `cases`.
template <typename Params>
std::vector<BadParamsCase<Params>> with_shared_bad_params(
    const std::string& prefix, std::vector<BadParamsCase<Params>> cases) {
  using P = Params;
  const Status invalid = Status::kInvalidArgument;
  std::vector<BadParamsCase<Params>> all = {
      {"ZeroBatch", [](P& p) { p.batch = 0; }, invalid, prefix + ": batch (B) must be >= 1, got 0"},
      {"NegativeBatch", [](P& p) { p.batch = -3; }, invalid,
       prefix + ": batch (B) must be >= 1, got -3"},
      {"ZeroDim", [](P& p) { p.dim = 0; }, invalid, prefix + ": dim (D) must be >= 1, got 0"},
      {"NegativeDim", [](P& p) { p.dim = -16; }, invalid,
       prefix + ": dim (D) must be >= 1, got -16"},
      {"UnknownDtype", [](P& p) { p.dtype = static_cast<DType>(7); }, invalid,
       prefix + ": unknown dtype value 7"},
      {"UnknownReduction", [](P& p) { p.reduction = static_cast<Reduction>(-1); }, invalid,
       prefix + ": unknown reduction value -1"},
  };
  for (BadParamsCase<Params>& c : cases) all.push_back(std::move(c));
  return all;
}

template <typename Params>
void expect_accepted(const Params& p) {
  EXPECT_EQ(check(p), Status::kSuccess) << last_error_message();
  std::size_t workspace = 0, saved = 0;
  EXPECT_EQ(workspace_size(p, &workspace), Status::kSuccess) << last_error_message();
  EXPECT_EQ(saved_size(p, &saved), Status::kSuccess) << last_error_message();
  EXPECT_GT(workspace, 0u);
  EXPECT_GT(saved, 0u);
}

template <typename Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.name;
}

}  // namespace contrastive::testing
