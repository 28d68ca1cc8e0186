// What the C API contract files (api/c_api_<loss>_contract.cpp) share: bad params checked by
// check, workspace_size and saved_size alike; host buffers standing in for device ones (none of
// these calls may launch or write anything); null, foreign and destroyed handles reported only
// after the arguments pass.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "support/device.hpp"

namespace contrastive::testing {

constexpr std::int64_t kCBatch = 4, kCNegatives = 3, kCHardNegatives = 1, kCDim = 8;
constexpr size_t kUntouched = 77;

// ---- Bad parameters through the C API --------------------------------------------------------

template <typename C>
struct CBadParams {
  const char* name;
  void (*edit)(C&);
  int status;
  const char* message;
};

template <typename C>
void PrintTo(const CBadParams<C>& c, std::ostream* out) {
  *out << c.name;
}

template <typename Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.name;
}

/// check, workspace_size and saved_size of one C params type.
template <typename C>
struct CQueries {
  int (*check)(const C*);
  int (*workspace_size)(const C*, size_t*);
  int (*saved_size)(const C*, size_t*);
};

/// All three queries reject `params` with `status` and `message`, and leave the size alone.
template <typename C>
void expect_rejected(const CQueries<C>& queries, const C& params, int status, const char* message) {
  EXPECT_EQ(queries.check(&params), status);
  EXPECT_STREQ(contrastive_last_error(), message);
  size_t bytes = kUntouched;
  EXPECT_EQ(queries.workspace_size(&params, &bytes), status);
  EXPECT_STREQ(contrastive_last_error(), message);
  EXPECT_EQ(queries.saved_size(&params, &bytes), status);
  EXPECT_STREQ(contrastive_last_error(), message);
  EXPECT_EQ(bytes, kUntouched);
}

/// expect_rejected for one case: `valid` edited by it.
template <typename C>
void expect_rejected(const CQueries<C>& queries, C valid, const CBadParams<C>& c) {
  c.edit(valid);
  expect_rejected(queries, valid, c.status, c.message);
}

/// All three queries of `queries` report a null params as such, and leave the size alone.
template <typename C>
void expect_null_params_reported(const CQueries<C>& queries) {
  size_t bytes = kUntouched;
  EXPECT_EQ(queries.check(nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(queries.workspace_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(queries.saved_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(bytes, kUntouched);
}

// ---- Calls: host buffers, null and foreign handles -------------------------------------------

inline bool all_nan(const std::vector<float>& values) {
  for (float value : values) {
    if (!std::isnan(value)) return false;
  }
  return true;
}

/// Host buffers for every argument of the anchor losses (and of SigLIP, whose q, k and gradients
/// take the anchors' and positives' buffers): inputs 1, outputs NaN.
struct HostBuffers {
  std::vector<float> anchors = std::vector<float>(kCBatch * kCDim, 1.0f);
  std::vector<float> positives = std::vector<float>(kCBatch * kCDim, 1.0f);
  std::vector<float> negatives = std::vector<float>(kCBatch * kCNegatives * kCDim, 1.0f);
  std::vector<float> candidates = std::vector<float>((1 + kCHardNegatives) * kCBatch * kCDim, 1.0f);
  std::vector<float> loss = std::vector<float>(kCBatch * kCNegatives, NAN);
  std::vector<float> saved = std::vector<float>(64, NAN);
  std::vector<float> grad_anchors = std::vector<float>(kCBatch * kCDim, NAN);
  std::vector<float> grad_positives = std::vector<float>(kCBatch * kCDim, NAN);
  std::vector<float> grad_negatives = std::vector<float>(kCBatch * kCNegatives * kCDim, NAN);
  std::vector<float> grad_candidates =
      std::vector<float>((1 + kCHardNegatives) * kCBatch * kCDim, NAN);
  float grad_scale = NAN;
  float grad_bias = NAN;
  std::vector<unsigned char> workspace;
  bool drop_anchors = false;  // pass null for the anchors

  const float* anchors_or_null() const { return drop_anchors ? nullptr : anchors.data(); }

  bool untouched(bool saved_is_output) const {
    return all_nan(loss) && (!saved_is_output || all_nan(saved)) && all_nan(grad_anchors) &&
           all_nan(grad_positives) && all_nan(grad_negatives) && all_nan(grad_candidates) &&
           std::isnan(grad_scale) && std::isnan(grad_bias);
  }
};

/// One C call of a loss on HostBuffers: its params (null to pass none) and a workspace of the size
/// it asks for. A loss's call adds run(pass, handle).
template <typename C>
struct HostCall {
  C params;
  const C* params_pointer = &params;
  HostBuffers b;

  HostCall(const C& valid, int (*workspace_size)(const C*, size_t*)) : params(valid) {
    size_t bytes = 0;
    EXPECT_EQ(workspace_size(&params, &bytes), CONTRASTIVE_SUCCESS);
    b.workspace.assign(bytes, 0);
  }
  HostCall(const HostCall&) = delete;  // params_pointer points into the object
};

constexpr Pass kCPasses[] = {Pass::kForward, Pass::kBackward, Pass::kForwardBackward};

/// A pointer the library never handed out: looked up, never dereferenced.
inline contrastive_handle_t foreign_handle() {
  return reinterpret_cast<contrastive_handle_t>(static_cast<std::uintptr_t>(0x10));
}

/// "forward", "backward", "forward_backward".
inline std::string pass_text(Pass pass) {
  const char* names[] = {"forward", "backward", "forward_backward"};
  return names[static_cast<int>(pass)];
}

/// Runs `Call`'s three passes with a null and a foreign handle after valid arguments.
template <typename Call>
void expect_handle_reported_after_valid_arguments() {
  for (const Pass pass : kCPasses) {
    SCOPED_TRACE(static_cast<int>(pass));
    Call call;
    EXPECT_EQ(call.run(pass, nullptr), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle is null");
    EXPECT_EQ(call.run(pass, foreign_handle()), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
    EXPECT_TRUE(call.b.untouched(pass != Pass::kBackward));
  }
}

/// Null params, bad params, a missing pointer and a short workspace are each reported as such
/// before the (null or foreign) handle, and nothing is written. `call_name(pass)` is the library's
/// name for a call, e.g. "mnr::forward (per-anchor)"; `first_input` the name of the argument that
/// HostBuffers::drop_anchors drops ("anchors", SigLIP's "q").
template <typename Call>
void expect_arguments_before_handle(void (*break_params)(Call&), const char* params_message,
                                    std::string (*call_name)(Pass),
                                    const std::string& first_input = "anchors") {
  for (const Pass pass : kCPasses) {
    SCOPED_TRACE(call_name(pass));
    for (const contrastive_handle_t handle : {contrastive_handle_t{nullptr}, foreign_handle()}) {
      Call call;
      call.params_pointer = nullptr;
      EXPECT_EQ(call.run(pass, handle), CONTRASTIVE_NULL_POINTER);
      EXPECT_STREQ(contrastive_last_error(), "params is null");
      call.params_pointer = &call.params;
      const auto valid = call.params;
      break_params(call);
      EXPECT_EQ(call.run(pass, handle), CONTRASTIVE_INVALID_ARGUMENT);
      EXPECT_STREQ(contrastive_last_error(), params_message);
      call.params = valid;
      call.b.drop_anchors = true;
      EXPECT_EQ(call.run(pass, handle), CONTRASTIVE_NULL_POINTER);
      EXPECT_EQ(contrastive_last_error(), call_name(pass) + ": " + first_input + " is null");
      call.b.drop_anchors = false;
      const size_t required = call.b.workspace.size();
      call.b.workspace.pop_back();
      EXPECT_EQ(call.run(pass, handle), CONTRASTIVE_WORKSPACE_TOO_SMALL);
      EXPECT_EQ(contrastive_last_error(),
                call_name(pass) + ": workspace of " + std::to_string(required - 1) +
                    " bytes is too small: workspace_size() asks for " + std::to_string(required));
      EXPECT_TRUE(call.b.untouched(pass != Pass::kBackward));
    }
  }
}

/// With a GPU: a handle that was created and destroyed is reported as destroyed by each `Call`.
template <typename... Calls>
void expect_destroyed_handle_reported() {
  contrastive_handle_t handle = nullptr;
  ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS) << contrastive_last_error();
  ASSERT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
  for (const Pass pass : kCPasses) {
    SCOPED_TRACE(static_cast<int>(pass));
    auto expect_destroyed = [&](auto&& call) {
      EXPECT_EQ(call.run(pass, handle), CONTRASTIVE_INVALID_HANDLE);
      EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
    };
    (expect_destroyed(Calls{}), ...);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace contrastive::testing
