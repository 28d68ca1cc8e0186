// contrastive-demo: three small examples on the GPU and on the float64 reference.
//   InfoNCE: B = 6, D = 8, temperature 0.1, z2 = z1 + 0.1 * noise (two views of six samples);
//            writes the cosine similarity matrix as CSV
//   MNR:     one anchor, a positive and 3 negatives, dot product, scale 1: loss 1.6965
//   Repel:   B = 2, N = 3, D = 4, margin 0.3, from a fixed seed
// Each prints both losses and the largest gradient difference. Without a usable GPU it runs the
// references and says once, first, why the GPU path did not run.
//
//   contrastive-demo [--csv PATH]     (default PATH: similarity.csv)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "examples/seed_inputs.hpp"

namespace {

using contrastive::Status;
namespace infonce = contrastive::infonce;
namespace mnr = contrastive::mnr;
namespace repel = contrastive::repel;

constexpr double kLossTolerance = 1e-4;      // relative, for fp32 against float64
constexpr double kGradientTolerance = 1e-3;  // absolute, for these O(1) gradients

// A handle and a stream when a GPU is usable; otherwise the reason it is not.
struct Gpu {
  contrastive::Handle handle;
  cudaStream_t stream = nullptr;
  std::string unavailable;

  Gpu() {
    if (contrastive::Handle::create(&handle) != Status::kSuccess) {
      unavailable = contrastive::last_error_message();
    } else if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
      unavailable = "cudaStreamCreate failed";
    }
  }
  ~Gpu() {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  bool ready() const { return unavailable.empty(); }
};

// Device memory for one example; frees itself. The first failure is kept in `error`.
class DeviceScratch {
 public:
  explicit DeviceScratch(cudaStream_t stream) : stream_(stream) {}
  ~DeviceScratch() {
    for (void* pointer : pointers_) cudaFree(pointer);
  }
  void* allocate(std::size_t bytes) {
    void* pointer = nullptr;
    if (cudaMalloc(&pointer, bytes == 0 ? 1 : bytes) != cudaSuccess) {
      if (error.empty()) error = "cudaMalloc failed";
      return nullptr;
    }
    pointers_.push_back(pointer);
    return pointer;
  }
  float* floats(std::size_t count) { return static_cast<float*>(allocate(count * sizeof(float))); }
  /// The values rounded to fp32, on the device.
  float* upload(const std::vector<double>& values) {
    host_.emplace_back(values.begin(), values.end());
    float* device = floats(values.size());
    if (device != nullptr) {
      cudaMemcpyAsync(device, host_.back().data(), values.size() * sizeof(float),
                      cudaMemcpyHostToDevice, stream_);
    }
    return device;
  }
  std::vector<float> download(const float* device, std::size_t count) {
    std::vector<float> values(count, NAN);
    if (device == nullptr) return values;
    if (cudaMemcpyAsync(values.data(), device, count * sizeof(float), cudaMemcpyDeviceToHost,
                        stream_) != cudaSuccess ||
        cudaStreamSynchronize(stream_) != cudaSuccess) {
      if (error.empty()) error = "a CUDA copy failed";
    }
    return values;
  }

  std::string error;      // a failure of the GPU path itself
  bool mismatch = false;  // the GPU ran but disagreed with the reference

 private:
  cudaStream_t stream_;
  std::vector<void*> pointers_;
  std::vector<std::vector<float>> host_;  // kept alive until the copies have run
};

double largest_difference(const std::vector<float>& gpu, const std::vector<double>& reference) {
  double largest = 0.0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const double difference = std::fabs(static_cast<double>(gpu[i]) - reference[i]);
    largest = std::isnan(difference) ? INFINITY : std::max(largest, difference);
  }
  return largest;
}

// Prints the GPU's loss and gradient difference; false when they disagree with the reference.
bool report_gpu(double reference_loss, float gpu_loss, double gradient_difference) {
  std::printf("GPU (float32) loss:        %.6f\n", static_cast<double>(gpu_loss));
  std::printf("largest |GPU - reference| gradient difference: %.3g\n", gradient_difference);
  const double loss_error = std::fabs(gpu_loss - reference_loss);
  if (!(loss_error <= kLossTolerance * std::max(1.0, std::fabs(reference_loss))) ||
      !(gradient_difference <= kGradientTolerance)) {
    std::printf("MISMATCH between the GPU and the reference\n");
    return false;
  }
  return true;
}

// Runs `call` on the GPU when one is usable (main says once why not). False on a failure.
bool on_gpu(Gpu& gpu, const std::function<Status(DeviceScratch&)>& call) {
  if (!gpu.ready()) return true;
  DeviceScratch scratch(gpu.stream);
  const Status status = call(scratch);
  if (status != Status::kSuccess || !scratch.error.empty()) {
    std::printf("GPU path failed: %s\n", status != Status::kSuccess
                                             ? contrastive::last_error_message()
                                             : scratch.error.c_str());
    return false;
  }
  return !scratch.mismatch;
}

bool write_csv(const char* path, const std::vector<double>& logits, int rows, int cols,
               double temperature) {
  std::FILE* file = std::fopen(path, "w");
  if (file == nullptr) return false;
  for (int j = 0; j < cols; ++j) std::fprintf(file, ",z2_%d", j);
  std::fprintf(file, "\n");
  for (int i = 0; i < rows; ++i) {
    std::fprintf(file, "z1_%d", i);
    for (int j = 0; j < cols; ++j) std::fprintf(file, ",%.17g", logits[i * cols + j] * temperature);
    std::fprintf(file, "\n");
  }
  return std::fclose(file) == 0;
}

// ---- The three examples ----------------------------------------------------------------------

bool infonce_example(Gpu& gpu, const char* csv_path) {
  using Inputs = contrastive::seed::InfoNCEInputs;
  const Inputs in = contrastive::seed::infonce_inputs();
  infonce::Params p;
  p.batch = p.num_keys = Inputs::kBatch;
  p.dim = Inputs::kDim;
  p.temperature = Inputs::kTemperature;
  contrastive::reference::InfoNCEForward ref;
  contrastive::reference::InfoNCEBackward ref_grad;
  if (contrastive::reference::infonce_forward(p, in.z1.data(), in.z2.data(), &ref) !=
          Status::kSuccess ||
      contrastive::reference::infonce_backward(p, in.z1.data(), in.z2.data(), nullptr, &ref_grad) !=
          Status::kSuccess) {
    std::printf("reference failed: %s\n", contrastive::last_error_message());
    return false;
  }
  std::printf("== InfoNCE: B = %d, D = %d, temperature %.2f, cosine ==\n", Inputs::kBatch,
              Inputs::kDim, static_cast<double>(p.temperature));
  std::printf("cosine similarity z1 x z2:\n");
  for (int i = 0; i < Inputs::kBatch; ++i) {
    std::printf("  ");
    for (int j = 0; j < Inputs::kBatch; ++j) {
      std::printf("%6.2f", ref.logits[i * Inputs::kBatch + j] * p.temperature);
    }
    std::printf("\n");
  }
  std::printf("reference (float64) loss: %.6f\n", ref.loss[0]);
  bool ok = on_gpu(gpu, [&](DeviceScratch& s) {
    std::size_t workspace_bytes = 0, saved_bytes = 0;
    CONTRASTIVE_TRY(infonce::workspace_size(p, &workspace_bytes));
    CONTRASTIVE_TRY(infonce::saved_size(p, &saved_bytes));
    infonce::ForwardBackwardArgs args;
    args.q = s.upload(in.z1);
    args.k = s.upload(in.z2);
    args.loss = s.floats(1);
    args.saved = s.allocate(saved_bytes);
    args.grad_q = s.floats(in.z1.size());
    args.grad_k = s.floats(in.z2.size());
    void* workspace = s.allocate(workspace_bytes);
    if (!s.error.empty()) return Status::kSuccess;
    CONTRASTIVE_TRY(
        infonce::forward_backward(gpu.handle, p, args, workspace, workspace_bytes, gpu.stream));
    const float loss = s.download(args.loss, 1)[0];
    const double difference =
        std::max(largest_difference(s.download(static_cast<float*>(args.grad_q), in.z1.size()),
                                    ref_grad.grad_q),
                 largest_difference(s.download(static_cast<float*>(args.grad_k), in.z2.size()),
                                    ref_grad.grad_k));
    s.mismatch = !report_gpu(ref.loss[0], loss, difference);
    return Status::kSuccess;
  });
  if (write_csv(csv_path, ref.logits, Inputs::kBatch, Inputs::kBatch, p.temperature)) {
    std::printf("similarity matrix written to %s\n", csv_path);
  } else {
    std::printf("could not write %s\n", csv_path);
    ok = false;
  }
  return ok;
}

bool mnr_example(Gpu& gpu) {
  using Inputs = contrastive::seed::MnrInputs;
  const Inputs in = contrastive::seed::mnr_inputs();
  mnr::PerAnchorParams p;  // dot product, scale 1
  p.batch = 1;
  p.negatives = Inputs::kNegatives;
  p.dim = Inputs::kDim;
  contrastive::reference::MnrPerAnchorForward ref;
  contrastive::reference::MnrPerAnchorBackward ref_grad;
  if (contrastive::reference::mnr_per_anchor_forward(
          p, in.anchor.data(), in.positive.data(), in.negatives.data(), &ref) != Status::kSuccess ||
      contrastive::reference::mnr_per_anchor_backward(p, in.anchor.data(), in.positive.data(),
                                                      in.negatives.data(), nullptr,
                                                      &ref_grad) != Status::kSuccess) {
    std::printf("reference failed: %s\n", contrastive::last_error_message());
    return false;
  }
  std::printf("\n== MNR, per-anchor negatives: d = %d, %d negatives, dot product ==\n",
              Inputs::kDim, Inputs::kNegatives);
  std::printf("MNR Loss = %.4f (expected: 1.6965)\n", ref.loss[0]);
  std::printf("reference (float64) loss: %.6f\n", ref.loss[0]);
  return on_gpu(gpu, [&](DeviceScratch& s) {
    std::size_t workspace_bytes = 0, saved_bytes = 0;
    CONTRASTIVE_TRY(mnr::workspace_size(p, &workspace_bytes));
    CONTRASTIVE_TRY(mnr::saved_size(p, &saved_bytes));
    mnr::PerAnchorForwardBackwardArgs args;
    args.anchors = s.upload(in.anchor);
    args.positives = s.upload(in.positive);
    args.negatives = s.upload(in.negatives);
    args.loss = s.floats(1);
    args.saved = s.allocate(saved_bytes);
    args.grad_anchors = s.floats(in.anchor.size());
    args.grad_negatives = s.floats(in.negatives.size());
    void* workspace = s.allocate(workspace_bytes);
    if (!s.error.empty()) return Status::kSuccess;
    CONTRASTIVE_TRY(
        mnr::forward_backward(gpu.handle, p, args, workspace, workspace_bytes, gpu.stream));
    const float loss = s.download(args.loss, 1)[0];
    std::printf("MNR Loss = %.4f (GPU)\n", static_cast<double>(loss));
    const double difference = std::max(
        largest_difference(s.download(static_cast<float*>(args.grad_anchors), in.anchor.size()),
                           ref_grad.grad_anchors),
        largest_difference(
            s.download(static_cast<float*>(args.grad_negatives), in.negatives.size()),
            ref_grad.grad_negatives));
    s.mismatch = !report_gpu(ref.loss[0], loss, difference);
    return Status::kSuccess;
  });
}

bool repel_example(Gpu& gpu) {
  using Inputs = contrastive::seed::RepelInputs;
  const Inputs in = contrastive::seed::repel_inputs();
  repel::Params p;
  p.batch = Inputs::kBatch;
  p.negatives = Inputs::kNegatives;
  p.dim = Inputs::kDim;
  p.margin = Inputs::kMargin;
  contrastive::reference::RepelForward ref;
  contrastive::reference::RepelBackward ref_grad;
  if (contrastive::reference::repel_forward(p, in.users.data(), in.items.data(), &ref) !=
          Status::kSuccess ||
      contrastive::reference::repel_backward(p, in.users.data(), in.items.data(), nullptr,
                                             &ref_grad) != Status::kSuccess) {
    std::printf("reference failed: %s\n", contrastive::last_error_message());
    return false;
  }
  std::printf("\n== Repel: B = %d, N = %d, D = %d, margin %.1f ==\n", Inputs::kBatch,
              Inputs::kNegatives, Inputs::kDim, static_cast<double>(p.margin));
  std::printf("cosine similarities:");
  for (double s : ref.similarities) std::printf(" %.3f", s);
  std::printf("\nreference (float64) loss: %.6f (%g of %d terms above the margin)\n", ref.loss[0],
              ref.active_terms, Inputs::kBatch * Inputs::kNegatives);
  return on_gpu(gpu, [&](DeviceScratch& s) {
    std::size_t workspace_bytes = 0, saved_bytes = 0;
    CONTRASTIVE_TRY(repel::workspace_size(p, &workspace_bytes));
    CONTRASTIVE_TRY(repel::saved_size(p, &saved_bytes));
    repel::ForwardBackwardArgs args;
    args.anchors = s.upload(in.users);
    args.negatives = s.upload(in.items);
    args.loss = s.floats(1);
    args.saved = s.allocate(saved_bytes);
    args.grad_anchors = s.floats(in.users.size());
    args.grad_negatives = s.floats(in.items.size());
    void* workspace = s.allocate(workspace_bytes);
    if (!s.error.empty()) return Status::kSuccess;
    CONTRASTIVE_TRY(
        repel::forward_backward(gpu.handle, p, args, workspace, workspace_bytes, gpu.stream));
    const float loss = s.download(args.loss, 1)[0];
    const double difference = std::max(
        largest_difference(s.download(static_cast<float*>(args.grad_anchors), in.users.size()),
                           ref_grad.grad_anchors),
        largest_difference(s.download(static_cast<float*>(args.grad_negatives), in.items.size()),
                           ref_grad.grad_negatives));
    s.mismatch = !report_gpu(ref.loss[0], loss, difference);
    return Status::kSuccess;
  });
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = "similarity.csv";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
      csv_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--csv PATH]\n", argv[0]);
      return 2;
    }
  }
  Gpu gpu;
  if (gpu.ready()) {
    std::printf("GPU path: each loss is compared with the float64 reference\n\n");
  } else {
    std::printf("GPU path did not run: %s\n", gpu.unavailable.c_str());
    std::printf("showing the float64 reference (the library's C++ reference, on the CPU)\n\n");
  }
  bool ok = infonce_example(gpu, csv_path);
  ok = mnr_example(gpu) && ok;
  ok = repel_example(gpu) && ok;
  return ok ? 0 : 1;
}
