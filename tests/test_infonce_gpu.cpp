// InfoNCE on the GPU against the float64 reference: awkward shapes, temperatures 0.01 / 0.1 / 1,
// cosine and dot, symmetric on and off, every reduction, offsets, strided rows and forced small
// tiles. Fresh random inputs every run; every output poisoned with NaN before each call.
// Each test skips, with the reason, when no GPU is usable.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "examples/seed_inputs.hpp"
#include "support/device.hpp"
#include "support/random.hpp"
#include "support/tolerance.hpp"

namespace contrastive {
namespace {

using testing::all_close;
using testing::DeviceArray;
using testing::kFp32UnitRoundoff;

struct GpuCase {
  std::int64_t batch, num_keys, dim;
  Similarity similarity;
  bool symmetric;
  float temperature;
  Reduction reduction;
  std::int64_t offset;
  std::int64_t tile_rows, tile_cols;  // 0: one tile
  std::int64_t row_padding;           // row stride = dim + padding

  infonce::Params params() const {
    infonce::Params p;
    p.batch = batch;
    p.num_keys = num_keys;
    p.dim = dim;
    p.similarity = similarity;
    p.symmetric = symmetric;
    p.temperature = temperature;
    p.reduction = reduction;
    p.positive_offset = offset;
    p.tile_rows = tile_rows;
    p.tile_cols = tile_cols;
    p.q_row_stride = row_padding == 0 ? 0 : dim + row_padding;
    p.k_row_stride = row_padding == 0 ? 0 : dim + 2 * row_padding;
    return p;
  }
};

std::string case_name(const GpuCase& c) {
  const char* reductions[] = {"mean", "sum", "none"};
  std::string temperature = std::to_string(c.temperature);
  temperature.erase(temperature.find_last_not_of('0') + 1);
  if (temperature.back() == '.') temperature.pop_back();
  std::replace(temperature.begin(), temperature.end(), '.', 'p');
  std::string name = "B" + std::to_string(c.batch) + "_M" + std::to_string(c.num_keys) + "_D" +
                     std::to_string(c.dim) + "_" +
                     (c.similarity == Similarity::kCosine ? "cosine" : "dot") +
                     (c.symmetric ? "_symmetric" : "") + "_t" + temperature + "_" +
                     reductions[static_cast<int>(c.reduction)];
  if (c.offset != 0) name += "_offset" + std::to_string(c.offset);
  if (c.tile_rows != 0) {
    name += "_tile" + std::to_string(c.tile_rows) + "x" + std::to_string(c.tile_cols);
  }
  if (c.row_padding != 0) name += "_pad" + std::to_string(c.row_padding);
  return name;
}

std::string test_name(const ::testing::TestParamInfo<GpuCase>& info) {
  return case_name(info.param);
}

void PrintTo(const GpuCase& c, std::ostream* out) {
  *out << case_name(c);
}

// Shapes from the awkward sizes (B, M in 1, 2, 3, 7, 33, 127, 1000, 4097; D in 1, 3, 64, 768,
// 1000), kept small enough for the float64 reference. Every shape runs cosine and dot, symmetric
// when square, at the three temperatures; reductions, offsets, forced tiles and row padding rotate.
std::vector<GpuCase> gpu_cases() {
  const std::int64_t shapes[][3] = {
      {1, 1, 1},       {1, 7, 3},        {2, 2, 64},      {3, 3, 1000},    {3, 127, 3},
      {7, 7, 768},     {7, 33, 1},       {33, 33, 64},    {33, 1000, 768}, {127, 127, 1000},
      {127, 4097, 64}, {1000, 1000, 64}, {1000, 4097, 3}, {4097, 4097, 1}};
  const float temperatures[] = {0.01f, 0.1f, 1.0f};
  const Reduction reductions[] = {Reduction::kMean, Reduction::kSum, Reduction::kNone};
  std::vector<GpuCase> cases;
  int rotation = 0;
  for (const auto& shape : shapes) {
    const std::int64_t b = shape[0], m = shape[1], d = shape[2];
    for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
      for (bool symmetric : {false, true}) {
        if (symmetric && b != m) continue;
        for (float temperature : temperatures) {
          GpuCase c{b, m, d, similarity, symmetric, temperature, reductions[rotation % 3],
                    0, 0, 0, 0};
          if (!symmetric && m > b) c.offset = rotation % 2 == 0 ? m - b : (m - b) / 2;
          if (rotation % 4 == 3) {  // ragged multi-tile walk: both edges partial
            c.tile_rows = std::max<std::int64_t>(1, b / 3 + 1);
            c.tile_cols = std::max<std::int64_t>(1, m / 2 + 1);
          }
          if (rotation % 5 == 4) c.row_padding = 3;
          cases.push_back(c);
          ++rotation;
        }
      }
    }
  }
  return cases;
}

// ---- Inputs and the reference -------------------------------------------------------------------

struct Inputs {
  std::vector<double> q, k, grad_loss;  // q (B, q_stride), k (M, k_stride) as fp32-exact doubles
};

std::int64_t stride_of(std::int64_t stride, std::int64_t dim) {
  return stride == 0 ? dim : stride;
}

// Gaussian rows; for dot, scaled to norms between 0.5 and 2 so that logits stay O(1/t) as with
// real embeddings. Padding is NaN: the library must never read it.
Inputs make_inputs(const infonce::Params& p, std::mt19937_64& engine) {
  Inputs in;
  std::uniform_real_distribution<double> row_scale(0.5, 2.0);
  auto fill = [&](std::int64_t rows, std::int64_t stride) {
    std::vector<double> values(static_cast<std::size_t>(rows * stride), NAN);
    const std::vector<double> normal = testing::random_normal(rows * p.dim, engine);
    for (std::int64_t r = 0; r < rows; ++r) {
      const double scale = p.similarity == Similarity::kDot
                               ? row_scale(engine) / std::sqrt(static_cast<double>(p.dim))
                               : 1.0;
      for (std::int64_t c = 0; c < p.dim; ++c) {
        values[r * stride + c] = static_cast<float>(normal[r * p.dim + c] * scale);
      }
    }
    return values;
  };
  in.q = fill(p.batch, stride_of(p.q_row_stride, p.dim));
  in.k = fill(p.num_keys, stride_of(p.k_row_stride, p.dim));
  in.grad_loss = testing::random_normal_f32(p.reduction == Reduction::kNone ? p.batch : 1, engine);
  return in;
}

std::vector<float> to_float(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

std::vector<double> round_to_float(const std::vector<double>& values) {
  const std::vector<float> rounded = to_float(values);
  return std::vector<double>(rounded.begin(), rounded.end());
}

double row_norm(const std::vector<double>& x, std::int64_t row, std::int64_t stride,
                std::int64_t dim) {
  double squares = 0.0;
  for (std::int64_t c = 0; c < dim; ++c) squares += x[row * stride + c] * x[row * stride + c];
  return std::sqrt(squares);
}

// ---- Tolerances (the policy is in support/tolerance.hpp) ----------------------------------------

struct Tolerances {
  std::vector<double> loss;    // per loss element
  double lse = 0.0;            // per row / column log-sum-exp
  std::vector<double> grad_q;  // per row of grad_q
  std::vector<double> grad_k;  // per row of grad_k
  double grad_temperature = 0.0;
};

constexpr double kSafety = 8.0;

Tolerances infonce_tolerances(const infonce::Params& p, const Inputs& in,
                              const reference::InfoNCEForward& fwd,
                              const reference::InfoNCEBackward& bwd) {
  const double u = kFp32UnitRoundoff;
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim;
  const std::int64_t q_stride = stride_of(p.q_row_stride, d),
                     k_stride = stride_of(p.k_row_stride, d);
  const bool cosine = p.similarity == Similarity::kCosine;
  const double inverse_temperature = 1.0 / p.temperature;
  // Norms of the rows the GEMMs see (1 for cosine) and what the normalization divides by.
  std::vector<double> q_rows(b, 1.0), k_rows(m, 1.0), q_divisor(b, 1.0), k_divisor(m, 1.0);
  double q_max = 0.0, k_max = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    const double norm = row_norm(in.q, i, q_stride, d);
    if (cosine)
      q_divisor[i] = std::max(norm, static_cast<double>(p.eps));
    else
      q_rows[i] = norm;
    q_max = std::max(q_max, q_rows[i]);
  }
  for (std::int64_t j = 0; j < m; ++j) {
    const double norm = row_norm(in.k, j, k_stride, d);
    if (cosine)
      k_divisor[j] = std::max(norm, static_cast<double>(p.eps));
    else
      k_rows[j] = norm;
    k_max = std::max(k_max, k_rows[j]);
  }
  // A logit from a D-long fp32 dot product, then its log-sum-exp over M fp32 terms.
  const double logit_error =
      kSafety * std::sqrt(static_cast<double>(d)) * u * inverse_temperature * q_max * k_max;
  const double row_error = 2.0 * logit_error + (static_cast<double>(m) / 128.0 + 32.0) * u;

  Tolerances t;
  t.lse = row_error;
  const double per_row_loss = 2.0 * row_error;
  const std::size_t outputs = fwd.loss.size();
  t.loss.assign(outputs, p.reduction == Reduction::kSum ? per_row_loss * b : per_row_loss);

  // dLoss/dlogits moves by at most (weight x probability x 2 x row_error); its magnitude, plus that
  // of the softmax terms, bounds what each gradient is built from.
  std::vector<double> row_weight(b), col_weight(b);
  for (std::int64_t i = 0; i < b; ++i) {
    double w = p.reduction == Reduction::kNone ? in.grad_loss[i] : in.grad_loss[0];
    if (p.reduction == Reduction::kMean) w /= static_cast<double>(b);
    if (p.symmetric) w *= 0.5;
    row_weight[i] = std::fabs(w);
    col_weight[i] = p.symmetric ? std::fabs(w) : 0.0;
  }
  std::vector<double> q_magnitude(b, 0.0), k_magnitude(m, 0.0);
  double temperature_magnitude = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) {
      const double logit = fwd.logits[i * m + j];
      double size =
          std::fabs(bwd.grad_logits[i * m + j]) + row_weight[i] * std::exp(logit - fwd.row_lse[i]);
      if (p.symmetric) size += col_weight[j] * std::exp(logit - fwd.col_lse[j]);
      q_magnitude[i] += size * k_rows[j];
      k_magnitude[j] += size * q_rows[i];
      temperature_magnitude += size * (std::fabs(logit) + 1.0);
    }
  }
  const double q_error = kSafety * (row_error + std::sqrt(static_cast<double>(m)) * u);
  const double k_error = kSafety * (row_error + std::sqrt(static_cast<double>(b)) * u);
  t.grad_q.resize(b);
  t.grad_k.resize(m);
  for (std::int64_t i = 0; i < b; ++i) {
    t.grad_q[i] = q_error * inverse_temperature * q_magnitude[i] / q_divisor[i];
  }
  for (std::int64_t j = 0; j < m; ++j) {
    t.grad_k[j] = k_error * inverse_temperature * k_magnitude[j] / k_divisor[j];
  }
  t.grad_temperature = kSafety * (row_error + std::sqrt(static_cast<double>(b * m)) * u) *
                       inverse_temperature * temperature_magnitude;
  return t;
}

// What the GPU must reproduce: the float64 forward and backward, and the allowed error.
struct Expected {
  reference::InfoNCEForward forward;
  reference::InfoNCEBackward backward;
  Tolerances tolerances;
};

Expected expected_for(const infonce::Params& p, const Inputs& in) {
  Expected e;
  EXPECT_EQ(reference::infonce_forward(p, in.q.data(), in.k.data(), &e.forward), Status::kSuccess);
  EXPECT_EQ(
      reference::infonce_backward(p, in.q.data(), in.k.data(), in.grad_loss.data(), &e.backward),
      Status::kSuccess);
  e.tolerances = infonce_tolerances(p, in, e.forward, e.backward);
  return e;
}

// ---- The GPU side -----------------------------------------------------------------------------

struct DeviceProblem {
  infonce::Params params;
  std::size_t workspace_bytes = 0, saved_floats = 0, loss_count = 0;
  DeviceArray<float> q, k, grad_loss, loss, saved, grad_q, grad_k, grad_temperature;
  DeviceArray<unsigned char> workspace;

  static std::size_t saved_count(const infonce::Params& p) {
    std::size_t bytes = 0;
    EXPECT_EQ(infonce::saved_size(p, &bytes), Status::kSuccess);
    return bytes / sizeof(float);
  }
  static std::size_t workspace_count(const infonce::Params& p) {
    std::size_t bytes = 0;
    EXPECT_EQ(infonce::workspace_size(p, &bytes), Status::kSuccess);
    return bytes;
  }

  DeviceProblem(const infonce::Params& p, const Inputs& in)
      : params(p),
        workspace_bytes(workspace_count(p)),
        saved_floats(saved_count(p)),
        loss_count(p.reduction == Reduction::kNone ? p.batch : 1),
        q(in.q.size()),
        k(in.k.size()),
        grad_loss(in.grad_loss.size()),
        loss(loss_count),
        saved(saved_floats),
        grad_q(p.batch * p.dim),
        grad_k(p.num_keys * p.dim),
        grad_temperature(1),
        workspace(workspace_bytes) {
    q.upload(to_float(in.q));
    k.upload(to_float(in.k));
    grad_loss.upload(to_float(in.grad_loss));
  }

  void poison_outputs() {
    loss.poison();
    grad_q.poison();
    grad_k.poison();
    grad_temperature.poison();
  }

  infonce::ForwardArgs forward_args() { return {q.data(), k.data(), loss.data(), saved.data()}; }
  infonce::BackwardArgs backward_args() {
    return {q.data(),      k.data(),      saved.data(),           grad_loss.data(),
            grad_q.data(), grad_k.data(), grad_temperature.data()};
  }
  infonce::ForwardBackwardArgs forward_backward_args() {
    return {q.data(),         k.data(),      loss.data(),   saved.data(),
            grad_loss.data(), grad_q.data(), grad_k.data(), grad_temperature.data()};
  }
};

class InfoNCEGpu : public ::testing::TestWithParam<GpuCase> {
 protected:
  void SetUp() override {
    CONTRASTIVE_SKIP_WITHOUT_GPU();
    ASSERT_EQ(Handle::create(&handle_), Status::kSuccess) << last_error_message();
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  void synchronize() {
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  }

  Handle handle_;
  cudaStream_t stream_ = nullptr;
};

void expect_forward_matches(const DeviceProblem& gpu, const reference::InfoNCEForward& fwd,
                            const Inputs& in, const Tolerances& tol) {
  const infonce::Params& p = gpu.params;
  EXPECT_TRUE(all_close(gpu.loss.download(), fwd.loss, tol.loss, 1)) << "loss";
  const std::vector<float> saved = gpu.saved.download();
  const std::vector<float> row_lse(saved.begin(), saved.begin() + p.batch);
  EXPECT_TRUE(all_close(row_lse, fwd.row_lse, tol.lse)) << "saved row log-sum-exp";
  std::int64_t next = p.batch;
  if (p.symmetric) {
    const std::vector<float> col_lse(saved.begin() + next, saved.begin() + next + p.num_keys);
    EXPECT_TRUE(all_close(col_lse, fwd.col_lse, tol.lse)) << "saved column log-sum-exp";
    next += p.num_keys;
  }
  if (p.similarity == Similarity::kCosine) {
    std::vector<double> inverse_norms;
    for (std::int64_t i = 0; i < p.batch; ++i) {
      inverse_norms.push_back(1.0 /
                              std::max(row_norm(in.q, i, stride_of(p.q_row_stride, p.dim), p.dim),
                                       static_cast<double>(p.eps)));
    }
    for (std::int64_t j = 0; j < p.num_keys; ++j) {
      inverse_norms.push_back(1.0 /
                              std::max(row_norm(in.k, j, stride_of(p.k_row_stride, p.dim), p.dim),
                                       static_cast<double>(p.eps)));
    }
    const std::vector<float> saved_norms(saved.begin() + next, saved.end());
    EXPECT_TRUE(all_close(saved_norms, inverse_norms, 0.0, 1e-6)) << "saved inverse norms";
  }
}

void expect_backward_matches(const DeviceProblem& gpu, const reference::InfoNCEBackward& bwd,
                             const Tolerances& tol) {
  const std::size_t d = static_cast<std::size_t>(gpu.params.dim);
  EXPECT_TRUE(all_close(gpu.grad_q.download(), bwd.grad_q, tol.grad_q, d)) << "grad_q";
  EXPECT_TRUE(all_close(gpu.grad_k.download(), bwd.grad_k, tol.grad_k, d)) << "grad_k";
  EXPECT_TRUE(
      all_close(gpu.grad_temperature.download(), {bwd.grad_temperature}, tol.grad_temperature))
      << "grad_temperature";
}

TEST_P(InfoNCEGpu, MatchesTheFloat64Reference) {
  const std::uint64_t seed = testing::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CONTRASTIVE_TEST_SEED reproduces it)");
  std::mt19937_64 engine(seed);
  const infonce::Params p = GetParam().params();
  const Inputs in = make_inputs(p, engine);
  const Expected expected = expected_for(p, in);
  const auto& fwd = expected.forward;
  const auto& bwd = expected.backward;
  const Tolerances& tol = expected.tolerances;
  DeviceProblem gpu(p, in);

  // forward, then backward from what it saved
  ASSERT_EQ(infonce::forward(handle_, p, gpu.forward_args(), gpu.workspace.data(),
                             gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  expect_forward_matches(gpu, fwd, in, tol);
  ASSERT_EQ(infonce::backward(handle_, p, gpu.backward_args(), gpu.workspace.data(),
                              gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  expect_backward_matches(gpu, bwd, tol);

  // forward_backward in one call, everything poisoned again
  gpu.poison_outputs();
  gpu.saved.poison();
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  expect_forward_matches(gpu, fwd, in, tol);
  expect_backward_matches(gpu, bwd, tol);

  // Deterministic by default: the same call again gives the same bits.
  const std::vector<float> grad_q = gpu.grad_q.download(), grad_k = gpu.grad_k.download();
  const std::vector<float> loss = gpu.loss.download();
  gpu.poison_outputs();
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess);
  synchronize();
  EXPECT_EQ(std::memcmp(loss.data(), gpu.loss.download().data(), loss.size() * 4), 0);
  EXPECT_EQ(std::memcmp(grad_q.data(), gpu.grad_q.download().data(), grad_q.size() * 4), 0);
  EXPECT_EQ(std::memcmp(grad_k.data(), gpu.grad_k.download().data(), grad_k.size() * 4), 0);
}

INSTANTIATE_TEST_SUITE_P(Sweep, InfoNCEGpu, ::testing::ValuesIn(gpu_cases()), test_name);

// ---- Single scenarios
// -----------------------------------------------------------------------------

class InfoNCEGpuScenario : public InfoNCEGpu {};

TEST_F(InfoNCEGpuScenario, SeedNotebookExample) {
  const seed::InfoNCEInputs seed = seed::infonce_inputs();
  infonce::Params p;
  p.batch = p.num_keys = seed::InfoNCEInputs::kBatch;
  p.dim = seed::InfoNCEInputs::kDim;
  p.temperature = seed::InfoNCEInputs::kTemperature;
  // The GPU takes fp32: compare with the reference on the same rounded inputs.
  const Inputs rounded{round_to_float(seed.z1), round_to_float(seed.z2), {1.0}};
  const Expected expected = expected_for(p, rounded);
  DeviceProblem gpu(p, rounded);
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess)
      << last_error_message();
  synchronize();
  expect_forward_matches(gpu, expected.forward, rounded, expected.tolerances);
  expect_backward_matches(gpu, expected.backward, expected.tolerances);
}

// A frozen tower: skipping grad_k (or all but the temperature) leaves the rest unchanged.
TEST_F(InfoNCEGpuScenario, OptionalGradientOutputs) {
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = 33;
  p.num_keys = 64;
  p.dim = 24;
  p.positive_offset = 5;
  const Inputs in = make_inputs(p, engine);
  const Expected expected = expected_for(p, in);
  const auto& bwd = expected.backward;
  const Tolerances& tol = expected.tolerances;
  DeviceProblem gpu(p, in);
  infonce::ForwardBackwardArgs args = gpu.forward_backward_args();
  args.grad_k = nullptr;
  ASSERT_EQ(infonce::forward_backward(handle_, p, args, gpu.workspace.data(), gpu.workspace_bytes,
                                      stream_),
            Status::kSuccess);
  synchronize();
  EXPECT_TRUE(all_close(gpu.grad_q.download(), bwd.grad_q, tol.grad_q, p.dim));
  for (float value : gpu.grad_k.download()) ASSERT_TRUE(std::isnan(value)) << "grad_k was written";
  gpu.poison_outputs();
  infonce::BackwardArgs only_temperature = gpu.backward_args();
  only_temperature.grad_q = only_temperature.grad_k = nullptr;
  ASSERT_EQ(infonce::backward(handle_, p, only_temperature, gpu.workspace.data(),
                              gpu.workspace_bytes, stream_),
            Status::kSuccess);
  synchronize();
  EXPECT_TRUE(
      all_close(gpu.grad_temperature.download(), {bwd.grad_temperature}, tol.grad_temperature));
  for (float value : gpu.grad_q.download()) ASSERT_TRUE(std::isnan(value)) << "grad_q was written";
}

// The C API runs the same code: bit-identical results to the C++ call.
TEST_F(InfoNCEGpuScenario, CApiMatchesCpp) {
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = p.num_keys = 40;
  p.dim = 32;
  p.symmetric = true;
  const Inputs in = make_inputs(p, engine);
  DeviceProblem cpp(p, in), c(p, in);
  ASSERT_EQ(infonce::forward_backward(handle_, p, cpp.forward_backward_args(), cpp.workspace.data(),
                                      cpp.workspace_bytes, stream_),
            Status::kSuccess);
  contrastive_handle_t handle = nullptr;
  ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS);
  contrastive_infonce_params_t params;
  contrastive_infonce_params_init(&params);
  params.batch = params.num_keys = p.batch;
  params.dim = p.dim;
  params.symmetric = 1;
  EXPECT_EQ(contrastive_infonce_forward_backward(
                handle, &params, c.q.data(), c.k.data(), c.loss.data(), c.saved.data(),
                c.grad_loss.data(), c.grad_q.data(), c.grad_k.data(), c.grad_temperature.data(),
                c.workspace.data(), c.workspace_bytes, stream_),
            CONTRASTIVE_SUCCESS)
      << contrastive_last_error();
  synchronize();
  EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(cpp.loss.download(), c.loss.download());
  EXPECT_EQ(cpp.grad_q.download(), c.grad_q.download());
  EXPECT_EQ(cpp.grad_k.download(), c.grad_k.download());
  EXPECT_EQ(cpp.grad_temperature.download(), c.grad_temperature.download());
}

// A zero row among the inputs: finite loss and gradients (eps clamps the norm).
TEST_F(InfoNCEGpuScenario, ZeroVectorStaysFinite) {
  std::mt19937_64 engine(testing::test_seed());
  infonce::Params p;
  p.batch = p.num_keys = 16;
  p.dim = 8;
  Inputs in = make_inputs(p, engine);
  std::fill(in.q.begin(), in.q.begin() + p.dim, 0.0);
  std::fill(in.k.begin() + 3 * p.dim, in.k.begin() + 4 * p.dim, 0.0);
  DeviceProblem gpu(p, in);
  ASSERT_EQ(infonce::forward_backward(handle_, p, gpu.forward_backward_args(), gpu.workspace.data(),
                                      gpu.workspace_bytes, stream_),
            Status::kSuccess);
  synchronize();
  for (float value : gpu.loss.download()) EXPECT_TRUE(std::isfinite(value));
  for (float value : gpu.grad_q.download()) ASSERT_TRUE(std::isfinite(value));
  for (float value : gpu.grad_k.download()) ASSERT_TRUE(std::isfinite(value));
}

}  // namespace
}  // namespace contrastive
