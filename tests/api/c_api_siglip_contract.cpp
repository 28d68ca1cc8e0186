// The C API of SigLIP: contrastive_siglip_params_init sets the C++ defaults, struct_size and
// magic; bad values get the C++ statuses and messages (through check, workspace_size and
// saved_size, and through a full forward_backward: Reliability/BadInput), the int flags read as
// booleans, and a null, foreign or destroyed handle is reported only after the arguments pass,
// with every output (the bias's gradient included) left untouched.
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

extern "C" int contrastive_c_smoke_siglip(int64_t batch, size_t* saved_bytes);

namespace contrastive {
namespace {

using testing::CBadParams;
using testing::CQueries;
using testing::kCBatch;
using testing::kCDim;

using CS = contrastive_siglip_params_t;

CS valid_siglip() {
  return testing::infonce_problem<CS>(kCBatch, kCDim);  // B = M = 4, D = 8
}

TEST(CApiSigLIP, HeaderCompilesAsC) {
  size_t saved = 99;
  EXPECT_EQ(contrastive_c_smoke_siglip(5, &saved), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(saved, 0u) << "dot saves nothing";
  EXPECT_EQ(contrastive_c_smoke_siglip(0, &saved), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_STREQ(contrastive_last_error(), "siglip: batch (B) must be >= 1, got 0");
}

// ---- Defaults --------------------------------------------------------------------------------

TEST(CApiSigLIP, DefaultsAreTheCppDefaults) {
  CS c;
  c.batch = c.num_keys = c.dim = 99;
  c.log_scale = c.negatives_only = 5;
  c.scale = c.bias = 3.0f;
  contrastive_siglip_params_init(&c);
  const siglip::Params cpp;
  EXPECT_EQ(c.batch, cpp.batch);
  EXPECT_EQ(c.num_keys, cpp.num_keys);
  EXPECT_EQ(c.dim, cpp.dim);
  EXPECT_EQ(c.positive_offset, cpp.positive_offset);
  EXPECT_EQ(c.q_row_stride, cpp.q_row_stride);
  EXPECT_EQ(c.k_row_stride, cpp.k_row_stride);
  EXPECT_EQ(c.tile_rows, cpp.tile_rows);
  EXPECT_EQ(c.tile_cols, cpp.tile_cols);
  EXPECT_EQ(c.workspace_budget, cpp.workspace_budget);
  EXPECT_EQ(c.tile_cache_bytes, cpp.tile_cache_bytes);
  EXPECT_EQ(c.tiling, CONTRASTIVE_TILING_AUTO);
  EXPECT_EQ(c.dtype, static_cast<int>(cpp.dtype));
  EXPECT_EQ(c.similarity, CONTRASTIVE_SIMILARITY_COSINE);
  EXPECT_EQ(c.reduction, CONTRASTIVE_REDUCTION_MEAN);
  EXPECT_EQ(c.log_scale, 0);
  EXPECT_EQ(c.negatives_only, 0);
  EXPECT_EQ(c.allow_tf32, 0);
  EXPECT_EQ(c.logits_dtype, CONTRASTIVE_DTYPE_F32);
  EXPECT_EQ(c.scale, cpp.scale);
  EXPECT_EQ(c.scale, 10.0f);  // SigLIP's initialization: t = 10, b = -10
  EXPECT_EQ(c.bias, cpp.bias);
  EXPECT_EQ(c.bias, -10.0f);
  EXPECT_EQ(c.eps, cpp.eps);
  EXPECT_EQ(c.struct_size, sizeof c);
  EXPECT_EQ(c.magic, CONTRASTIVE_PARAMS_MAGIC);
  EXPECT_EQ(c.reserved, 0u);
  EXPECT_EQ(contrastive_siglip_params_init(nullptr), CONTRASTIVE_NULL_POINTER);  // not a crash
  EXPECT_STREQ(contrastive_last_error(), "contrastive_siglip_params_init_sized: params is null");
}

// ---- Bad parameters through the C API --------------------------------------------------------

const CQueries<CS> kSigLIPQueries{contrastive_siglip_check, contrastive_siglip_workspace_size,
                                  contrastive_siglip_saved_size};

const CBadParams<CS> kSigLIPBad[] = {
    {"NegativeBatch", [](CS& p) { p.batch = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: batch (B) must be >= 1, got -1"},
    {"FewerKeysThanRows", [](CS& p) { p.num_keys = 3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: num_keys (M = 3) must be >= batch (B = 4)"},
    {"NegativeOffset", [](CS& p) { p.positive_offset = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: positive_offset must be in [0, M - B] = [0, 0], got -1"},
    {"NegativeKStride", [](CS& p) { p.k_row_stride = -2; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: k_row_stride (-2) must be 0 (dense) or >= dim (8)"},
    {"UnknownDtype", [](CS& p) { p.dtype = 4; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: unknown dtype value 4"},
    {"UnknownSimilarity", [](CS& p) { p.similarity = 9; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: unknown similarity value 9"},
    {"UnknownReduction", [](CS& p) { p.reduction = -2; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: unknown reduction value -2"},
    {"UnknownTiling", [](CS& p) { p.tiling = 3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: unknown tiling value 3"},
    {"NegativeScale", [](CS& p) { p.scale = -1.0f; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: scale must be finite and > 0, got -1"},
    // Any non-zero int is true, as the header's "0 or 1" flags are read.
    {"LogScaleFlagTwoWithAnOverflowingExp", [](CS& p) { p.log_scale = 2, p.scale = 89.0f; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: scale (log of the scale with log_scale) must be finite with exp(scale) a finite "
     "float (scale <= 88.72) unless max_scale clamps it, got 89"},
    {"NaNBias", [](CS& p) { p.bias = NAN; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: bias must be finite, got nan"},
    {"NegativeEps", [](CS& p) { p.eps = -1.0f; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: eps must be finite and > 0, got -1"},
    {"NegativeTile", [](CS& p) { p.tile_rows = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "siglip: tile_rows and tile_cols must be >= 0 (0: whole), got -1 x 0"},
    {"F16LogitsTile", [](CS& p) { p.logits_dtype = CONTRASTIVE_DTYPE_F16; },
     CONTRASTIVE_NOT_SUPPORTED, "siglip: logits_dtype must be f32 or bf16, got f16"},
};

CONTRASTIVE_BAD_PARAMS_SUITE(CApiSigLIPCheck, NegativeAndUnknownValues, kSigLIPBad,
                             testing::expect_rejected(kSigLIPQueries, valid_siglip(), GetParam()));

// negatives_only (any non-zero int) takes fewer keys than rows and ignores the offset.
TEST(CApiSigLIP, NegativesOnlyFlagTakesAnyKeys) {
  CS p = valid_siglip();
  p.num_keys = 1;
  p.positive_offset = -7;
  EXPECT_EQ(contrastive_siglip_check(&p), CONTRASTIVE_INVALID_ARGUMENT);
  p.negatives_only = 3;
  EXPECT_EQ(contrastive_siglip_check(&p), CONTRASTIVE_SUCCESS) << contrastive_last_error();
}

TEST(CApiSigLIP, ValidParamsGiveTheCppSizes) {
  CS c = valid_siglip();
  c.num_keys = 6;
  siglip::Params cpp = testing::infonce_problem<siglip::Params>(kCBatch, kCDim, 6);
  size_t c_bytes = 0, cpp_bytes = 0;
  ASSERT_EQ(contrastive_siglip_saved_size(&c, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(c_bytes, (kCBatch + 6) * sizeof(float));  // the inverse norms of Q and K
  ASSERT_EQ(contrastive_siglip_workspace_size(&c, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(siglip::workspace_size(cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);
  c.similarity = CONTRASTIVE_SIMILARITY_DOT;
  cpp.similarity = Similarity::kDot;
  c.dtype = CONTRASTIVE_DTYPE_BF16;
  cpp.dtype = DType::kBF16;
  c.logits_dtype = CONTRASTIVE_DTYPE_BF16;
  cpp.logits_dtype = DType::kBF16;
  ASSERT_EQ(contrastive_siglip_saved_size(&c, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(c_bytes, 0u);
  ASSERT_EQ(contrastive_siglip_workspace_size(&c, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(siglip::workspace_size(cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);
}

TEST(CApiSigLIP, NullParamsAndNullSizeOutputs) {
  testing::expect_null_params_reported(kSigLIPQueries);
  const CS p = valid_siglip();
  EXPECT_EQ(contrastive_siglip_saved_size(&p, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "siglip: bytes is null");
  EXPECT_EQ(contrastive_siglip_workspace_size(&p, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "siglip: bytes is null");
}

// ---- Calls: host buffers, null, foreign and destroyed handles --------------------------------

// One C call on HostBuffers: q and k in the anchors' and positives' buffers (B x D each), their
// gradients in grad_anchors and grad_positives, and both scalar gradients.
struct SigLIPCall : testing::HostCall<CS> {
  SigLIPCall() : HostCall(valid_siglip(), contrastive_siglip_workspace_size) {}
  int run(Pass pass, contrastive_handle_t handle) {
    switch (pass) {
      case Pass::kForward:
        return contrastive_siglip_forward(handle, params_pointer, b.anchors_or_null(),
                                          b.positives.data(), b.loss.data(), b.saved.data(),
                                          b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kBackward:
        return contrastive_siglip_backward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.saved.data(),
            nullptr, b.grad_anchors.data(), b.grad_positives.data(), &b.grad_scale, &b.grad_bias,
            b.workspace.data(), b.workspace.size(), nullptr);
      case Pass::kForwardBackward:
        return contrastive_siglip_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.loss.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_positives.data(), &b.grad_scale,
            &b.grad_bias, b.workspace.data(), b.workspace.size(), nullptr);
    }
    return -1;
  }
};

TEST(CApiSigLIP, NullOrForeignHandleIsReportedAfterValidArguments) {
  testing::expect_handle_reported_after_valid_arguments<SigLIPCall>();
}

TEST(CApiSigLIP, ArgumentsAreCheckedBeforeTheHandle) {
  testing::expect_arguments_before_handle<SigLIPCall>(
      [](SigLIPCall& c) { c.params.bias = INFINITY; }, "siglip: bias must be finite, got inf",
      [](Pass pass) { return "siglip::" + testing::pass_text(pass); }, "q");
}

// All four gradients null: refused before the handle, in the C API's words.
TEST(CApiSigLIP, NoGradientRequestedIsReported) {
  SigLIPCall call;
  const testing::HostBuffers& b = call.b;
  EXPECT_EQ(contrastive_siglip_backward(nullptr, &call.params, b.anchors.data(), b.positives.data(),
                                        b.saved.data(), nullptr, nullptr, nullptr, nullptr, nullptr,
                                        call.b.workspace.data(), call.b.workspace.size(), nullptr),
            CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(),
               "siglip::backward: grad_q, grad_k, grad_scale and grad_bias are all null: nothing "
               "to compute");
  EXPECT_TRUE(call.b.untouched(false));
}

// With a GPU: a handle that was created and destroyed is reported as destroyed.
TEST(CApiSigLIP, DestroyedHandleIsReported) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  testing::expect_destroyed_handle_reported<SigLIPCall>();
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  const CS valid = testing::infonce_problem<CS>();
  return {
      {"CSigLIPZeroScale", c_call(valid, [](CS& p) { p.scale = 0.0f; }), kInvalid,
       exactly("siglip: scale must be finite and > 0, got 0")},
      {"CSigLIPBf16TileFromF16",
       c_call(valid,
              [](CS& p) {
                p.dtype = CONTRASTIVE_DTYPE_F16;
                p.logits_dtype = CONTRASTIVE_DTYPE_BF16;
              }),
       kUnsupported, exactly("siglip: " + kBf16Tile + "f16")},
      {"CSigLIPMisalignedSaved",
       [](BadInputBuffers& b, const Handle&, Stream) {
         return testing::c_run(b, testing::infonce_problem<CS>(), shifted(b["saved"]));
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("siglip::forward_backward", "saved",
                                            shifted(b["saved"]), 4);
       }},
      // The device scalars the params struct carries are checked like every other pointer.
      {"CSigLIPMisalignedBiasDevice",
       [](BadInputBuffers& b, const Handle&, Stream) {
         CS p = testing::infonce_problem<CS>();
         p.bias_device = static_cast<const float*>(shifted(b["saved"]));
         return testing::c_run(b, p);
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("siglip::forward_backward", "bias", shifted(b["saved"]),
                                            4);
       }},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
