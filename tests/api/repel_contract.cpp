// The C++ API contract of Repel (support/anchor_contract.hpp states it): every bad call of every
// operation, the order of the checks, the workspace and the handle; and bad input through a full
// forward_backward (Reliability/BadInput, support/bad_input.hpp).
#include <cmath>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/anchor_contract.hpp"
#include "support/bad_input.hpp"

namespace contrastive {
namespace {

using testing::AnchorBadCall;
using testing::AnchorCall;
using testing::kRepelContract;

class RepelContract : public testing::AnchorContract {};

// ---- Bad calls, generated for every operation -------------------------------------------------

class RepelBadCall : public RepelContract, public ::testing::WithParamInterface<AnchorBadCall> {};

TEST_P(RepelBadCall, ReturnsItsStatusAndTouchesNothing) {
  expect_bad_call(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Contract, RepelBadCall,
                         ::testing::ValuesIn(testing::anchor_bad_calls({&kRepelContract})),
                         testing::anchor_bad_call_name);

// ---- The order of the checks, the workspace, the handle ---------------------------------------

TEST_F(RepelContract, ChecksRunInOrderParamsPointersWorkspaceHandle) {
  expect_checks_in_order(
      kRepelContract, [](describe::Params& p) { std::get<repel::Params>(p).margin = NAN; },
      "repel: margin must be finite, got nan");
}

TEST_F(RepelContract, MisalignedWorkspaceOfTheReportedSizeIsAccepted) {
  expect_misaligned_workspace_accepted(kRepelContract);
}

TEST_F(RepelContract, EmptyHandleIsRejectedAfterTheArguments) {
  expect_empty_handle_rejected(kRepelContract);
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  using RP = repel::Params;
  const auto make = testing::anchor_problem<repel::Params>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"CppRepelZeroNegatives", cpp_call(make, [](RP& p) { p.negatives = 0; }), kInvalid,
       exactly("repel: negatives (N) must be >= 1, got 0")},
      {"CppRepelZeroDim", cpp_call(make, [](RP& p) { p.dim = 0; }), kInvalid,
       exactly("repel: dim (D) must be >= 1, got 0")},
      {"CppRepelInfiniteMargin", cpp_call(make, [inf](RP& p) { p.margin = inf; }), kInvalid,
       exactly("repel: margin must be finite, got inf")},
      {"CppRepelNegativeInfiniteMargin", cpp_call(make, [inf](RP& p) { p.margin = -inf; }),
       kInvalid, exactly("repel: margin must be finite, got -inf")},
      {"CppRepelNaNEps", cpp_call(make, [nan](RP& p) { p.eps = nan; }), kInvalid,
       exactly("repel: eps must be finite and > 0, got nan")},
      {"CppRepelAnchorStrideBelowDim", cpp_call(make, [](RP& p) { p.anchor_row_stride = 8; }),
       kInvalid, exactly("repel: anchor_row_stride (8) must be 0 (dense) or >= dim (16)")},
      {"CppRepelExtentOverflows64Bits",
       cpp_call(make, [](RP& p) { p.negative_row_stride = kHugeStride; }), kInvalid,
       exactly("repel: the extent of the inputs in bytes overflows 64 bits")},
      {"CppRepelMisalignedBf16Negatives",
       [](BadInputBuffers& b, const Handle& handle, Stream stream) {
         RP p = testing::anchor_problem<repel::Params>();
         p.dtype = DType::kBF16;
         return testing::run_every_pointer(b, p, handle, stream,
                                           {{"negatives", shifted(b["negatives"])}});
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("repel::forward_backward", "negatives",
                                            shifted(b["negatives"]), 2);
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
