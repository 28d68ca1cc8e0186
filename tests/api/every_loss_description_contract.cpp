// The loss descriptions (host/describe/losses.hpp) against the library: each tensor's extent is
// what the size queries say, and run() hands every tensor to the argument of its name in each
// pass. With an empty handle the arguments are checked first, so a call with every pointer set
// reaches the handle check, and a null or misaligned pointer is reported under its own name. Ids
// are required and checked with an id type only, and ignored without one. The compile-time
// tables the C API, the Python bindings and the fuzz harness are built from agree with
// all_losses(), and each loss's field list covers its C params struct.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
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
  return describe::takes(pass, tensor.role);
}

/// Host buffers for every tensor of one loss (the calls stop before the handle, nothing is read).
class Buffers {
 public:
  explicit Buffers(const describe::Params& params) {
    for (const describe::Tensor& tensor : describe::loss_of(params).tensors) {
      const describe::Extent e = describe::extent(params, tensor.name);
      // Ids may be int64: two floats each.
      const std::size_t floats =
          static_cast<std::size_t>(e.elements()) * (tensor.role == Role::kIds ? 2 : 1);
      blocks_[tensor.name].assign(floats + 4, 0.0f);
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

// The n-th ids belong to the n-th input: one id per row (query or anchor rows, then key or
// candidate rows), and only the losses with id options have them.
TEST_P(Description, IdsHaveOneIdPerRowOfTheirInput) {
  describe::Params params = GetParam().params(describe::Shape{});
  std::vector<const describe::Tensor*> inputs, ids;
  for (const describe::Tensor& tensor : GetParam().tensors) {
    if (tensor.role == Role::kInput) inputs.push_back(&tensor);
    if (tensor.role == Role::kIds) ids.push_back(&tensor);
  }
  ASSERT_EQ(ids.empty(), describe::id_options(params) == nullptr);
  EXPECT_EQ(describe::id_bytes(params), 0u);
  if (ids.empty()) return;
  ASSERT_EQ(ids.size(), inputs.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(ids[i]->name);
    const describe::Extent e = describe::extent(params, ids[i]->name);
    EXPECT_EQ(e.rows, describe::extent(params, inputs[i]->name).rows);
    EXPECT_EQ(e.cols, 1);
    EXPECT_EQ(e.elements(), e.rows);
  }
  describe::id_options(params)->type = ids::IdType::kInt32;
  EXPECT_EQ(describe::id_bytes(params), 4u);
  describe::id_options(params)->type = ids::IdType::kInt64;
  EXPECT_EQ(describe::id_bytes(params), 8u);
}

TEST_P(Description, RunPassesEveryTensorUnderItsName) {
  const describe::Params plain = GetParam().params(describe::Shape{});
  for (const Pass pass : kPasses) {
    SCOPED_TRACE(static_cast<int>(pass));
    Buffers plain_buffers(plain);
    EXPECT_EQ(plain_buffers.run(pass, plain), Status::kInvalidHandle) << last_error_message();
    for (const describe::Tensor& tensor : GetParam().tensors) {
      if (!used_by(tensor, pass)) continue;
      SCOPED_TRACE(tensor.name);
      describe::Params params = plain;
      if (tensor.role == Role::kIds) {
        // Without an id type the ids are not read: null or misaligned, the call goes on.
        plain_buffers.null_ = tensor.name;
        EXPECT_EQ(plain_buffers.run(pass, plain), Status::kInvalidHandle) << last_error_message();
        plain_buffers.null_.clear();
        plain_buffers.misaligned_ = tensor.name;
        EXPECT_EQ(plain_buffers.run(pass, plain), Status::kInvalidHandle) << last_error_message();
        plain_buffers.misaligned_.clear();
        describe::id_options(params)->type = ids::IdType::kInt64;  // then they are required
      }
      Buffers buffers(params);
      EXPECT_EQ(buffers.run(pass, params), Status::kInvalidHandle) << last_error_message();
      const bool required = tensor.role == Role::kInput || tensor.role == Role::kLoss ||
                            tensor.role == Role::kSaved || tensor.role == Role::kIds;
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

TEST_P(Description, RowStridesAndGroupsBelongToTheInputs) {
  describe::Params params = GetParam().params(describe::Shape{});
  std::visit(
      [&](auto& p) {
        for (const describe::Tensor& tensor : GetParam().tensors) {
          SCOPED_TRACE(tensor.name);
          std::int64_t* stride = describe::row_stride(p, tensor.name);
          const describe::Extent before = describe::extent(p, tensor.name);
          if (tensor.role != Role::kInput) {
            EXPECT_EQ(stride, nullptr);
            EXPECT_EQ(before.group, 0);
            continue;
          }
          ASSERT_NE(stride, nullptr);
          if (before.group != 0) {
            EXPECT_EQ(before.rows % before.group, 0);
          }
          *stride = before.cols + 3;
          EXPECT_EQ(describe::extent(p, tensor.name).stride, before.cols + 3);
          EXPECT_EQ(describe::check(p), Status::kSuccess) << last_error_message();
        }
      },
      params);
}

template <typename P>
void expect_tables_agree(const describe::Loss& loss) {
  using D = describe::Described<P>;
  EXPECT_STREQ(D::name, loss.name);
  EXPECT_STREQ(D::api, loss.api);
  ASSERT_EQ(std::size(D::tensors), loss.tensors.size());
  for (std::size_t i = 0; i < loss.tensors.size(); ++i) {
    EXPECT_STREQ(D::tensors[i].name, loss.tensors[i].name);
    EXPECT_EQ(D::tensors[i].role, loss.tensors[i].role);
  }
  for (const Pass pass : kPasses) {
    const auto taken = describe::arguments<P>(pass);
    std::size_t expected = 0;
    for (std::size_t i = 0; i < loss.tensors.size(); ++i) {
      if (!used_by(loss.tensors[i], pass)) continue;
      ASSERT_LT(expected, taken.count);
      EXPECT_EQ(taken.index[expected++], i) << "the arguments of a pass keep the tensors' order";
    }
    EXPECT_EQ(taken.count, expected);
  }
}

TEST_P(Description, CompileTimeTablesAgree) {
  const describe::Params params = GetParam().params(describe::Shape{});
  std::visit([&](const auto& p) { expect_tables_agree<std::decay_t<decltype(p)>>(GetParam()); },
             params);
  for (const describe::Loss& other : describe::all_losses()) {
    if (other.name != std::string(GetParam().name)) {
      EXPECT_STRNE(other.api, GetParam().api);
    }
  }
}

// Each field list names every field of the C struct: their sizes, the 8-byte header, the 4-byte
// reserved field and the device scalars' pointers (which the C++ API takes in its args) add up to
// the struct (none of the layouts has padding but SigLIP's explicit reserved_2).
#define CONTRASTIVE_FIELD_BYTES(field) +sizeof(C::field)
template <typename C>
constexpr std::size_t kHeaderAndReserved = sizeof(C::struct_size) + sizeof(C::magic) +
                                           sizeof(C::reserved);
TEST(DescriptionFields, CoverTheCParamsStructs) {
  {
    using C = contrastive_infonce_params_t;
    EXPECT_EQ(kHeaderAndReserved<C> CONTRASTIVE_INFONCE_FIELDS(CONTRASTIVE_FIELD_BYTES) +
                  sizeof(C::temperature_device),
              sizeof(C));
  }
  {
    using C = contrastive_mnr_per_anchor_params_t;
    EXPECT_EQ(kHeaderAndReserved<C> CONTRASTIVE_MNR_PER_ANCHOR_FIELDS(CONTRASTIVE_FIELD_BYTES) +
                  sizeof(C::scale_device),
              sizeof(C));
  }
  {
    using C = contrastive_mnr_in_batch_params_t;
    EXPECT_EQ(kHeaderAndReserved<C> CONTRASTIVE_MNR_IN_BATCH_FIELDS(CONTRASTIVE_FIELD_BYTES) +
                  sizeof(C::scale_device),
              sizeof(C));
  }
  {
    using C = contrastive_repel_params_t;
    EXPECT_EQ(kHeaderAndReserved<C> CONTRASTIVE_REPEL_FIELDS(CONTRASTIVE_FIELD_BYTES), sizeof(C));
  }
  {
    using C = contrastive_siglip_params_t;
    EXPECT_EQ(kHeaderAndReserved<C> CONTRASTIVE_SIGLIP_FIELDS(CONTRASTIVE_FIELD_BYTES) +
                  sizeof(C::reserved_2) + sizeof(C::scale_device) + sizeof(C::bias_device),
              sizeof(C));
  }
}
#undef CONTRASTIVE_FIELD_BYTES

INSTANTIATE_TEST_SUITE_P(EveryLoss, Description, ::testing::ValuesIn(describe::all_losses()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace contrastive
