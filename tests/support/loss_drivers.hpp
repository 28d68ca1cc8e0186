// Every loss behind one face, for the GPU tests of every loss (numerical edges, NaN policy,
// poisoned outputs, determinism, CUDA graphs, threads, sanitizers): each test loops over
// all_losses().
//
// The loss's description (host/describe/losses.hpp) gives its name, its params from a Shape, its
// tensors and their extents, and the call of each pass: the buffers, the upload and the calls here
// are generic. A driver adds what only a test knows: random host inputs (exact in the dtype,
// editable before upload()) and the comparison of the outputs with the float64 reference under
// the tolerance policy (support/tolerance.hpp), through the same expectations the sweeps use
// (support/infonce_cases.hpp, support/anchor_cases.hpp). A new loss: a driver and a line in
// all_losses() below.
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
#include "host/describe/losses.hpp"
#include "support/anchor_cases.hpp"
#include "support/device.hpp"
#include "support/infonce_cases.hpp"
#include "support/siglip_cases.hpp"

namespace contrastive::testing {

inline const char* pass_name(Pass pass) {
  const char* names[] = {"forward", "backward", "forward_backward"};
  return names[static_cast<int>(pass)];
}

constexpr Pass kPasses[] = {Pass::kForward, Pass::kBackward, Pass::kForwardBackward};

/// A small problem, in each loss's own terms (describe::Shape).
using Shape = describe::Shape;

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
  explicit LossDriver(const describe::Loss& loss) : loss_(loss) {}
  virtual ~LossDriver() = default;

  const char* name() const { return loss_.name; }
  /// The fewest `Shape::candidates` the loss takes.
  std::int64_t min_candidates() const { return loss_.min_candidates; }
  /// A temperature or scale (and its gradient): InfoNCE and MNR, not Repel.
  bool has_logit_scale() const { return loss_.logit_scale != nullptr; }
  /// Dot or cosine: all but Repel, which is cosine only.
  bool has_similarity_choice() const { return loss_.similarity_choice; }
  /// The scalar gradients' outputs: "grad_temperature" (InfoNCE), "grad_scale" (MNR),
  /// "grad_scale" and "grad_bias" (SigLIP), none (Repel).
  std::vector<std::string> scalar_gradients() const {
    std::vector<std::string> names;
    for (const describe::Tensor& tensor : loss_.tensors) {
      if (tensor.role == describe::Role::kScalarGradient) names.push_back(tensor.name);
    }
    return names;
  }
  /// Whether an input of +-inf under dot similarity may give a finite loss: a pairwise sigmoid
  /// prices each logit alone, and an infinite logit on its label's side costs 0 (SigLIP).
  virtual bool finite_loss_at_infinite_logits() const { return false; }

  /// Fresh random inputs for `shape` (the same seed gives the same inputs), device buffers
  /// allocated and poisoned. Inputs are not on the device until upload().
  virtual void make(const Shape& shape, std::uint64_t seed) = 0;
  /// The outputs `pass` wrote against the float64 reference of the current host inputs.
  virtual void expect_matches_reference(Pass pass) = 0;

  /// Every input's rows on the host, with the output that holds its gradient.
  std::vector<RowSet> row_sets() {
    std::vector<RowSet> sets;
    const describe::Params current = params();
    for (const describe::Tensor& input : loss_.tensors) {
      if (input.role != describe::Role::kInput) continue;
      const describe::Extent e = describe::extent(current, input.name);
      std::string gradient;
      for (const describe::Tensor& t : loss_.tensors) {
        if (t.gradient_of != nullptr && std::string(t.gradient_of) == input.name) gradient = t.name;
      }
      sets.push_back({input.name, host_values(input.name), e.rows, e.stride, e.cols, gradient});
    }
    return sets;
  }

  /// Copies the (possibly edited) host inputs and the upstream gradient to the device.
  virtual void upload() {
    for (auto& [name, tensor] : inputs_) tensor->upload(*host_values(name));
    grad_loss_->upload(*host_values("grad_loss"));
    settle();
  }

  /// One call on the driver's buffers, workspace and `stream`.
  Status run(Pass pass, const Handle& handle, cudaStream_t stream) {
    return describe::run(
        pass, handle, params(), [this](std::string_view name) { return pointer(name); },
        workspace_->data(), workspace_bytes_, stream);
  }

  /// Before make(): leave the workspace as cudaMalloc returns it (for initcheck).
  void set_workspace_uninitialized(bool uninitialized) { poison_workspace_ = !uninitialized; }

  /// The loss's device scalars (temperature, scale, bias: describe::Role::kScalar), each holding
  /// the value of its params field after make(); without this call the calls take the params'
  /// host values (the scalars' pointers are null).
  std::vector<std::string> device_scalar_names() const {
    std::vector<std::string> names;
    for (const describe::Tensor& t : loss_.tensors) {
      if (t.role == describe::Role::kScalar) names.push_back(t.name);
    }
    return names;
  }
  /// After make(): pass the device scalars, holding the params' values.
  void use_device_scalars() {
    describe::Params current = params();
    for (const std::string& name : device_scalar_names()) {
      auto tensor = std::make_unique<DeviceTensor>(DType::kF32, 1);
      tensor->upload({static_cast<double>(*describe::scalar_field(current, name))});
      scalars_[name] = std::move(tensor);
    }
    settle();
  }
  /// A device scalar's buffer (after use_device_scalars()), e.g. to change its value between
  /// replays of a captured graph.
  DeviceTensor& device_scalar(const std::string& name) { return *scalars_.at(name); }

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
  /// The loss's params as they are now (upload() may still adjust them).
  virtual describe::Params params() const = 0;
  /// The host values of an input or of grad_loss, exact in the dtype.
  virtual std::vector<double>* host_values(std::string_view name) = 0;

  /// After the params and the host inputs are made: the device inputs, the outputs (poisoned) and
  /// the workspace, each as the description sizes it.
  void allocate() {
    const describe::Params current = params();
    inputs_.clear();
    outputs_.clear();
    scalars_.clear();
    for (const describe::Tensor& t : loss_.tensors) {
      const describe::Extent e = describe::extent(current, t.name);
      switch (t.role) {
        case describe::Role::kScalar: break;  // null unless use_device_scalars()
        case describe::Role::kIds: break;     // null: the drivers' params have no ids
        case describe::Role::kInput:
          inputs_[t.name] = std::make_unique<DeviceTensor>(e.dtype, host_values(t.name)->size());
          break;
        case describe::Role::kUpstreamGradient:
          grad_loss_ =
              std::make_unique<DeviceTensor>(DType::kF32, host_values("grad_loss")->size());
          break;
        default: {
          const bool forward = t.role == describe::Role::kLoss || t.role == describe::Role::kSaved;
          outputs_.push_back(
              {t.name,
               std::make_unique<DeviceTensor>(e.dtype, static_cast<std::size_t>(e.rows * e.cols)),
               forward});
        }
      }
    }
    std::size_t saved_bytes = 0, workspace_bytes = 0;
    EXPECT_EQ(describe::saved_size(current, &saved_bytes), Status::kSuccess)
        << last_error_message();
    EXPECT_EQ(describe::workspace_size(current, &workspace_bytes), Status::kSuccess);
    workspace_bytes_ = workspace_bytes;
    workspace_ = std::make_unique<DeviceBytes>(workspace_bytes, poison_workspace_);
  }

  float* f32(const std::string& name) { return static_cast<float*>(tensor(name).data()); }

 private:
  void* pointer(std::string_view name) {
    if (name == "grad_loss") return grad_loss_->data();
    for (const describe::Tensor& t : loss_.tensors) {
      if (t.role == describe::Role::kIds && name == t.name) return nullptr;
      if (t.role == describe::Role::kScalar && name == t.name) {
        const auto scalar = scalars_.find(std::string(name));
        return scalar != scalars_.end() ? scalar->second->data() : nullptr;
      }
    }
    const auto input = inputs_.find(std::string(name));
    if (input != inputs_.end()) return input->second->data();
    return tensor(std::string(name)).data();
  }

  const describe::Loss& loss_;
  std::map<std::string, std::unique_ptr<DeviceTensor>> inputs_;
  std::vector<Output> outputs_;
  std::unique_ptr<DeviceTensor> grad_loss_;
  std::map<std::string, std::unique_ptr<DeviceTensor>> scalars_;
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
  InfoNCEDriver() : LossDriver(describe::loss_named("InfoNCE")) {}

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = std::get<infonce::Params>(describe::detail::infonce_params(s));
    std::mt19937_64 engine(seed);
    in_ = make_inputs(p_, engine);
    allocate();
  }

  void expect_matches_reference(Pass pass) override {
    const Expected expected = expected_for(p_, in_);
    const Results results{download("loss"), download("saved"), download("grad_q"),
                          download("grad_k"), download("grad_temperature")};
    if (pass != Pass::kBackward) expect_forward_matches(p_, results, expected, in_);
    if (pass != Pass::kForward) expect_backward_matches(p_, results, expected);
  }

 protected:
  describe::Params params() const override { return p_; }
  std::vector<double>* host_values(std::string_view name) override {
    return name == "q" ? &in_.q : name == "k" ? &in_.k : &in_.grad_loss;
  }

 private:
  infonce::Params p_;
  Inputs in_;
};

// ---- MNR, per-anchor negatives ------------------------------------------------------------------

class MnrPerAnchorDriver : public LossDriver {
 public:
  MnrPerAnchorDriver() : LossDriver(describe::loss_named("MnrPerAnchor")) {}

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = std::get<mnr::PerAnchorParams>(describe::detail::mnr_per_anchor_params(s));
    if (s.logit_scale <= 0.0f) p_.scale = s.similarity == Similarity::kCosine ? 20.0f : 1.0f;
    std::mt19937_64 engine(seed);
    in_ = make_mnr_inputs(p_, engine);
    allocate();
  }

  void expect_matches_reference(Pass pass) override {
    const MnrExpected expected = expected_for(p_, in_);
    const AnchorResults results{download("loss"),           download("saved"),
                                download("grad_anchors"),   download("grad_positives"),
                                download("grad_negatives"), download("grad_scale")};
    expect_matches(p_, results, expected, pass != Pass::kBackward, pass != Pass::kForward);
  }

 protected:
  describe::Params params() const override { return p_; }
  std::vector<double>* host_values(std::string_view name) override {
    if (name == "anchors") return &in_.anchors;
    if (name == "positives") return &in_.positives;
    return name == "negatives" ? &in_.negatives : &in_.grad_loss;
  }

 private:
  mnr::PerAnchorParams p_;
  MnrInputs in_;
};

// ---- MNR, in-batch with hard negatives ----------------------------------------------------------

// The InfoNCE loop with the scale as logit scale: its inputs and bounds come from the InfoNCE
// problem with temperature 1 / scale (as in gpu/mnr_gpu.cpp), its scale gradient from the
// in-batch reference.
class MnrInBatchDriver : public LossDriver {
 public:
  MnrInBatchDriver() : LossDriver(describe::loss_named("MnrInBatch")) {}

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = std::get<mnr::InBatchParams>(describe::detail::mnr_in_batch_params(s));
    if (s.logit_scale <= 0.0f) p_.scale = 16.0f;  // 1/16 is exact
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
    allocate();
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

 protected:
  describe::Params params() const override { return p_; }
  std::vector<double>* host_values(std::string_view name) override {
    return name == "anchors" ? &in_.q : name == "candidates" ? &in_.k : &in_.grad_loss;
  }

 private:
  mnr::InBatchParams p_;
  infonce::Params equivalent_;
  Inputs in_;  // q: anchors, k: candidates [P; N_1; ...]
};

// ---- Repel --------------------------------------------------------------------------------------

class RepelDriver : public LossDriver {
 public:
  RepelDriver() : LossDriver(describe::loss_named("Repel")) {}

  void make(const Shape& s, std::uint64_t seed) override {
    p_ = std::get<repel::Params>(describe::detail::repel_params(s));
    std::mt19937_64 engine(seed);
    in_ = make_repel_inputs(p_, engine);
    allocate();
  }

  // The margin keeps clear of every similarity (fp32 rounding must not flip a hinge term), as in
  // the sweeps; inputs with NaN or inf keep the default.
  void upload() override {
    bool finite = true;
    for (const std::vector<double>* values : {&in_.anchors, &in_.negatives}) {
      for (double value : *values) finite = finite && std::isfinite(value);
    }
    p_.margin = finite ? clear_margin(p_, in_, 1e-5) : repel::Params{}.margin;
    LossDriver::upload();
  }

  void expect_matches_reference(Pass pass) override {
    const RepelExpected expected = expected_for(p_, in_);
    const AnchorResults results{download("loss"),           download("saved"),
                                download("grad_anchors"),   {},
                                download("grad_negatives"), {}};
    expect_matches(p_, results, expected, pass != Pass::kBackward, pass != Pass::kForward);
  }

 protected:
  describe::Params params() const override { return p_; }
  std::vector<double>* host_values(std::string_view name) override {
    return name == "anchors" ? &in_.anchors : name == "negatives" ? &in_.negatives : &in_.grad_loss;
  }

 private:
  repel::Params p_;
  RepelInputs in_;
};

// ---- SigLIP -------------------------------------------------------------------------------------

// Inputs as InfoNCE's (Gaussian rows in the dtype, dot rows of norm 0.5 to 2, NaN padding); both
// scalar gradients, grad_scale and grad_bias, compared with the reference.
class SigLIPDriver : public LossDriver {
 public:
  SigLIPDriver() : LossDriver(describe::loss_named("SigLIP")) {}

  void make(const Shape& s, std::uint64_t seed) override {
    make(std::get<siglip::Params>(describe::detail::siglip_params(s)), seed);
  }
  /// Any SigLIP problem: offsets, strides, log_scale, negatives_only, tiles (gpu/siglip_gpu.cpp).
  void make(const siglip::Params& p, std::uint64_t seed) {
    p_ = p;
    std::mt19937_64 engine(seed);
    in_ = make_inputs(p_, engine);
    allocate();
  }

  void expect_matches_reference(Pass pass) override {
    const SigLIPExpected expected = expected_for(p_, in_);
    const SigLIPResults results{download("loss"),   download("saved"),      download("grad_q"),
                                download("grad_k"), download("grad_scale"), download("grad_bias")};
    expect_matches(p_, results, expected, in_, pass != Pass::kBackward, pass != Pass::kForward);
  }

  bool finite_loss_at_infinite_logits() const override { return true; }

 protected:
  describe::Params params() const override { return p_; }
  std::vector<double>* host_values(std::string_view name) override {
    return name == "q" ? &in_.q : name == "k" ? &in_.k : &in_.grad_loss;
  }

 private:
  siglip::Params p_;
  Inputs in_;
};

// ---- The registry ---------------------------------------------------------------------------

struct LossFactory {
  const char* name;
  std::function<std::unique_ptr<LossDriver>()> make;
};

/// A driver for every loss of describe::all_losses(). A new loss: a driver above and a line here.
inline std::vector<LossFactory> all_losses() {
  return {{"InfoNCE", [] { return std::make_unique<InfoNCEDriver>(); }},
          {"MnrPerAnchor", [] { return std::make_unique<MnrPerAnchorDriver>(); }},
          {"MnrInBatch", [] { return std::make_unique<MnrInBatchDriver>(); }},
          {"Repel", [] { return std::make_unique<RepelDriver>(); }},
          {"SigLIP", [] { return std::make_unique<SigLIPDriver>(); }}};
}

inline void PrintTo(const LossFactory& factory, std::ostream* out) {
  *out << factory.name;
}

/// A GPU test run once for each loss of all_losses(), named by the loss.
using EveryLossGpuTest = GpuFixture<::testing::TestWithParam<LossFactory>>;

inline std::string loss_name(const ::testing::TestParamInfo<LossFactory>& info) {
  return info.param.name;
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
