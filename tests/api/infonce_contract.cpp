// The C++ API contract: every bad input gets its own status and message, launches nothing and
// leaves every output untouched. Arguments are checked before the handle, so without a GPU these
// run with an empty handle and host buffers; with a GPU they run with a real handle and device
// buffers and also check that no CUDA error is left behind.
#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/bad_input.hpp"
#include "support/contract.hpp"
#include "support/device.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

namespace infonce = contrastive::infonce;
using testing::Block;
using testing::shifted;

// Everything one call takes; cases edit a valid call into a bad one.
struct Call {
  Pass operation = Pass::kForward;
  infonce::Params params;
  const void* q = nullptr;
  const void* k = nullptr;
  float* loss = nullptr;
  void* saved = nullptr;
  const float* grad_loss = nullptr;
  void* grad_q = nullptr;
  void* grad_k = nullptr;
  float* grad_temperature = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  const void* query_ids = nullptr;
  const void* key_ids = nullptr;

  Status run(const Handle& handle, Stream stream) const {
    switch (operation) {
      case Pass::kForward: {
        infonce::ForwardArgs args{q, k, loss, saved};
        args.query_ids = query_ids;
        args.key_ids = key_ids;
        return infonce::forward(handle, params, args, workspace, workspace_bytes, stream);
      }
      case Pass::kBackward: {
        infonce::BackwardArgs args{q, k, saved, grad_loss, grad_q, grad_k, grad_temperature};
        args.query_ids = query_ids;
        args.key_ids = key_ids;
        return infonce::backward(handle, params, args, workspace, workspace_bytes, stream);
      }
      case Pass::kForwardBackward: {
        infonce::ForwardBackwardArgs args{q,         k,      loss,   saved,
                                          grad_loss, grad_q, grad_k, grad_temperature};
        args.query_ids = query_ids;
        args.key_ids = key_ids;
        return infonce::forward_backward(handle, params, args, workspace, workspace_bytes, stream);
      }
    }
    return Status::kInternalError;
  }
};

constexpr std::int64_t kBatch = 8, kDim = 16;
constexpr std::size_t kSlack = 512;  // room for shifted pointers and larger edited shapes

class InfoNCEContract : public testing::ContractFixture<> {
 protected:
  void SetUp() override {
    ContractFixture::SetUp();
    params_.batch = kBatch;
    params_.num_keys = kBatch;
    params_.dim = kDim;
    ASSERT_EQ(infonce::workspace_size(params_, &workspace_bytes_), Status::kSuccess);
    ASSERT_EQ(infonce::saved_size(params_, &saved_bytes_), Status::kSuccess);
    const std::size_t matrix = kBatch * kDim * sizeof(float) + kSlack;
    std::mt19937_64 engine(testing::test_seed());
    const std::vector<double> values = testing::random_normal(2 * kBatch * kDim, engine);
    q_ = std::make_unique<Block>(matrix, on_device_);
    k_ = std::make_unique<Block>(matrix, on_device_);
    q_->fill_floats(std::vector<float>(values.begin(), values.begin() + kBatch * kDim));
    k_->fill_floats(std::vector<float>(values.begin() + kBatch * kDim, values.end()));
    loss_ = std::make_unique<Block>(kBatch * sizeof(float) + kSlack, on_device_);
    saved_ = std::make_unique<Block>(saved_bytes_ + kSlack, on_device_);
    grad_q_ = std::make_unique<Block>(matrix, on_device_);
    grad_k_ = std::make_unique<Block>(matrix, on_device_);
    grad_temperature_ = std::make_unique<Block>(sizeof(float) + kSlack, on_device_);
    workspace_ = std::make_unique<Block>(workspace_bytes_ + kSlack, on_device_);
  }

  Call valid_call(Pass operation) {
    Call call;
    call.operation = operation;
    call.params = params_;
    call.q = q_->data();
    call.k = k_->data();
    call.saved = saved_->data();
    if (operation != Pass::kBackward) call.loss = static_cast<float*>(loss_->data());
    if (operation != Pass::kForward) {
      call.grad_q = grad_q_->data();
      call.grad_k = grad_k_->data();
      call.grad_temperature = static_cast<float*>(grad_temperature_->data());
    }
    call.workspace = workspace_->data();
    call.workspace_bytes = workspace_bytes_;
    return call;
  }

  // The failing call wrote nothing and left no CUDA error (saved is an input of backward).
  void expect_nothing_written(Pass operation) {
    EXPECT_TRUE(loss_->untouched()) << "loss was written";
    EXPECT_TRUE(grad_q_->untouched()) << "grad_q was written";
    EXPECT_TRUE(grad_k_->untouched()) << "grad_k was written";
    EXPECT_TRUE(grad_temperature_->untouched()) << "grad_temperature was written";
    if (operation != Pass::kBackward) {
      EXPECT_TRUE(saved_->untouched()) << "saved was written";
    }
    if (on_device_) {
      EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a CUDA error was left behind";
    }
  }

  infonce::Params params_;
  std::size_t workspace_bytes_ = 0, saved_bytes_ = 0;
  std::unique_ptr<Block> q_, k_, loss_, saved_, grad_q_, grad_k_, grad_temperature_, workspace_;
};

// The exact message a case expects, computed from the edited call (some hold sizes or addresses).
using ExpectedMessage = std::function<std::string(const Call&)>;

ExpectedMessage text(const char* message) {
  return [message](const Call&) { return std::string(message); };
}

std::string call_name(const Call& call) {
  const char* names[] = {"forward", "backward", "forward_backward"};
  return std::string("infonce::") + names[static_cast<int>(call.operation)];
}

std::string workspace_too_small(const Call& call) {
  std::size_t required = 0;
  EXPECT_EQ(infonce::workspace_size(call.params, &required), Status::kSuccess);
  return testing::workspace_too_small_message(call_name(call), call.workspace_bytes, required);
}

std::string misaligned(const Call& call, const char* name, const void* pointer, int bytes) {
  return testing::misaligned_message(call_name(call), name, pointer, bytes);
}

struct BadCallCase {
  const char* name;
  Pass operation;
  std::function<void(Call&)> edit;
  Status status;
  ExpectedMessage message;
};

void PrintTo(const BadCallCase& c, std::ostream* out) {
  *out << c.name;
}

class InfoNCEBadCall : public InfoNCEContract, public ::testing::WithParamInterface<BadCallCase> {};

TEST_P(InfoNCEBadCall, ReturnsItsStatusAndTouchesNothing) {
  const BadCallCase& c = GetParam();
  Call call = valid_call(c.operation);
  c.edit(call);
  EXPECT_EQ(call.run(handle_, stream_), c.status);
  EXPECT_EQ(std::string(last_error_message()), c.message(call));
  expect_nothing_written(c.operation);
}

const BadCallCase kBadCalls[] = {
    {"ZeroBatch", Pass::kForward, [](Call& c) { c.params.batch = 0; }, Status::kInvalidArgument,
     text("infonce: batch (B) must be >= 1, got 0")},
    {"ZeroDim", Pass::kForwardBackward, [](Call& c) { c.params.dim = 0; }, Status::kInvalidArgument,
     text("infonce: dim (D) must be >= 1, got 0")},
    {"FewerKeysThanRows", Pass::kBackward, [](Call& c) { c.params.num_keys = 4; },
     Status::kInvalidArgument, text("infonce: num_keys (M = 4) must be >= batch (B = 8)")},
    {"OffsetPastTheEnd", Pass::kForward,
     [](Call& c) { c.params.num_keys = 9, c.params.positive_offset = 2; }, Status::kInvalidArgument,
     text("infonce: positive_offset must be in [0, M - B] = [0, 1], got 2")},
    {"ZeroTemperature", Pass::kForward, [](Call& c) { c.params.temperature = 0.0f; },
     Status::kInvalidArgument, text("infonce: temperature must be finite and > 0, got 0")},
    {"NegativeTemperature", Pass::kBackward, [](Call& c) { c.params.temperature = -1.0f; },
     Status::kInvalidArgument, text("infonce: temperature must be finite and > 0, got -1")},
    {"NaNTemperature", Pass::kForwardBackward, [](Call& c) { c.params.temperature = NAN; },
     Status::kInvalidArgument, text("infonce: temperature must be finite and > 0, got nan")},
    {"QStrideBelowDim", Pass::kForward, [](Call& c) { c.params.q_row_stride = 8; },
     Status::kInvalidArgument, text("infonce: q_row_stride (8) must be 0 (dense) or >= dim (16)")},
    {"F16Logits", Pass::kForward, [](Call& c) { c.params.logits_dtype = DType::kF16; },
     Status::kNotSupported, text("infonce: logits_dtype must be f32 or bf16, got f16")},
    {"UnknownLogitsDtype", Pass::kForwardBackward,
     [](Call& c) { c.params.logits_dtype = static_cast<DType>(5); }, Status::kInvalidArgument,
     text("infonce: unknown logits_dtype value 5")},
    {"NullQ", Pass::kForward, [](Call& c) { c.q = nullptr; }, Status::kNullPointer,
     text("infonce::forward: q is null")},
    {"NullK", Pass::kBackward, [](Call& c) { c.k = nullptr; }, Status::kNullPointer,
     text("infonce::backward: k is null")},
    {"NullLoss", Pass::kForward, [](Call& c) { c.loss = nullptr; }, Status::kNullPointer,
     text("infonce::forward: loss is null")},
    {"NullSavedForward", Pass::kForward, [](Call& c) { c.saved = nullptr; }, Status::kNullPointer,
     text("infonce::forward: saved is null")},
    {"NullSavedBackward", Pass::kBackward, [](Call& c) { c.saved = nullptr; }, Status::kNullPointer,
     text("infonce::backward: saved is null")},
    {"NullLossForwardBackward", Pass::kForwardBackward, [](Call& c) { c.loss = nullptr; },
     Status::kNullPointer, text("infonce::forward_backward: loss is null")},
    {"NoGradientRequested", Pass::kBackward,
     [](Call& c) { c.grad_q = c.grad_k = nullptr, c.grad_temperature = nullptr; },
     Status::kNullPointer,
     text("infonce::backward: grad_q, grad_k and grad_temperature are all null: nothing to "
          "compute")},
    {"MisalignedQ", Pass::kForward, [](Call& c) { c.q = shifted(c.q); }, Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "q", c.q, 4); }},
    {"MisalignedK", Pass::kForwardBackward, [](Call& c) { c.k = shifted(c.k); },
     Status::kMisalignedPointer, [](const Call& c) { return misaligned(c, "k", c.k, 4); }},
    // 16-bit elements need 2-byte alignment (the kernels pick 16-byte vectors only where they fit).
    {"MisalignedBf16Q", Pass::kForward,
     [](Call& c) { c.params.dtype = DType::kBF16, c.q = shifted(c.q); }, Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "q", c.q, 2); }},
    {"MisalignedF16GradK", Pass::kBackward,
     [](Call& c) { c.params.dtype = DType::kF16, c.grad_k = shifted(c.grad_k); },
     Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "grad_k", c.grad_k, 2); }},
    {"MisalignedLoss", Pass::kForward,
     [](Call& c) { c.loss = static_cast<float*>(shifted(c.loss)); }, Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "loss", c.loss, 4); }},
    {"MisalignedSaved", Pass::kBackward, [](Call& c) { c.saved = shifted(c.saved); },
     Status::kMisalignedPointer, [](const Call& c) { return misaligned(c, "saved", c.saved, 4); }},
    {"MisalignedGradQ", Pass::kBackward, [](Call& c) { c.grad_q = shifted(c.grad_q); },
     Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "grad_q", c.grad_q, 4); }},
    {"MisalignedGradTemperature", Pass::kForwardBackward,
     [](Call& c) { c.grad_temperature = static_cast<float*>(shifted(c.grad_temperature)); },
     Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "grad_temperature", c.grad_temperature, 4); }},
    {"MisalignedGradLoss", Pass::kBackward,
     [](Call& c) { c.grad_loss = static_cast<const float*>(shifted(c.grad_q)); },
     Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "grad_loss", c.grad_loss, 4); }},
    // Ids (contrastive/ids.hpp): the options' combinations, then the id arrays they require.
    {"MultiPositiveWithoutIds", Pass::kForward, [](Call& c) { c.params.ids.multi_positive = true; },
     Status::kInvalidArgument,
     text("infonce: multi_positive needs ids (type kInt32 or kInt64): the positives of a row are "
          "the keys with its id")},
    {"UnknownIdType", Pass::kBackward,
     [](Call& c) { c.params.ids.type = static_cast<ids::IdType>(7); }, Status::kInvalidArgument,
     text("infonce: unknown ids type value 7")},
    {"ExcludeSelfWithoutMultiPositive", Pass::kForwardBackward,
     [](Call& c) { c.params.ids.type = ids::IdType::kInt32, c.params.ids.exclude_self = true; },
     Status::kInvalidArgument,
     text("infonce: exclude_self needs multi_positive: in single-positive mode key i + "
          "positive_offset is row i's positive")},
    {"InfiniteMargin", Pass::kForward,
     [](Call& c) {
       c.params.ids.false_negative_threshold = true;
       c.params.ids.false_negative_margin = INFINITY;
     },
     Status::kInvalidArgument, text("infonce: false_negative_margin must be finite, got inf")},
    {"SymmetricMultiPositive", Pass::kForward,
     [](Call& c) {
       c.params.symmetric = true;
       c.params.ids.type = ids::IdType::kInt64, c.params.ids.multi_positive = true;
     },
     Status::kInvalidArgument,
     text("infonce: symmetric with multi_positive is not defined: call the loss twice with the "
          "queries and keys swapped")},
    {"NullQueryIds", Pass::kForward,
     [](Call& c) { c.params.ids.type = ids::IdType::kInt64, c.key_ids = c.q; },
     Status::kNullPointer, text("infonce::forward: query_ids is null")},
    {"NullKeyIds", Pass::kBackward,
     [](Call& c) { c.params.ids.type = ids::IdType::kInt32, c.query_ids = c.q; },
     Status::kNullPointer, text("infonce::backward: key_ids is null")},
    {"MisalignedInt64QueryIds", Pass::kForwardBackward,
     [](Call& c) {
       c.params.ids.type = ids::IdType::kInt64;
       c.query_ids = static_cast<const char*>(c.q) + 4, c.key_ids = c.k;
     },
     Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "query_ids", c.query_ids, 8); }},
    {"MisalignedInt32KeyIds", Pass::kForward,
     [](Call& c) {
       c.params.ids.type = ids::IdType::kInt32, c.params.ids.multi_positive = true;
       c.query_ids = c.q, c.key_ids = shifted(c.k);
     },
     Status::kMisalignedPointer,
     [](const Call& c) { return misaligned(c, "key_ids", c.key_ids, 4); }},
    {"WorkspaceNullWithSize", Pass::kForward, [](Call& c) { c.workspace = nullptr; },
     Status::kNullPointer,
     [](const Call& c) {
       return testing::workspace_null_message(call_name(c), c.workspace_bytes);
     }},
    {"WorkspaceNullAndEmpty", Pass::kBackward,
     [](Call& c) { c.workspace = nullptr, c.workspace_bytes = 0; }, Status::kWorkspaceTooSmall,
     workspace_too_small},
    {"WorkspaceOneByteShort", Pass::kForwardBackward, [](Call& c) { --c.workspace_bytes; },
     Status::kWorkspaceTooSmall, workspace_too_small},
    {"WorkspaceShiftedOutOfItsSize", Pass::kForward,
     [](Call& c) { c.workspace = shifted(c.workspace), c.workspace_bytes -= 1; },
     Status::kWorkspaceTooSmall, workspace_too_small},
};

INSTANTIATE_TEST_SUITE_P(Contract, InfoNCEBadCall, ::testing::ValuesIn(kBadCalls),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Accepted unusual input, handles and devices ----------------------------------------------

// Any workspace pointer works when the block has the reported size, as with CUB. Without a GPU the
// call gets past every workspace check and stops at the (empty) handle.
TEST_F(InfoNCEContract, MisalignedWorkspaceOfTheReportedSizeIsAccepted) {
  Call call = valid_call(Pass::kForwardBackward);
  call.workspace = shifted(call.workspace);
  const Status status = call.run(handle_, stream_);
  if (!on_device_) {
    EXPECT_EQ(status, Status::kInvalidHandle) << last_error_message();
    return;
  }
  ASSERT_EQ(status, Status::kSuccess) << last_error_message();
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  float loss = NAN;
  ASSERT_EQ(cudaMemcpy(&loss, call.loss, sizeof(loss), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(std::isfinite(loss));
}

TEST_F(InfoNCEContract, EmptyHandleIsRejectedAfterTheArguments) {
  const Handle empty;
  for (Pass operation : {Pass::kForward, Pass::kBackward, Pass::kForwardBackward}) {
    EXPECT_EQ(valid_call(operation).run(empty, stream_), Status::kInvalidHandle);
    EXPECT_STREQ(last_error_message(),
                 "handle is empty: Handle::create() failed or was not called, or it was moved "
                 "from");
    expect_nothing_written(operation);
  }
}

TEST_F(InfoNCEContract, MovedFromHandleIsEmpty) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  Handle moved = std::move(handle_);
  EXPECT_TRUE(moved.valid());
  EXPECT_FALSE(handle_.valid());  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_EQ(valid_call(Pass::kForward).run(handle_, stream_), Status::kInvalidHandle);
  expect_nothing_written(Pass::kForward);
}

TEST_F(InfoNCEContract, HandleOfAnotherDeviceIsRejected) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  if (devices < 2) GTEST_SKIP() << "needs two GPUs, found " << devices;
  Handle other;
  ASSERT_EQ(Handle::create(&other, 1), Status::kSuccess);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  EXPECT_EQ(valid_call(Pass::kForward).run(other, stream_), Status::kWrongDevice);
  EXPECT_STREQ(last_error_message(), "handle belongs to CUDA device 1 but device 0 is current");
  expect_nothing_written(Pass::kForward);
}

TEST(Handle, CreateWithoutAGpuSaysSo) {
  std::string why;
  if (testing::gpu_usable(&why)) {
    Handle handle;
    ASSERT_EQ(Handle::create(&handle), Status::kSuccess);
    EXPECT_TRUE(handle.valid());
    EXPECT_GE(handle.compute_capability(), 75);
    EXPECT_GT(handle.multiprocessor_count(), 0);
    return;
  }
  Handle handle;
  EXPECT_EQ(Handle::create(&handle), Status::kNoDevice);
  EXPECT_FALSE(handle.valid());
  EXPECT_EQ(handle.device(), -1);
  EXPECT_EQ(std::string(last_error_message()).rfind("no usable CUDA device", 0), 0u)
      << last_error_message();
}

TEST(Handle, CreateChecksItsArguments) {
  EXPECT_EQ(Handle::create(nullptr), Status::kNullPointer);
  EXPECT_STREQ(last_error_message(), "Handle::create: out is null");
  Handle handle;
  const Status status = Handle::create(&handle, 1000);
  if (testing::gpu_usable(nullptr)) {
    EXPECT_EQ(status, Status::kInvalidArgument);
    EXPECT_EQ(std::string(last_error_message()).rfind("Handle::create: device 1000 is not in", 0),
              0u);
  } else {
    EXPECT_EQ(status, Status::kNoDevice);
  }
  EXPECT_FALSE(handle.valid());
}

// ---- Bad input through a full forward_backward (Reliability/BadInput) -------------------------

namespace bad_input {

using namespace testing;  // support/bad_input.hpp

std::vector<testing::BadCase> cases() {
  using IP = infonce::Params;
  const auto make = testing::infonce_problem<infonce::Params>();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"CppInfoNCEZeroKeys", cpp_call(make, [](IP& p) { p.num_keys = 0; }), kInvalid,
       exactly("infonce: num_keys (M = 0) must be >= batch (B = 8)")},
      {"CppInfoNCEInfiniteTemperature", cpp_call(make, [inf](IP& p) { p.temperature = inf; }),
       kInvalid, exactly("infonce: temperature must be finite and > 0, got inf")},
      {"CppInfoNCEZeroEps", cpp_call(make, [](IP& p) { p.eps = 0.0f; }), kInvalid,
       exactly("infonce: eps must be finite and > 0, got 0")},
      {"CppInfoNCEKStrideBelowDim", cpp_call(make, [](IP& p) { p.k_row_stride = 15; }), kInvalid,
       exactly("infonce: k_row_stride (15) must be 0 (dense) or >= dim (16)")},
      {"CppInfoNCEBf16LogitsWithF32Inputs",
       cpp_call(make, [](IP& p) { p.logits_dtype = DType::kBF16; }), kUnsupported,
       exactly("infonce: " + kBf16Tile + "f32")},
      {"CppInfoNCEBf16LogitsWithF16Inputs",
       cpp_call(make, [](IP& p) { p.dtype = DType::kF16, p.logits_dtype = DType::kBF16; }),
       kUnsupported, exactly("infonce: " + kBf16Tile + "f16")},
      {"CppInfoNCEExtentOverflows64Bits",
       cpp_call(make, [](IP& p) { p.q_row_stride = kHugeStride; }), kInvalid,
       exactly("infonce: the extent of Q or K in bytes overflows 64 bits (strides "
               "4611686018427387904, 16)")},
  };
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(cases()),
                         testing::bad_case_name);

}  // namespace bad_input

}  // namespace
}  // namespace contrastive
