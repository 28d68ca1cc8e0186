// The C API of Repel: the params struct starts at the C++ defaults, bad values get the C++
// statuses and messages (through check, workspace_size and saved_size, and through a full
// forward_backward: Reliability/BadInput), and a null, foreign or destroyed handle is reported
// only after the arguments pass, with every output left untouched.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "support/bad_input.hpp"
#include "support/c_api_contract.hpp"
#include "support/case_suite.hpp"
#include "support/device.hpp"

extern "C" int contrastive_c_smoke_repel(int64_t batch, int* forward_status);

namespace contrastive {
namespace {

using testing::CBadParams;
using testing::CQueries;
using testing::HostBuffers;
using testing::kCBatch;
using testing::kCDim;
using testing::kCNegatives;

contrastive_repel_params_t valid_repel() {
  return testing::anchor_problem<contrastive_repel_params_t>(kCBatch, kCNegatives, kCDim);
}

TEST(CApiRepel, HeaderCompilesAsC) {
  int forward_status = -1;
  EXPECT_EQ(contrastive_c_smoke_repel(5, &forward_status), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(forward_status, CONTRASTIVE_NULL_POINTER);  // no anchors given
  EXPECT_STREQ(contrastive_last_error(), "repel::forward: anchors is null");
}

// ---- Defaults --------------------------------------------------------------------------------

TEST(CApiRepel, RepelDefaultsAreTheCppDefaults) {
  contrastive_repel_params_t c;
  c.batch = c.negatives = c.dim = 99;
  c.mean_over_active = 5;
  contrastive_repel_params_init(&c);
  const repel::Params cpp;
  EXPECT_EQ(c.batch, cpp.batch);
  EXPECT_EQ(c.negatives, cpp.negatives);
  EXPECT_EQ(c.dim, cpp.dim);
  EXPECT_EQ(c.anchor_row_stride, cpp.anchor_row_stride);
  EXPECT_EQ(c.negative_row_stride, cpp.negative_row_stride);
  EXPECT_EQ(c.dtype, static_cast<int>(cpp.dtype));
  EXPECT_EQ(c.reduction, static_cast<int>(cpp.reduction));
  EXPECT_EQ(c.mean_over_active, cpp.mean_over_active ? 1 : 0);
  EXPECT_EQ(c.margin, cpp.margin);
  EXPECT_EQ(c.eps, cpp.eps);
  EXPECT_EQ(contrastive_repel_params_init(nullptr), CONTRASTIVE_NULL_POINTER);  // not a crash
  EXPECT_STREQ(contrastive_last_error(), "contrastive_repel_params_init_sized: params is null");
}

// ---- Bad parameters through the C API --------------------------------------------------------

const CQueries<contrastive_repel_params_t> kRepelQueries{
    contrastive_repel_check, contrastive_repel_workspace_size, contrastive_repel_saved_size};

using CR = contrastive_repel_params_t;
const CBadParams<CR> kRepelBad[] = {
    {"NegativeBatch", [](CR& p) { p.batch = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: batch (B) must be >= 1, got -1"},
    {"NegativeNegatives", [](CR& p) { p.negatives = -7; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: negatives (N) must be >= 1, got -7"},
    {"NegativeDim", [](CR& p) { p.dim = -3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: dim (D) must be >= 1, got -3"},
    {"NegativeAnchorStride", [](CR& p) { p.anchor_row_stride = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: anchor_row_stride (-1) must be 0 (dense) or >= dim (8)"},
    {"NegativeNegativeStride", [](CR& p) { p.negative_row_stride = -2; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "repel: negative_row_stride (-2) must be 0 (dense) or >= dim (8)"},
    {"UnknownDtype", [](CR& p) { p.dtype = 4; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: unknown dtype value 4"},
    {"UnknownReduction", [](CR& p) { p.reduction = -2; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: unknown reduction value -2"},
    {"NaNMargin", [](CR& p) { p.margin = NAN; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: margin must be finite, got nan"},
    {"NegativeEps", [](CR& p) { p.eps = -1.0f; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: eps must be finite and > 0, got -1"},
    // Any non-zero int is true, as the header's "0 or 1" flags are read.
    {"MeanOverActiveWithSum",
     [](CR& p) { p.mean_over_active = 2, p.reduction = CONTRASTIVE_REDUCTION_SUM; },
     CONTRASTIVE_INVALID_ARGUMENT, "repel: mean_over_active needs Reduction::kMean"},
    {"TooManyNegatives", [](CR& p) { p.negatives = 4096; }, CONTRASTIVE_NOT_SUPPORTED,
     "repel: at most 2048 negatives per anchor are supported, got 4096"},
};

CONTRASTIVE_BAD_PARAMS_SUITE(CApiRepelCheck, NegativeAndUnknownValues, kRepelBad,
                             testing::expect_rejected(kRepelQueries, valid_repel(), GetParam()));

TEST(CApiRepel, ValidParamsGiveTheCppSizes) {
  size_t c_bytes = 0;
  const contrastive_repel_params_t repel_params = valid_repel();
  ASSERT_EQ(contrastive_repel_saved_size(&repel_params, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(c_bytes, (1 + kCBatch + 2 * kCBatch * kCNegatives) * sizeof(float));
  ASSERT_EQ(contrastive_repel_workspace_size(&repel_params, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_GT(c_bytes, 0u);
}

// ---- Null params, null outputs ---------------------------------------------------------------

TEST(CApiRepel, NullParamsAndNullSizeOutputs) {
  testing::expect_null_params_reported(kRepelQueries);
  const contrastive_repel_params_t repel_params = valid_repel();
  EXPECT_EQ(contrastive_repel_saved_size(&repel_params, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "repel: bytes is null");
}

// ---- Calls: host buffers, null, foreign and destroyed handles --------------------------------

// One C call: its params (null to pass none) on HostBuffers.
struct RepelCall : testing::HostCall<contrastive_repel_params_t> {
  RepelCall() : HostCall(valid_repel(), contrastive_repel_workspace_size) {}
  int run(Pass pass, contrastive_handle_t handle) {
    switch (pass) {
      case Pass::kForward:
        return contrastive_repel_forward(handle, params_pointer, b.anchors_or_null(),
                                         b.negatives.data(), b.loss.data(), b.saved.data(),
                                         b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kBackward:
        return contrastive_repel_backward(handle, params_pointer, b.anchors_or_null(),
                                          b.negatives.data(), b.saved.data(), nullptr,
                                          b.grad_anchors.data(), b.grad_negatives.data(),
                                          b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kForwardBackward:
        return contrastive_repel_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.negatives.data(), b.loss.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_negatives.data(),
            b.workspace.data(), b.workspace.size(), nullptr);
    }
    return -1;
  }
};

TEST(CApiRepel, NullOrForeignHandleIsReportedAfterValidArguments) {
  testing::expect_handle_reported_after_valid_arguments<RepelCall>();
}

TEST(CApiRepel, ArgumentsAreCheckedBeforeTheHandle) {
  testing::expect_arguments_before_handle<RepelCall>(
      [](RepelCall& c) { c.params.mean_over_active = 1, c.params.reduction = 2; },
      "repel: mean_over_active needs Reduction::kMean",
      [](Pass pass) { return "repel::" + testing::pass_text(pass); });
}

// With a GPU: a handle that was created and destroyed is reported as destroyed.
TEST(CApiRepel, DestroyedHandleIsReported) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  testing::expect_destroyed_handle_reported<RepelCall>();
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"CRepelInfiniteMargin",
       c_call(testing::anchor_problem<contrastive_repel_params_t>(),
              [inf](contrastive_repel_params_t& p) { p.margin = inf; }),
       kInvalid, exactly("repel: margin must be finite, got inf")},
      {"CRepelExtentOverflows64Bits",
       c_call(testing::anchor_problem<contrastive_repel_params_t>(),
              [](contrastive_repel_params_t& p) { p.anchor_row_stride = kHugeStride; }),
       kInvalid, exactly("repel: the extent of the inputs in bytes overflows 64 bits")},
      {"CRepelMisalignedNegatives",
       [](BadInputBuffers& b, const Handle&, Stream) {
         return testing::c_run(b, testing::anchor_problem<contrastive_repel_params_t>(),
                               shifted(b["negatives"]));
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("repel::forward_backward", "negatives",
                                            shifted(b["negatives"]), 4);
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
