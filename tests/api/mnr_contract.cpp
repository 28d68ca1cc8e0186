// The C++ API contract of MNR, per-anchor and in-batch (support/anchor_contract.hpp states it):
// every bad call of every operation, the order of the checks, the workspace and the handle; and
// bad input through a full forward_backward (Reliability/BadInput, support/bad_input.hpp).
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
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
using testing::kInBatchContract;
using testing::kPerAnchorContract;

class MnrContract : public testing::AnchorContract {};

// ---- Bad calls, generated for both layouts and every operation --------------------------------

std::vector<AnchorBadCall> bad_calls() {
  std::vector<AnchorBadCall> cases =
      testing::anchor_bad_calls({&kPerAnchorContract, &kInBatchContract});
  for (const Pass operation : testing::kAnchorOperations) {
    cases.push_back(
        {std::string("InBatch") + testing::operation_name(operation) + "F16LogitsNotSupported",
         &kInBatchContract, operation,
         [](AnchorCall& c) { std::get<mnr::InBatchParams>(c.params).logits_dtype = DType::kF16; },
         Status::kNotSupported,
         [](const AnchorCall&) {
           return std::string("mnr (in-batch): logits_dtype must be f32 or bf16, got f16");
         }});
  }
  return cases;
}

class MnrBadCall : public MnrContract, public ::testing::WithParamInterface<AnchorBadCall> {};

TEST_P(MnrBadCall, ReturnsItsStatusAndTouchesNothing) {
  expect_bad_call(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Contract, MnrBadCall, ::testing::ValuesIn(bad_calls()),
                         testing::anchor_bad_call_name);

// ---- The order of the checks, the workspace, the handle ---------------------------------------

TEST_F(MnrContract, ChecksRunInOrderParamsPointersWorkspaceHandle) {
  const auto zero_scale = [](describe::Params& params) {
    std::visit(
        [](auto& p) {
          if constexpr (std::is_same_v<std::decay_t<decltype(p)>, mnr::PerAnchorParams> ||
                        std::is_same_v<std::decay_t<decltype(p)>, mnr::InBatchParams>) {
            p.scale = 0.0f;
          }
        },
        params);
  };
  expect_checks_in_order(kPerAnchorContract, zero_scale,
                         "mnr (per-anchor): scale must be finite and > 0, got 0");
  expect_checks_in_order(kInBatchContract, zero_scale,
                         "mnr (in-batch): scale must be finite and > 0, got 0");
}

TEST_F(MnrContract, MisalignedWorkspaceOfTheReportedSizeIsAccepted) {
  expect_misaligned_workspace_accepted(kPerAnchorContract);
  expect_misaligned_workspace_accepted(kInBatchContract);
}

TEST_F(MnrContract, EmptyHandleIsRejectedAfterTheArguments) {
  expect_empty_handle_rejected(kPerAnchorContract);
  expect_empty_handle_rejected(kInBatchContract);
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  using PP = mnr::PerAnchorParams;
  using BP = mnr::InBatchParams;
  const auto per_anchor = testing::anchor_problem<mnr::PerAnchorParams>();
  const auto in_batch = testing::anchor_problem<mnr::InBatchParams>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      // Per-anchor
      {"CppPerAnchorZeroNegatives", cpp_call(per_anchor, [](PP& p) { p.negatives = 0; }), kInvalid,
       exactly("mnr (per-anchor): negatives (n) must be >= 1, got 0")},
      {"CppPerAnchorZeroScale", cpp_call(per_anchor, [](PP& p) { p.scale = 0.0f; }), kInvalid,
       exactly("mnr (per-anchor): scale must be finite and > 0, got 0")},
      {"CppPerAnchorNaNScale", cpp_call(per_anchor, [nan](PP& p) { p.scale = nan; }), kInvalid,
       exactly("mnr (per-anchor): scale must be finite and > 0, got nan")},
      {"CppPerAnchorInfiniteScale", cpp_call(per_anchor, [inf](PP& p) { p.scale = inf; }), kInvalid,
       exactly("mnr (per-anchor): scale must be finite and > 0, got inf")},
      {"CppPerAnchorPositiveStrideBelowDim",
       cpp_call(per_anchor, [](PP& p) { p.positive_row_stride = 15; }), kInvalid,
       exactly("mnr (per-anchor): positive_row_stride (15) must be 0 (dense) or >= dim (16)")},
      {"CppPerAnchorExtentOverflows64Bits",
       cpp_call(per_anchor, [](PP& p) { p.negative_row_stride = kHugeStride; }), kInvalid,
       exactly("mnr (per-anchor): the extent of the inputs in bytes overflows 64 bits")},
      {"CppPerAnchorTooManyNegatives", cpp_call(per_anchor, [](PP& p) { p.negatives = 2048; }),
       kUnsupported,
       exactly("mnr (per-anchor): at most 2047 negatives per anchor are supported, got 2048")},
      {"CppPerAnchorMisalignedF16GradNegatives",
       [](BadInputBuffers& b, const Handle& handle, Stream stream) {
         PP p = testing::anchor_problem<mnr::PerAnchorParams>();
         p.dtype = DType::kF16;
         return testing::run_every_pointer(b, p, handle, stream,
                                           {{"grad_negatives", shifted(b["grad_negatives"])}});
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("mnr::forward_backward (per-anchor)", "grad_negatives",
                                            shifted(b["grad_negatives"]), 2);
       }},
      // In-batch
      {"CppInBatchNaNScale", cpp_call(in_batch, [nan](BP& p) { p.scale = nan; }), kInvalid,
       exactly("mnr (in-batch): scale must be finite and > 0, got nan")},
      {"CppInBatchNegativeHardNegatives", cpp_call(in_batch, [](BP& p) { p.hard_negatives = -1; }),
       kInvalid, exactly("mnr (in-batch): hard_negatives (K) must be >= 0, got -1")},
      {"CppInBatchCandidateStrideBelowDim",
       cpp_call(in_batch, [](BP& p) { p.candidate_row_stride = 1; }), kInvalid,
       exactly("mnr (in-batch): candidate_row_stride (1) must be 0 (dense) or >= dim (16)")},
      {"CppInBatchBf16LogitsWithF32Inputs",
       cpp_call(in_batch, [](BP& p) { p.logits_dtype = DType::kBF16; }), kUnsupported,
       exactly("mnr (in-batch): " + kBf16Tile + "f32")},
      {"CppInBatchCandidatesPastTwoTo31",
       cpp_call(
           in_batch,
           [](BP& p) { p.hard_negatives = (std::int64_t{1} << 31) / testing::kBadInputBatch - 1; }),
       kInvalid,
       exactly("mnr (in-batch): (1 + K) B candidates and D must each be < 2^31 (B = 8, K = "
               "268435455, D = 16)")},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
