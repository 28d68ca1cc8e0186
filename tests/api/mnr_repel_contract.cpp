// The C++ API contract of MNR (per-anchor and in-batch) and Repel, as api/infonce_contract.cpp
// states it for InfoNCE: every bad input gets its own status and message, launches nothing and
// leaves every output untouched; the parameters are checked first, then the pointers in the order
// of the arguments, then the workspace, then the handle. Without a GPU the calls get an empty
// handle and host buffers; with one, a real handle and device buffers, and no CUDA error may be
// left behind.
#include <cuda_runtime_api.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/contract.hpp"
#include "support/device.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::Block;
using testing::shifted;

enum class Loss { kPerAnchor, kInBatch, kRepel };

constexpr Loss kLosses[] = {Loss::kPerAnchor, Loss::kInBatch, Loss::kRepel};
constexpr Pass kOperations[] = {Pass::kForward, Pass::kBackward, Pass::kForwardBackward};

constexpr std::int64_t kBatch = 8, kNegatives = 3, kHardNegatives = 2, kDim = 16;
constexpr std::size_t kSlack = 512;  // room for shifted pointers
constexpr int kFloatAlignment = 4;   // every argument is f32 for now

const char* loss_name(Loss loss) {
  const char* names[] = {"PerAnchor", "InBatch", "Repel"};
  return names[static_cast<int>(loss)];
}

const char* operation_name(Pass operation) {
  const char* names[] = {"Forward", "Backward", "ForwardBackward"};
  return names[static_cast<int>(operation)];
}

// The prefix of the parameter messages, e.g. "mnr (per-anchor)".
const char* params_prefix(Loss loss) {
  const char* prefixes[] = {"mnr (per-anchor)", "mnr (in-batch)", "repel"};
  return prefixes[static_cast<int>(loss)];
}

// The call's own name, as its pointer and workspace messages start.
std::string call_name(Loss loss, Pass operation) {
  const char* operations[] = {"forward", "backward", "forward_backward"};
  const std::string op = operations[static_cast<int>(operation)];
  switch (loss) {
    case Loss::kPerAnchor: return "mnr::" + op + " (per-anchor)";
    case Loss::kInBatch: return "mnr::" + op + " (in-batch)";
    case Loss::kRepel: return "repel::" + op;
  }
  return "";
}

// The embeddings each loss reads, in the order of its argument struct.
std::vector<std::string> inputs(Loss loss) {
  switch (loss) {
    case Loss::kPerAnchor: return {"anchors", "positives", "negatives"};
    case Loss::kInBatch: return {"anchors", "candidates"};
    case Loss::kRepel: return {"anchors", "negatives"};
  }
  return {};
}

// The gradients backward can write, each optional (but not all of them null).
std::vector<std::string> gradients(Loss loss) {
  switch (loss) {
    case Loss::kPerAnchor:
      return {"grad_anchors", "grad_positives", "grad_negatives", "grad_scale"};
    case Loss::kInBatch: return {"grad_anchors", "grad_candidates", "grad_scale"};
    case Loss::kRepel: return {"grad_anchors", "grad_negatives"};
  }
  return {};
}

// The pointers a call must be given, in the order the library checks them.
std::vector<std::string> required(Loss loss, Pass operation) {
  std::vector<std::string> names = inputs(loss);
  if (operation != Pass::kBackward) names.push_back("loss");
  names.push_back("saved");
  return names;
}

// The pointers a call may be given: set ones must be aligned.
std::vector<std::string> optional(Loss loss, Pass operation) {
  if (operation == Pass::kForward) return {};
  std::vector<std::string> names = {"grad_loss"};
  for (const std::string& name : gradients(loss)) names.push_back(name);
  return names;
}

std::string nothing_to_compute(Loss loss, Pass operation) {
  const char* lists[] = {
      "grad_anchors, grad_positives, grad_negatives and grad_scale are all null",
      "grad_anchors, grad_candidates and grad_scale are all null",
      "grad_anchors and grad_negatives are both null",
  };
  return call_name(loss, operation) + ": " + lists[static_cast<int>(loss)] + ": nothing to compute";
}

// Everything one call takes, pointers by the names the library uses; cases edit a valid call.
struct Call {
  Loss loss = Loss::kPerAnchor;
  Pass operation = Pass::kForward;
  mnr::PerAnchorParams per_anchor;
  mnr::InBatchParams in_batch;
  repel::Params repel;
  std::map<std::string, void*> pointers;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;

  void* get(const std::string& name) const {
    const auto found = pointers.find(name);
    return found == pointers.end() ? nullptr : found->second;
  }
  float* get_float(const std::string& name) const { return static_cast<float*>(get(name)); }
  std::string name() const { return call_name(loss, operation); }

  std::size_t required_workspace() const {
    std::size_t bytes = 0;
    Status status = Status::kInternalError;
    switch (loss) {
      case Loss::kPerAnchor: status = mnr::workspace_size(per_anchor, &bytes); break;
      case Loss::kInBatch: status = mnr::workspace_size(in_batch, &bytes); break;
      case Loss::kRepel: status = repel::workspace_size(repel, &bytes); break;
    }
    EXPECT_EQ(status, Status::kSuccess) << last_error_message();
    return bytes;
  }

  Status run(const Handle& handle, Stream stream) const {
    switch (loss) {
      case Loss::kPerAnchor: return run_per_anchor(handle, stream);
      case Loss::kInBatch: return run_in_batch(handle, stream);
      case Loss::kRepel: return run_repel(handle, stream);
    }
    return Status::kInternalError;
  }

 private:
  Status run_per_anchor(const Handle& handle, Stream stream) const {
    switch (operation) {
      case Pass::kForward:
        return mnr::forward(
            handle, per_anchor,
            mnr::PerAnchorForwardArgs{get("anchors"), get("positives"), get("negatives"),
                                      get_float("loss"), get("saved")},
            workspace, workspace_bytes, stream);
      case Pass::kBackward:
        return mnr::backward(handle, per_anchor,
                             mnr::PerAnchorBackwardArgs{
                                 get("anchors"), get("positives"), get("negatives"), get("saved"),
                                 get_float("grad_loss"), get("grad_anchors"), get("grad_positives"),
                                 get("grad_negatives"), get_float("grad_scale")},
                             workspace, workspace_bytes, stream);
      case Pass::kForwardBackward:
        return mnr::forward_backward(
            handle, per_anchor,
            mnr::PerAnchorForwardBackwardArgs{
                get("anchors"), get("positives"), get("negatives"), get_float("loss"), get("saved"),
                get_float("grad_loss"), get("grad_anchors"), get("grad_positives"),
                get("grad_negatives"), get_float("grad_scale")},
            workspace, workspace_bytes, stream);
    }
    return Status::kInternalError;
  }

  Status run_in_batch(const Handle& handle, Stream stream) const {
    switch (operation) {
      case Pass::kForward:
        return mnr::forward(handle, in_batch,
                            mnr::InBatchForwardArgs{get("anchors"), get("candidates"),
                                                    get_float("loss"), get("saved")},
                            workspace, workspace_bytes, stream);
      case Pass::kBackward:
        return mnr::backward(
            handle, in_batch,
            mnr::InBatchBackwardArgs{get("anchors"), get("candidates"), get("saved"),
                                     get_float("grad_loss"), get("grad_anchors"),
                                     get("grad_candidates"), get_float("grad_scale")},
            workspace, workspace_bytes, stream);
      case Pass::kForwardBackward:
        return mnr::forward_backward(handle, in_batch,
                                     mnr::InBatchForwardBackwardArgs{
                                         get("anchors"), get("candidates"), get_float("loss"),
                                         get("saved"), get_float("grad_loss"), get("grad_anchors"),
                                         get("grad_candidates"), get_float("grad_scale")},
                                     workspace, workspace_bytes, stream);
    }
    return Status::kInternalError;
  }

  Status run_repel(const Handle& handle, Stream stream) const {
    switch (operation) {
      case Pass::kForward:
        return repel::forward(
            handle, repel,
            repel::ForwardArgs{get("anchors"), get("negatives"), get_float("loss"), get("saved")},
            workspace, workspace_bytes, stream);
      case Pass::kBackward:
        return repel::backward(
            handle, repel,
            repel::BackwardArgs{get("anchors"), get("negatives"), get("saved"),
                                get_float("grad_loss"), get("grad_anchors"), get("grad_negatives")},
            workspace, workspace_bytes, stream);
      case Pass::kForwardBackward:
        return repel::forward_backward(
            handle, repel,
            repel::ForwardBackwardArgs{get("anchors"), get("negatives"), get_float("loss"),
                                       get("saved"), get_float("grad_loss"), get("grad_anchors"),
                                       get("grad_negatives")},
            workspace, workspace_bytes, stream);
    }
    return Status::kInternalError;
  }
};

// Floats of each buffer of `loss`'s valid problem (B = 8, n = N = 3, K = 2, D = 16).
std::map<std::string, std::size_t> buffer_floats(Loss loss) {
  const std::size_t rows = kBatch * kDim;
  switch (loss) {
    case Loss::kPerAnchor:
      return {{"anchors", rows},
              {"positives", rows},
              {"negatives", kNegatives * rows},
              {"loss", kBatch},
              {"grad_loss", kBatch},
              {"grad_anchors", rows},
              {"grad_positives", rows},
              {"grad_negatives", kNegatives * rows},
              {"grad_scale", 1}};
    case Loss::kInBatch:
      return {{"anchors", rows},      {"candidates", (1 + kHardNegatives) * rows},
              {"loss", kBatch},       {"grad_loss", kBatch},
              {"grad_anchors", rows}, {"grad_candidates", (1 + kHardNegatives) * rows},
              {"grad_scale", 1}};
    case Loss::kRepel:
      return {{"anchors", rows},
              {"negatives", kNegatives * rows},
              {"loss", kBatch * kNegatives},
              {"grad_loss", kBatch * kNegatives},
              {"grad_anchors", rows},
              {"grad_negatives", kNegatives * rows}};
  }
  return {};
}

class MnrRepelContract : public testing::ContractFixture<> {
 protected:
  // A valid call on fresh buffers: inputs random, grad_loss ones, outputs and workspace poisoned.
  Call valid_call(Loss loss, Pass operation) {
    Call call;
    call.loss = loss;
    call.operation = operation;
    call.per_anchor.batch = call.in_batch.batch = call.repel.batch = kBatch;
    call.per_anchor.negatives = call.repel.negatives = kNegatives;
    call.in_batch.hard_negatives = kHardNegatives;
    call.per_anchor.dim = call.in_batch.dim = call.repel.dim = kDim;

    blocks_.clear();
    std::mt19937_64 engine(testing::test_seed());
    for (const auto& [name, floats] : buffer_floats(loss)) {
      blocks_[name] = std::make_unique<Block>(floats * sizeof(float) + kSlack, on_device_);
    }
    for (const std::string& name : inputs(loss)) {
      const std::vector<double> values = testing::random_normal(buffer_floats(loss)[name], engine);
      blocks_[name]->fill_floats(std::vector<float>(values.begin(), values.end()));
    }
    blocks_["grad_loss"]->fill_floats(std::vector<float>(buffer_floats(loss)["grad_loss"], 1.0f));
    std::size_t saved_bytes = 0;
    switch (loss) {
      case Loss::kPerAnchor:
        EXPECT_EQ(mnr::saved_size(call.per_anchor, &saved_bytes), Status::kSuccess);
        break;
      case Loss::kInBatch:
        EXPECT_EQ(mnr::saved_size(call.in_batch, &saved_bytes), Status::kSuccess);
        break;
      case Loss::kRepel:
        EXPECT_EQ(repel::saved_size(call.repel, &saved_bytes), Status::kSuccess);
        break;
    }
    blocks_["saved"] = std::make_unique<Block>(saved_bytes + kSlack, on_device_);
    const std::size_t workspace_bytes = call.required_workspace();
    blocks_["workspace"] = std::make_unique<Block>(workspace_bytes + kSlack, on_device_);

    for (const std::string& name : required(loss, operation)) call.pointers[name] = block(name);
    for (const std::string& name : optional(loss, operation)) call.pointers[name] = block(name);
    call.workspace = block("workspace");
    call.workspace_bytes = workspace_bytes;
    return call;
  }

  void* block(const std::string& name) { return blocks_.at(name)->data(); }

  // The failing call wrote nothing and left no CUDA error (saved is an input of backward).
  void expect_nothing_written(const Call& call) {
    std::vector<std::string> outputs = gradients(call.loss);
    outputs.push_back("loss");
    if (call.operation != Pass::kBackward) outputs.push_back("saved");
    for (const std::string& name : outputs) {
      EXPECT_TRUE(blocks_.at(name)->untouched()) << name << " was written";
    }
    if (on_device_) {
      EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a CUDA error was left behind";
    }
  }

  std::map<std::string, std::unique_ptr<Block>> blocks_;
};

// ---- Bad calls, generated for every loss and operation -----------------------------------------

struct BadCallCase {
  std::string name;
  Loss loss;
  Pass operation;
  std::function<void(Call&)> edit;
  Status status;
  std::function<std::string(const Call&)> message;  // computed from the edited call
};

// "grad_anchors" -> "GradAnchors"
std::string camel(const std::string& name) {
  std::string out;
  bool upper = true;
  for (const char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

std::string workspace_too_small(const Call& call) {
  return testing::workspace_too_small_message(call.name(), call.workspace_bytes,
                                              call.required_workspace());
}

std::vector<BadCallCase> bad_calls() {
  std::vector<BadCallCase> cases;
  for (const Loss loss : kLosses) {
    for (const Pass operation : kOperations) {
      const std::string prefix = std::string(loss_name(loss)) + operation_name(operation);
      auto add = [&](const std::string& name, std::function<void(Call&)> edit, Status status,
                     std::function<std::string(const Call&)> message) {
        cases.push_back(
            {prefix + name, loss, operation, std::move(edit), status, std::move(message)});
      };
      auto text = [](std::string message) { return [message](const Call&) { return message; }; };

      // The parameters come first: with every pointer and the workspace missing as well.
      add(
          "ZeroBatchBeforeAnyPointer",
          [](Call& c) {
            c.per_anchor.batch = c.in_batch.batch = c.repel.batch = 0;
            c.pointers.clear();
            c.workspace = nullptr;
          },
          Status::kInvalidArgument,
          text(std::string(params_prefix(loss)) + ": batch (B) must be >= 1, got 0"));
      add(
          "UnknownDtype",
          [](Call& c) {
            c.per_anchor.dtype = c.in_batch.dtype = c.repel.dtype = static_cast<DType>(9);
          },
          Status::kInvalidArgument,
          text(std::string(params_prefix(loss)) + ": unknown dtype value 9"));
      if (loss == Loss::kInBatch) {
        add(
            "F16LogitsNotSupported", [](Call& c) { c.in_batch.logits_dtype = DType::kF16; },
            Status::kNotSupported,
            text(std::string(params_prefix(loss)) + ": logits_dtype must be f32 or bf16, got f16"));
      }

      for (const std::string& name : required(loss, operation)) {
        add(
            "Null" + camel(name), [name](Call& c) { c.pointers[name] = nullptr; },
            Status::kNullPointer, text(call_name(loss, operation) + ": " + name + " is null"));
      }
      std::vector<std::string> alignable = required(loss, operation);
      for (const std::string& name : optional(loss, operation)) alignable.push_back(name);
      for (const std::string& name : alignable) {
        add(
            "Misaligned" + camel(name),
            [name](Call& c) { c.pointers[name] = shifted(c.get(name)); },
            Status::kMisalignedPointer,
            [name](const Call& c) {
              return testing::misaligned_message(c.name(), name.c_str(), c.get(name),
                                                 kFloatAlignment);
            });
      }
      if (operation != Pass::kForward) {
        add(
            "NoGradientRequested",
            [loss](Call& c) {
              for (const std::string& name : gradients(loss)) c.pointers[name] = nullptr;
            },
            Status::kNullPointer, text(nothing_to_compute(loss, operation)));
      }

      add(
          "WorkspaceNullWithSize", [](Call& c) { c.workspace = nullptr; }, Status::kNullPointer,
          [](const Call& c) {
            return testing::workspace_null_message(c.name(), c.workspace_bytes);
          });
      add(
          "WorkspaceNullAndEmpty", [](Call& c) { c.workspace = nullptr, c.workspace_bytes = 0; },
          Status::kWorkspaceTooSmall, workspace_too_small);
      add(
          "WorkspaceOneByteShort", [](Call& c) { --c.workspace_bytes; }, Status::kWorkspaceTooSmall,
          workspace_too_small);
      add(
          "WorkspaceShiftedOutOfItsSize",
          [](Call& c) { c.workspace = shifted(c.workspace), c.workspace_bytes -= 1; },
          Status::kWorkspaceTooSmall, workspace_too_small);
    }
  }
  return cases;
}

// Failure output names the case rather than dumping its bytes.
void PrintTo(const BadCallCase& c, std::ostream* out) {
  *out << c.name;
}

class MnrRepelBadCall : public MnrRepelContract,
                        public ::testing::WithParamInterface<BadCallCase> {};

TEST_P(MnrRepelBadCall, ReturnsItsStatusAndTouchesNothing) {
  const BadCallCase& c = GetParam();
  Call call = valid_call(c.loss, c.operation);
  c.edit(call);
  EXPECT_EQ(call.run(handle_, stream_), c.status);
  EXPECT_EQ(std::string(last_error_message()), c.message(call));
  expect_nothing_written(call);
}

INSTANTIATE_TEST_SUITE_P(Contract, MnrRepelBadCall, ::testing::ValuesIn(bad_calls()),
                         [](const auto& info) { return info.param.name; });

// ---- The order of the checks ----------------------------------------------------------------

// A call wrong in every way at once reports its parameters, then each missing pointer in argument
// order, then the gradients, then the workspace, then the handle: fixing each in turn shows the
// next one.
TEST_F(MnrRepelContract, ChecksRunInOrderParamsPointersWorkspaceHandle) {
  const Handle empty;
  for (const Loss loss : kLosses) {
    for (const Pass operation : kOperations) {
      SCOPED_TRACE(std::string(loss_name(loss)) + operation_name(operation));
      const Call valid = valid_call(loss, operation);
      Call call = valid;
      call.per_anchor.scale = call.in_batch.scale = 0.0f;
      call.repel.margin = NAN;
      call.pointers.clear();
      call.workspace = nullptr;
      const std::string expected_params =
          loss == Loss::kRepel
              ? "repel: margin must be finite, got nan"
              : std::string(params_prefix(loss)) + ": scale must be finite and > 0, got 0";
      EXPECT_EQ(call.run(empty, stream_), Status::kInvalidArgument);
      EXPECT_EQ(last_error_message(), expected_params);
      call.per_anchor = valid.per_anchor;
      call.in_batch = valid.in_batch;
      call.repel = valid.repel;
      for (const std::string& name : required(loss, operation)) {
        EXPECT_EQ(call.run(empty, stream_), Status::kNullPointer);
        EXPECT_EQ(last_error_message(), call.name() + ": " + name + " is null");
        call.pointers[name] = valid.get(name);
      }
      if (operation != Pass::kForward) {
        EXPECT_EQ(call.run(empty, stream_), Status::kNullPointer);
        EXPECT_EQ(last_error_message(), nothing_to_compute(loss, operation));
        for (const std::string& name : optional(loss, operation)) {
          call.pointers[name] = valid.get(name);
        }
      }
      EXPECT_EQ(call.run(empty, stream_), Status::kNullPointer);
      EXPECT_EQ(last_error_message(),
                testing::workspace_null_message(call.name(), call.workspace_bytes));
      call.workspace = valid.workspace;
      EXPECT_EQ(call.run(empty, stream_), Status::kInvalidHandle);
      expect_nothing_written(call);
    }
  }
}

// ---- Accepted unusual input and handles ------------------------------------------------------

// Any workspace pointer works when the block has the reported size, as with CUB. Without a GPU the
// call gets past every workspace check and stops at the (empty) handle.
TEST_F(MnrRepelContract, MisalignedWorkspaceOfTheReportedSizeIsAccepted) {
  for (const Loss loss : kLosses) {
    SCOPED_TRACE(loss_name(loss));
    Call call = valid_call(loss, Pass::kForwardBackward);
    call.workspace = shifted(call.workspace);
    const Status status = call.run(handle_, stream_);
    if (!on_device_) {
      EXPECT_EQ(status, Status::kInvalidHandle) << last_error_message();
      EXPECT_STREQ(last_error_message(),
                   "handle is empty: Handle::create() failed or was not called, or it was moved "
                   "from");
      expect_nothing_written(call);
      continue;
    }
    ASSERT_EQ(status, Status::kSuccess) << last_error_message();
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    float loss_value = NAN;
    ASSERT_EQ(cudaMemcpy(&loss_value, call.get("loss"), sizeof(loss_value), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_TRUE(std::isfinite(loss_value));
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
}

TEST_F(MnrRepelContract, EmptyHandleIsRejectedAfterTheArguments) {
  const Handle empty;
  for (const Loss loss : kLosses) {
    for (const Pass operation : kOperations) {
      SCOPED_TRACE(std::string(loss_name(loss)) + operation_name(operation));
      const Call call = valid_call(loss, operation);
      EXPECT_EQ(call.run(empty, stream_), Status::kInvalidHandle);
      EXPECT_STREQ(last_error_message(),
                   "handle is empty: Handle::create() failed or was not called, or it was moved "
                   "from");
      expect_nothing_written(call);
    }
  }
}

}  // namespace
}  // namespace contrastive
