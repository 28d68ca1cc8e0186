// contrastive-demo: the seed notebook's InfoNCE example (B = 6, D = 8, temperature 0.1,
// z2 = z1 + 0.1 * noise) on the GPU and on the float64 reference. Prints both losses and the
// largest gradient difference, and writes the cosine similarity matrix as CSV.
// Without a usable GPU it runs the reference alone and says why.
//
//   contrastive-demo [--csv PATH]     (default PATH: similarity.csv)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "examples/seed_inputs.hpp"

namespace {

using contrastive::Status;
namespace infonce = contrastive::infonce;

struct GpuResult {
  float loss = 0.0f;
  std::vector<float> grad_q, grad_k;
};

// Frees what it holds when the demo returns early.
struct DeviceBuffers {
  std::vector<void*> pointers;
  ~DeviceBuffers() {
    for (void* pointer : pointers) cudaFree(pointer);
  }
  template <typename T>
  T* allocate(std::size_t bytes, std::string* error) {
    void* pointer = nullptr;
    const cudaError_t status = cudaMalloc(&pointer, bytes);
    if (status != cudaSuccess) {
      *error = std::string("cudaMalloc: ") + cudaGetErrorString(status);
      return nullptr;
    }
    pointers.push_back(pointer);
    return static_cast<T*>(pointer);
  }
};

// Runs forward_backward on the GPU; on failure returns false with the reason in *why.
bool run_on_gpu(const infonce::Params& params, const std::vector<float>& q,
                const std::vector<float>& k, GpuResult* result, std::string* why) {
  contrastive::Handle handle;
  Status status = contrastive::Handle::create(&handle);
  if (status != Status::kSuccess) {
    *why = contrastive::last_error_message();
    return false;
  }
  std::size_t workspace_bytes = 0, saved_bytes = 0;
  if (infonce::workspace_size(params, &workspace_bytes) != Status::kSuccess ||
      infonce::saved_size(params, &saved_bytes) != Status::kSuccess) {
    *why = contrastive::last_error_message();
    return false;
  }
  DeviceBuffers buffers;
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    *why = "cudaStreamCreate failed";
    return false;
  }
  const std::size_t q_bytes = q.size() * sizeof(float), k_bytes = k.size() * sizeof(float);
  auto* d_q = buffers.allocate<float>(q_bytes, why);
  auto* d_k = buffers.allocate<float>(k_bytes, why);
  auto* d_grad_q = buffers.allocate<float>(q_bytes, why);
  auto* d_grad_k = buffers.allocate<float>(k_bytes, why);
  auto* d_loss = buffers.allocate<float>(sizeof(float), why);
  auto* d_saved = buffers.allocate<void>(saved_bytes, why);
  auto* d_workspace = buffers.allocate<void>(workspace_bytes, why);
  if (d_workspace == nullptr || d_saved == nullptr || d_loss == nullptr || d_grad_k == nullptr ||
      d_grad_q == nullptr || d_k == nullptr || d_q == nullptr) {
    cudaStreamDestroy(stream);
    return false;
  }
  cudaMemcpyAsync(d_q, q.data(), q_bytes, cudaMemcpyHostToDevice, stream);
  cudaMemcpyAsync(d_k, k.data(), k_bytes, cudaMemcpyHostToDevice, stream);
  infonce::ForwardBackwardArgs args;
  args.q = d_q;
  args.k = d_k;
  args.loss = d_loss;
  args.saved = d_saved;
  args.grad_q = d_grad_q;
  args.grad_k = d_grad_k;
  status = infonce::forward_backward(handle, params, args, d_workspace, workspace_bytes, stream);
  if (status != Status::kSuccess) {
    *why =
        std::string(contrastive::status_string(status)) + ": " + contrastive::last_error_message();
    cudaStreamDestroy(stream);
    return false;
  }
  result->grad_q.resize(q.size());
  result->grad_k.resize(k.size());
  cudaMemcpyAsync(&result->loss, d_loss, sizeof(float), cudaMemcpyDeviceToHost, stream);
  cudaMemcpyAsync(result->grad_q.data(), d_grad_q, q_bytes, cudaMemcpyDeviceToHost, stream);
  cudaMemcpyAsync(result->grad_k.data(), d_grad_k, k_bytes, cudaMemcpyDeviceToHost, stream);
  const cudaError_t error = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  if (error != cudaSuccess) {
    *why = std::string("CUDA error: ") + cudaGetErrorString(error);
    return false;
  }
  return true;
}

double max_difference(const std::vector<float>& gpu, const std::vector<double>& reference) {
  double largest = 0.0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    largest = std::max(largest, std::fabs(static_cast<double>(gpu[i]) - reference[i]));
  }
  return largest;
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
  using Inputs = contrastive::seed::InfoNCEInputs;
  const Inputs inputs = contrastive::seed::infonce_inputs();
  infonce::Params params;
  params.batch = Inputs::kBatch;
  params.num_keys = Inputs::kBatch;
  params.dim = Inputs::kDim;
  params.temperature = Inputs::kTemperature;

  contrastive::reference::InfoNCEForward reference;
  contrastive::reference::InfoNCEBackward reference_grad;
  if (contrastive::reference::infonce_forward(params, inputs.z1.data(), inputs.z2.data(),
                                              &reference) != Status::kSuccess ||
      contrastive::reference::infonce_backward(params, inputs.z1.data(), inputs.z2.data(), nullptr,
                                               &reference_grad) != Status::kSuccess) {
    std::fprintf(stderr, "reference failed: %s\n", contrastive::last_error_message());
    return 1;
  }
  std::printf("Seed InfoNCE: B = %d, D = %d, temperature = %.2f, cosine similarity\n",
              Inputs::kBatch, Inputs::kDim, static_cast<double>(params.temperature));
  std::printf("Cosine similarity z1 x z2:\n");
  for (int i = 0; i < Inputs::kBatch; ++i) {
    std::printf("  ");
    for (int j = 0; j < Inputs::kBatch; ++j) {
      std::printf("%6.2f", reference.logits[i * Inputs::kBatch + j] * params.temperature);
    }
    std::printf("\n");
  }
  std::printf("reference (float64) loss: %.6f\n", reference.loss[0]);

  const std::vector<float> q(inputs.z1.begin(), inputs.z1.end());
  const std::vector<float> k(inputs.z2.begin(), inputs.z2.end());
  GpuResult gpu;
  std::string why;
  int exit_code = 0;
  if (run_on_gpu(params, q, k, &gpu, &why)) {
    const double difference = std::max(max_difference(gpu.grad_q, reference_grad.grad_q),
                                       max_difference(gpu.grad_k, reference_grad.grad_k));
    std::printf("GPU (float32) loss:        %.6f\n", static_cast<double>(gpu.loss));
    std::printf("largest |GPU - reference| gradient difference: %.3g\n", difference);
    const double loss_error = std::fabs(gpu.loss - reference.loss[0]);
    if (loss_error > 1e-4 * std::max(1.0, std::fabs(reference.loss[0])) || difference > 1e-3) {
      std::printf("MISMATCH between the GPU and the reference\n");
      exit_code = 1;
    }
  } else {
    std::printf("GPU path did not run: %s\n", why.c_str());
  }
  if (write_csv(csv_path, reference.logits, Inputs::kBatch, Inputs::kBatch, params.temperature)) {
    std::printf("similarity matrix written to %s\n", csv_path);
  } else {
    std::fprintf(stderr, "could not write %s\n", csv_path);
    exit_code = 1;
  }
  return exit_code;
}
