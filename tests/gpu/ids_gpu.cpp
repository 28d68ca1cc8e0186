// InfoNCE and in-batch MNR with ids on the GPU (the masked softmax heads) against the float64
// reference of ids: masking, the false-negative threshold, multi-positive with and without
// self-exclusion (SupCon, NT-Xent), symmetric; int32 and int64 ids; f32, bf16 (f32 and bf16
// logits) and f16; one tile and tiles narrower than the matrix; every output poisoned before each
// call; forward, backward and forward_backward; a bitwise repeat. The threshold runs in f32 only:
// in 16 bits the rounding of a similarity can move a key across the threshold, where the
// reference's float64 similarity does not. Each test skips, with the reason, when no GPU is usable.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "contrastive/ids.hpp"
#include "contrastive/reference.hpp"
#include "support/device.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using ids::IdOptions;
using ids::IdType;
using testing::DeviceArray;
using testing::DeviceTensor;

struct IdsCase {
  std::string name;
  std::int64_t batch, num_keys, offset, dim;
  IdOptions options;
  DType dtype = DType::kF32;
  DType logits_dtype = DType::kF32;
  bool symmetric = false;
  bool same_rows = false;  // Q = rows [offset, offset + B) of K
  Reduction reduction = Reduction::kMean;
  Similarity similarity = Similarity::kCosine;
  std::int64_t tile_rows = 0, tile_cols = 0;
  std::int64_t id_classes = 4;
};

void PrintTo(const IdsCase& c, std::ostream* out) {
  *out << c.name;
}

IdOptions options(IdType type, bool multi, bool exclude_self, bool threshold, float margin) {
  IdOptions o;
  o.type = type;
  o.multi_positive = multi;
  o.exclude_self = exclude_self;
  o.false_negative_threshold = threshold;
  o.false_negative_margin = margin;
  return o;
}

// The tolerance on the loss and on each gradient's largest error relative to its largest entry.
double tolerance(const IdsCase& c) {
  return c.dtype == DType::kF32 && c.logits_dtype == DType::kF32 ? 2e-4 : 4e-2;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double scale = std::max(max_abs(want), 1e-6);
  for (std::size_t e = 0; e < got.size(); ++e) {
    ASSERT_TRUE(std::isfinite(got[e])) << what << " element " << e << " is " << got[e];
    EXPECT_NEAR(got[e], want[e], tol * scale) << what << " element " << e;
  }
}

// The values as the dtype holds them (the inputs are exact in it, so the reference sees the same).
void round_to(DType dtype, std::vector<double>* values) {
  const std::vector<unsigned char> bytes = testing::encode(dtype, *values);
  const std::vector<float> rounded = testing::decode(dtype, bytes.data(), values->size());
  values->assign(rounded.begin(), rounded.end());
}

class IdsGpu : public testing::GpuFixture<::testing::TestWithParam<IdsCase>> {};

std::vector<std::uint8_t> bytes_of_ids(const std::vector<std::int64_t>& ids, IdType type) {
  std::vector<std::uint8_t> bytes;
  if (type == IdType::kInt64) {
    bytes.resize(ids.size() * 8);
    std::memcpy(bytes.data(), ids.data(), bytes.size());
  } else {
    std::vector<std::int32_t> narrow(ids.begin(), ids.end());
    bytes.resize(narrow.size() * 4);
    std::memcpy(bytes.data(), narrow.data(), bytes.size());
  }
  return bytes;
}

TEST_P(IdsGpu, MatchesTheReferenceInEveryPass) {
  const IdsCase& c = GetParam();
  const std::int64_t b = c.batch, m = c.num_keys, d = c.dim;
  std::mt19937_64 engine(std::hash<std::string>{}(c.name));
  std::vector<double> k = testing::random_normal(static_cast<std::size_t>(m * d), engine);
  round_to(c.dtype, &k);
  std::vector<double> q(k.begin() + c.offset * d, k.begin() + (c.offset + b) * d);
  if (!c.same_rows) {
    q = testing::random_normal(static_cast<std::size_t>(b * d), engine);
    round_to(c.dtype, &q);
  }
  std::uniform_int_distribution<std::int64_t> draw(0, c.id_classes - 1);
  std::vector<std::int64_t> kid(m), qid(b);
  for (auto& x : kid) x = draw(engine) * 7919 - 3;
  for (std::int64_t i = 0; i < b; ++i)
    qid[i] = c.same_rows ? kid[i + c.offset] : draw(engine) * 7919 - 3;

  infonce::Params p;
  p.batch = b;
  p.num_keys = m;
  p.dim = d;
  p.positive_offset = c.offset;
  p.dtype = c.dtype;
  p.logits_dtype = c.logits_dtype;
  p.similarity = c.similarity;
  p.reduction = c.reduction;
  p.temperature = 0.1f;
  p.symmetric = c.symmetric;
  p.tile_rows = c.tile_rows;
  p.tile_cols = c.tile_cols;
  p.ids = c.options;
  ASSERT_EQ(infonce::check(p), Status::kSuccess) << last_error_message();
  std::size_t workspace_bytes = 0, saved_bytes = 0;
  ASSERT_EQ(infonce::workspace_size(p, &workspace_bytes), Status::kSuccess);
  ASSERT_EQ(infonce::saved_size(p, &saved_bytes), Status::kSuccess);

  const auto want = [&] {
    reference::IdsForward out;
    EXPECT_EQ(reference::infonce_ids_forward(p, c.options, q.data(), k.data(), qid.data(),
                                             kid.data(), &out),
              Status::kSuccess)
        << last_error_message();
    return out;
  }();
  const std::size_t losses = c.reduction == Reduction::kNone ? b : 1;
  std::vector<double> upstream64(losses);
  std::vector<float> upstream(losses);
  for (std::size_t r = 0; r < losses; ++r) upstream64[r] = upstream[r] = 0.75f + 0.125f * (r % 5);
  const auto want_grad = [&] {
    reference::InfoNCEBackward out;
    EXPECT_EQ(reference::infonce_ids_backward(p, c.options, q.data(), k.data(), qid.data(),
                                              kid.data(), upstream64.data(), &out),
              Status::kSuccess)
        << last_error_message();
    return out;
  }();

  DeviceTensor dq(c.dtype, q.size()), dk(c.dtype, k.size()), grad_q(c.dtype, q.size()),
      grad_k(c.dtype, k.size());
  dq.upload(q);
  dk.upload(k);
  const std::vector<std::uint8_t> qid_bytes = bytes_of_ids(qid, c.options.type);
  const std::vector<std::uint8_t> kid_bytes = bytes_of_ids(kid, c.options.type);
  DeviceArray<std::uint8_t> dqid(qid_bytes.size()), dkid(kid_bytes.size());
  dqid.upload(qid_bytes);
  dkid.upload(kid_bytes);
  DeviceArray<float> loss(losses), saved(saved_bytes / 4 + 1), grad_loss(losses), grad_t(1);
  DeviceArray<unsigned char> workspace(workspace_bytes);
  grad_loss.upload(upstream);
  const void* query_ids = c.options.type == IdType::kNone ? nullptr : dqid.data();
  const void* key_ids = c.options.type == IdType::kNone ? nullptr : dkid.data();
  const double tol = tolerance(c);

  auto check_loss = [&] {
    const std::vector<float> got = loss.download();
    for (std::size_t r = 0; r < losses; ++r) {
      EXPECT_NEAR(got[r], want.loss[r], tol * (1.0 + std::abs(want.loss[r]))) << "loss " << r;
    }
  };
  auto check_grads = [&] {
    expect_close(grad_q.download(), want_grad.grad_q, tol, "grad_q");
    expect_close(grad_k.download(), want_grad.grad_k, tol, "grad_k");
    const float got_t = grad_t.download()[0];
    EXPECT_NEAR(got_t, want_grad.grad_temperature,
                tol * (1.0 + std::abs(want_grad.grad_temperature)))
        << "grad_temperature";
  };

  // forward, then backward from what it saved
  infonce::ForwardArgs forward{dq.data(), dk.data(), loss.data(), saved.data()};
  forward.query_ids = query_ids;
  forward.key_ids = key_ids;
  ASSERT_EQ(infonce::forward(handle_, p, forward, workspace.data(), workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  check_loss();
  infonce::BackwardArgs backward{dq.data(),     dk.data(),     saved.data(), grad_loss.data(),
                                 grad_q.data(), grad_k.data(), grad_t.data()};
  backward.query_ids = query_ids;
  backward.key_ids = key_ids;
  workspace.poison();
  ASSERT_EQ(infonce::backward(handle_, p, backward, workspace.data(), workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  check_grads();

  // forward_backward into poisoned outputs, twice: the same bits
  std::vector<float> first_q;
  for (int repeat = 0; repeat < 2; ++repeat) {
    loss.poison();
    saved.poison();
    grad_q.poison();
    grad_k.poison();
    grad_t.poison();
    workspace.poison();
    infonce::ForwardBackwardArgs both{dq.data(),     dk.data(),        loss.data(),
                                      saved.data(),  grad_loss.data(), grad_q.data(),
                                      grad_k.data(), grad_t.data()};
    both.query_ids = query_ids;
    both.key_ids = key_ids;
    ASSERT_EQ(
        infonce::forward_backward(handle_, p, both, workspace.data(), workspace_bytes, stream_),
        Status::kSuccess)
        << last_error_message();
    synchronize();
    check_loss();
    check_grads();
    const std::vector<float> got_q = grad_q.download();
    if (repeat == 0) {
      first_q = got_q;
    } else {
      EXPECT_EQ(std::memcmp(first_q.data(), got_q.data(), got_q.size() * sizeof(float)), 0)
          << "forward_backward is not bitwise repeatable";
    }
  }
}

std::vector<IdsCase> cases() {
  std::vector<IdsCase> out;
  auto add = [&](IdsCase c) { out.push_back(c); };
  add({"MaskInt32", 33, 70, 5, 64, options(IdType::kInt32, false, false, false, 0.0f)});
  IdsCase tiled{
      "MaskInt64Tiled", 100, 300, 17, 40, options(IdType::kInt64, false, false, false, 0)};
  tiled.tile_rows = 32;
  tiled.tile_cols = 96;
  add(tiled);
  IdsCase threshold{
      "ThresholdTiled", 50, 130, 3, 33, options(IdType::kNone, false, false, true, -0.1f)};
  threshold.tile_rows = 16;
  threshold.tile_cols = 40;
  add(threshold);
  IdsCase both{
      "MaskAndThresholdDot", 20, 20, 0, 16, options(IdType::kInt64, false, false, true, 0.05f)};
  both.similarity = Similarity::kDot;
  add(both);
  IdsCase symmetric{"SymmetricMaskThresholdNone",
                    40,
                    90,
                    10,
                    24,
                    options(IdType::kInt32, false, false, true, 0.0f)};
  symmetric.symmetric = true;
  symmetric.reduction = Reduction::kNone;
  symmetric.tile_rows = 16;
  symmetric.tile_cols = 32;
  add(symmetric);
  IdsCase ntxent{"NtXentInt64", 64, 64, 0, 32, options(IdType::kInt64, true, true, false, 0)};
  ntxent.same_rows = true;
  ntxent.id_classes = 32;
  add(ntxent);
  IdsCase supcon{
      "SupConSparseTiledSum", 90, 90, 0, 48, options(IdType::kInt32, true, true, false, 0)};
  supcon.same_rows = true;
  supcon.id_classes = 60;  // some rows without a positive
  supcon.tile_rows = 32;
  supcon.tile_cols = 40;
  add(supcon);
  IdsCase supcon_mean = supcon;
  supcon_mean.name = "SupConSparseTiledMean";
  supcon_mean.reduction = Reduction::kMean;
  add(supcon_mean);
  IdsCase multi_bf16{
      "MultiBf16LogitsTiled", 64, 128, 32, 64, options(IdType::kInt64, true, false, false, 0)};
  multi_bf16.dtype = DType::kBF16;
  multi_bf16.logits_dtype = DType::kBF16;
  multi_bf16.tile_rows = 32;
  multi_bf16.tile_cols = 48;
  add(multi_bf16);
  IdsCase mask_f16{"MaskF16", 48, 96, 8, 64, options(IdType::kInt32, false, false, false, 0)};
  mask_f16.dtype = DType::kF16;
  add(mask_f16);
  IdsCase mask_bf16{
      "MaskBf16SymmetricTiled", 40, 40, 0, 32, options(IdType::kInt64, false, false, false, 0)};
  mask_bf16.dtype = DType::kBF16;
  mask_bf16.symmetric = true;
  mask_bf16.tile_rows = 16;
  mask_bf16.tile_cols = 24;
  add(mask_bf16);
  IdsCase none{"NoPositiveAnywhere", 12, 12, 0, 16, options(IdType::kInt64, true, true, false, 0)};
  none.same_rows = true;
  none.id_classes = 1000000;
  add(none);
  IdsCase single{"OneRowItsOwnOnlyKey", 1, 1, 0, 8, options(IdType::kInt32, true, true, false, 0)};
  single.same_rows = true;
  add(single);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Ids, IdsGpu, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// In-batch MNR with ids: anchor and candidate ids, hard negatives, bf16.
class MnrIdsGpu : public testing::GpuFixture<> {};

TEST_F(MnrIdsGpu, DuplicatesLeaveTheDenominator) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(static_cast<int>(dtype));
    mnr::InBatchParams p;
    p.batch = 24;
    p.hard_negatives = 2;
    p.dim = 32;
    p.dtype = dtype;
    p.ids.type = IdType::kInt64;
    const std::int64_t b = p.batch, n = (1 + p.hard_negatives) * b, d = p.dim;
    std::mt19937_64 engine(11);
    std::vector<double> a = testing::random_normal(b * d, engine),
                        cand = testing::random_normal(n * d, engine);
    round_to(dtype, &a);
    round_to(dtype, &cand);
    std::vector<std::int64_t> aid(b), cid(n);
    for (std::int64_t i = 0; i < b; ++i) aid[i] = i % 7;
    for (std::int64_t j = 0; j < n; ++j) cid[j] = j % 5;
    reference::IdsForward want;
    ASSERT_EQ(reference::mnr_in_batch_ids_forward(p, p.ids, a.data(), cand.data(), aid.data(),
                                                  cid.data(), &want),
              Status::kSuccess);
    reference::MnrInBatchBackward want_grad;
    ASSERT_EQ(reference::mnr_in_batch_ids_backward(p, p.ids, a.data(), cand.data(), aid.data(),
                                                   cid.data(), nullptr, &want_grad),
              Status::kSuccess);
    std::size_t workspace_bytes = 0, saved_bytes = 0;
    ASSERT_EQ(mnr::workspace_size(p, &workspace_bytes), Status::kSuccess);
    ASSERT_EQ(mnr::saved_size(p, &saved_bytes), Status::kSuccess);
    DeviceTensor da(dtype, a.size()), dc(dtype, cand.size()), ga(dtype, a.size()),
        gc(dtype, cand.size());
    da.upload(a);
    dc.upload(cand);
    DeviceArray<std::int64_t> daid(b), dcid(n);
    daid.upload(aid);
    dcid.upload(cid);
    DeviceArray<float> loss(1), saved(saved_bytes / 4 + 1), gs(1);
    DeviceArray<unsigned char> workspace(workspace_bytes);
    mnr::InBatchForwardBackwardArgs args{da.data(), dc.data(), loss.data(), saved.data(),
                                         nullptr,   ga.data(), gc.data(),   gs.data()};
    args.anchor_ids = daid.data();
    args.candidate_ids = dcid.data();
    ASSERT_EQ(mnr::forward_backward(handle_, p, args, workspace.data(), workspace_bytes, stream_),
              Status::kSuccess)
        << last_error_message();
    synchronize();
    const double tol = dtype == DType::kF32 ? 2e-4 : 4e-2;
    EXPECT_NEAR(loss.download()[0], want.loss[0], tol * (1.0 + std::abs(want.loss[0])));
    expect_close(ga.download(), want_grad.grad_anchors, tol, "grad_anchors");
    expect_close(gc.download(), want_grad.grad_candidates, tol, "grad_candidates");
    EXPECT_NEAR(gs.download()[0], want_grad.grad_scale,
                tol * (1.0 + std::abs(want_grad.grad_scale)));
  }
}

}  // namespace
}  // namespace contrastive
