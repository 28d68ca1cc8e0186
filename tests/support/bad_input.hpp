// Bad input through a full forward_backward call, in both APIs: what each loss's contract files
// (api/<loss>_contract.cpp, api/c_api_<loss>_contract.cpp) share. Every case edits one thing of a
// valid problem (B = 8, n = N = 3, K = 2, D = 16) and expects its exact status and message, with
// nothing launched or written (every output, and `saved`, keeps its poison) and no CUDA error left
// behind. Without a GPU the calls get an empty handle and host buffers (arguments are checked
// before the handle); with one, a real handle and device buffers. The C API calls pass a null
// handle: their arguments must be reported first. The one test every case runs through,
// Reliability/BadInput, is in api/every_loss_bad_input_contract.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "host/describe/losses.hpp"
#include "support/contract.hpp"
#include "support/device.hpp"
#include "support/problems.hpp"
#include "support/random.hpp"

namespace contrastive::testing {

constexpr std::int64_t kBadInputBatch = kProblemBatch;
constexpr std::size_t kBadInputBlockBytes = 8192;  // any argument of the shapes above
constexpr std::size_t kBadInputWorkspaceBytes = std::size_t{4} << 20;  // more than any needs
constexpr std::int64_t kHugeStride = std::int64_t{1} << 62;            // (B - 1) * stride overflows

/// One poisoned block per tensor name of every loss's description (inputs and grad_loss then
/// filled with random floats), and the workspace.
class BadInputBuffers {
 public:
  explicit BadInputBuffers(bool on_device) {
    std::mt19937_64 engine(test_seed());
    for (const describe::Loss& loss : describe::all_losses()) {
      for (const describe::Tensor& tensor : loss.tensors) {
        if (blocks_.count(tensor.name) != 0) continue;
        blocks_[tensor.name] = std::make_unique<Block>(kBadInputBlockBytes, on_device);
        if (tensor.role == describe::Role::kInput ||
            tensor.role == describe::Role::kUpstreamGradient) {
          const std::vector<double> values = random_normal(kBadInputBlockBytes / 4, engine);
          blocks_[tensor.name]->fill_floats(std::vector<float>(values.begin(), values.end()));
        } else {
          outputs_.push_back(tensor.name);
        }
      }
    }
    blocks_["workspace"] = std::make_unique<Block>(kBadInputWorkspaceBytes, on_device);
  }
  void* operator[](std::string_view name) { return blocks_.at(std::string(name))->data(); }
  float* f(std::string_view name) { return static_cast<float*>((*this)[name]); }
  /// Every tensor a call may write: losses, saved, gradients.
  const std::vector<std::string>& outputs() const { return outputs_; }
  const Block& block(const std::string& name) const { return *blocks_.at(name); }

 private:
  std::map<std::string, std::unique_ptr<Block>> blocks_;
  std::vector<std::string> outputs_;
};

/// forward_backward of the loss `params` belongs to, every tensor of its description passed;
/// `replaced` names the pointers passed instead of the buffers'.
inline int run_every_pointer(BadInputBuffers& b, const describe::Params& params,
                             const Handle& handle, Stream stream,
                             const std::map<std::string, void*>& replaced = {}) {
  const describe::TensorPointers at = [&](std::string_view name) -> void* {
    const auto found = replaced.find(std::string(name));
    return found != replaced.end() ? found->second : b[name];
  };
  return static_cast<int>(describe::run(Pass::kForwardBackward, handle, params, at, b["workspace"],
                                        kBadInputWorkspaceBytes, stream));
}

// ---- C calls: null handle, every pointer set ------------------------------------------------

inline int c_run(BadInputBuffers& b, const contrastive_infonce_params_t& p, const void* q = nullptr,
                 const void* k = nullptr, void* workspace = nullptr,
                 std::size_t workspace_bytes = kBadInputWorkspaceBytes) {
  return contrastive_infonce_forward_backward(
      nullptr, &p, q != nullptr ? q : b["q"], k != nullptr ? k : b["k"], b.f("loss"), b["saved"],
      b.f("grad_loss"), b["grad_q"], b["grad_k"], b.f("grad_temperature"),
      workspace != nullptr ? workspace : b["workspace"], workspace_bytes, nullptr);
}
inline int c_run(BadInputBuffers& b, const contrastive_mnr_per_anchor_params_t& p) {
  return contrastive_mnr_per_anchor_forward_backward(
      nullptr, &p, b["anchors"], b["positives"], b["negatives"], b.f("loss"), b["saved"],
      b.f("grad_loss"), b["grad_anchors"], b["grad_positives"], b["grad_negatives"],
      b.f("grad_scale"), b["workspace"], kBadInputWorkspaceBytes, nullptr);
}
inline int c_run(BadInputBuffers& b, const contrastive_mnr_in_batch_params_t& p,
                 std::size_t workspace_bytes = kBadInputWorkspaceBytes) {
  return contrastive_mnr_in_batch_forward_backward(
      nullptr, &p, b["anchors"], b["candidates"], b.f("loss"), b["saved"], b.f("grad_loss"),
      b["grad_anchors"], b["grad_candidates"], b.f("grad_scale"), b["workspace"], workspace_bytes,
      nullptr);
}
inline int c_run(BadInputBuffers& b, const contrastive_repel_params_t& p,
                 const void* negatives = nullptr) {
  return contrastive_repel_forward_backward(
      nullptr, &p, b["anchors"], negatives != nullptr ? negatives : b["negatives"], b.f("loss"),
      b["saved"], b.f("grad_loss"), b["grad_anchors"], b["grad_negatives"], b["workspace"],
      kBadInputWorkspaceBytes, nullptr);
}

inline int c_run(BadInputBuffers& b, const contrastive_siglip_params_t& p, void* saved = nullptr) {
  return contrastive_siglip_forward_backward(
      nullptr, &p, b["q"], b["k"], b.f("loss"), saved != nullptr ? saved : b["saved"],
      b.f("grad_loss"), b["grad_q"], b["grad_k"], b.f("grad_scale"), b.f("grad_bias"),
      b["workspace"], kBadInputWorkspaceBytes, nullptr);
}

// ---- The cases ------------------------------------------------------------------------------

using BadInputCall = std::function<int(BadInputBuffers&, const Handle&, Stream)>;
using BadInputMessage = std::function<std::string(BadInputBuffers&)>;

struct BadCase {
  const char* name;
  BadInputCall call;
  int status;
  BadInputMessage message;
};

inline void PrintTo(const BadCase& c, std::ostream* out) {
  *out << c.name;
}

inline std::string bad_case_name(const ::testing::TestParamInfo<BadCase>& info) {
  return info.param.name;
}

inline BadInputMessage exactly(std::string message) {
  return [message](BadInputBuffers&) { return message; };
}

constexpr int kInvalid = CONTRASTIVE_INVALID_ARGUMENT, kNull = CONTRASTIVE_NULL_POINTER,
              kMisaligned = CONTRASTIVE_MISALIGNED_POINTER,
              kTooSmall = CONTRASTIVE_WORKSPACE_TOO_SMALL, kUnsupported = CONTRASTIVE_NOT_SUPPORTED;

inline const std::string kBf16Tile =
    "a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), got dtype ";

/// A C++ forward_backward on `valid` edited by `edit`.
template <typename Params, typename Edit>
BadInputCall cpp_call(Params valid, Edit edit) {
  return [valid, edit](BadInputBuffers& b, const Handle& handle, Stream stream) {
    Params p = valid;
    edit(p);
    return run_every_pointer(b, p, handle, stream);
  };
}

/// A C forward_backward (null handle) on `valid` edited by `edit`.
template <typename Params, typename Edit>
BadInputCall c_call(Params valid, Edit edit) {
  return [valid, edit](BadInputBuffers& b, const Handle&, Stream) {
    Params p = valid;
    edit(p);
    return c_run(b, p);
  };
}

/// The fixture of Reliability/BadInput; each loss's contract files instantiate it with their cases.
class BadInput : public ContractFixture<::testing::TestWithParam<BadCase>> {
 protected:
  void SetUp() override {
    ContractFixture::SetUp();
    buffers_ = std::make_unique<BadInputBuffers>(on_device_);
  }

  std::unique_ptr<BadInputBuffers> buffers_;
};

}  // namespace contrastive::testing
