// The bad-parameter cases of the plan tests (cpu/*_plan.cpp): check(), workspace_size() and
// saved_size() agree on the status and message of each bad parameter, and the size queries write
// nothing when they fail.
#pragma once

#include <cstddef>
#include <functional>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "contrastive/status.hpp"

namespace contrastive::testing {

inline constexpr std::size_t kUntouched = 12345;

template <typename Params>
struct BadParamsCase {
  const char* name;
  std::function<void(Params&)> edit;
  Status status;
  const char* message;
};

template <typename Params>
void PrintTo(const BadParamsCase<Params>& c, std::ostream* out) {
  *out << c.name;
}

// The three entry points that validate `p` agree on the status, and the size queries write
// nothing when they fail.
template <typename Params>
void expect_rejected(const Params& p, Status status, const char* message) {
  EXPECT_EQ(check(p), status);
  EXPECT_STREQ(last_error_message(), message);
  std::size_t bytes = kUntouched;
  EXPECT_EQ(workspace_size(p, &bytes), status);
  EXPECT_STREQ(last_error_message(), message);
  EXPECT_EQ(saved_size(p, &bytes), status);
  EXPECT_STREQ(last_error_message(), message);
  EXPECT_EQ(bytes, kUntouched) << "a failed size query must leave its output untouched";
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
