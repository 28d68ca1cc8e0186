// The loss descriptions (host/describe/losses.hpp) against the library: each tensor's extent is
// what the size queries say, and run() hands every tensor to the argument of its name in each
// pass. With an empty handle the arguments are checked first, so a call with every pointer set
// reaches the handle check, and a null or misaligned pointer is reported under its own name.
#include <cstddef>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "host/describe/losses.hpp"

namespace contrastive {
namespace describe {
inline void PrintTo(const Loss& loss, std::ostream* out) {
  *out << loss.name;
}
}  // namespace describe
namespace {

using describe::Role;

constexpr Pass kPasses[] = {Pass::kForward, Pass::kBackward, Pass::kForwardBackward};

bool used_by(const describe::Tensor& tensor, Pass pass) {
  switch (tensor.role) {
    case Role::kLoss: return computes_loss(pass);
    case Role::kUpstreamGradient:
    case Role::kGradient:
    case Role::kScalarGradient: return computes_gradients(pass);
    default: return true;
  }
}

/// Host buffers for every tensor of one loss (the calls stop before the handle, nothing is read).
class Buffers {
 public:
  explicit Buffers(const describe::Params& params) {
    for (const describe::Tensor& tensor : describe::loss_of(params).tensors) {
      const describe::Extent e = describe::extent(params, tensor.name);
      blocks_[tensor.name].assign(static_cast<std::size_t>(e.elements()) + 4, 0.0f);
    }
    std::size_t bytes = 0;
    EXPECT_EQ(describe::workspace_size(params, &bytes), Status::kSuccess);
    workspace_.assign(bytes, 0);
  }
  void* operator()(std::string_view name) {
    if (name == null_) return nullptr;
    float* data = blocks_.at(std::string(name)).data();
    if (name == misaligned_) return reinterpret_cast<char*>(data) + 2;
    return data;
  }
  Status run(Pass pass, const describe::Params& params) {
    return describe::run(
        pass, Handle{}, params, [this](std::string_view name) { return (*this)(name); },
        workspace_.data(), workspace_.size(), nullptr);
  }
  std::string null_, misaligned_;

 private:
  std::map<std::string, std::vector<float>> blocks_;
  std::vector<unsigned char> workspace_;
};

class Description : public ::testing::TestWithParam<describe::Loss> {};

TEST_P(Description, ExtentsAgreeWithTheSizeQueries) {
  const describe::Params params = GetParam().params(describe::Shape{});
  ASSERT_STREQ(describe::loss_of(params).name, GetParam().name)
      << "the Params alternatives and all_losses() in one order";
  ASSERT_EQ(describe::check(params), Status::kSuccess) << last_error_message();
  std::size_t saved_bytes = 0;
  ASSERT_EQ(describe::saved_size(params, &saved_bytes), Status::kSuccess);
  EXPECT_EQ(describe::extent(params, "saved").rows * 4, static_cast<std::int64_t>(saved_bytes));
  for (const describe::Tensor& tensor : GetParam().tensors) {
    const describe::Extent e = describe::extent(params, tensor.name);
    SCOPED_TRACE(tensor.name);
    EXPECT_GE(e.rows, 1);
    if (tensor.role == Role::kGradient) {
      const describe::Extent input = describe::extent(params, tensor.gradient_of);
      EXPECT_EQ(e.rows, input.rows);
      EXPECT_EQ(e.cols, input.cols);
      EXPECT_EQ(e.stride, e.cols) << "gradients are dense";
    }
  }
}

TEST_P(Description, RunPassesEveryTensorUnderItsName) {
  const describe::Params params = GetParam().params(describe::Shape{});
  for (const Pass pass : kPasses) {
    SCOPED_TRACE(static_cast<int>(pass));
    Buffers buffers(params);
    EXPECT_EQ(buffers.run(pass, params), Status::kInvalidHandle) << last_error_message();
    for (const describe::Tensor& tensor : GetParam().tensors) {
      if (!used_by(tensor, pass)) continue;
      SCOPED_TRACE(tensor.name);
      const bool required =
          tensor.role == Role::kInput || tensor.role == Role::kLoss || tensor.role == Role::kSaved;
      if (required) {
        buffers.null_ = tensor.name;
        EXPECT_EQ(buffers.run(pass, params), Status::kNullPointer);
        EXPECT_NE(std::string(last_error_message()).find(std::string(tensor.name) + " is null"),
                  std::string::npos)
            << last_error_message();
        buffers.null_.clear();
      }
      buffers.misaligned_ = tensor.name;
      EXPECT_EQ(buffers.run(pass, params), Status::kMisalignedPointer);
      EXPECT_NE(std::string(last_error_message()).find(std::string(tensor.name) + " ("),
                std::string::npos)
          << last_error_message();
      buffers.misaligned_.clear();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryLoss, Description, ::testing::ValuesIn(describe::all_losses()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace contrastive
