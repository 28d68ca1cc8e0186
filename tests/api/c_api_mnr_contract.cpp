// The C API of MNR, per-anchor and in-batch: the params structs start at the C++ defaults, bad
// values get the C++ statuses and messages (through check, workspace_size and saved_size, and
// through a full forward_backward: Reliability/BadInput), and a null, foreign or destroyed handle
// is reported only after the arguments pass, with every output left untouched.
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

extern "C" int contrastive_c_smoke_mnr_per_anchor(int64_t batch, size_t* saved_bytes);
extern "C" int contrastive_c_smoke_mnr_in_batch(int64_t batch, size_t* workspace_bytes);

namespace contrastive {
namespace {

using testing::CBadParams;
using testing::CQueries;
using testing::HostBuffers;
using testing::kCBatch;
using testing::kCDim;
using testing::kCHardNegatives;
using testing::kCNegatives;

contrastive_mnr_per_anchor_params_t valid_per_anchor() {
  return testing::anchor_problem<contrastive_mnr_per_anchor_params_t>(kCBatch, kCNegatives, kCDim);
}

contrastive_mnr_in_batch_params_t valid_in_batch() {
  return testing::anchor_problem<contrastive_mnr_in_batch_params_t>(kCBatch, kCHardNegatives,
                                                                    kCDim);
}

TEST(CApiMnr, HeaderCompilesAsC) {
  size_t bytes = 0;
  EXPECT_EQ(contrastive_c_smoke_mnr_per_anchor(5, &bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(bytes, (2 * 5 + 2 * 5 * 4) * sizeof(float));  // lse, inverse norms, sims
  EXPECT_EQ(contrastive_c_smoke_mnr_per_anchor(-1, &bytes), CONTRASTIVE_INVALID_ARGUMENT);
  bytes = 0;
  EXPECT_EQ(contrastive_c_smoke_mnr_in_batch(5, &bytes), CONTRASTIVE_SUCCESS);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(contrastive_c_smoke_mnr_in_batch(0, &bytes), CONTRASTIVE_INVALID_ARGUMENT);
}

// ---- Defaults --------------------------------------------------------------------------------

TEST(CApiMnr, PerAnchorDefaultsAreTheCppDefaults) {
  contrastive_mnr_per_anchor_params_t c;
  c.batch = c.negatives = c.dim = 99;  // garbage that init must overwrite
  c.scale = c.eps = -1.0f;
  contrastive_mnr_per_anchor_params_init(&c);
  const mnr::PerAnchorParams cpp;
  EXPECT_EQ(c.batch, cpp.batch);
  EXPECT_EQ(c.negatives, cpp.negatives);
  EXPECT_EQ(c.dim, cpp.dim);
  EXPECT_EQ(c.anchor_row_stride, cpp.anchor_row_stride);
  EXPECT_EQ(c.positive_row_stride, cpp.positive_row_stride);
  EXPECT_EQ(c.negative_row_stride, cpp.negative_row_stride);
  EXPECT_EQ(c.dtype, static_cast<int>(cpp.dtype));
  EXPECT_EQ(c.similarity, static_cast<int>(cpp.similarity));
  EXPECT_EQ(c.similarity, CONTRASTIVE_SIMILARITY_DOT);  // the default: dot product
  EXPECT_EQ(c.reduction, static_cast<int>(cpp.reduction));
  EXPECT_EQ(c.scale, cpp.scale);
  EXPECT_EQ(c.eps, cpp.eps);
  EXPECT_EQ(contrastive_mnr_per_anchor_params_init(nullptr),
            CONTRASTIVE_NULL_POINTER);  // not a crash
  EXPECT_STREQ(contrastive_last_error(),
               "contrastive_mnr_per_anchor_params_init_sized: params is null");
}

TEST(CApiMnr, InBatchDefaultsAreTheCppDefaults) {
  contrastive_mnr_in_batch_params_t c;
  c.batch = c.hard_negatives = c.tile_rows = 99;
  c.symmetric = c.allow_tf32 = 7;
  contrastive_mnr_in_batch_params_init(&c);
  const mnr::InBatchParams cpp;
  EXPECT_EQ(c.batch, cpp.batch);
  EXPECT_EQ(c.hard_negatives, cpp.hard_negatives);
  EXPECT_EQ(c.dim, cpp.dim);
  EXPECT_EQ(c.anchor_row_stride, cpp.anchor_row_stride);
  EXPECT_EQ(c.candidate_row_stride, cpp.candidate_row_stride);
  EXPECT_EQ(c.tile_rows, cpp.tile_rows);
  EXPECT_EQ(c.tile_cols, cpp.tile_cols);
  EXPECT_EQ(c.dtype, static_cast<int>(cpp.dtype));
  EXPECT_EQ(c.similarity, static_cast<int>(cpp.similarity));
  EXPECT_EQ(c.similarity, CONTRASTIVE_SIMILARITY_COSINE);  // as sentence-transformers
  EXPECT_EQ(c.reduction, static_cast<int>(cpp.reduction));
  EXPECT_EQ(c.symmetric, cpp.symmetric ? 1 : 0);
  EXPECT_EQ(c.allow_tf32, cpp.allow_tf32 ? 1 : 0);
  EXPECT_EQ(c.scale, cpp.scale);
  EXPECT_EQ(c.scale, 20.0f);
  EXPECT_EQ(c.eps, cpp.eps);
  EXPECT_EQ(contrastive_mnr_in_batch_params_init(nullptr),
            CONTRASTIVE_NULL_POINTER);  // not a crash
  EXPECT_STREQ(contrastive_last_error(),
               "contrastive_mnr_in_batch_params_init_sized: params is null");
}

// ---- Bad parameters through the C API --------------------------------------------------------

const CQueries<contrastive_mnr_per_anchor_params_t> kPerAnchorQueries{
    contrastive_mnr_per_anchor_check, contrastive_mnr_per_anchor_workspace_size,
    contrastive_mnr_per_anchor_saved_size};
const CQueries<contrastive_mnr_in_batch_params_t> kInBatchQueries{
    contrastive_mnr_in_batch_check, contrastive_mnr_in_batch_workspace_size,
    contrastive_mnr_in_batch_saved_size};

using CP = contrastive_mnr_per_anchor_params_t;
const CBadParams<CP> kPerAnchorBad[] = {
    {"NegativeBatch", [](CP& p) { p.batch = -5; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): batch (B) must be >= 1, got -5"},
    {"NegativeNegatives", [](CP& p) { p.negatives = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): negatives (n) must be >= 1, got -1"},
    {"NegativeDim", [](CP& p) { p.dim = -8; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): dim (D) must be >= 1, got -8"},
    {"NegativeAnchorStride", [](CP& p) { p.anchor_row_stride = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): anchor_row_stride (-1) must be 0 (dense) or >= dim (8)"},
    {"NegativePositiveStride", [](CP& p) { p.positive_row_stride = -8; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): positive_row_stride (-8) must be 0 (dense) or >= dim (8)"},
    {"NegativeNegativeStride", [](CP& p) { p.negative_row_stride = -9; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): negative_row_stride (-9) must be 0 (dense) or >= dim (8)"},
    {"UnknownDtype", [](CP& p) { p.dtype = 3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): unknown dtype value 3"},
    {"UnknownSimilarity", [](CP& p) { p.similarity = 5; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): unknown similarity value 5"},
    {"UnknownReduction", [](CP& p) { p.reduction = 9; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): unknown reduction value 9"},
    {"NegativeScale", [](CP& p) { p.scale = -1.0f; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (per-anchor): scale must be finite and > 0, got -1"},
    {"NaNEpsCosine", [](CP& p) { p.similarity = CONTRASTIVE_SIMILARITY_COSINE, p.eps = NAN; },
     CONTRASTIVE_INVALID_ARGUMENT, "mnr (per-anchor): eps must be finite and > 0, got nan"},
    {"TooManyNegatives", [](CP& p) { p.negatives = 2048; }, CONTRASTIVE_NOT_SUPPORTED,
     "mnr (per-anchor): at most 2047 negatives per anchor are supported, got 2048"},
};

using CI = contrastive_mnr_in_batch_params_t;
const CBadParams<CI> kInBatchBad[] = {
    {"NegativeBatch", [](CI& p) { p.batch = -2; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): batch (B) must be >= 1, got -2"},
    {"NegativeHardNegatives", [](CI& p) { p.hard_negatives = -3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): hard_negatives (K) must be >= 0, got -3"},
    {"NegativeDim", [](CI& p) { p.dim = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): dim (D) must be >= 1, got -1"},
    {"NegativeAnchorStride", [](CI& p) { p.anchor_row_stride = -8; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): anchor_row_stride (-8) must be 0 (dense) or >= dim (8)"},
    {"NegativeCandidateStride", [](CI& p) { p.candidate_row_stride = -1; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): candidate_row_stride (-1) must be 0 (dense) or >= dim (8)"},
    {"NegativeTile", [](CI& p) { p.tile_rows = -4; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): tile_rows and tile_cols must be >= 0 (0: whole), got -4 x 0"},
    {"UnknownDtype", [](CI& p) { p.dtype = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): unknown dtype value -1"},
    {"UnknownSimilarity", [](CI& p) { p.similarity = 2; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): unknown similarity value 2"},
    {"UnknownReduction", [](CI& p) { p.reduction = 3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): unknown reduction value 3"},
    {"InfiniteScale", [](CI& p) { p.scale = INFINITY; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): scale must be finite and > 0, got inf"},
    {"ZeroEps", [](CI& p) { p.eps = 0.0f; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): eps must be finite and > 0, got 0"},
    {"UnknownTiling", [](CI& p) { p.tiling = 9; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): unknown tiling value 9"},
    {"UnknownLogitsDtype", [](CI& p) { p.logits_dtype = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "mnr (in-batch): unknown logits_dtype value -1"},
    {"F16Logits", [](CI& p) { p.logits_dtype = CONTRASTIVE_DTYPE_F16; }, CONTRASTIVE_NOT_SUPPORTED,
     "mnr (in-batch): logits_dtype must be f32 or bf16, got f16"},
};

CONTRASTIVE_BAD_PARAMS_SUITE(CApiPerAnchorCheck, NegativeAndUnknownValues, kPerAnchorBad,
                             testing::expect_rejected(kPerAnchorQueries, valid_per_anchor(),
                                                      GetParam()));
CONTRASTIVE_BAD_PARAMS_SUITE(CApiInBatchCheck, NegativeAndUnknownValues, kInBatchBad,
                             testing::expect_rejected(kInBatchQueries, valid_in_batch(),
                                                      GetParam()));

TEST(CApiMnr, ValidParamsGiveTheCppSizes) {
  size_t c_bytes = 0, cpp_bytes = 0;
  const contrastive_mnr_per_anchor_params_t per_anchor = valid_per_anchor();
  ASSERT_EQ(contrastive_mnr_per_anchor_check(&per_anchor), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(contrastive_mnr_per_anchor_saved_size(&per_anchor, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(c_bytes, (2 * kCBatch + 2 * kCBatch * (kCNegatives + 1)) * sizeof(float));
  mnr::PerAnchorParams per_anchor_cpp;
  per_anchor_cpp.batch = kCBatch;
  per_anchor_cpp.negatives = kCNegatives;
  per_anchor_cpp.dim = kCDim;
  ASSERT_EQ(contrastive_mnr_per_anchor_workspace_size(&per_anchor, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(mnr::workspace_size(per_anchor_cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);

  contrastive_mnr_in_batch_params_t in_batch = valid_in_batch();
  in_batch.symmetric = 1;
  in_batch.tile_cols = 3;
  mnr::InBatchParams in_batch_cpp;
  in_batch_cpp.batch = kCBatch;
  in_batch_cpp.hard_negatives = kCHardNegatives;
  in_batch_cpp.dim = kCDim;
  in_batch_cpp.symmetric = true;
  in_batch_cpp.tile_cols = 3;
  ASSERT_EQ(contrastive_mnr_in_batch_saved_size(&in_batch, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(mnr::saved_size(in_batch_cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);
  ASSERT_EQ(contrastive_mnr_in_batch_workspace_size(&in_batch, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(mnr::workspace_size(in_batch_cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);
}

// ---- Null params, null outputs ---------------------------------------------------------------

TEST(CApiMnr, NullParamsAndNullSizeOutputs) {
  testing::expect_null_params_reported(kPerAnchorQueries);
  testing::expect_null_params_reported(kInBatchQueries);
  const contrastive_mnr_per_anchor_params_t per_anchor = valid_per_anchor();
  const contrastive_mnr_in_batch_params_t in_batch = valid_in_batch();
  EXPECT_EQ(contrastive_mnr_per_anchor_workspace_size(&per_anchor, nullptr),
            CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "mnr (per-anchor): bytes is null");
  EXPECT_EQ(contrastive_mnr_in_batch_saved_size(&in_batch, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "mnr (in-batch): bytes is null");
}

// ---- Calls: host buffers, null, foreign and destroyed handles --------------------------------

// One C call of a layout: its params (null to pass none) on HostBuffers.
struct PerAnchorCall : testing::HostCall<contrastive_mnr_per_anchor_params_t> {
  PerAnchorCall() : HostCall(valid_per_anchor(), contrastive_mnr_per_anchor_workspace_size) {}
  int run(Pass pass, contrastive_handle_t handle) {
    switch (pass) {
      case Pass::kForward:
        return contrastive_mnr_per_anchor_forward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.negatives.data(),
            b.loss.data(), b.saved.data(), b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kBackward:
        return contrastive_mnr_per_anchor_backward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.negatives.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_positives.data(),
            b.grad_negatives.data(), &b.grad_scale, b.workspace.data(), b.workspace.size(),
            nullptr);
      case Pass::kForwardBackward:
        return contrastive_mnr_per_anchor_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.negatives.data(),
            b.loss.data(), b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_positives.data(),
            b.grad_negatives.data(), &b.grad_scale, b.workspace.data(), b.workspace.size(),
            nullptr);
    }
    return -1;
  }
};

struct InBatchCall : testing::HostCall<contrastive_mnr_in_batch_params_t> {
  InBatchCall() : HostCall(valid_in_batch(), contrastive_mnr_in_batch_workspace_size) {}
  int run(Pass pass, contrastive_handle_t handle) {
    switch (pass) {
      case Pass::kForward:
        return contrastive_mnr_in_batch_forward(handle, params_pointer, b.anchors_or_null(),
                                                b.candidates.data(), b.loss.data(), b.saved.data(),
                                                b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kBackward:
        return contrastive_mnr_in_batch_backward(
            handle, params_pointer, b.anchors_or_null(), b.candidates.data(), b.saved.data(),
            nullptr, b.grad_anchors.data(), b.grad_candidates.data(), &b.grad_scale,
            b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kForwardBackward:
        return contrastive_mnr_in_batch_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.candidates.data(), b.loss.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_candidates.data(), &b.grad_scale,
            b.workspace.data(), b.workspace.size(), nullptr);
    }
    return -1;
  }
};

TEST(CApiMnr, NullOrForeignHandleIsReportedAfterValidArguments) {
  {
    SCOPED_TRACE("per-anchor");
    testing::expect_handle_reported_after_valid_arguments<PerAnchorCall>();
  }
  {
    SCOPED_TRACE("in-batch");
    testing::expect_handle_reported_after_valid_arguments<InBatchCall>();
  }
}

TEST(CApiMnr, ArgumentsAreCheckedBeforeTheHandle) {
  testing::expect_arguments_before_handle<PerAnchorCall>(
      [](PerAnchorCall& c) { c.params.negatives = 0; },
      "mnr (per-anchor): negatives (n) must be >= 1, got 0",
      [](Pass pass) { return "mnr::" + testing::pass_text(pass) + " (per-anchor)"; });
  testing::expect_arguments_before_handle<InBatchCall>(
      [](InBatchCall& c) { c.params.scale = -20.0f; },
      "mnr (in-batch): scale must be finite and > 0, got -20",
      [](Pass pass) { return "mnr::" + testing::pass_text(pass) + " (in-batch)"; });
}

// With a GPU: a handle that was created and destroyed is reported as destroyed.
TEST(CApiMnr, DestroyedHandleIsReported) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  testing::expect_destroyed_handle_reported<PerAnchorCall, InBatchCall>();
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  return {
      {"CPerAnchorNaNScale",
       c_call(testing::anchor_problem<contrastive_mnr_per_anchor_params_t>(),
              [nan](contrastive_mnr_per_anchor_params_t& p) { p.scale = nan; }),
       kInvalid, exactly("mnr (per-anchor): scale must be finite and > 0, got nan")},
      {"CPerAnchorNoGradientRequested",
       [](BadInputBuffers& b, const Handle&, Stream) {
         const contrastive_mnr_per_anchor_params_t p =
             testing::anchor_problem<contrastive_mnr_per_anchor_params_t>();
         return contrastive_mnr_per_anchor_backward(
             nullptr, &p, b["anchors"], b["positives"], b["negatives"], b["saved"],
             b.f("grad_loss"), nullptr, nullptr, nullptr, nullptr, b["workspace"],
             testing::kBadInputWorkspaceBytes, nullptr);
       },
       kNull,
       exactly("mnr::backward (per-anchor): grad_anchors, grad_positives, grad_negatives and "
               "grad_scale are all null: nothing to compute")},
      {"CInBatchZeroScale",
       c_call(testing::anchor_problem<contrastive_mnr_in_batch_params_t>(),
              [](contrastive_mnr_in_batch_params_t& p) { p.scale = 0.0f; }),
       kInvalid, exactly("mnr (in-batch): scale must be finite and > 0, got 0")},
      {"CInBatchWorkspaceOneByteShort",
       [](BadInputBuffers& b, const Handle&, Stream) {
         const contrastive_mnr_in_batch_params_t p =
             testing::anchor_problem<contrastive_mnr_in_batch_params_t>();
         std::size_t required = 0;
         EXPECT_EQ(contrastive_mnr_in_batch_workspace_size(&p, &required), CONTRASTIVE_SUCCESS);
         return testing::c_run(b, p, required - 1);
       },
       kTooSmall,
       [](BadInputBuffers&) {
         const contrastive_mnr_in_batch_params_t p =
             testing::anchor_problem<contrastive_mnr_in_batch_params_t>();
         std::size_t required = 0;
         EXPECT_EQ(contrastive_mnr_in_batch_workspace_size(&p, &required), CONTRASTIVE_SUCCESS);
         return testing::workspace_too_small_message("mnr::forward_backward (in-batch)",
                                                     required - 1, required);
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
