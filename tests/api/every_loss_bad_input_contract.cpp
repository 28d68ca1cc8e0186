// Bad input through a full forward_backward call of every loss, in both APIs: zero sizes, zero and
// non-finite scalars, strides below the row width, extents that overflow 64 bits, unsupported
// logits dtypes, too many candidates, misaligned rows, null pointers, short workspaces (the list in
// docs/reliability.md). Each gets its exact status and message; nothing is launched or written
// (every output, and `saved`, keeps its poison); no CUDA error is left behind. Without a GPU the
// calls get an empty handle and host buffers (arguments are checked before the handle); with one,
// a real handle and device buffers. The C API calls pass a null handle: their arguments must be
// reported first.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "support/contract.hpp"
#include "support/device.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::Block;
using testing::shifted;

constexpr std::int64_t kBatch = 8, kNegatives = 3, kHardNegatives = 2, kDim = 16;
constexpr std::size_t kBlockBytes = 8192;                      // any argument of the shapes above
constexpr std::size_t kWorkspaceBytes = std::size_t{4} << 20;  // more than any of them needs
constexpr std::int64_t kHugeStride = std::int64_t{1} << 62;    // (B - 1) * stride overflows

const char* const kInputs[] = {"q",         "k",          "anchors",  "positives",
                               "negatives", "candidates", "grad_loss"};
const char* const kOutputs[] = {"loss",           "saved",           "grad_q",
                                "grad_k",         "grad_anchors",    "grad_positives",
                                "grad_negatives", "grad_candidates", "grad_scalar"};

/// One poisoned block per argument (inputs then filled with random floats), and the workspace.
class Buffers {
 public:
  explicit Buffers(bool on_device) {
    std::mt19937_64 engine(testing::test_seed());
    for (const char* name : kInputs) {
      blocks_[name] = std::make_unique<Block>(kBlockBytes, on_device);
      const std::vector<double> values = testing::random_normal(kBlockBytes / 4, engine);
      blocks_[name]->fill_floats(std::vector<float>(values.begin(), values.end()));
    }
    for (const char* name : kOutputs)
      blocks_[name] = std::make_unique<Block>(kBlockBytes, on_device);
    blocks_["workspace"] = std::make_unique<Block>(kWorkspaceBytes, on_device);
  }
  void* operator[](const std::string& name) { return blocks_.at(name)->data(); }
  float* f(const std::string& name) { return static_cast<float*>((*this)[name]); }
  const Block& block(const std::string& name) const { return *blocks_.at(name); }

 private:
  std::map<std::string, std::unique_ptr<Block>> blocks_;
};

// A valid problem of each loss; cases edit one thing.
infonce::Params infonce_params() {
  infonce::Params p;
  p.batch = p.num_keys = kBatch;
  p.dim = kDim;
  return p;
}
mnr::PerAnchorParams per_anchor_params() {
  mnr::PerAnchorParams p;
  p.batch = kBatch;
  p.negatives = kNegatives;
  p.dim = kDim;
  return p;
}
mnr::InBatchParams in_batch_params() {
  mnr::InBatchParams p;
  p.batch = kBatch;
  p.hard_negatives = kHardNegatives;
  p.dim = kDim;
  return p;
}
repel::Params repel_params() {
  repel::Params p;
  p.batch = kBatch;
  p.negatives = kNegatives;
  p.dim = kDim;
  return p;
}

// ---- C++ calls: forward_backward with every pointer set --------------------------------------

int run(Buffers& b, const infonce::Params& p, const Handle& handle, Stream stream) {
  return static_cast<int>(
      infonce::forward_backward(handle, p,
                                {b["q"], b["k"], b.f("loss"), b["saved"], b.f("grad_loss"),
                                 b["grad_q"], b["grad_k"], b.f("grad_scalar")},
                                b["workspace"], kWorkspaceBytes, stream));
}
int run(Buffers& b, const mnr::PerAnchorParams& p, const Handle& handle, Stream stream,
        void* negatives = nullptr, void* grad_negatives = nullptr) {
  return static_cast<int>(mnr::forward_backward(
      handle, p,
      {b["anchors"], b["positives"], negatives != nullptr ? negatives : b["negatives"], b.f("loss"),
       b["saved"], b.f("grad_loss"), b["grad_anchors"], b["grad_positives"],
       grad_negatives != nullptr ? grad_negatives : b["grad_negatives"], b.f("grad_scalar")},
      b["workspace"], kWorkspaceBytes, stream));
}
int run(Buffers& b, const mnr::InBatchParams& p, const Handle& handle, Stream stream) {
  return static_cast<int>(mnr::forward_backward(
      handle, p,
      {b["anchors"], b["candidates"], b.f("loss"), b["saved"], b.f("grad_loss"), b["grad_anchors"],
       b["grad_candidates"], b.f("grad_scalar")},
      b["workspace"], kWorkspaceBytes, stream));
}
int run(Buffers& b, const repel::Params& p, const Handle& handle, Stream stream,
        void* negatives = nullptr) {
  return static_cast<int>(repel::forward_backward(
      handle, p,
      {b["anchors"], negatives != nullptr ? negatives : b["negatives"], b.f("loss"), b["saved"],
       b.f("grad_loss"), b["grad_anchors"], b["grad_negatives"]},
      b["workspace"], kWorkspaceBytes, stream));
}

// ---- C calls: null handle, host-side params ---------------------------------------------------

contrastive_infonce_params_t c_infonce() {
  contrastive_infonce_params_t p;
  contrastive_infonce_params_init(&p);
  p.batch = p.num_keys = kBatch;
  p.dim = kDim;
  return p;
}
contrastive_mnr_per_anchor_params_t c_per_anchor() {
  contrastive_mnr_per_anchor_params_t p;
  contrastive_mnr_per_anchor_params_init(&p);
  p.batch = kBatch;
  p.negatives = kNegatives;
  p.dim = kDim;
  return p;
}
contrastive_mnr_in_batch_params_t c_in_batch() {
  contrastive_mnr_in_batch_params_t p;
  contrastive_mnr_in_batch_params_init(&p);
  p.batch = kBatch;
  p.hard_negatives = kHardNegatives;
  p.dim = kDim;
  return p;
}
contrastive_repel_params_t c_repel() {
  contrastive_repel_params_t p;
  contrastive_repel_params_init(&p);
  p.batch = kBatch;
  p.negatives = kNegatives;
  p.dim = kDim;
  return p;
}

int c_run(Buffers& b, const contrastive_infonce_params_t& p, const void* q = nullptr,
          const void* k = nullptr, void* workspace = nullptr,
          std::size_t workspace_bytes = kWorkspaceBytes) {
  return contrastive_infonce_forward_backward(
      nullptr, &p, q != nullptr ? q : b["q"], k != nullptr ? k : b["k"], b.f("loss"), b["saved"],
      b.f("grad_loss"), b["grad_q"], b["grad_k"], b.f("grad_scalar"),
      workspace != nullptr ? workspace : b["workspace"], workspace_bytes, nullptr);
}
int c_run(Buffers& b, const contrastive_mnr_per_anchor_params_t& p) {
  return contrastive_mnr_per_anchor_forward_backward(
      nullptr, &p, b["anchors"], b["positives"], b["negatives"], b.f("loss"), b["saved"],
      b.f("grad_loss"), b["grad_anchors"], b["grad_positives"], b["grad_negatives"],
      b.f("grad_scalar"), b["workspace"], kWorkspaceBytes, nullptr);
}
int c_run(Buffers& b, const contrastive_mnr_in_batch_params_t& p,
          std::size_t workspace_bytes = kWorkspaceBytes) {
  return contrastive_mnr_in_batch_forward_backward(
      nullptr, &p, b["anchors"], b["candidates"], b.f("loss"), b["saved"], b.f("grad_loss"),
      b["grad_anchors"], b["grad_candidates"], b.f("grad_scalar"), b["workspace"], workspace_bytes,
      nullptr);
}
int c_run(Buffers& b, const contrastive_repel_params_t& p, const void* negatives = nullptr) {
  return contrastive_repel_forward_backward(
      nullptr, &p, b["anchors"], negatives != nullptr ? negatives : b["negatives"], b.f("loss"),
      b["saved"], b.f("grad_loss"), b["grad_anchors"], b["grad_negatives"], b["workspace"],
      kWorkspaceBytes, nullptr);
}

// ---- The cases ------------------------------------------------------------------------------

using Call = std::function<int(Buffers&, const Handle&, Stream)>;
using Message = std::function<std::string(Buffers&)>;

struct BadCase {
  const char* name;
  Call call;
  int status;
  Message message;
};

void PrintTo(const BadCase& c, std::ostream* out) {
  *out << c.name;
}

Message text(std::string message) {
  return [message](Buffers&) { return message; };
}

constexpr int kInvalid = CONTRASTIVE_INVALID_ARGUMENT, kNull = CONTRASTIVE_NULL_POINTER,
              kMisaligned = CONTRASTIVE_MISALIGNED_POINTER,
              kTooSmall = CONTRASTIVE_WORKSPACE_TOO_SMALL, kUnsupported = CONTRASTIVE_NOT_SUPPORTED;

template <typename Params, typename Edit>
Call cpp(Params (*make)(), Edit edit) {
  return [make, edit](Buffers& b, const Handle& handle, Stream stream) {
    Params p = make();
    edit(p);
    return run(b, p, handle, stream);
  };
}

template <typename Params, typename Edit>
Call c(Params (*make)(), Edit edit) {
  return [make, edit](Buffers& b, const Handle&, Stream) {
    Params p = make();
    edit(p);
    return c_run(b, p);
  };
}

std::vector<BadCase> bad_cases() {
  using IP = infonce::Params;
  using PP = mnr::PerAnchorParams;
  using BP = mnr::InBatchParams;
  using RP = repel::Params;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::string bf16_tile =
      "a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), got dtype ";
  return {
      // C++ API, InfoNCE
      {"CppInfoNCEZeroKeys", cpp(infonce_params, [](IP& p) { p.num_keys = 0; }), kInvalid,
       text("infonce: num_keys (M = 0) must be >= batch (B = 8)")},
      {"CppInfoNCEInfiniteTemperature", cpp(infonce_params, [inf](IP& p) { p.temperature = inf; }),
       kInvalid, text("infonce: temperature must be finite and > 0, got inf")},
      {"CppInfoNCEZeroEps", cpp(infonce_params, [](IP& p) { p.eps = 0.0f; }), kInvalid,
       text("infonce: eps must be finite and > 0, got 0")},
      {"CppInfoNCEKStrideBelowDim", cpp(infonce_params, [](IP& p) { p.k_row_stride = 15; }),
       kInvalid, text("infonce: k_row_stride (15) must be 0 (dense) or >= dim (16)")},
      {"CppInfoNCEBf16LogitsWithF32Inputs",
       cpp(infonce_params, [](IP& p) { p.logits_dtype = DType::kBF16; }), kUnsupported,
       text("infonce: " + bf16_tile + "f32")},
      {"CppInfoNCEBf16LogitsWithF16Inputs",
       cpp(infonce_params, [](IP& p) { p.dtype = DType::kF16, p.logits_dtype = DType::kBF16; }),
       kUnsupported, text("infonce: " + bf16_tile + "f16")},
      {"CppInfoNCEExtentOverflows64Bits",
       cpp(infonce_params, [](IP& p) { p.q_row_stride = kHugeStride; }), kInvalid,
       text("infonce: the extent of Q or K in bytes overflows 64 bits (strides "
            "4611686018427387904, 16)")},
      // C++ API, per-anchor MNR
      {"CppPerAnchorZeroNegatives", cpp(per_anchor_params, [](PP& p) { p.negatives = 0; }),
       kInvalid, text("mnr (per-anchor): negatives (n) must be >= 1, got 0")},
      {"CppPerAnchorZeroScale", cpp(per_anchor_params, [](PP& p) { p.scale = 0.0f; }), kInvalid,
       text("mnr (per-anchor): scale must be finite and > 0, got 0")},
      {"CppPerAnchorNaNScale", cpp(per_anchor_params, [nan](PP& p) { p.scale = nan; }), kInvalid,
       text("mnr (per-anchor): scale must be finite and > 0, got nan")},
      {"CppPerAnchorInfiniteScale", cpp(per_anchor_params, [inf](PP& p) { p.scale = inf; }),
       kInvalid, text("mnr (per-anchor): scale must be finite and > 0, got inf")},
      {"CppPerAnchorPositiveStrideBelowDim",
       cpp(per_anchor_params, [](PP& p) { p.positive_row_stride = 15; }), kInvalid,
       text("mnr (per-anchor): positive_row_stride (15) must be 0 (dense) or >= dim (16)")},
      {"CppPerAnchorExtentOverflows64Bits",
       cpp(per_anchor_params, [](PP& p) { p.negative_row_stride = kHugeStride; }), kInvalid,
       text("mnr (per-anchor): the extent of the inputs in bytes overflows 64 bits")},
      {"CppPerAnchorTooManyNegatives", cpp(per_anchor_params, [](PP& p) { p.negatives = 2048; }),
       kUnsupported,
       text("mnr (per-anchor): at most 2047 negatives per anchor are supported, got 2048")},
      {"CppPerAnchorMisalignedF16GradNegatives",
       [](Buffers& b, const Handle& handle, Stream stream) {
         PP p = per_anchor_params();
         p.dtype = DType::kF16;
         return run(b, p, handle, stream, nullptr, shifted(b["grad_negatives"]));
       },
       kMisaligned,
       [](Buffers& b) {
         return testing::misaligned_message("mnr::forward_backward (per-anchor)", "grad_negatives",
                                            shifted(b["grad_negatives"]), 2);
       }},
      // C++ API, in-batch MNR
      {"CppInBatchNaNScale", cpp(in_batch_params, [nan](BP& p) { p.scale = nan; }), kInvalid,
       text("mnr (in-batch): scale must be finite and > 0, got nan")},
      {"CppInBatchNegativeHardNegatives",
       cpp(in_batch_params, [](BP& p) { p.hard_negatives = -1; }), kInvalid,
       text("mnr (in-batch): hard_negatives (K) must be >= 0, got -1")},
      {"CppInBatchCandidateStrideBelowDim",
       cpp(in_batch_params, [](BP& p) { p.candidate_row_stride = 1; }), kInvalid,
       text("mnr (in-batch): candidate_row_stride (1) must be 0 (dense) or >= dim (16)")},
      {"CppInBatchBf16LogitsWithF32Inputs",
       cpp(in_batch_params, [](BP& p) { p.logits_dtype = DType::kBF16; }), kUnsupported,
       text("mnr (in-batch): " + bf16_tile + "f32")},
      {"CppInBatchCandidatesPastTwoTo31",
       cpp(in_batch_params, [](BP& p) { p.hard_negatives = (std::int64_t{1} << 31) / kBatch - 1; }),
       kInvalid,
       text("mnr (in-batch): (1 + K) B candidates and D must each be < 2^31 (B = 8, K = "
            "268435455, D = 16)")},
      // C++ API, Repel
      {"CppRepelZeroNegatives", cpp(repel_params, [](RP& p) { p.negatives = 0; }), kInvalid,
       text("repel: negatives (N) must be >= 1, got 0")},
      {"CppRepelZeroDim", cpp(repel_params, [](RP& p) { p.dim = 0; }), kInvalid,
       text("repel: dim (D) must be >= 1, got 0")},
      {"CppRepelInfiniteMargin", cpp(repel_params, [inf](RP& p) { p.margin = inf; }), kInvalid,
       text("repel: margin must be finite, got inf")},
      {"CppRepelNegativeInfiniteMargin", cpp(repel_params, [inf](RP& p) { p.margin = -inf; }),
       kInvalid, text("repel: margin must be finite, got -inf")},
      {"CppRepelNaNEps", cpp(repel_params, [nan](RP& p) { p.eps = nan; }), kInvalid,
       text("repel: eps must be finite and > 0, got nan")},
      {"CppRepelAnchorStrideBelowDim", cpp(repel_params, [](RP& p) { p.anchor_row_stride = 8; }),
       kInvalid, text("repel: anchor_row_stride (8) must be 0 (dense) or >= dim (16)")},
      {"CppRepelExtentOverflows64Bits",
       cpp(repel_params, [](RP& p) { p.negative_row_stride = kHugeStride; }), kInvalid,
       text("repel: the extent of the inputs in bytes overflows 64 bits")},
      {"CppRepelMisalignedBf16Negatives",
       [](Buffers& b, const Handle& handle, Stream stream) {
         RP p = repel_params();
         p.dtype = DType::kBF16;
         return run(b, p, handle, stream, shifted(b["negatives"]));
       },
       kMisaligned,
       [](Buffers& b) {
         return testing::misaligned_message("repel::forward_backward", "negatives",
                                            shifted(b["negatives"]), 2);
       }},
      // C API (null handle: the arguments are reported first)
      {"CInfoNCENaNTemperature",
       c(c_infonce, [nan](contrastive_infonce_params_t& p) { p.temperature = nan; }), kInvalid,
       text("infonce: temperature must be finite and > 0, got nan")},
      {"CInfoNCEBf16LogitsWithF32Inputs",
       c(c_infonce,
         [](contrastive_infonce_params_t& p) { p.logits_dtype = CONTRASTIVE_DTYPE_BF16; }),
       kUnsupported, text("infonce: " + bf16_tile + "f32")},
      {"CInfoNCEExtentOverflows64Bits",
       c(c_infonce, [](contrastive_infonce_params_t& p) { p.k_row_stride = kHugeStride; }),
       kInvalid,
       text("infonce: the extent of Q or K in bytes overflows 64 bits (strides 16, "
            "4611686018427387904)")},
      {"CInfoNCENullQ",
       [](Buffers& b, const Handle&, Stream) {
         const contrastive_infonce_params_t p = c_infonce();
         return contrastive_infonce_forward_backward(
             nullptr, &p, nullptr, b["k"], b.f("loss"), b["saved"], b.f("grad_loss"), b["grad_q"],
             b["grad_k"], b.f("grad_scalar"), b["workspace"], kWorkspaceBytes, nullptr);
       },
       kNull, text("infonce::forward_backward: q is null")},
      {"CInfoNCEMisalignedK",
       [](Buffers& b, const Handle&, Stream) {
         return c_run(b, c_infonce(), nullptr, shifted(b["k"]));
       },
       kMisaligned,
       [](Buffers& b) {
         return testing::misaligned_message("infonce::forward_backward", "k", shifted(b["k"]), 4);
       }},
      {"CInfoNCEWorkspaceNullWithSize",
       [](Buffers& b, const Handle&, Stream) {
         const contrastive_infonce_params_t p = c_infonce();
         return contrastive_infonce_forward_backward(
             nullptr, &p, b["q"], b["k"], b.f("loss"), b["saved"], b.f("grad_loss"), b["grad_q"],
             b["grad_k"], b.f("grad_scalar"), nullptr, 4096, nullptr);
       },
       kNull, text(testing::workspace_null_message("infonce::forward_backward", 4096))},
      {"CPerAnchorNaNScale",
       c(c_per_anchor, [nan](contrastive_mnr_per_anchor_params_t& p) { p.scale = nan; }), kInvalid,
       text("mnr (per-anchor): scale must be finite and > 0, got nan")},
      {"CPerAnchorNoGradientRequested",
       [](Buffers& b, const Handle&, Stream) {
         const contrastive_mnr_per_anchor_params_t p = c_per_anchor();
         return contrastive_mnr_per_anchor_backward(nullptr, &p, b["anchors"], b["positives"],
                                                    b["negatives"], b["saved"], b.f("grad_loss"),
                                                    nullptr, nullptr, nullptr, nullptr,
                                                    b["workspace"], kWorkspaceBytes, nullptr);
       },
       kNull,
       text("mnr::backward (per-anchor): grad_anchors, grad_positives, grad_negatives and "
            "grad_scale are all null: nothing to compute")},
      {"CInBatchZeroScale",
       c(c_in_batch, [](contrastive_mnr_in_batch_params_t& p) { p.scale = 0.0f; }), kInvalid,
       text("mnr (in-batch): scale must be finite and > 0, got 0")},
      {"CInBatchWorkspaceOneByteShort",
       [](Buffers& b, const Handle&, Stream) {
         const contrastive_mnr_in_batch_params_t p = c_in_batch();
         std::size_t required = 0;
         EXPECT_EQ(contrastive_mnr_in_batch_workspace_size(&p, &required), CONTRASTIVE_SUCCESS);
         return c_run(b, p, required - 1);
       },
       kTooSmall,
       [](Buffers&) {
         const contrastive_mnr_in_batch_params_t p = c_in_batch();
         std::size_t required = 0;
         EXPECT_EQ(contrastive_mnr_in_batch_workspace_size(&p, &required), CONTRASTIVE_SUCCESS);
         return testing::workspace_too_small_message("mnr::forward_backward (in-batch)",
                                                     required - 1, required);
       }},
      {"CRepelInfiniteMargin", c(c_repel, [inf](contrastive_repel_params_t& p) { p.margin = inf; }),
       kInvalid, text("repel: margin must be finite, got inf")},
      {"CRepelExtentOverflows64Bits",
       c(c_repel, [](contrastive_repel_params_t& p) { p.anchor_row_stride = kHugeStride; }),
       kInvalid, text("repel: the extent of the inputs in bytes overflows 64 bits")},
      {"CRepelMisalignedNegatives",
       [](Buffers& b, const Handle&, Stream) {
         return c_run(b, c_repel(), shifted(b["negatives"]));
       },
       kMisaligned,
       [](Buffers& b) {
         return testing::misaligned_message("repel::forward_backward", "negatives",
                                            shifted(b["negatives"]), 4);
       }},
  };
}

class BadInput : public testing::ContractFixture<::testing::TestWithParam<BadCase>> {
 protected:
  void SetUp() override {
    ContractFixture::SetUp();
    buffers_ = std::make_unique<Buffers>(on_device_);
  }

  std::unique_ptr<Buffers> buffers_;
};

TEST_P(BadInput, ReturnsItsStatusAndMessageAndTouchesNothing) {
  const BadCase& c = GetParam();
  EXPECT_EQ(c.call(*buffers_, handle_, stream_), c.status)
      << contrastive_status_string(c.status) << " expected; " << last_error_message();
  EXPECT_EQ(std::string(last_error_message()), c.message(*buffers_));
  for (const char* name : kOutputs) {
    EXPECT_TRUE(buffers_->block(name).untouched()) << name << " was written";
  }
  if (on_device_) {
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a CUDA error was left behind";
  }
}

INSTANTIATE_TEST_SUITE_P(Reliability, BadInput, ::testing::ValuesIn(bad_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// Every status the API can return has a name, and the C and C++ names agree; a value outside
// the enum is "unknown status", never null.
TEST(BadInputStatus, EveryValueHasAName) {
  for (int value = -2; value <= CONTRASTIVE_INTERNAL_ERROR + 2; ++value) {
    ASSERT_NE(contrastive_status_string(value), nullptr);
    if (value < CONTRASTIVE_SUCCESS || value > CONTRASTIVE_INTERNAL_ERROR) {
      EXPECT_STREQ(contrastive_status_string(value), "unknown status");
    }
  }
}

}  // namespace
}  // namespace contrastive
