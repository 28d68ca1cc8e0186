// The C++ API contract of the losses whose calls take f32 tensors by their description's names
// (per-anchor MNR, in-batch MNR, Repel, SigLIP), as api/infonce_contract.cpp states it for
// InfoNCE: every bad input gets its own status and message,
// launches nothing and leaves every output untouched; the parameters are checked first, then the
// pointers in the order of the arguments, then the workspace, then the handle. Without a GPU the
// calls get an empty handle and host buffers; with one, a real handle and device buffers, and no
// CUDA error may be left behind.
//
// The pointers, sizes and calls come from each loss's description (host/describe/losses.hpp):
// api/mnr_contract.cpp, api/repel_contract.cpp and api/siglip_contract.cpp name their losses and
// run the checks below.
#pragma once

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
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "host/describe/losses.hpp"
#include "support/bad_input.hpp"
#include "support/contract.hpp"
#include "support/device.hpp"
#include "support/random.hpp"

namespace contrastive::testing {

constexpr std::size_t kAnchorSlack = 512;  // room for shifted pointers
constexpr int kAnchorFloatAlignment = 4;   // every argument is f32 here
constexpr Pass kAnchorOperations[] = {Pass::kForward, Pass::kBackward, Pass::kForwardBackward};

/// What the anchor contract knows of one loss beyond its description.
struct AnchorLoss {
  const char* description;    ///< its describe::Loss name
  const char* case_prefix;    ///< in case names: "PerAnchor", "InBatch", "Repel", "SigLIP"
  const char* params_prefix;  ///< its check() messages start so: "mnr (per-anchor)", "repel"
  describe::Params (*valid)();
};

inline const AnchorLoss kPerAnchorContract{
    "MnrPerAnchor", "PerAnchor", "mnr (per-anchor)",
    [] { return describe::Params(anchor_problem<mnr::PerAnchorParams>()); }};
inline const AnchorLoss kInBatchContract{
    "MnrInBatch", "InBatch", "mnr (in-batch)",
    [] { return describe::Params(anchor_problem<mnr::InBatchParams>()); }};
inline const AnchorLoss kRepelContract{
    "Repel", "Repel", "repel", [] { return describe::Params(anchor_problem<repel::Params>()); }};

/// SigLIP (B = M = 8, D = 16, cosine: saved holds the inverse norms, so it is required).
inline const AnchorLoss kSigLIPContract{
    "SigLIP", "SigLIP", "siglip",
    [] { return describe::Params(infonce_problem<siglip::Params>()); }};

inline const char* operation_name(Pass operation) {
  const char* names[] = {"Forward", "Backward", "ForwardBackward"};
  return names[static_cast<int>(operation)];
}

/// The call's own name, as its pointer and workspace messages start: "mnr (per-anchor)" and
/// backward give "mnr::backward (per-anchor)", "repel" gives "repel::backward".
inline std::string call_name(const AnchorLoss& loss, Pass operation) {
  const char* operations[] = {"forward", "backward", "forward_backward"};
  const std::string prefix = loss.params_prefix;
  const std::size_t space = prefix.find(' ');
  const std::string family = prefix.substr(0, space);
  const std::string layout = space == std::string::npos ? "" : prefix.substr(space);
  return family + "::" + operations[static_cast<int>(operation)] + layout;
}

inline std::vector<std::string> tensors_with(const AnchorLoss& loss,
                                             std::initializer_list<describe::Role> roles) {
  std::vector<std::string> names;
  for (const describe::Tensor& tensor : describe::loss_named(loss.description).tensors) {
    for (const describe::Role role : roles) {
      if (tensor.role == role) names.push_back(tensor.name);
    }
  }
  return names;
}

/// The embeddings the loss reads, in the order of its argument struct.
inline std::vector<std::string> inputs(const AnchorLoss& loss) {
  return tensors_with(loss, {describe::Role::kInput});
}

/// The gradients backward can write, each optional (but not all of them null).
inline std::vector<std::string> gradients(const AnchorLoss& loss) {
  return tensors_with(loss, {describe::Role::kGradient, describe::Role::kScalarGradient});
}

/// The pointers a call must be given, in the order the library checks them.
inline std::vector<std::string> required(const AnchorLoss& loss, Pass operation) {
  std::vector<std::string> names = inputs(loss);
  if (operation != Pass::kBackward) names.push_back("loss");
  names.push_back("saved");
  return names;
}

/// The pointers a call may be given: set ones must be aligned.
inline std::vector<std::string> optional(const AnchorLoss& loss, Pass operation) {
  if (operation == Pass::kForward) return {};
  std::vector<std::string> names = {"grad_loss"};
  for (const std::string& name : gradients(loss)) names.push_back(name);
  return names;
}

/// "<call>: a, b and c are all null: nothing to compute" ("a and b are both null" for two).
inline std::string nothing_to_compute(const AnchorLoss& loss, Pass operation) {
  const std::vector<std::string> names = gradients(loss);
  std::string list;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) list += i + 1 == names.size() ? " and " : ", ";
    list += names[i];
  }
  return call_name(loss, operation) + ": " + list +
         (names.size() == 2 ? " are both null" : " are all null") + ": nothing to compute";
}

/// Everything one call takes, pointers by the names the library uses; cases edit a valid call.
struct AnchorCall {
  const AnchorLoss* loss = nullptr;
  Pass operation = Pass::kForward;
  describe::Params params;
  std::map<std::string, void*> pointers;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;

  void* get(std::string_view name) const {
    const auto found = pointers.find(std::string(name));
    return found == pointers.end() ? nullptr : found->second;
  }
  std::string name() const { return call_name(*loss, operation); }

  std::size_t required_workspace() const {
    std::size_t bytes = 0;
    EXPECT_EQ(describe::workspace_size(params, &bytes), Status::kSuccess) << last_error_message();
    return bytes;
  }

  Status run(const Handle& handle, Stream stream) const {
    return describe::run(
        operation, handle, params, [this](std::string_view name) { return get(name); }, workspace,
        workspace_bytes, stream);
  }
};

/// Applies `edit` to the params of whichever loss `call` holds.
template <typename Edit>
void edit_params(AnchorCall& call, Edit edit) {
  std::visit(edit, call.params);
}

struct AnchorBadCall;

class AnchorContract : public ContractFixture<> {
 protected:
  // A valid call on fresh buffers: inputs random, grad_loss ones, outputs and workspace poisoned.
  AnchorCall valid_call(const AnchorLoss& loss, Pass operation) {
    AnchorCall call;
    call.loss = &loss;
    call.operation = operation;
    call.params = loss.valid();

    blocks_.clear();
    std::mt19937_64 engine(test_seed());
    for (const describe::Tensor& tensor : describe::loss_named(loss.description).tensors) {
      const describe::Extent extent = describe::extent(call.params, tensor.name);
      const auto floats = static_cast<std::size_t>(extent.elements());
      blocks_[tensor.name] =
          std::make_unique<Block>(floats * sizeof(float) + kAnchorSlack, on_device_);
      if (tensor.role == describe::Role::kInput) {
        const std::vector<double> values = random_normal(floats, engine);
        blocks_[tensor.name]->fill_floats(std::vector<float>(values.begin(), values.end()));
      } else if (tensor.role == describe::Role::kUpstreamGradient) {
        blocks_[tensor.name]->fill_floats(std::vector<float>(floats, 1.0f));
      }
    }
    const std::size_t workspace_bytes = call.required_workspace();
    blocks_["workspace"] = std::make_unique<Block>(workspace_bytes + kAnchorSlack, on_device_);

    for (const std::string& name : required(loss, operation)) call.pointers[name] = block(name);
    for (const std::string& name : optional(loss, operation)) call.pointers[name] = block(name);
    call.workspace = block("workspace");
    call.workspace_bytes = workspace_bytes;
    return call;
  }

  void* block(const std::string& name) { return blocks_.at(name)->data(); }

  // The failing call wrote nothing and left no CUDA error (saved is an input of backward).
  void expect_nothing_written(const AnchorCall& call) {
    std::vector<std::string> outputs = gradients(*call.loss);
    outputs.push_back("loss");
    if (call.operation != Pass::kBackward) outputs.push_back("saved");
    for (const std::string& name : outputs) {
      EXPECT_TRUE(blocks_.at(name)->untouched()) << name << " was written";
    }
    if (on_device_) {
      EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a CUDA error was left behind";
    }
  }

  // The bad call `c` returns its status and message and writes nothing.
  void expect_bad_call(const AnchorBadCall& c);

  // A call wrong in every way at once reports its parameters, then each missing pointer in
  // argument order, then the gradients, then the workspace, then the handle: fixing each in turn
  // shows the next one. `break_params` makes the params invalid with `params_message`.
  void expect_checks_in_order(const AnchorLoss& loss, void (*break_params)(describe::Params&),
                              const std::string& params_message) {
    const Handle empty;
    for (const Pass operation : kAnchorOperations) {
      SCOPED_TRACE(std::string(loss.case_prefix) + operation_name(operation));
      const AnchorCall valid = valid_call(loss, operation);
      AnchorCall call = valid;
      break_params(call.params);
      call.pointers.clear();
      call.workspace = nullptr;
      EXPECT_EQ(call.run(empty, stream_), Status::kInvalidArgument);
      EXPECT_EQ(last_error_message(), params_message);
      call.params = valid.params;
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
      EXPECT_EQ(last_error_message(), workspace_null_message(call.name(), call.workspace_bytes));
      call.workspace = valid.workspace;
      EXPECT_EQ(call.run(empty, stream_), Status::kInvalidHandle);
      expect_nothing_written(call);
    }
  }

  // Any workspace pointer works when the block has the reported size, as with CUB. Without a GPU
  // the call gets past every workspace check and stops at the (empty) handle.
  void expect_misaligned_workspace_accepted(const AnchorLoss& loss) {
    SCOPED_TRACE(loss.case_prefix);
    AnchorCall call = valid_call(loss, Pass::kForwardBackward);
    call.workspace = shifted(call.workspace);
    const Status status = call.run(handle_, stream_);
    if (!on_device_) {
      EXPECT_EQ(status, Status::kInvalidHandle) << last_error_message();
      EXPECT_STREQ(last_error_message(), kEmptyHandleMessage);
      expect_nothing_written(call);
      return;
    }
    ASSERT_EQ(status, Status::kSuccess) << last_error_message();
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    float loss_value = NAN;
    ASSERT_EQ(cudaMemcpy(&loss_value, call.get("loss"), sizeof(loss_value), cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_TRUE(std::isfinite(loss_value));
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }

  void expect_empty_handle_rejected(const AnchorLoss& loss) {
    const Handle empty;
    for (const Pass operation : kAnchorOperations) {
      SCOPED_TRACE(std::string(loss.case_prefix) + operation_name(operation));
      const AnchorCall call = valid_call(loss, operation);
      EXPECT_EQ(call.run(empty, stream_), Status::kInvalidHandle);
      EXPECT_STREQ(last_error_message(), kEmptyHandleMessage);
      expect_nothing_written(call);
    }
  }

  static constexpr const char* kEmptyHandleMessage =
      "handle is empty: Handle::create() failed or was not called, or it was moved from";

  std::map<std::string, std::unique_ptr<Block>> blocks_;
};

// ---- Bad calls, generated for every operation of the given losses --------------------------

struct AnchorBadCall {
  std::string name;
  const AnchorLoss* loss;
  Pass operation;
  std::function<void(AnchorCall&)> edit;
  Status status;
  std::function<std::string(const AnchorCall&)> message;  // computed from the edited call
};

inline void AnchorContract::expect_bad_call(const AnchorBadCall& c) {
  AnchorCall call = valid_call(*c.loss, c.operation);
  c.edit(call);
  EXPECT_EQ(call.run(handle_, stream_), c.status);
  EXPECT_EQ(std::string(last_error_message()), c.message(call));
  expect_nothing_written(call);
}

// Failure output names the case rather than dumping its bytes.
inline void PrintTo(const AnchorBadCall& c, std::ostream* out) {
  *out << c.name;
}

inline std::string anchor_bad_call_name(const ::testing::TestParamInfo<AnchorBadCall>& info) {
  return info.param.name;
}

// "grad_anchors" -> "GradAnchors"
inline std::string camel(const std::string& name) {
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

inline std::string anchor_workspace_too_small(const AnchorCall& call) {
  return workspace_too_small_message(call.name(), call.workspace_bytes, call.required_workspace());
}

/// The bad calls every anchor loss shares, for each operation of each of `losses`.
inline std::vector<AnchorBadCall> anchor_bad_calls(
    std::initializer_list<const AnchorLoss*> losses) {
  std::vector<AnchorBadCall> cases;
  for (const AnchorLoss* loss : losses) {
    for (const Pass operation : kAnchorOperations) {
      const std::string prefix = std::string(loss->case_prefix) + operation_name(operation);
      auto add = [&](const std::string& name, std::function<void(AnchorCall&)> edit, Status status,
                     std::function<std::string(const AnchorCall&)> message) {
        cases.push_back(
            {prefix + name, loss, operation, std::move(edit), status, std::move(message)});
      };
      auto text = [](std::string message) {
        return [message](const AnchorCall&) { return message; };
      };
      const std::string params_prefix = loss->params_prefix;

      // The parameters come first: with every pointer and the workspace missing as well.
      add(
          "ZeroBatchBeforeAnyPointer",
          [](AnchorCall& c) {
            edit_params(c, [](auto& p) { p.batch = 0; });
            c.pointers.clear();
            c.workspace = nullptr;
          },
          Status::kInvalidArgument, text(params_prefix + ": batch (B) must be >= 1, got 0"));
      add(
          "UnknownDtype",
          [](AnchorCall& c) { edit_params(c, [](auto& p) { p.dtype = static_cast<DType>(9); }); },
          Status::kInvalidArgument, text(params_prefix + ": unknown dtype value 9"));

      for (const std::string& name : required(*loss, operation)) {
        add(
            "Null" + camel(name), [name](AnchorCall& c) { c.pointers[name] = nullptr; },
            Status::kNullPointer, text(call_name(*loss, operation) + ": " + name + " is null"));
      }
      std::vector<std::string> alignable = required(*loss, operation);
      for (const std::string& name : optional(*loss, operation)) alignable.push_back(name);
      for (const std::string& name : alignable) {
        add(
            "Misaligned" + camel(name),
            [name](AnchorCall& c) { c.pointers[name] = shifted(c.get(name)); },
            Status::kMisalignedPointer,
            [name](const AnchorCall& c) {
              return misaligned_message(c.name(), name.c_str(), c.get(name), kAnchorFloatAlignment);
            });
      }
      if (operation != Pass::kForward) {
        add(
            "NoGradientRequested",
            [loss](AnchorCall& c) {
              for (const std::string& name : gradients(*loss)) c.pointers[name] = nullptr;
            },
            Status::kNullPointer, text(nothing_to_compute(*loss, operation)));
      }

      add(
          "WorkspaceNullWithSize", [](AnchorCall& c) { c.workspace = nullptr; },
          Status::kNullPointer,
          [](const AnchorCall& c) { return workspace_null_message(c.name(), c.workspace_bytes); });
      add(
          "WorkspaceNullAndEmpty",
          [](AnchorCall& c) { c.workspace = nullptr, c.workspace_bytes = 0; },
          Status::kWorkspaceTooSmall, anchor_workspace_too_small);
      add(
          "WorkspaceOneByteShort", [](AnchorCall& c) { --c.workspace_bytes; },
          Status::kWorkspaceTooSmall, anchor_workspace_too_small);
      add(
          "WorkspaceShiftedOutOfItsSize",
          [](AnchorCall& c) { c.workspace = shifted(c.workspace), c.workspace_bytes -= 1; },
          Status::kWorkspaceTooSmall, anchor_workspace_too_small);
    }
  }
  return cases;
}

}  // namespace contrastive::testing
