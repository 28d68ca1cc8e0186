// The C API: same statuses and messages as the C++ API, handles tracked so that a null, foreign
// or destroyed handle is reported, never dereferenced.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "support/bad_input.hpp"
#include "support/c_api_contract.hpp"
#include "support/device.hpp"

extern "C" int contrastive_c_smoke_check(int64_t batch, size_t* workspace_bytes);

namespace contrastive {
namespace {

contrastive_infonce_params_t valid_params() {
  return testing::infonce_problem<contrastive_infonce_params_t>(/*batch=*/4, /*dim=*/8, /*keys=*/6);
}

TEST(CApi, HeaderCompilesAsC) {
  size_t bytes = 0;
  EXPECT_EQ(contrastive_c_smoke_check(5, &bytes), CONTRASTIVE_SUCCESS);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(contrastive_c_smoke_check(0, &bytes), CONTRASTIVE_INVALID_ARGUMENT);
}

TEST(CApi, DefaultsAreTheCppDefaults) {
  contrastive_infonce_params_t c;
  contrastive_infonce_params_init(&c);
  const infonce::Params cpp;
  EXPECT_EQ(c.batch, cpp.batch);
  EXPECT_EQ(c.positive_offset, cpp.positive_offset);
  EXPECT_EQ(c.tile_rows, cpp.tile_rows);
  EXPECT_EQ(c.dtype, static_cast<int>(cpp.dtype));
  EXPECT_EQ(c.similarity, static_cast<int>(cpp.similarity));
  EXPECT_EQ(c.reduction, static_cast<int>(cpp.reduction));
  EXPECT_EQ(c.symmetric, 0);
  EXPECT_EQ(c.allow_tf32, 0);
  EXPECT_EQ(c.logits_dtype, CONTRASTIVE_DTYPE_F32);
  EXPECT_EQ(c.tiling, CONTRASTIVE_TILING_AUTO);
  EXPECT_EQ(c.workspace_budget, cpp.workspace_budget);
  EXPECT_EQ(c.workspace_budget, uint64_t{4} << 30);
  EXPECT_EQ(c.tile_cache_bytes, 0u);
  EXPECT_EQ(c.temperature, cpp.temperature);
  EXPECT_EQ(c.eps, cpp.eps);
  EXPECT_EQ(c.struct_size, sizeof c);
  EXPECT_EQ(c.magic, CONTRASTIVE_PARAMS_MAGIC);
  EXPECT_EQ(c.reserved, 0u);
  EXPECT_EQ(contrastive_infonce_params_init(nullptr), CONTRASTIVE_NULL_POINTER);  // not a crash
  EXPECT_STREQ(contrastive_last_error(), "contrastive_infonce_params_init_sized: params is null");
}

TEST(CApi, StatusValuesAndNamesMatchCpp) {
  EXPECT_EQ(CONTRASTIVE_SUCCESS, static_cast<int>(Status::kSuccess));
  EXPECT_EQ(CONTRASTIVE_WORKSPACE_TOO_SMALL, static_cast<int>(Status::kWorkspaceTooSmall));
  EXPECT_EQ(CONTRASTIVE_INTERNAL_ERROR, static_cast<int>(Status::kInternalError));
  for (int value = CONTRASTIVE_SUCCESS; value <= CONTRASTIVE_INTERNAL_ERROR; ++value) {
    EXPECT_STREQ(contrastive_status_string(value), status_string(static_cast<Status>(value)));
  }
}

using CBadParams = testing::CBadParams<contrastive_infonce_params_t>;

const testing::CQueries<contrastive_infonce_params_t> kQueries{
    contrastive_infonce_check, contrastive_infonce_workspace_size, contrastive_infonce_saved_size};

class CApiCheck : public ::testing::TestWithParam<CBadParams> {};

TEST_P(CApiCheck, NegativeAndUnknownValues) {
  testing::expect_rejected(kQueries, valid_params(), GetParam());
}

const CBadParams kCBadParams[] = {
    {"NegativeBatch", [](contrastive_infonce_params_t& p) { p.batch = -5; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: batch (B) must be >= 1, got -5"},
    {"NegativeKeys", [](contrastive_infonce_params_t& p) { p.num_keys = -1; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: num_keys (M = -1) must be >= batch (B = 4)"},
    {"NegativeDim", [](contrastive_infonce_params_t& p) { p.dim = -8; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: dim (D) must be >= 1, got -8"},
    {"NegativeOffset", [](contrastive_infonce_params_t& p) { p.positive_offset = -2; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "infonce: positive_offset must be in [0, M - B] = [0, 2], got -2"},
    {"NegativeStride", [](contrastive_infonce_params_t& p) { p.k_row_stride = -1; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: k_row_stride (-1) must be 0 (dense) or >= dim (8)"},
    {"NegativeTile", [](contrastive_infonce_params_t& p) { p.tile_cols = -4; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "infonce: tile_rows and tile_cols must be >= 0 (0: whole), got 0 x -4"},
    {"UnknownDtype", [](contrastive_infonce_params_t& p) { p.dtype = 3; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: unknown dtype value 3"},
    {"UnknownReduction", [](contrastive_infonce_params_t& p) { p.reduction = 9; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: unknown reduction value 9"},
    {"InfiniteTemperature", [](contrastive_infonce_params_t& p) { p.temperature = -INFINITY; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: temperature must be finite and > 0, got -inf"},
    {"NaNEps", [](contrastive_infonce_params_t& p) { p.eps = NAN; }, CONTRASTIVE_INVALID_ARGUMENT,
     "infonce: eps must be finite and > 0, got nan"},
    {"UnknownTiling", [](contrastive_infonce_params_t& p) { p.tiling = -1; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: unknown tiling value -1"},
    {"UnknownLogitsDtype", [](contrastive_infonce_params_t& p) { p.logits_dtype = 7; },
     CONTRASTIVE_INVALID_ARGUMENT, "infonce: unknown logits_dtype value 7"},
    {"F16Logits", [](contrastive_infonce_params_t& p) { p.logits_dtype = CONTRASTIVE_DTYPE_F16; },
     CONTRASTIVE_NOT_SUPPORTED, "infonce: logits_dtype must be f32 or bf16, got f16"},
};

INSTANTIATE_TEST_SUITE_P(BadParams, CApiCheck, ::testing::ValuesIn(kCBadParams),
                         testing::case_name<CBadParams>);

TEST(CApi, NullParamsAndNullOutputs) {
  size_t bytes = 0;
  EXPECT_EQ(contrastive_infonce_check(nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_infonce_workspace_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  const contrastive_infonce_params_t params = valid_params();
  EXPECT_EQ(contrastive_infonce_saved_size(&params, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_EQ(contrastive_create(nullptr, 0), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "contrastive_create: handle is null");
}

// Host buffers stand in for device ones: none of these calls may launch or write anything.
struct HostCall {
  contrastive_infonce_params_t params = valid_params();
  std::vector<float> q = std::vector<float>(4 * 8, 1.0f), k = std::vector<float>(6 * 8, 1.0f);
  std::vector<float> loss = std::vector<float>(4, NAN), saved = std::vector<float>(64, NAN);
  std::vector<float> grad_q = std::vector<float>(32, NAN), grad_k = std::vector<float>(48, NAN);
  float grad_temperature = NAN;
  std::vector<unsigned char> workspace;

  HostCall() {
    size_t bytes = 0;
    EXPECT_EQ(contrastive_infonce_workspace_size(&params, &bytes), CONTRASTIVE_SUCCESS);
    workspace.assign(bytes, 0);
  }
  int forward(contrastive_handle_t handle) {
    return contrastive_infonce_forward(handle, &params, q.data(), k.data(), loss.data(),
                                       saved.data(), workspace.data(), workspace.size(), nullptr);
  }
  int backward(contrastive_handle_t handle) {
    return contrastive_infonce_backward(handle, &params, q.data(), k.data(), saved.data(), nullptr,
                                        grad_q.data(), grad_k.data(), &grad_temperature,
                                        workspace.data(), workspace.size(), nullptr);
  }
  int forward_backward(contrastive_handle_t handle) {
    return contrastive_infonce_forward_backward(
        handle, &params, q.data(), k.data(), loss.data(), saved.data(), nullptr, grad_q.data(),
        grad_k.data(), &grad_temperature, workspace.data(), workspace.size(), nullptr);
  }
  bool untouched() const {
    using testing::all_nan;
    return all_nan(loss) && all_nan(saved) && all_nan(grad_q) && all_nan(grad_k) &&
           std::isnan(grad_temperature);
  }
};

TEST(CApi, ArgumentsAreCheckedBeforeTheHandle) {
  HostCall call;
  call.params.batch = 0;
  EXPECT_EQ(call.forward(nullptr), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_STREQ(contrastive_last_error(), "infonce: batch (B) must be >= 1, got 0");
  EXPECT_EQ(call.backward(nullptr), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(call.forward_backward(nullptr), CONTRASTIVE_INVALID_ARGUMENT);
  call.params = valid_params();
  call.workspace.pop_back();
  EXPECT_EQ(call.forward_backward(nullptr), CONTRASTIVE_WORKSPACE_TOO_SMALL);
  EXPECT_TRUE(call.untouched());
}

TEST(CApi, NullHandleIsReported) {
  HostCall call;
  EXPECT_EQ(call.forward(nullptr), CONTRASTIVE_INVALID_HANDLE);
  EXPECT_STREQ(contrastive_last_error(), "handle is null");
  EXPECT_EQ(call.backward(nullptr), CONTRASTIVE_INVALID_HANDLE);
  EXPECT_EQ(call.forward_backward(nullptr), CONTRASTIVE_INVALID_HANDLE);
  EXPECT_TRUE(call.untouched());
}

// A pointer the library never handed out is looked up, not dereferenced.
TEST(CApi, ForeignHandleIsReportedWithoutDereferencing) {
  HostCall call;
  const contrastive_handle_t foreign = testing::foreign_handle();
  EXPECT_EQ(call.forward(foreign), CONTRASTIVE_INVALID_HANDLE);
  EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
  EXPECT_EQ(contrastive_destroy(foreign), CONTRASTIVE_INVALID_HANDLE);
  EXPECT_STREQ(contrastive_last_error(), "contrastive_destroy: handle was already destroyed");
  EXPECT_EQ(contrastive_destroy(nullptr), CONTRASTIVE_SUCCESS);
  EXPECT_TRUE(call.untouched());
}

TEST(CApi, CreateWithoutAGpuOrDestroyTwice) {
  contrastive_handle_t handle = nullptr;
  const int status = contrastive_create(&handle, -1);
  if (!testing::gpu_usable(nullptr)) {
    EXPECT_EQ(status, CONTRASTIVE_NO_DEVICE);
    EXPECT_EQ(handle, nullptr);
    int count = 0;
    if (cudaGetDeviceCount(&count) == cudaErrorInsufficientDriver) {
      // No driver (error 35): the message says what that means.
      EXPECT_STREQ(contrastive_last_error(),
                   "no usable CUDA device: cudaGetDeviceCount failed with "
                   "cudaErrorInsufficientDriver (CUDA driver version is insufficient for CUDA "
                   "runtime version): no NVIDIA driver found, or one older than CUDA 13 needs");
    } else {
      EXPECT_EQ(std::string(contrastive_last_error()).rfind("no usable CUDA device", 0), 0u);
    }
    (void)cudaGetLastError();
    return;
  }
  ASSERT_EQ(status, CONTRASTIVE_SUCCESS) << contrastive_last_error();
  ASSERT_NE(handle, nullptr);
  EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_INVALID_HANDLE);
  HostCall call;
  EXPECT_EQ(call.forward(handle), CONTRASTIVE_INVALID_HANDLE);
  EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  using CP = contrastive_infonce_params_t;
  const auto make = testing::infonce_problem<contrastive_infonce_params_t>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  return {
      {"CInfoNCENaNTemperature", c_call(make, [nan](CP& p) { p.temperature = nan; }), kInvalid,
       exactly("infonce: temperature must be finite and > 0, got nan")},
      {"CInfoNCEBf16LogitsWithF32Inputs",
       c_call(make, [](CP& p) { p.logits_dtype = CONTRASTIVE_DTYPE_BF16; }), kUnsupported,
       exactly("infonce: " + kBf16Tile + "f32")},
      {"CInfoNCEExtentOverflows64Bits", c_call(make, [](CP& p) { p.k_row_stride = kHugeStride; }),
       kInvalid,
       exactly("infonce: the extent of Q or K in bytes overflows 64 bits (strides 16, "
               "4611686018427387904)")},
      {"CInfoNCENullQ",
       [](BadInputBuffers& b, const Handle&, Stream) {
         const CP p = testing::infonce_problem<contrastive_infonce_params_t>();
         return contrastive_infonce_forward_backward(
             nullptr, &p, nullptr, b["k"], b.f("loss"), b["saved"], b.f("grad_loss"), b["grad_q"],
             b["grad_k"], b.f("grad_temperature"), b["workspace"], testing::kBadInputWorkspaceBytes,
             nullptr);
       },
       kNull, exactly("infonce::forward_backward: q is null")},
      {"CInfoNCEMisalignedK",
       [](BadInputBuffers& b, const Handle&, Stream) {
         return testing::c_run(b, testing::infonce_problem<contrastive_infonce_params_t>(), nullptr,
                               shifted(b["k"]));
       },
       kMisaligned,
       [](BadInputBuffers& b) {
         return testing::misaligned_message("infonce::forward_backward", "k", shifted(b["k"]), 4);
       }},
      {"CInfoNCEWorkspaceNullWithSize",
       [](BadInputBuffers& b, const Handle&, Stream) {
         const CP p = testing::infonce_problem<contrastive_infonce_params_t>();
         return contrastive_infonce_forward_backward(
             nullptr, &p, b["q"], b["k"], b.f("loss"), b["saved"], b.f("grad_loss"), b["grad_q"],
             b["grad_k"], b.f("grad_temperature"), nullptr, 4096, nullptr);
       },
       kNull, exactly(testing::workspace_null_message("infonce::forward_backward", 4096))},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
