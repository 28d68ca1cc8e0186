// The C API of MNR (per-anchor and in-batch) and Repel: the params structs start at the C++
// defaults, bad values get the C++ statuses and messages, and a null or foreign handle is reported
// only after the arguments pass, with every output left untouched. Host buffers stand in for
// device ones: none of these calls may launch or write anything.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "support/device.hpp"

extern "C" int contrastive_c_smoke_mnr_per_anchor(int64_t batch, size_t* saved_bytes);
extern "C" int contrastive_c_smoke_mnr_in_batch(int64_t batch, size_t* workspace_bytes);
extern "C" int contrastive_c_smoke_repel(int64_t batch, int* forward_status);

namespace contrastive {
namespace {

constexpr std::int64_t kBatch = 4, kNegatives = 3, kHardNegatives = 1, kDim = 8;
constexpr size_t kUntouched = 77;

contrastive_mnr_per_anchor_params_t valid_per_anchor() {
  contrastive_mnr_per_anchor_params_t params;
  contrastive_mnr_per_anchor_params_init(&params);
  params.batch = kBatch;
  params.negatives = kNegatives;
  params.dim = kDim;
  return params;
}

contrastive_mnr_in_batch_params_t valid_in_batch() {
  contrastive_mnr_in_batch_params_t params;
  contrastive_mnr_in_batch_params_init(&params);
  params.batch = kBatch;
  params.hard_negatives = kHardNegatives;
  params.dim = kDim;
  return params;
}

contrastive_repel_params_t valid_repel() {
  contrastive_repel_params_t params;
  contrastive_repel_params_init(&params);
  params.batch = kBatch;
  params.negatives = kNegatives;
  params.dim = kDim;
  return params;
}

TEST(CApiMnrRepel, HeaderCompilesAsC) {
  size_t bytes = 0;
  EXPECT_EQ(contrastive_c_smoke_mnr_per_anchor(5, &bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(bytes, (2 * 5 + 2 * 5 * 4) * sizeof(float));  // lse, inverse norms, sims
  EXPECT_EQ(contrastive_c_smoke_mnr_per_anchor(-1, &bytes), CONTRASTIVE_INVALID_ARGUMENT);
  bytes = 0;
  EXPECT_EQ(contrastive_c_smoke_mnr_in_batch(5, &bytes), CONTRASTIVE_SUCCESS);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(contrastive_c_smoke_mnr_in_batch(0, &bytes), CONTRASTIVE_INVALID_ARGUMENT);
  int forward_status = -1;
  EXPECT_EQ(contrastive_c_smoke_repel(5, &forward_status), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(forward_status, CONTRASTIVE_NULL_POINTER);  // no anchors given
  EXPECT_STREQ(contrastive_last_error(), "repel::forward: anchors is null");
}

// ---- Defaults --------------------------------------------------------------------------------

TEST(CApiMnrRepel, PerAnchorDefaultsAreTheCppDefaults) {
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

TEST(CApiMnrRepel, InBatchDefaultsAreTheCppDefaults) {
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

TEST(CApiMnrRepel, RepelDefaultsAreTheCppDefaults) {
  contrastive_repel_params_t c;
  c.batch = c.negatives = c.dim = 99;
  c.mean_over_active = 5;
  contrastive_repel_params_init(&c);
  const repel::Params cpp;
  EXPECT_EQ(c.batch, cpp.batch);
  EXPECT_EQ(c.negatives, cpp.negatives);
  EXPECT_EQ(c.dim, cpp.dim);
  EXPECT_EQ(c.anchor_row_stride, cpp.anchor_row_stride);
  EXPECT_EQ(c.negative_row_stride, cpp.negative_row_stride);
  EXPECT_EQ(c.dtype, static_cast<int>(cpp.dtype));
  EXPECT_EQ(c.reduction, static_cast<int>(cpp.reduction));
  EXPECT_EQ(c.mean_over_active, cpp.mean_over_active ? 1 : 0);
  EXPECT_EQ(c.margin, cpp.margin);
  EXPECT_EQ(c.eps, cpp.eps);
  EXPECT_EQ(contrastive_repel_params_init(nullptr), CONTRASTIVE_NULL_POINTER);  // not a crash
  EXPECT_STREQ(contrastive_last_error(), "contrastive_repel_params_init_sized: params is null");
}

// ---- Bad parameters through the C API --------------------------------------------------------

template <typename C>
struct CBadParams {
  const char* name;
  void (*edit)(C&);
  int status;
  const char* message;
};

template <typename C>
void PrintTo(const CBadParams<C>& c, std::ostream* out) {
  *out << c.name;
}

template <typename Case>
std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.name;
}

// check, workspace_size and saved_size of one C params type.
template <typename C>
struct CQueries {
  int (*check)(const C*);
  int (*workspace_size)(const C*, size_t*);
  int (*saved_size)(const C*, size_t*);
};

template <typename C>
void expect_rejected(const CQueries<C>& queries, const C& params, int status, const char* message) {
  EXPECT_EQ(queries.check(&params), status);
  EXPECT_STREQ(contrastive_last_error(), message);
  size_t bytes = kUntouched;
  EXPECT_EQ(queries.workspace_size(&params, &bytes), status);
  EXPECT_STREQ(contrastive_last_error(), message);
  EXPECT_EQ(queries.saved_size(&params, &bytes), status);
  EXPECT_STREQ(contrastive_last_error(), message);
  EXPECT_EQ(bytes, kUntouched);
}

const CQueries<contrastive_mnr_per_anchor_params_t> kPerAnchorQueries{
    contrastive_mnr_per_anchor_check, contrastive_mnr_per_anchor_workspace_size,
    contrastive_mnr_per_anchor_saved_size};
const CQueries<contrastive_mnr_in_batch_params_t> kInBatchQueries{
    contrastive_mnr_in_batch_check, contrastive_mnr_in_batch_workspace_size,
    contrastive_mnr_in_batch_saved_size};
const CQueries<contrastive_repel_params_t> kRepelQueries{
    contrastive_repel_check, contrastive_repel_workspace_size, contrastive_repel_saved_size};

using PerAnchorCase = CBadParams<contrastive_mnr_per_anchor_params_t>;
using InBatchCase = CBadParams<contrastive_mnr_in_batch_params_t>;
using RepelCase = CBadParams<contrastive_repel_params_t>;

class CApiPerAnchorCheck : public ::testing::TestWithParam<PerAnchorCase> {};
class CApiInBatchCheck : public ::testing::TestWithParam<InBatchCase> {};
class CApiRepelCheck : public ::testing::TestWithParam<RepelCase> {};

TEST_P(CApiPerAnchorCheck, NegativeAndUnknownValues) {
  contrastive_mnr_per_anchor_params_t params = valid_per_anchor();
  GetParam().edit(params);
  expect_rejected(kPerAnchorQueries, params, GetParam().status, GetParam().message);
}

TEST_P(CApiInBatchCheck, NegativeAndUnknownValues) {
  contrastive_mnr_in_batch_params_t params = valid_in_batch();
  GetParam().edit(params);
  expect_rejected(kInBatchQueries, params, GetParam().status, GetParam().message);
}

TEST_P(CApiRepelCheck, NegativeAndUnknownValues) {
  contrastive_repel_params_t params = valid_repel();
  GetParam().edit(params);
  expect_rejected(kRepelQueries, params, GetParam().status, GetParam().message);
}

using CP = contrastive_mnr_per_anchor_params_t;
const PerAnchorCase kPerAnchorBad[] = {
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
const InBatchCase kInBatchBad[] = {
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

using CR = contrastive_repel_params_t;
const RepelCase kRepelBad[] = {
    {"NegativeBatch", [](CR& p) { p.batch = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: batch (B) must be >= 1, got -1"},
    {"NegativeNegatives", [](CR& p) { p.negatives = -7; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: negatives (N) must be >= 1, got -7"},
    {"NegativeDim", [](CR& p) { p.dim = -3; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: dim (D) must be >= 1, got -3"},
    {"NegativeAnchorStride", [](CR& p) { p.anchor_row_stride = -1; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: anchor_row_stride (-1) must be 0 (dense) or >= dim (8)"},
    {"NegativeNegativeStride", [](CR& p) { p.negative_row_stride = -2; },
     CONTRASTIVE_INVALID_ARGUMENT,
     "repel: negative_row_stride (-2) must be 0 (dense) or >= dim (8)"},
    {"UnknownDtype", [](CR& p) { p.dtype = 4; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: unknown dtype value 4"},
    {"UnknownReduction", [](CR& p) { p.reduction = -2; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: unknown reduction value -2"},
    {"NaNMargin", [](CR& p) { p.margin = NAN; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: margin must be finite, got nan"},
    {"NegativeEps", [](CR& p) { p.eps = -1.0f; }, CONTRASTIVE_INVALID_ARGUMENT,
     "repel: eps must be finite and > 0, got -1"},
    // Any non-zero int is true, as the header's "0 or 1" flags are read.
    {"MeanOverActiveWithSum",
     [](CR& p) { p.mean_over_active = 2, p.reduction = CONTRASTIVE_REDUCTION_SUM; },
     CONTRASTIVE_INVALID_ARGUMENT, "repel: mean_over_active needs Reduction::kMean"},
    {"TooManyNegatives", [](CR& p) { p.negatives = 4096; }, CONTRASTIVE_NOT_SUPPORTED,
     "repel: at most 2048 negatives per anchor are supported, got 4096"},
};

INSTANTIATE_TEST_SUITE_P(BadParams, CApiPerAnchorCheck, ::testing::ValuesIn(kPerAnchorBad),
                         case_name<PerAnchorCase>);
INSTANTIATE_TEST_SUITE_P(BadParams, CApiInBatchCheck, ::testing::ValuesIn(kInBatchBad),
                         case_name<InBatchCase>);
INSTANTIATE_TEST_SUITE_P(BadParams, CApiRepelCheck, ::testing::ValuesIn(kRepelBad),
                         case_name<RepelCase>);

TEST(CApiMnrRepel, ValidParamsGiveTheCppSizes) {
  size_t c_bytes = 0, cpp_bytes = 0;
  const contrastive_mnr_per_anchor_params_t per_anchor = valid_per_anchor();
  ASSERT_EQ(contrastive_mnr_per_anchor_check(&per_anchor), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(contrastive_mnr_per_anchor_saved_size(&per_anchor, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(c_bytes, (2 * kBatch + 2 * kBatch * (kNegatives + 1)) * sizeof(float));
  mnr::PerAnchorParams per_anchor_cpp;
  per_anchor_cpp.batch = kBatch;
  per_anchor_cpp.negatives = kNegatives;
  per_anchor_cpp.dim = kDim;
  ASSERT_EQ(contrastive_mnr_per_anchor_workspace_size(&per_anchor, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(mnr::workspace_size(per_anchor_cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);

  contrastive_mnr_in_batch_params_t in_batch = valid_in_batch();
  in_batch.symmetric = 1;
  in_batch.tile_cols = 3;
  mnr::InBatchParams in_batch_cpp;
  in_batch_cpp.batch = kBatch;
  in_batch_cpp.hard_negatives = kHardNegatives;
  in_batch_cpp.dim = kDim;
  in_batch_cpp.symmetric = true;
  in_batch_cpp.tile_cols = 3;
  ASSERT_EQ(contrastive_mnr_in_batch_saved_size(&in_batch, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(mnr::saved_size(in_batch_cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);
  ASSERT_EQ(contrastive_mnr_in_batch_workspace_size(&in_batch, &c_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(mnr::workspace_size(in_batch_cpp, &cpp_bytes), Status::kSuccess);
  EXPECT_EQ(c_bytes, cpp_bytes);

  const contrastive_repel_params_t repel_params = valid_repel();
  ASSERT_EQ(contrastive_repel_saved_size(&repel_params, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(c_bytes, (1 + kBatch + 2 * kBatch * kNegatives) * sizeof(float));
  ASSERT_EQ(contrastive_repel_workspace_size(&repel_params, &c_bytes), CONTRASTIVE_SUCCESS);
  EXPECT_GT(c_bytes, 0u);
}

// ---- Null params, null outputs ---------------------------------------------------------------

TEST(CApiMnrRepel, NullParamsAndNullSizeOutputs) {
  size_t bytes = kUntouched;
  EXPECT_EQ(contrastive_mnr_per_anchor_check(nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_mnr_per_anchor_workspace_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_mnr_per_anchor_saved_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_mnr_in_batch_check(nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_mnr_in_batch_workspace_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_mnr_in_batch_saved_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_repel_check(nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_repel_workspace_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(contrastive_repel_saved_size(nullptr, &bytes), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "params is null");
  EXPECT_EQ(bytes, kUntouched);

  const contrastive_mnr_per_anchor_params_t per_anchor = valid_per_anchor();
  const contrastive_mnr_in_batch_params_t in_batch = valid_in_batch();
  const contrastive_repel_params_t repel_params = valid_repel();
  EXPECT_EQ(contrastive_mnr_per_anchor_workspace_size(&per_anchor, nullptr),
            CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "mnr (per-anchor): bytes is null");
  EXPECT_EQ(contrastive_mnr_in_batch_saved_size(&in_batch, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "mnr (in-batch): bytes is null");
  EXPECT_EQ(contrastive_repel_saved_size(&repel_params, nullptr), CONTRASTIVE_NULL_POINTER);
  EXPECT_STREQ(contrastive_last_error(), "repel: bytes is null");
}

// ---- Calls: host buffers, null and foreign handles -------------------------------------------

bool all_nan(const std::vector<float>& values) {
  for (float value : values) {
    if (!std::isnan(value)) return false;
  }
  return true;
}

// Host buffers for every argument of the three losses: inputs 1, outputs NaN.
struct HostBuffers {
  std::vector<float> anchors = std::vector<float>(kBatch * kDim, 1.0f);
  std::vector<float> positives = std::vector<float>(kBatch * kDim, 1.0f);
  std::vector<float> negatives = std::vector<float>(kBatch * kNegatives * kDim, 1.0f);
  std::vector<float> candidates = std::vector<float>((1 + kHardNegatives) * kBatch * kDim, 1.0f);
  std::vector<float> loss = std::vector<float>(kBatch * kNegatives, NAN);
  std::vector<float> saved = std::vector<float>(64, NAN);
  std::vector<float> grad_anchors = std::vector<float>(kBatch * kDim, NAN);
  std::vector<float> grad_positives = std::vector<float>(kBatch * kDim, NAN);
  std::vector<float> grad_negatives = std::vector<float>(kBatch * kNegatives * kDim, NAN);
  std::vector<float> grad_candidates =
      std::vector<float>((1 + kHardNegatives) * kBatch * kDim, NAN);
  float grad_scale = NAN;
  std::vector<unsigned char> workspace;
  bool drop_anchors = false;  // pass null for the anchors

  const float* anchors_or_null() const { return drop_anchors ? nullptr : anchors.data(); }

  bool untouched(bool saved_is_output) const {
    return all_nan(loss) && (!saved_is_output || all_nan(saved)) && all_nan(grad_anchors) &&
           all_nan(grad_positives) && all_nan(grad_negatives) && all_nan(grad_candidates) &&
           std::isnan(grad_scale);
  }
};

enum class Operation { kForward, kBackward, kForwardBackward };
constexpr Operation kOperations[] = {Operation::kForward, Operation::kBackward,
                                     Operation::kForwardBackward};

// One C call of a loss: its params (null to pass none) on HostBuffers.
struct PerAnchorCall {
  contrastive_mnr_per_anchor_params_t params = valid_per_anchor();
  const contrastive_mnr_per_anchor_params_t* params_pointer = &params;
  HostBuffers b;

  PerAnchorCall() {
    size_t bytes = 0;
    EXPECT_EQ(contrastive_mnr_per_anchor_workspace_size(&params, &bytes), CONTRASTIVE_SUCCESS);
    b.workspace.assign(bytes, 0);
  }
  int run(Operation operation, contrastive_handle_t handle) {
    switch (operation) {
      case Operation::kForward:
        return contrastive_mnr_per_anchor_forward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.negatives.data(),
            b.loss.data(), b.saved.data(), b.workspace.data(), b.workspace.size(), nullptr);
      case Operation::kBackward:
        return contrastive_mnr_per_anchor_backward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.negatives.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_positives.data(),
            b.grad_negatives.data(), &b.grad_scale, b.workspace.data(), b.workspace.size(),
            nullptr);
      case Operation::kForwardBackward:
        return contrastive_mnr_per_anchor_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.positives.data(), b.negatives.data(),
            b.loss.data(), b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_positives.data(),
            b.grad_negatives.data(), &b.grad_scale, b.workspace.data(), b.workspace.size(),
            nullptr);
    }
    return -1;
  }
};

struct InBatchCall {
  contrastive_mnr_in_batch_params_t params = valid_in_batch();
  const contrastive_mnr_in_batch_params_t* params_pointer = &params;
  HostBuffers b;

  InBatchCall() {
    size_t bytes = 0;
    EXPECT_EQ(contrastive_mnr_in_batch_workspace_size(&params, &bytes), CONTRASTIVE_SUCCESS);
    b.workspace.assign(bytes, 0);
  }
  int run(Operation operation, contrastive_handle_t handle) {
    switch (operation) {
      case Operation::kForward:
        return contrastive_mnr_in_batch_forward(handle, params_pointer, b.anchors_or_null(),
                                                b.candidates.data(), b.loss.data(), b.saved.data(),
                                                b.workspace.data(), b.workspace.size(), nullptr);
      case Operation::kBackward:
        return contrastive_mnr_in_batch_backward(
            handle, params_pointer, b.anchors_or_null(), b.candidates.data(), b.saved.data(),
            nullptr, b.grad_anchors.data(), b.grad_candidates.data(), &b.grad_scale,
            b.workspace.data(), b.workspace.size(), nullptr);
      case Operation::kForwardBackward:
        return contrastive_mnr_in_batch_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.candidates.data(), b.loss.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_candidates.data(), &b.grad_scale,
            b.workspace.data(), b.workspace.size(), nullptr);
    }
    return -1;
  }
};

struct RepelCall {
  contrastive_repel_params_t params = valid_repel();
  const contrastive_repel_params_t* params_pointer = &params;
  HostBuffers b;

  RepelCall() {
    size_t bytes = 0;
    EXPECT_EQ(contrastive_repel_workspace_size(&params, &bytes), CONTRASTIVE_SUCCESS);
    b.workspace.assign(bytes, 0);
  }
  int run(Operation operation, contrastive_handle_t handle) {
    switch (operation) {
      case Operation::kForward:
        return contrastive_repel_forward(handle, params_pointer, b.anchors_or_null(),
                                         b.negatives.data(), b.loss.data(), b.saved.data(),
                                         b.workspace.data(), b.workspace.size(), nullptr);
      case Operation::kBackward:
        return contrastive_repel_backward(handle, params_pointer, b.anchors_or_null(),
                                          b.negatives.data(), b.saved.data(), nullptr,
                                          b.grad_anchors.data(), b.grad_negatives.data(),
                                          b.workspace.data(), b.workspace.size(), nullptr);
      case Operation::kForwardBackward:
        return contrastive_repel_forward_backward(
            handle, params_pointer, b.anchors_or_null(), b.negatives.data(), b.loss.data(),
            b.saved.data(), nullptr, b.grad_anchors.data(), b.grad_negatives.data(),
            b.workspace.data(), b.workspace.size(), nullptr);
    }
    return -1;
  }
};

// A pointer the library never handed out: looked up, never dereferenced.
contrastive_handle_t foreign_handle() {
  return reinterpret_cast<contrastive_handle_t>(static_cast<std::uintptr_t>(0x10));
}

// Runs `Call`'s three operations with a null and a foreign handle after valid arguments.
template <typename Call>
void expect_handle_reported_after_valid_arguments() {
  for (const Operation operation : kOperations) {
    SCOPED_TRACE(static_cast<int>(operation));
    Call call;
    EXPECT_EQ(call.run(operation, nullptr), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle is null");
    EXPECT_EQ(call.run(operation, foreign_handle()), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
    EXPECT_TRUE(call.b.untouched(operation != Operation::kBackward));
  }
}

TEST(CApiMnrRepel, NullOrForeignHandleIsReportedAfterValidArguments) {
  {
    SCOPED_TRACE("per-anchor");
    expect_handle_reported_after_valid_arguments<PerAnchorCall>();
  }
  {
    SCOPED_TRACE("in-batch");
    expect_handle_reported_after_valid_arguments<InBatchCall>();
  }
  {
    SCOPED_TRACE("repel");
    expect_handle_reported_after_valid_arguments<RepelCall>();
  }
}

// The library's name for a call, e.g. "mnr::forward (per-anchor)".
using CallName = std::string (*)(Operation);

std::string operation_text(Operation operation) {
  const char* names[] = {"forward", "backward", "forward_backward"};
  return names[static_cast<int>(operation)];
}

// Null params, bad params, a missing pointer and a short workspace are each reported as such
// before the (null or foreign) handle, and nothing is written.
template <typename Call>
void expect_arguments_before_handle(void (*break_params)(Call&), const char* params_message,
                                    CallName call_name) {
  for (const Operation operation : kOperations) {
    SCOPED_TRACE(call_name(operation));
    for (const contrastive_handle_t handle : {contrastive_handle_t{nullptr}, foreign_handle()}) {
      Call call;
      call.params_pointer = nullptr;
      EXPECT_EQ(call.run(operation, handle), CONTRASTIVE_NULL_POINTER);
      EXPECT_STREQ(contrastive_last_error(), "params is null");
      call.params_pointer = &call.params;
      const auto valid = call.params;
      break_params(call);
      EXPECT_EQ(call.run(operation, handle), CONTRASTIVE_INVALID_ARGUMENT);
      EXPECT_STREQ(contrastive_last_error(), params_message);
      call.params = valid;
      call.b.drop_anchors = true;
      EXPECT_EQ(call.run(operation, handle), CONTRASTIVE_NULL_POINTER);
      EXPECT_EQ(contrastive_last_error(), call_name(operation) + ": anchors is null");
      call.b.drop_anchors = false;
      const size_t required = call.b.workspace.size();
      call.b.workspace.pop_back();
      EXPECT_EQ(call.run(operation, handle), CONTRASTIVE_WORKSPACE_TOO_SMALL);
      EXPECT_EQ(contrastive_last_error(),
                call_name(operation) + ": workspace of " + std::to_string(required - 1) +
                    " bytes is too small: workspace_size() asks for " + std::to_string(required));
      EXPECT_TRUE(call.b.untouched(operation != Operation::kBackward));
    }
  }
}

TEST(CApiMnrRepel, ArgumentsAreCheckedBeforeTheHandle) {
  expect_arguments_before_handle<PerAnchorCall>(
      [](PerAnchorCall& c) { c.params.negatives = 0; },
      "mnr (per-anchor): negatives (n) must be >= 1, got 0",
      [](Operation operation) { return "mnr::" + operation_text(operation) + " (per-anchor)"; });
  expect_arguments_before_handle<InBatchCall>(
      [](InBatchCall& c) { c.params.scale = -20.0f; },
      "mnr (in-batch): scale must be finite and > 0, got -20",
      [](Operation operation) { return "mnr::" + operation_text(operation) + " (in-batch)"; });
  expect_arguments_before_handle<RepelCall>(
      [](RepelCall& c) { c.params.mean_over_active = 1, c.params.reduction = 2; },
      "repel: mean_over_active needs Reduction::kMean",
      [](Operation operation) { return "repel::" + operation_text(operation); });
}

// With a GPU: a handle that was created and destroyed is reported as destroyed by every family.
TEST(CApiMnrRepel, DestroyedHandleIsReported) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  contrastive_handle_t handle = nullptr;
  ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS) << contrastive_last_error();
  ASSERT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
  for (const Operation operation : kOperations) {
    SCOPED_TRACE(static_cast<int>(operation));
    PerAnchorCall per_anchor;
    EXPECT_EQ(per_anchor.run(operation, handle), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
    InBatchCall in_batch;
    EXPECT_EQ(in_batch.run(operation, handle), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
    RepelCall repel_call;
    EXPECT_EQ(repel_call.run(operation, handle), CONTRASTIVE_INVALID_HANDLE);
    EXPECT_STREQ(contrastive_last_error(), "handle was destroyed (contrastive_destroy)");
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace contrastive
