// Indices past 2^31 on the GPU, against float64 references of sampled rows:
//   - InfoNCE and in-batch MNR with B = M = 46341: B M = 2^31 + 4633 logits in one tile (the last
//     row's last 4633 logits lie past 2^31), small D; and in forced tiles of 8192 x 16384. The
//     reference (support/sampled_reference.hpp) is exact at the sampled rows, the last one
//     included, and for every gradient row, with the upstream gradient zero outside the sample.
//   - SigLIP over the same logits, one tile and forced tiles, fused and separate passes.
//   - Per-anchor MNR and Repel with B n D = 33000 x 64 x 1024 > 2^31 elements of negatives: the
//     float64 reference on the sub-problem of the sampled anchors (each anchor's loss and
//     gradients depend on its own candidates only, so this is exact), anchors on both sides of
//     element 2^31 included; unsampled anchors' gradients must be exactly 0.
// Each test skips when cudaMemGetInfo says the problem does not fit, and without a GPU.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "support/anchor_cases.hpp"
#include "support/device.hpp"
#include "support/random.hpp"
#include "support/sampled_reference.hpp"
#include "support/tolerance.hpp"

namespace contrastive {
namespace {

using testing::all_close;

constexpr std::size_t kGiB = std::size_t{1} << 30;
constexpr std::size_t kHeadroom = kGiB;  // cuBLAS, the context, the other tests' small buffers
constexpr std::int64_t kTwoTo31 = std::int64_t{1} << 31;

/// Skips unless `bytes` (plus headroom) fit in the free device memory.
#define SKIP_UNLESS_IT_FITS(bytes)                                                          \
  do {                                                                                      \
    std::size_t free_bytes = 0, total_bytes = 0;                                            \
    ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);                      \
    if ((bytes) + kHeadroom > free_bytes) {                                                 \
      GTEST_SKIP() << "needs " << ((bytes) + kHeadroom) / kGiB << " GiB of device memory, " \
                   << free_bytes / kGiB << " GiB free";                                     \
    }                                                                                       \
  } while (0)

/// A raw device allocation (cudaMalloc, poisoned): DeviceArray's, without the host-sized helpers.
class Buffer {
 public:
  explicit Buffer(std::size_t bytes) : bytes_(bytes) {
    EXPECT_EQ(cudaMalloc(&data_, bytes), cudaSuccess) << bytes << " bytes";
    EXPECT_EQ(cudaMemset(data_, testing::kPoisonByte, bytes), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  ~Buffer() { cudaFree(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  float* floats() const { return static_cast<float*>(data_); }
  void* data() const { return data_; }

  void upload(const std::vector<float>& values) {
    ASSERT_LE(values.size() * sizeof(float), bytes_);
    ASSERT_EQ(
        cudaMemcpy(data_, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice),
        cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // see testing::settle()
  }
  /// `count` floats from element `first` on.
  std::vector<float> floats_at(std::int64_t first, std::int64_t count) const {
    std::vector<float> values(static_cast<std::size_t>(count));
    EXPECT_EQ(cudaMemcpy(values.data(), floats() + first, values.size() * sizeof(float),
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    return values;
  }
  void poison() {
    EXPECT_EQ(cudaMemset(data_, testing::kPoisonByte, bytes_), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

std::size_t workspace_bytes(const infonce::Params& p) {
  std::size_t bytes = 0;
  EXPECT_EQ(infonce::workspace_size(p, &bytes), Status::kSuccess) << last_error_message();
  return bytes;
}

std::size_t workspace_bytes(const mnr::InBatchParams& p) {
  std::size_t bytes = 0;
  EXPECT_EQ(mnr::workspace_size(p, &bytes), Status::kSuccess) << last_error_message();
  return bytes;
}

// ---- InfoNCE and in-batch MNR: 2^31 + 4633 logits ---------------------------------------------

constexpr std::int64_t kRows = 46341;  // 46341^2 = 2^31 + 4633
constexpr std::int64_t kDim = 8;

class LargeIndices : public testing::GpuFixture<> {};

// One configuration: the GPU's forward_backward (or forward, then backward) against the sampled
// reference. `scale_gradient`: in-batch MNR reports dLoss/dscale, InfoNCE dLoss/dtemperature.
struct LogitsRun {
  const char* name;
  bool symmetric;
  std::int64_t tile_rows, tile_cols;
  bool separate_passes;
};

// The inputs of every logits test here: random q and k (B = M = kRows), exact in fp32, on the
// device; sampled rows, the last ones holding the logits past 2^31, and an upstream gradient that
// is zero outside them.
struct LogitsInputs {
  explicit LogitsInputs(std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    q = testing::random_normal_f32(kRows * kDim, engine);
    k = testing::random_normal_f32(kRows * kDim, engine);
    std::vector<float> upstream_values(kRows, 0.0f);
    for (const std::int64_t r : rows) {
      upstream_values[r] = static_cast<float>(0.5 + 0.25 * (r % 5));
    }
    grad_loss.assign(upstream_values.begin(), upstream_values.end());
    q_device.upload(std::vector<float>(q.begin(), q.end()));
    k_device.upload(std::vector<float>(k.begin(), k.end()));
    upstream.upload(upstream_values);
  }
  const std::vector<std::int64_t> rows = {0, 1, kRows / 2, kRows - 2, kRows - 1};
  std::vector<double> q, k, grad_loss;
  Buffer q_device{kRows * kDim * 4}, k_device{kRows * kDim * 4}, upstream{kRows * 4};
};

// Every loss finite; the sampled rows' losses and every row of both gradients as the reference.
void expect_sampled_rows(const testing::SampledInfoNCE& ref, const Buffer& loss,
                         const Buffer& grad_q, const Buffer& grad_k) {
  const std::vector<float> all_loss = loss.floats_at(0, kRows);
  for (std::size_t i = 0; i < all_loss.size(); ++i) {
    ASSERT_TRUE(std::isfinite(all_loss[i])) << "loss[" << i << "] = " << all_loss[i];
  }
  std::vector<float> sampled_loss;
  for (const std::int64_t r : ref.rows) sampled_loss.push_back(all_loss[r]);
  EXPECT_TRUE(all_close(sampled_loss, ref.loss, ref.loss_tolerance, 1)) << "sampled losses";
  EXPECT_TRUE(all_close(grad_q.floats_at(0, kRows * kDim), ref.grad_q, ref.grad_q_tolerance, kDim))
      << "grad_q, every row";
  EXPECT_TRUE(all_close(grad_k.floats_at(0, kRows * kDim), ref.grad_k, ref.grad_k_tolerance, kDim))
      << "grad_k, every row";
}

void expect_sampled(const testing::SampledInfoNCE& ref, double logit_scale, bool scale_gradient,
                    const Buffer& loss, const Buffer& saved, const Buffer& grad_q,
                    const Buffer& grad_k, const Buffer& grad_scalar) {
  expect_sampled_rows(ref, loss, grad_q, grad_k);
  const std::vector<float> lse = saved.floats_at(0, 2 * kRows);  // row lse, then column lse
  std::vector<float> row_lse, col_lse;
  for (const std::int64_t r : ref.rows) {
    row_lse.push_back(lse[r]);
    if (!ref.col_lse.empty()) col_lse.push_back(lse[kRows + r]);
  }
  EXPECT_TRUE(all_close(row_lse, ref.row_lse, ref.lse_tolerance)) << "sampled row lse";
  if (!ref.col_lse.empty()) {
    EXPECT_TRUE(all_close(col_lse, ref.col_lse, ref.lse_tolerance)) << "sampled column lse";
  }
  const double scalar =
      scale_gradient ? ref.sum_grad_logits / logit_scale : -logit_scale * ref.sum_grad_logits;
  const double scalar_tolerance = scale_gradient ? ref.sum_grad_logits_tolerance / logit_scale
                                                 : logit_scale * ref.sum_grad_logits_tolerance;
  EXPECT_TRUE(all_close(grad_scalar.floats_at(0, 1), {scalar}, scalar_tolerance))
      << (scale_gradient ? "grad_scale" : "grad_temperature");
}

TEST_F(LargeIndices, LogitsPastTwoTo31InfoNCEAndInBatchMnr) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  ASSERT_GT(kRows * kRows, kTwoTo31);
  infonce::Params p;
  p.batch = p.num_keys = kRows;
  p.dim = kDim;
  p.reduction = Reduction::kNone;
  p.symmetric = true;
  p.tile_rows = p.tile_cols = kRows;  // one tile: the materialized path, whatever the default
  const std::size_t workspace = workspace_bytes(p);
  ASSERT_GT(workspace, static_cast<std::size_t>(kTwoTo31) * sizeof(float));
  SKIP_UNLESS_IT_FITS(workspace);

  const LogitsInputs in(seed);
  const std::vector<std::int64_t>& rows = in.rows;
  const std::vector<double>&q64 = in.q, &k64 = in.k, &grad_loss64 = in.grad_loss;
  const Buffer &q_device = in.q_device, &k_device = in.k_device, &upstream = in.upstream;
  Buffer loss(kRows * 4), saved(4 * kRows * 4), grad_q(kRows * kDim * 4), grad_k(kRows * kDim * 4),
      scalar(4), scratch(workspace);

  const LogitsRun runs[] = {
      {"rows only, one tile", false, kRows, kRows, false},
      {"symmetric, one tile, forward then backward", true, kRows, kRows, true},
      {"symmetric, 8192 x 16384 tiles", true, 8192, 16384, false}};
  for (const LogitsRun& run : runs) {
    SCOPED_TRACE(std::string("InfoNCE, ") + run.name);
    infonce::Params params = p;
    params.symmetric = run.symmetric;
    params.tile_rows = run.tile_rows;
    params.tile_cols = run.tile_cols;
    ASSERT_LE(workspace_bytes(params), workspace);
    for (Buffer* output : {&loss, &saved, &grad_q, &grad_k, &scalar}) output->poison();
    const infonce::ForwardBackwardArgs args{q_device.data(), k_device.data(),   loss.floats(),
                                            saved.data(),    upstream.floats(), grad_q.data(),
                                            grad_k.data(),   scalar.floats()};
    if (run.separate_passes) {
      ASSERT_EQ(infonce::forward(handle_, params, {args.q, args.k, args.loss, args.saved},
                                 scratch.data(), workspace, stream_),
                Status::kSuccess)
          << last_error_message();
      ASSERT_EQ(infonce::backward(handle_, params,
                                  {args.q, args.k, args.saved, args.grad_loss, args.grad_q,
                                   args.grad_k, args.grad_temperature},
                                  scratch.data(), workspace, stream_),
                Status::kSuccess)
          << last_error_message();
    } else {
      ASSERT_EQ(
          infonce::forward_backward(handle_, params, args, scratch.data(), workspace, stream_),
          Status::kSuccess)
          << last_error_message();
    }
    synchronize();
    const double s = 1.0 / static_cast<double>(params.temperature);
    const testing::SampledInfoNCE ref =
        testing::sampled_infonce(params, s, q64.data(), k64.data(), grad_loss64.data(), rows);
    ASSERT_EQ(ref.rows, rows);
    expect_sampled(ref, s, false, loss, saved, grad_q, grad_k, scalar);
  }

  // In-batch MNR, K = 0: the same loop with a scale (20) and dLoss/dscale.
  mnr::InBatchParams in_batch;
  in_batch.batch = kRows;
  in_batch.hard_negatives = 0;
  in_batch.dim = kDim;
  in_batch.reduction = Reduction::kNone;
  in_batch.symmetric = true;
  in_batch.scale = 20.0f;
  in_batch.tile_rows = in_batch.tile_cols = kRows;
  ASSERT_LE(workspace_bytes(in_batch), workspace);
  SCOPED_TRACE("in-batch MNR, symmetric, one tile");
  for (Buffer* output : {&loss, &saved, &grad_q, &grad_k, &scalar}) output->poison();
  ASSERT_EQ(
      mnr::forward_backward(handle_, in_batch,
                            {q_device.data(), k_device.data(), loss.floats(), saved.data(),
                             upstream.floats(), grad_q.data(), grad_k.data(), scalar.floats()},
                            scratch.data(), workspace, stream_),
      Status::kSuccess)
      << last_error_message();
  synchronize();
  // The reference's view of the same problem: InfoNCE's params (symmetric, none) with the scale.
  const testing::SampledInfoNCE ref =
      testing::sampled_infonce(p, in_batch.scale, q64.data(), k64.data(), grad_loss64.data(), rows);
  expect_sampled(ref, in_batch.scale, true, loss, saved, grad_q, grad_k, scalar);
}

// SigLIP over the same 2^31 + 4633 logits: one tile, and forced 8192 x 16384 tiles, each with
// forward_backward's single walk and with forward then backward, against its sampled reference.
TEST_F(LargeIndices, LogitsPastTwoTo31SigLIP) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  siglip::Params p;
  p.batch = p.num_keys = kRows;
  p.dim = kDim;
  p.reduction = Reduction::kNone;
  p.tile_rows = p.tile_cols = kRows;
  std::size_t workspace = 0;
  ASSERT_EQ(siglip::workspace_size(p, &workspace), Status::kSuccess) << last_error_message();
  ASSERT_GT(workspace, static_cast<std::size_t>(kTwoTo31) * sizeof(float));
  SKIP_UNLESS_IT_FITS(workspace);

  const LogitsInputs in(seed);
  Buffer loss(kRows * 4), saved(2 * kRows * 4), grad_q(kRows * kDim * 4), grad_k(kRows * kDim * 4),
      scale(4), scratch(workspace);
  const testing::SampledInfoNCE ref =
      testing::sampled_siglip(p, in.q.data(), in.k.data(), in.grad_loss.data(), in.rows);
  ASSERT_EQ(ref.rows, in.rows);

  for (const std::int64_t tile_rows : {kRows, std::int64_t{8192}}) {
    for (const bool separate_passes : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "tile rows " << tile_rows
                                        << (separate_passes ? ", forward then backward" : ""));
      siglip::Params params = p;
      params.tile_rows = tile_rows;
      params.tile_cols = tile_rows == kRows ? kRows : 16384;
      for (Buffer* output : {&loss, &saved, &grad_q, &grad_k, &scale}) output->poison();
      const siglip::ForwardBackwardArgs args{
          in.q_device.data(), in.k_device.data(),   loss.floats(),
          saved.data(),       in.upstream.floats(), grad_q.data(),
          grad_k.data(),      scale.floats(),       /*grad_bias=*/nullptr};
      if (separate_passes) {
        ASSERT_EQ(siglip::forward(handle_, params, {args.q, args.k, args.loss, args.saved},
                                  scratch.data(), workspace, stream_),
                  Status::kSuccess)
            << last_error_message();
        ASSERT_EQ(siglip::backward(handle_, params,
                                   {args.q, args.k, args.saved, args.grad_loss, args.grad_q,
                                    args.grad_k, args.grad_scale, nullptr},
                                   scratch.data(), workspace, stream_),
                  Status::kSuccess)
            << last_error_message();
      } else {
        ASSERT_EQ(
            siglip::forward_backward(handle_, params, args, scratch.data(), workspace, stream_),
            Status::kSuccess)
            << last_error_message();
      }
      synchronize();
      expect_sampled_rows(ref, loss, grad_q, grad_k);
      const double t = params.scale;  // dLoss/dt = sum(G * t sim) / t
      EXPECT_TRUE(all_close(scale.floats_at(0, 1), {ref.sum_grad_logits / t},
                            ref.sum_grad_logits_tolerance / t))
          << "grad_scale";
    }
  }
}

// ---- Per-anchor MNR and Repel: B n D > 2^31 elements of negatives --------------------------

constexpr std::int64_t kAnchors = 33000, kNegatives = 64, kWideDim = 1024;
constexpr std::int64_t kPeriod = 16777259;  // a prime: the periodic fill never lines up with rows

/// Values of a large input: a fixed random block repeated with period kPeriod from `phase` on,
/// so the device can be filled by copies and the host can read any element back.
class PeriodicValues {
 public:
  PeriodicValues(std::uint64_t seed) : block_(static_cast<std::size_t>(kPeriod)) {
    std::mt19937_64 engine(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& value : block_) value = normal(engine);
  }
  double at(std::int64_t phase, std::int64_t index) const {
    return block_[static_cast<std::size_t>((index + phase) % kPeriod)];
  }
  /// rows [first, first + count) of `dim` elements, as double.
  std::vector<double> rows(std::int64_t phase, std::int64_t first, std::int64_t count,
                           std::int64_t dim) const {
    std::vector<double> values(static_cast<std::size_t>(count * dim));
    for (std::int64_t i = 0; i < count * dim; ++i) values[i] = at(phase, first * dim + i);
    return values;
  }
  void fill(Buffer& buffer, std::int64_t count, std::int64_t phase) const {
    std::vector<float> rotated(static_cast<std::size_t>(std::min(count, kPeriod)));
    for (std::size_t i = 0; i < rotated.size(); ++i) {
      rotated[i] =
          block_[static_cast<std::size_t>((static_cast<std::int64_t>(i) + phase) % kPeriod)];
    }
    buffer.upload(rotated);
    for (std::int64_t at = kPeriod; at < count; at += kPeriod) {
      const std::int64_t n = std::min(kPeriod, count - at);
      ASSERT_EQ(cudaMemcpy(buffer.floats() + at, buffer.floats(), n * sizeof(float),
                           cudaMemcpyDeviceToDevice),
                cudaSuccess);
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

 private:
  std::vector<float> block_;
};

constexpr std::int64_t kAnchorPhase = 0, kPositivePhase = 5000011, kNegativePhase = 10000019;

/// A margin in the middle of the sampled similarities, at least 1e-5 from each (fp32 rounding
/// must not flip a hinge term).
float middle_margin(std::vector<double> similarities) {
  std::sort(similarities.begin(), similarities.end());
  std::size_t widest = similarities.size() / 4;
  for (std::size_t i = widest; i + 1 < 3 * similarities.size() / 4; ++i) {
    if (similarities[i + 1] - similarities[i] > similarities[widest + 1] - similarities[widest]) {
      widest = i;
    }
  }
  EXPECT_GT(similarities[widest + 1] - similarities[widest], 2e-5);
  return static_cast<float>(0.5 * (similarities[widest] + similarities[widest + 1]));
}

TEST_F(LargeIndices, CandidatesPastTwoTo31PerAnchorMnrAndRepel) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::int64_t negative_elements = kAnchors * kNegatives * kWideDim;
  ASSERT_GT(negative_elements, kTwoTo31);
  const std::int64_t row_elements = kAnchors * kWideDim;
  SKIP_UNLESS_IT_FITS(static_cast<std::size_t>(2 * negative_elements + 4 * row_elements) * 4);

  const PeriodicValues values(seed);
  Buffer anchors(row_elements * 4), positives(row_elements * 4), negatives(negative_elements * 4);
  values.fill(anchors, row_elements, kAnchorPhase);
  values.fill(positives, row_elements, kPositivePhase);
  values.fill(negatives, negative_elements, kNegativePhase);
  Buffer grad_anchors(row_elements * 4), grad_positives(row_elements * 4),
      grad_negatives(negative_elements * 4), loss(kAnchors * kNegatives * 4), saved(kAnchors * 4),
      grad_scale(4), upstream(kAnchors * kNegatives * 4);

  // Anchor 32767's negatives end just below element 2^31, anchor 32768's start at it.
  const std::vector<std::int64_t> sampled = {0, 1, kAnchors / 2, 32767, 32768, kAnchors - 1};
  const std::vector<std::int64_t> unsampled = {2, 32766, 32769, kAnchors - 2};
  ASSERT_EQ(32768 * kNegatives * kWideDim, kTwoTo31);
  const auto count = static_cast<std::int64_t>(sampled.size());
  std::vector<double> sub_anchors, sub_positives, sub_negatives;
  for (const std::int64_t b : sampled) {
    for (double v : values.rows(kAnchorPhase, b, 1, kWideDim)) sub_anchors.push_back(v);
    for (double v : values.rows(kPositivePhase, b, 1, kWideDim)) sub_positives.push_back(v);
    for (double v : values.rows(kNegativePhase, b * kNegatives, kNegatives, kWideDim)) {
      sub_negatives.push_back(v);
    }
  }
  // Rows of `buffer` for the sampled anchors (`per_anchor` rows each), as the sub-problem has them.
  auto sampled_rows = [&](const Buffer& buffer, std::int64_t per_anchor) {
    std::vector<float> out;
    for (const std::int64_t b : sampled) {
      const std::vector<float> rows =
          buffer.floats_at(b * per_anchor * kWideDim, per_anchor * kWideDim);
      out.insert(out.end(), rows.begin(), rows.end());
    }
    return out;
  };
  auto expect_unsampled_zero = [&](const Buffer& buffer, std::int64_t per_anchor,
                                   const char* name) {
    for (const std::int64_t b : unsampled) {
      for (float value : buffer.floats_at(b * per_anchor * kWideDim, per_anchor * kWideDim)) {
        ASSERT_EQ(value, 0.0f) << name << " of unsampled anchor " << b;
      }
    }
  };
  std::mt19937_64 engine(seed ^ 0x5eed);

  {
    SCOPED_TRACE("per-anchor MNR, cosine, scale 20");
    mnr::PerAnchorParams p;
    p.batch = kAnchors;
    p.negatives = kNegatives;
    p.dim = kWideDim;
    p.similarity = Similarity::kCosine;
    p.scale = 20.0f;
    p.reduction = Reduction::kNone;
    std::vector<float> grad_loss(kAnchors, 0.0f);
    testing::MnrInputs sub{sub_anchors, sub_positives, sub_negatives, {}};
    for (const std::int64_t b : sampled) {
      grad_loss[b] = static_cast<float>(testing::random_normal_f32(1, engine)[0]);
      sub.grad_loss.push_back(grad_loss[b]);
    }
    upstream.upload(grad_loss);
    std::size_t workspace = 0;
    ASSERT_EQ(mnr::workspace_size(p, &workspace), Status::kSuccess);
    Buffer scratch(workspace);
    ASSERT_EQ(
        mnr::forward_backward(handle_, p,
                              {anchors.data(), positives.data(), negatives.data(), loss.floats(),
                               saved.data(), upstream.floats(), grad_anchors.data(),
                               grad_positives.data(), grad_negatives.data(), grad_scale.floats()},
                              scratch.data(), workspace, stream_),
        Status::kSuccess)
        << last_error_message();
    synchronize();
    mnr::PerAnchorParams sub_params = p;
    sub_params.batch = count;
    const testing::MnrExpected expected = testing::expected_for(sub_params, sub);
    const std::vector<float> all_loss = loss.floats_at(0, kAnchors);
    const std::vector<float> all_lse = saved.floats_at(0, kAnchors);
    testing::AnchorResults results;
    for (const std::int64_t b : sampled) {
      results.loss.push_back(all_loss[b]);
      results.saved.push_back(all_lse[b]);
    }
    results.grad_anchors = sampled_rows(grad_anchors, 1);
    results.grad_first = sampled_rows(grad_positives, 1);
    results.grad_rest = sampled_rows(grad_negatives, kNegatives);
    results.grad_scale = grad_scale.floats_at(0, 1);
    testing::expect_matches(sub_params, results, expected, true, true);
    for (float value : all_loss) ASSERT_TRUE(std::isfinite(value));
    expect_unsampled_zero(grad_anchors, 1, "grad_anchors");
    expect_unsampled_zero(grad_positives, 1, "grad_positives");
    expect_unsampled_zero(grad_negatives, kNegatives, "grad_negatives");
  }

  {
    SCOPED_TRACE("Repel, reduction none");
    repel::Params p;
    p.batch = kAnchors;
    p.negatives = kNegatives;
    p.dim = kWideDim;
    p.reduction = Reduction::kNone;
    testing::RepelInputs sub{sub_anchors, sub_negatives, {}};
    repel::Params sub_params = p;
    sub_params.batch = count;
    reference::RepelForward similarities;
    ASSERT_EQ(reference::repel_forward(sub_params, sub.anchors.data(), sub.negatives.data(),
                                       &similarities),
              Status::kSuccess);
    p.margin = sub_params.margin = middle_margin(similarities.similarities);
    std::vector<float> grad_loss(kAnchors * kNegatives, 0.0f);
    for (const std::int64_t b : sampled) {
      for (std::int64_t t = 0; t < kNegatives; ++t) {
        grad_loss[b * kNegatives + t] =
            static_cast<float>(testing::random_normal_f32(1, engine)[0]);
        sub.grad_loss.push_back(grad_loss[b * kNegatives + t]);
      }
    }
    upstream.upload(grad_loss);
    for (Buffer* output : {&loss, &saved, &grad_anchors, &grad_negatives}) output->poison();
    std::size_t workspace = 0;
    ASSERT_EQ(repel::workspace_size(p, &workspace), Status::kSuccess);
    Buffer scratch(workspace);
    ASSERT_EQ(
        repel::forward_backward(handle_, p,
                                {anchors.data(), negatives.data(), loss.floats(), saved.data(),
                                 upstream.floats(), grad_anchors.data(), grad_negatives.data()},
                                scratch.data(), workspace, stream_),
        Status::kSuccess)
        << last_error_message();
    synchronize();
    const testing::RepelExpected expected = testing::expected_for(sub_params, sub);
    ASSERT_GT(expected.forward.active_terms, 0.0);
    const std::vector<float> all_terms = loss.floats_at(0, kAnchors * kNegatives);
    testing::AnchorResults results;
    for (const std::int64_t b : sampled) {
      for (std::int64_t t = 0; t < kNegatives; ++t) {
        results.loss.push_back(all_terms[b * kNegatives + t]);
      }
    }
    results.grad_anchors = sampled_rows(grad_anchors, 1);
    results.grad_rest = sampled_rows(grad_negatives, kNegatives);
    // The active count in `saved` covers all B N terms; only the sample's terms are known here.
    EXPECT_TRUE(all_close(results.loss, expected.forward.loss, expected.tolerances.loss, 1))
        << "sampled terms";
    testing::expect_matches(sub_params, results, expected, false, true);
    for (float value : all_terms) ASSERT_TRUE(std::isfinite(value));
    expect_unsampled_zero(grad_anchors, 1, "grad_anchors");
    expect_unsampled_zero(grad_negatives, kNegatives, "grad_negatives");
  }
}

}  // namespace
}  // namespace contrastive
