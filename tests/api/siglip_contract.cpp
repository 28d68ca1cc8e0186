// The C++ API contract of SigLIP (support/anchor_contract.hpp states it): every bad call of every
// operation (null, misaligned, too-small or null workspace, no gradient asked for), the order of
// the checks, the workspace and the handle; what is SigLIP's own: the saved buffer may be null
// only when saved_size() is 0 (dot), any one of the four gradients is enough, 16-bit inputs are
// aligned to their element; and bad input through a full forward_backward (Reliability/BadInput,
// support/bad_input.hpp).
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
using testing::kSigLIPContract;

class SigLIPContract : public testing::AnchorContract {
 protected:
  // The call reached the handle (without a GPU: the empty handle's refusal) or ran.
  void expect_accepted(const AnchorCall& call) {
    const Status status = call.run(handle_, stream_);
    if (on_device_) {
      EXPECT_EQ(status, Status::kSuccess) << last_error_message();
      EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    } else {
      EXPECT_EQ(status, Status::kInvalidHandle) << last_error_message();
      EXPECT_STREQ(last_error_message(), kEmptyHandleMessage);
    }
  }
};

// ---- Bad calls, generated for every operation -------------------------------------------------

class SigLIPBadCall : public SigLIPContract, public ::testing::WithParamInterface<AnchorBadCall> {};

TEST_P(SigLIPBadCall, ReturnsItsStatusAndTouchesNothing) {
  expect_bad_call(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Contract, SigLIPBadCall,
                         ::testing::ValuesIn(testing::anchor_bad_calls({&kSigLIPContract})),
                         testing::anchor_bad_call_name);

// ---- The order of the checks, the workspace, the handle ---------------------------------------

TEST_F(SigLIPContract, ChecksRunInOrderParamsPointersWorkspaceHandle) {
  expect_checks_in_order(
      kSigLIPContract, [](describe::Params& p) { std::get<siglip::Params>(p).bias = NAN; },
      "siglip: bias must be finite, got nan");
}

TEST_F(SigLIPContract, MisalignedWorkspaceOfTheReportedSizeIsAccepted) {
  expect_misaligned_workspace_accepted(kSigLIPContract);
}

TEST_F(SigLIPContract, EmptyHandleIsRejectedAfterTheArguments) {
  expect_empty_handle_rejected(kSigLIPContract);
}

// The bad calls name SigLIP's four gradients: "grad_q, grad_k, grad_scale and grad_bias are all
// null".
TEST(SigLIPContractWording, NothingToComputeNamesTheFourGradients) {
  EXPECT_EQ(testing::nothing_to_compute(kSigLIPContract, Pass::kBackward),
            "siglip::backward: grad_q, grad_k, grad_scale and grad_bias are all null: nothing to "
            "compute");
}

// ---- SigLIP's own rules ------------------------------------------------------------------------

// With dot nothing is saved (saved_size() is 0): saved may be null in every pass; a set pointer
// must still be aligned. With cosine a null saved is refused (the generated NullSaved cases).
TEST_F(SigLIPContract, NullSavedOnlyWhenNothingIsSaved) {
  for (const Pass operation : testing::kAnchorOperations) {
    SCOPED_TRACE(testing::operation_name(operation));
    AnchorCall call = valid_call(kSigLIPContract, operation);
    std::get<siglip::Params>(call.params).similarity = Similarity::kDot;
    std::size_t saved = 1;
    ASSERT_EQ(describe::saved_size(call.params, &saved), Status::kSuccess);
    ASSERT_EQ(saved, 0u);
    call.workspace_bytes = call.required_workspace();  // dot needs less than cosine
    call.pointers["saved"] = nullptr;
    expect_accepted(call);
    call.pointers["saved"] = testing::shifted(block("saved"));
    EXPECT_EQ(call.run(handle_, stream_), Status::kMisalignedPointer);
    EXPECT_EQ(last_error_message(),
              testing::misaligned_message(call.name(), "saved", call.get("saved"), 4));
    std::get<siglip::Params>(call.params).similarity = Similarity::kCosine;
    call.pointers["saved"] = nullptr;
    call.workspace_bytes = call.required_workspace();
    EXPECT_EQ(call.run(handle_, stream_), Status::kNullPointer);
    EXPECT_EQ(last_error_message(), call.name() + ": saved is null");
    expect_nothing_written(call);
  }
}

// Any one gradient output is enough for backward and forward_backward, the scalars included.
TEST_F(SigLIPContract, AnyOneGradientIsEnough) {
  for (const Pass operation : {Pass::kBackward, Pass::kForwardBackward}) {
    for (const std::string& kept : testing::gradients(kSigLIPContract)) {
      SCOPED_TRACE(std::string(testing::operation_name(operation)) + " with " + kept);
      AnchorCall call = valid_call(kSigLIPContract, operation);
      for (const std::string& name : testing::gradients(kSigLIPContract)) {
        if (name != kept) call.pointers[name] = nullptr;
      }
      expect_accepted(call);
    }
  }
}

// A bf16 q need only be 2-byte aligned; one byte off is refused with the element's size, and a
// misaligned grad_bias with a float's.
TEST_F(SigLIPContract, AlignmentFollowsTheElementType) {
  AnchorCall call = valid_call(kSigLIPContract, Pass::kForwardBackward);
  std::get<siglip::Params>(call.params).dtype = DType::kBF16;
  call.workspace_bytes = call.required_workspace();
  call.pointers["q"] = static_cast<char*>(block("q")) + 2;
  expect_accepted(call);
  call.pointers["q"] = testing::shifted(block("q"));
  EXPECT_EQ(call.run(handle_, stream_), Status::kMisalignedPointer);
  EXPECT_EQ(last_error_message(), testing::misaligned_message(call.name(), "q", call.get("q"), 2));
  call.pointers["q"] = block("q");
  call.pointers["grad_bias"] = static_cast<char*>(block("grad_bias")) + 2;
  EXPECT_EQ(call.run(handle_, stream_), Status::kMisalignedPointer);
  EXPECT_EQ(last_error_message(),
            testing::misaligned_message(call.name(), "grad_bias", call.get("grad_bias"), 4));
  expect_nothing_written(call);
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  using SP = siglip::Params;
  const auto make = testing::infonce_problem<siglip::Params>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"CppSigLIPZeroScale", cpp_call(make, [](SP& p) { p.scale = 0.0f; }), kInvalid,
       exactly("siglip: scale must be finite and > 0, got 0")},
      {"CppSigLIPLogScaleOverflows",
       cpp_call(make, [](SP& p) { p.log_scale = true, p.scale = 100.0f; }), kInvalid,
       exactly("siglip: scale (log of the scale with log_scale) must be finite with exp(scale) a "
               "finite float (scale <= 88.72) unless max_scale clamps it, got 100")},
      {"CppSigLIPInfiniteBias", cpp_call(make, [inf](SP& p) { p.bias = inf; }), kInvalid,
       exactly("siglip: bias must be finite, got inf")},
      {"CppSigLIPNaNEps", cpp_call(make, [nan](SP& p) { p.eps = nan; }), kInvalid,
       exactly("siglip: eps must be finite and > 0, got nan")},
      {"CppSigLIPFewerKeysThanRows", cpp_call(make, [](SP& p) { p.num_keys = 3; }), kInvalid,
       exactly("siglip: num_keys (M = 3) must be >= batch (B = 8)")},
      {"CppSigLIPOffsetPastTheEnd",
       cpp_call(make, [](SP& p) { p.num_keys = 9, p.positive_offset = 2; }), kInvalid,
       exactly("siglip: positive_offset must be in [0, M - B] = [0, 1], got 2")},
      {"CppSigLIPExtentOverflows64Bits",
       cpp_call(make, [](SP& p) { p.q_row_stride = kHugeStride; }), kInvalid,
       exactly("siglip: the extent of Q or K in bytes overflows 64 bits (strides "
               "4611686018427387904, 16)")},
      {"CppSigLIPF16LogitsTile", cpp_call(make, [](SP& p) { p.logits_dtype = DType::kF16; }),
       kUnsupported, exactly("siglip: logits_dtype must be f32 or bf16, got f16")},
      {"CppSigLIPBf16TileFromF32", cpp_call(make, [](SP& p) { p.logits_dtype = DType::kBF16; }),
       kUnsupported, exactly("siglip: " + kBf16Tile + "f32")},
      {"CppSigLIPMisalignedBf16K",
       [](BadInputBuffers& b, const Handle& handle, Stream stream) {
         SP p = testing::infonce_problem<siglip::Params>();
         p.dtype = DType::kBF16;
         return testing::run_every_pointer(b, p, handle, stream, {{"k", shifted(b["k"])}});
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("siglip::forward_backward", "k", shifted(b["k"]), 2);
       }},
      {"CppSigLIPNullGradLossIsOne",  // null grad_loss means 1: not an error; stops at the handle
       [](BadInputBuffers& b, const Handle&, Stream stream) {
         const Handle empty;
         return testing::run_every_pointer(b, testing::infonce_problem<siglip::Params>(), empty,
                                           stream, {{"grad_loss", nullptr}});
       },
       CONTRASTIVE_INVALID_HANDLE,
       exactly("handle is empty: Handle::create() failed or was not called, or it was moved "
               "from")},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
