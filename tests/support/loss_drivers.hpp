// Every loss behind one face, for the reliability tests (numerical edges, NaN policy, poisoned
// outputs, determinism, CUDA graphs, threads, sanitizers): each test loops over all_losses(), so a
// new loss joins all of them by adding one driver here and one line to all_losses().
//
// A driver owns one small problem of its loss: host inputs (exact in the dtype, editable before
// upload()), device inputs and outputs, a workspace, and the comparison of the outputs with the
// float64 reference under the tolerance policy (support/tolerance.hpp), through the same
// expectations the sweeps use (support/infonce_cases.hpp, support/anchor_cases.hpp).
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "support/anchor_cases.hpp"
#include "support/device.hpp"
#include "support/infonce_cases.hpp"

namespace contrastive::testing {

inline const char* pass_name(Pass pass) {
  const char* names[] = {"forward", "backward", "forward_backward"};
  return names[static_cast<int>(pass)];
}

constexpr Pass kPasses[] = {Pass::kForward, Pass::kBackward, Pass::kForwardBackward};

/// A small problem, in each loss's own terms.
struct Shape {
  std::int64_t batch = 8;  ///< B: queries / anchors
  /// InfoNCE: keys beyond B (M = B + candidates); per-anchor MNR: n negatives per anchor; in-batch
  /// MNR: K blocks of hard negatives; Repel: N negatives per anchor.
  std::int64_t candidates = 3;
  std::int64_t dim = 16;  ///< D
  DType dtype = DType::kF32;
  Similarity similarity = Similarity::kCosine;  ///< Repel is cosine whatever this says
  Reduction reduction = Reduction::kMean;
  bool symmetric = false;  ///< InfoNCE and in-batch MNR
  /// The logit scale: InfoNCE's temperature is 1 / logit_scale, MNR's scale is logit_scale; 0 keeps
  /// each loss's default (InfoNCE t = 0.1, per-anchor MNR 1 for dot and 20 for cosine, in-batch
  /// 16).
  float logit_scale = 0.0f;
  float eps = 1e-12f;
  std::int64_t tile_rows = 0, tile_cols = 0;  ///< InfoNCE and in-batch MNR: an explicit tile
};

/// One set of input rows (rows, stride) of `dim` elements, editable on the host before upload().
struct RowSet {
  std::string name;             ///< the argument's name, e.g. "q", "negatives"
  std::vector<double>* values;  ///< (rows, stride), exact in the dtype
  std::int64_t rows, stride, dim;
  std::string gradient;  ///< the output that holds its gradient (rows, dim)

  double& at(std::int64_t row, std::int64_t column) const {
    return (*values)[static_cast<std::size_t>(row * stride + column)];
  }
};

/// cudaMemset and cudaMemcpy from pageable memory run on the legacy default stream and may return
/// before the device is done; the calls under test run on non-blocking streams, which do not wait
/// for it. Waiting here keeps a fill or an upload from landing after the call it precedes.
inline void settle() {
  EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);
}

/// Device bytes for a workspace: poisoned like DeviceArray, or left as cudaMalloc returns them, so
/// that compute-sanitizer initcheck can flag a read before a write.
class DeviceBytes {
 public:
  DeviceBytes(std::size_t bytes, bool poison) : bytes_(bytes) {
    if (cudaMalloc(&data_, bytes == 0 ? 1 : bytes) != cudaSuccess) {
      data_ = nullptr;
      ADD_FAILURE() << "cudaMalloc of " << bytes << " bytes failed";
      return;
    }
    if (poison) {
      EXPECT_EQ(cudaMemset(data_, kPoisonByte, bytes), cudaSuccess);
    }
    settle();
  }
  ~DeviceBytes() { cudaFree(data_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

/// How outputs are pre-filled before a call: every byte 0xFF (a NaN in every dtype), or the
/// dtype's own NaN value.
enum class Fill { kPoisonBytes, kNaN };

struct Output {
  std::string name;
  std::unique_ptr<DeviceTensor> tensor;
  bool forward;  ///< written by forward (loss, saved); else by backward (the gradients)
};

using Snapshot = std::map<std::string, std::vector<float>>;

class LossDriver {
 public:
  virtual ~LossDriver() = default;

  virtual const char* name() const = 0;
  /// The fewest `Shape::candidates` the loss takes.
  virtual std::int64_t min_candidates() const = 0;
  /// A temperature or scale (and its gradient): InfoNCE and MNR, not Repel.
  virtual bool has_logit_scale() const = 0;
  /// Dot or cosine: all but Repel, which is cosine only.
  virtual bool has_similarity_choice() const = 0;
  /// Fresh random inputs for `shape` (the same seed gives the same inputs), device buffers
  /// allocated and poisoned. Inputs are not on the device until upload().
  virtual void make(const Shape& shape, std::uint64_t seed) = 0;
  virtual std::vector<RowSet> row_sets() = 0;
  /// Copies the (possibly edited) host inputs to the device.
  virtual void upload() = 0;
  /// One call on the driver's buffers, workspace and `stream`.
  virtual Status run(Pass pass, const Handle& handle, cudaStream_t stream) = 0;
  /// The outputs `pass` wrote against the float64 reference of the current host inputs.
  virtual void expect_matches_reference(Pass pass) = 0;
  /// The scalar gradient's output ("grad_temperature", "grad_scale"), or "" (Repel).
  virtual std::string scalar_gradient() const = 0;

  /// Before make(): leave the workspace as cudaMalloc returns it (for initcheck).
  void set_workspace_uninitialized(bool uninitialized) { poison_workspace_ = !uninitialized; }

  /// The outputs `pass` writes: forward the loss and saved, backward the gradients.
  std::vector<Output*> outputs(Pass pass) {
    std::vector<Output*> selected;
    for (Output& output : outputs_) {
      const bool wanted = pass == Pass::kForwardBackward ||
                          (pass == Pass::kForward ? output.forward : !output.forward);
      if (wanted) selected.push_back(&output);
    }
    return selected;
  }

  DeviceTensor& tensor(const std::string& name) {
    for (Output& output : outputs_) {
      if (output.name == name) return *output.tensor;
    }
    ADD_FAILURE() << name << " is not an output of " << this->name();
    return *outputs_.front().tensor;
  }

  void fill_outputs(Pass pass, Fill fill) {
    for (Output* output : outputs(pass)) {
      if (fill == Fill::kPoisonBytes) {
        output->tensor->poison();
      } else {
        output->tensor->upload(std::vector<double>(output->tensor->size(), NAN));
      }
    }
    settle();
  }

  Snapshot download(Pass pass) {
    Snapshot snapshot;
    for (Output* output : outputs(pass)) snapshot[output->name] = output->tensor->download();
    return snapshot;
  }

  std::vector<float> download(const std::string& name) { return tensor(name).download(); }

  /// The upstream gradient grad_loss (fp32; (1), or one per output for Reduction::kNone).
  DeviceTensor& upstream_gradient() { return *grad_loss_; }

 protected:
  void reset_outputs() { outputs_.clear(); }
  void add_output(const std::string& name, DType dtype, std::int64_t count, bool forward) {
    outputs_.push_back(
        {name, std::make_unique<DeviceTensor>(dtype, static_cast<std::size_t>(count)), forward});
  }
  float* f32(const std::string& name) { return static_cast<float*>(tensor(name).data()); }
  void* raw(const std::string& name) { return tensor(name).data(); }
  void allocate_workspace(std::size_t bytes) {
    workspace_bytes_ = bytes;
    workspace_ = std::make_unique<DeviceBytes>(bytes, poison_workspace_);
  }

  std::vector<Output> outputs_;
  std::unique_ptr<DeviceTensor> grad_loss_;
  std::unique_ptr<DeviceBytes> workspace_;
  std::size_t workspace_bytes_ = 0;
  bool poison_workspace_ = true;
};

/// Bitwise equality of two snapshots (the same outputs), naming the first difference.
inline ::testing::AssertionResult bitwise_equal(const Snapshot& expected, const Snapshot& actual) {
  if (expected.size() != actual.size()) {
    return ::testing::AssertionFailure() << "different outputs";
  }
  for (const auto& [name, values] : expected) {
    const auto found = actual.find(name);
    if (found == actual.end()) return ::testing::AssertionFailure() << name << " is missing";
    const std::vector<float>& other = found->second;
    if (other.size() != values.size()) {
      return ::testing::AssertionFailure() << name << ": sizes differ";
    }
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (std::memcmp(&values[i], &other[i], sizeof(float)) != 0) {
        return ::testing::AssertionFailure()
               << name << "[" << i << "] differs: " << values[i] << " vs " << other[i];
      }
    }
  }
  return ::testing::AssertionSuccess();
}

/// Every element of every output finite (with finite inputs nothing else is right; a poisoned
/// element left unwritten is a NaN).
inline ::testing::AssertionResult all_finite(const Snapshot& snapshot) {
  for (const auto& [name, values] : snapshot) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        return ::testing::AssertionFailure() << name << "[" << i << "] = " << values[i] << " (of "
                                             << values.size() << "): unwritten or not finite";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// ---- InfoNCE ------------------------------------------------------------------------------------

class InfoNCEDriver : public LossDriver {
 public:
  const char* name() const override { return "InfoNCE"; }
  std::int64_t min_candidates() const override { return 0; }
  bool has_logit_scale() const override { return true; }
  bool has_similarity_choice() const override { return true; }
  std::string scalar_gradient() const override { return "grad_temperature"; }

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = infonce::Params{};
    p_.batch = s.batch;
    p_.num_keys = s.batch + s.candidates;
    p_.dim = s.dim;
    p_.dtype = s.dtype;
    p_.similarity = s.similarity;
    p_.reduction = s.reduction;
    p_.symmetric = s.symmetric;
    if (s.logit_scale > 0.0f) p_.temperature = 1.0f / s.logit_scale;
    p_.eps = s.eps;
    p_.tile_rows = s.tile_rows;
    p_.tile_cols = s.tile_cols;
    std::mt19937_64 engine(seed);
    in_ = make_inputs(p_, engine);
    q_ = std::make_unique<DeviceTensor>(p_.dtype, in_.q.size());
    k_ = std::make_unique<DeviceTensor>(p_.dtype, in_.k.size());
    grad_loss_ = std::make_unique<DeviceTensor>(DType::kF32, in_.grad_loss.size());
    std::size_t saved_bytes = 0, workspace_bytes = 0;
    EXPECT_EQ(infonce::saved_size(p_, &saved_bytes), Status::kSuccess) << last_error_message();
    EXPECT_EQ(infonce::workspace_size(p_, &workspace_bytes), Status::kSuccess);
    reset_outputs();
    add_output("loss", DType::kF32, p_.reduction == Reduction::kNone ? p_.batch : 1, true);
    add_output("saved", DType::kF32, static_cast<std::int64_t>(saved_bytes / sizeof(float)), true);
    add_output("grad_q", p_.dtype, p_.batch * p_.dim, false);
    add_output("grad_k", p_.dtype, p_.num_keys * p_.dim, false);
    add_output("grad_temperature", DType::kF32, 1, false);
    allocate_workspace(workspace_bytes);
  }

  std::vector<RowSet> row_sets() override {
    return {
        {"q", &in_.q, p_.batch, row_stride_or_dim(p_.q_row_stride, p_.dim), p_.dim, "grad_q"},
        {"k", &in_.k, p_.num_keys, row_stride_or_dim(p_.k_row_stride, p_.dim), p_.dim, "grad_k"}};
  }

  void upload() override {
    q_->upload(in_.q);
    k_->upload(in_.k);
    grad_loss_->upload(in_.grad_loss);
    settle();
  }

  Status run(Pass pass, const Handle& handle, cudaStream_t stream) override {
    void* workspace = workspace_->data();
    const float* grad_loss = static_cast<const float*>(grad_loss_->data());
    switch (pass) {
      case Pass::kForward:
        return infonce::forward(handle, p_, {q_->data(), k_->data(), f32("loss"), raw("saved")},
                                workspace, workspace_bytes_, stream);
      case Pass::kBackward:
        return infonce::backward(handle, p_,
                                 {q_->data(), k_->data(), raw("saved"), grad_loss, raw("grad_q"),
                                  raw("grad_k"), f32("grad_temperature")},
                                 workspace, workspace_bytes_, stream);
      case Pass::kForwardBackward:
        return infonce::forward_backward(
            handle, p_,
            {q_->data(), k_->data(), f32("loss"), raw("saved"), grad_loss, raw("grad_q"),
             raw("grad_k"), f32("grad_temperature")},
            workspace, workspace_bytes_, stream);
    }
    return Status::kInternalError;
  }

  void expect_matches_reference(Pass pass) override {
    const Expected expected = expected_for(p_, in_);
    const Results results{download("loss"), download("saved"), download("grad_q"),
                          download("grad_k"), download("grad_temperature")};
    if (pass != Pass::kBackward) expect_forward_matches(p_, results, expected, in_);
    if (pass != Pass::kForward) expect_backward_matches(p_, results, expected);
  }

  const infonce::Params& params() const { return p_; }

 private:
  infonce::Params p_;
  Inputs in_;
  std::unique_ptr<DeviceTensor> q_, k_;
};

// ---- MNR, per-anchor negatives ------------------------------------------------------------------

class MnrPerAnchorDriver : public LossDriver {
 public:
  const char* name() const override { return "MnrPerAnchor"; }
  std::int64_t min_candidates() const override { return 1; }
  bool has_logit_scale() const override { return true; }
  bool has_similarity_choice() const override { return true; }
  std::string scalar_gradient() const override { return "grad_scale"; }

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = mnr::PerAnchorParams{};
    p_.batch = s.batch;
    p_.negatives = s.candidates;
    p_.dim = s.dim;
    p_.dtype = s.dtype;
    p_.similarity = s.similarity;
    p_.reduction = s.reduction;
    p_.scale =
        s.logit_scale > 0.0f ? s.logit_scale : (s.similarity == Similarity::kCosine ? 20.0f : 1.0f);
    p_.eps = s.eps;
    std::mt19937_64 engine(seed);
    in_ = make_mnr_inputs(p_, engine);
    anchors_ = std::make_unique<DeviceTensor>(p_.dtype, in_.anchors.size());
    positives_ = std::make_unique<DeviceTensor>(p_.dtype, in_.positives.size());
    negatives_ = std::make_unique<DeviceTensor>(p_.dtype, in_.negatives.size());
    grad_loss_ = std::make_unique<DeviceTensor>(DType::kF32, in_.grad_loss.size());
    std::size_t saved_bytes = 0, workspace_bytes = 0;
    EXPECT_EQ(mnr::saved_size(p_, &saved_bytes), Status::kSuccess) << last_error_message();
    EXPECT_EQ(mnr::workspace_size(p_, &workspace_bytes), Status::kSuccess);
    reset_outputs();
    add_output("loss", DType::kF32, p_.reduction == Reduction::kNone ? p_.batch : 1, true);
    add_output("saved", DType::kF32, static_cast<std::int64_t>(saved_bytes / sizeof(float)), true);
    add_output("grad_anchors", p_.dtype, p_.batch * p_.dim, false);
    add_output("grad_positives", p_.dtype, p_.batch * p_.dim, false);
    add_output("grad_negatives", p_.dtype, p_.batch * p_.negatives * p_.dim, false);
    add_output("grad_scale", DType::kF32, 1, false);
    allocate_workspace(workspace_bytes);
  }

  std::vector<RowSet> row_sets() override {
    const std::int64_t d = p_.dim;
    return {{"anchors", &in_.anchors, p_.batch, row_stride_or_dim(p_.anchor_row_stride, d), d,
             "grad_anchors"},
            {"positives", &in_.positives, p_.batch, row_stride_or_dim(p_.positive_row_stride, d), d,
             "grad_positives"},
            {"negatives", &in_.negatives, p_.batch * p_.negatives,
             row_stride_or_dim(p_.negative_row_stride, d), d, "grad_negatives"}};
  }

  void upload() override {
    anchors_->upload(in_.anchors);
    positives_->upload(in_.positives);
    negatives_->upload(in_.negatives);
    grad_loss_->upload(in_.grad_loss);
    settle();
  }

  Status run(Pass pass, const Handle& handle, cudaStream_t stream) override {
    void* workspace = workspace_->data();
    const float* grad_loss = static_cast<const float*>(grad_loss_->data());
    switch (pass) {
      case Pass::kForward:
        return mnr::forward(
            handle, p_,
            {anchors_->data(), positives_->data(), negatives_->data(), f32("loss"), raw("saved")},
            workspace, workspace_bytes_, stream);
      case Pass::kBackward:
        return mnr::backward(
            handle, p_,
            {anchors_->data(), positives_->data(), negatives_->data(), raw("saved"), grad_loss,
             raw("grad_anchors"), raw("grad_positives"), raw("grad_negatives"), f32("grad_scale")},
            workspace, workspace_bytes_, stream);
      case Pass::kForwardBackward:
        return mnr::forward_backward(
            handle, p_,
            {anchors_->data(), positives_->data(), negatives_->data(), f32("loss"), raw("saved"),
             grad_loss, raw("grad_anchors"), raw("grad_positives"), raw("grad_negatives"),
             f32("grad_scale")},
            workspace, workspace_bytes_, stream);
    }
    return Status::kInternalError;
  }

  void expect_matches_reference(Pass pass) override {
    const MnrExpected expected = expected_for(p_, in_);
    const AnchorResults results{download("loss"),           download("saved"),
                                download("grad_anchors"),   download("grad_positives"),
                                download("grad_negatives"), download("grad_scale")};
    expect_matches(p_, results, expected, pass != Pass::kBackward, pass != Pass::kForward);
  }

 private:
  mnr::PerAnchorParams p_;
  MnrInputs in_;
  std::unique_ptr<DeviceTensor> anchors_, positives_, negatives_;
};

// ---- MNR, in-batch with hard negatives ----------------------------------------------------------

// The InfoNCE loop with the scale as logit scale: its inputs and bounds come from the InfoNCE
// problem with temperature 1 / scale (as in gpu/mnr_repel_gpu.cpp), its scale gradient from the
// in-batch reference.
class MnrInBatchDriver : public LossDriver {
 public:
  const char* name() const override { return "MnrInBatch"; }
  std::int64_t min_candidates() const override { return 0; }
  bool has_logit_scale() const override { return true; }
  bool has_similarity_choice() const override { return true; }
  std::string scalar_gradient() const override { return "grad_scale"; }

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = mnr::InBatchParams{};
    p_.batch = s.batch;
    p_.hard_negatives = s.candidates;
    p_.dim = s.dim;
    p_.dtype = s.dtype;
    p_.similarity = s.similarity;
    p_.reduction = s.reduction;
    p_.symmetric = s.symmetric;
    p_.scale = s.logit_scale > 0.0f ? s.logit_scale : 16.0f;  // 1/16 is exact
    p_.eps = s.eps;
    p_.tile_rows = s.tile_rows;
    p_.tile_cols = s.tile_cols;
    equivalent_ = infonce::Params{};
    equivalent_.batch = p_.batch;
    equivalent_.num_keys = (1 + p_.hard_negatives) * p_.batch;
    equivalent_.dim = p_.dim;
    equivalent_.dtype = p_.dtype;
    equivalent_.similarity = p_.similarity;
    equivalent_.reduction = p_.reduction;
    equivalent_.symmetric = p_.symmetric;
    equivalent_.temperature = 1.0f / p_.scale;
    equivalent_.eps = p_.eps;
    std::mt19937_64 engine(seed);
    in_ = make_inputs(equivalent_, engine);
    anchors_ = std::make_unique<DeviceTensor>(p_.dtype, in_.q.size());
    candidates_ = std::make_unique<DeviceTensor>(p_.dtype, in_.k.size());
    grad_loss_ = std::make_unique<DeviceTensor>(DType::kF32, in_.grad_loss.size());
    std::size_t saved_bytes = 0, workspace_bytes = 0;
    EXPECT_EQ(mnr::saved_size(p_, &saved_bytes), Status::kSuccess) << last_error_message();
    EXPECT_EQ(mnr::workspace_size(p_, &workspace_bytes), Status::kSuccess);
    reset_outputs();
    add_output("loss", DType::kF32, p_.reduction == Reduction::kNone ? p_.batch : 1, true);
    add_output("saved", DType::kF32, static_cast<std::int64_t>(saved_bytes / sizeof(float)), true);
    add_output("grad_anchors", p_.dtype, p_.batch * p_.dim, false);
    add_output("grad_candidates", p_.dtype, equivalent_.num_keys * p_.dim, false);
    add_output("grad_scale", DType::kF32, 1, false);
    allocate_workspace(workspace_bytes);
  }

  std::vector<RowSet> row_sets() override {
    return {{"anchors", &in_.q, p_.batch, p_.dim, p_.dim, "grad_anchors"},
            {"candidates", &in_.k, equivalent_.num_keys, p_.dim, p_.dim, "grad_candidates"}};
  }

  void upload() override {
    anchors_->upload(in_.q);
    candidates_->upload(in_.k);
    grad_loss_->upload(in_.grad_loss);
    settle();
  }

  Status run(Pass pass, const Handle& handle, cudaStream_t stream) override {
    void* workspace = workspace_->data();
    const float* grad_loss = static_cast<const float*>(grad_loss_->data());
    switch (pass) {
      case Pass::kForward:
        return mnr::forward(handle, p_,
                            {anchors_->data(), candidates_->data(), f32("loss"), raw("saved")},
                            workspace, workspace_bytes_, stream);
      case Pass::kBackward:
        return mnr::backward(handle, p_,
                             {anchors_->data(), candidates_->data(), raw("saved"), grad_loss,
                              raw("grad_anchors"), raw("grad_candidates"), f32("grad_scale")},
                             workspace, workspace_bytes_, stream);
      case Pass::kForwardBackward:
        return mnr::forward_backward(
            handle, p_,
            {anchors_->data(), candidates_->data(), f32("loss"), raw("saved"), grad_loss,
             raw("grad_anchors"), raw("grad_candidates"), f32("grad_scale")},
            workspace, workspace_bytes_, stream);
    }
    return Status::kInternalError;
  }

  void expect_matches_reference(Pass pass) override {
    const Expected expected = expected_for(equivalent_, in_);
    const Results results{download("loss"),
                          download("saved"),
                          download("grad_anchors"),
                          download("grad_candidates"),
                          {}};
    if (pass != Pass::kBackward) expect_forward_matches(equivalent_, results, expected, in_);
    if (pass == Pass::kForward) return;
    const auto d = static_cast<std::size_t>(p_.dim);
    const Results& naive = expected.naive;
    EXPECT_TRUE(matches(expected, results.grad_q, naive.grad_q, expected.backward.grad_q,
                        expected.tolerances.grad_q, d))
        << "grad_anchors";
    EXPECT_TRUE(matches(expected, results.grad_k, naive.grad_k, expected.backward.grad_k,
                        expected.tolerances.grad_k, d))
        << "grad_candidates";
    reference::MnrInBatchBackward mnr_expected;
    EXPECT_EQ(reference::mnr_in_batch_backward(p_, in_.q.data(), in_.k.data(), in_.grad_loss.data(),
                                               &mnr_expected),
              Status::kSuccess);
    const double t = 1.0 / p_.scale;  // d/ds = -t^2 d/dt with s = 1/t
    const std::vector<float> naive_scale =
        expected.sixteen_bit
            ? std::vector<float>{static_cast<float>(-t * t * naive.grad_temperature[0])}
            : std::vector<float>{};
    EXPECT_TRUE(matches(expected, download("grad_scale"), naive_scale, {mnr_expected.grad_scale},
                        {expected.tolerances.grad_temperature * t * t}, 2))
        << "grad_scale";
  }

 private:
  mnr::InBatchParams p_;
  infonce::Params equivalent_;
  Inputs in_;  // q: anchors, k: candidates [P; N_1; ...]
  std::unique_ptr<DeviceTensor> anchors_, candidates_;
};

// ---- Repel --------------------------------------------------------------------------------------

class RepelDriver : public LossDriver {
 public:
  const char* name() const override { return "Repel"; }
  std::int64_t min_candidates() const override { return 1; }
  bool has_logit_scale() const override { return false; }
  bool has_similarity_choice() const override { return false; }
  std::string scalar_gradient() const override { return ""; }

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = repel::Params{};
    p_.batch = s.batch;
    p_.negatives = s.candidates;
    p_.dim = s.dim;
    p_.dtype = s.dtype;
    p_.reduction = s.reduction;
    p_.eps = s.eps;
    std::mt19937_64 engine(seed);
    in_ = make_repel_inputs(p_, engine);
    anchors_ = std::make_unique<DeviceTensor>(p_.dtype, in_.anchors.size());
    negatives_ = std::make_unique<DeviceTensor>(p_.dtype, in_.negatives.size());
    grad_loss_ = std::make_unique<DeviceTensor>(DType::kF32, in_.grad_loss.size());
    std::size_t saved_bytes = 0, workspace_bytes = 0;
    EXPECT_EQ(repel::saved_size(p_, &saved_bytes), Status::kSuccess) << last_error_message();
    EXPECT_EQ(repel::workspace_size(p_, &workspace_bytes), Status::kSuccess);
    reset_outputs();
    add_output("loss", DType::kF32, p_.reduction == Reduction::kNone ? p_.batch * p_.negatives : 1,
               true);
    add_output("saved", DType::kF32, static_cast<std::int64_t>(saved_bytes / sizeof(float)), true);
    add_output("grad_anchors", p_.dtype, p_.batch * p_.dim, false);
    add_output("grad_negatives", p_.dtype, p_.batch * p_.negatives * p_.dim, false);
    allocate_workspace(workspace_bytes);
  }

  std::vector<RowSet> row_sets() override {
    const std::int64_t d = p_.dim;
    return {{"anchors", &in_.anchors, p_.batch, row_stride_or_dim(p_.anchor_row_stride, d), d,
             "grad_anchors"},
            {"negatives", &in_.negatives, p_.batch * p_.negatives,
             row_stride_or_dim(p_.negative_row_stride, d), d, "grad_negatives"}};
  }

  // The margin keeps clear of every similarity (fp32 rounding must not flip a hinge term), as in
  // the sweeps; inputs with NaN or inf keep the default.
  void upload() override {
    bool finite = true;
    for (const std::vector<double>* values : {&in_.anchors, &in_.negatives}) {
      for (double value : *values) finite = finite && std::isfinite(value);
    }
    p_.margin = finite ? clear_margin(p_, in_, 1e-5) : repel::Params{}.margin;
    anchors_->upload(in_.anchors);
    negatives_->upload(in_.negatives);
    grad_loss_->upload(in_.grad_loss);
    settle();
  }

  Status run(Pass pass, const Handle& handle, cudaStream_t stream) override {
    void* workspace = workspace_->data();
    const float* grad_loss = static_cast<const float*>(grad_loss_->data());
    switch (pass) {
      case Pass::kForward:
        return repel::forward(handle, p_,
                              {anchors_->data(), negatives_->data(), f32("loss"), raw("saved")},
                              workspace, workspace_bytes_, stream);
      case Pass::kBackward:
        return repel::backward(handle, p_,
                               {anchors_->data(), negatives_->data(), raw("saved"), grad_loss,
                                raw("grad_anchors"), raw("grad_negatives")},
                               workspace, workspace_bytes_, stream);
      case Pass::kForwardBackward:
        return repel::forward_backward(
            handle, p_,
            {anchors_->data(), negatives_->data(), f32("loss"), raw("saved"), grad_loss,
             raw("grad_anchors"), raw("grad_negatives")},
            workspace, workspace_bytes_, stream);
    }
    return Status::kInternalError;
  }

  void expect_matches_reference(Pass pass) override {
    const RepelExpected expected = expected_for(p_, in_);
    const AnchorResults results{download("loss"),           download("saved"),
                                download("grad_anchors"),   {},
                                download("grad_negatives"), {}};
    expect_matches(p_, results, expected, pass != Pass::kBackward, pass != Pass::kForward);
  }

 private:
  repel::Params p_;
  RepelInputs in_;
  std::unique_ptr<DeviceTensor> anchors_, negatives_;
};

// ---- The registry ---------------------------------------------------------------------------

struct LossFactory {
  const char* name;
  std::function<std::unique_ptr<LossDriver>()> make;
};

/// Every loss of the library. A new loss: a driver above and a line here.
inline std::vector<LossFactory> all_losses() {
  return {{"InfoNCE", [] { return std::make_unique<InfoNCEDriver>(); }},
          {"MnrPerAnchor", [] { return std::make_unique<MnrPerAnchorDriver>(); }},
          {"MnrInBatch", [] { return std::make_unique<MnrInBatchDriver>(); }},
          {"Repel", [] { return std::make_unique<RepelDriver>(); }}};
}

inline void PrintTo(const LossFactory& factory, std::ostream* out) {
  *out << factory.name;
}

/// Runs `pass` and waits: success, and no CUDA error left behind.
inline ::testing::AssertionResult run_and_wait(LossDriver& driver, Pass pass, const Handle& handle,
                                               cudaStream_t stream) {
  const Status status = driver.run(pass, handle, stream);
  if (status != Status::kSuccess) {
    return ::testing::AssertionFailure() << driver.name() << " " << pass_name(pass) << ": "
                                         << status_string(status) << ": " << last_error_message();
  }
  const cudaError_t synced = cudaStreamSynchronize(stream);
  const cudaError_t pending = cudaGetLastError();
  if (synced != cudaSuccess || pending != cudaSuccess) {
    return ::testing::AssertionFailure()
           << driver.name() << " " << pass_name(pass) << ": CUDA error "
           << cudaGetErrorName(synced != cudaSuccess ? synced : pending);
  }
  return ::testing::AssertionSuccess();
}

/// forward (then its outputs against the reference), backward from what it saved, then
/// forward_backward with every output pre-filled by `fill` again.
inline void expect_every_pass_matches(LossDriver& driver, const Handle& handle, cudaStream_t stream,
                                      Fill fill = Fill::kPoisonBytes) {
  for (const Pass pass : kPasses) {
    SCOPED_TRACE(pass_name(pass));
    driver.fill_outputs(pass, fill);
    ASSERT_TRUE(run_and_wait(driver, pass, handle, stream));
    driver.expect_matches_reference(pass);
  }
}

}  // namespace contrastive::testing
