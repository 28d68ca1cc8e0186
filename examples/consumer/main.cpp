// Uses the installed library: the C++ API, the float64 reference and the C API. With a GPU it
// also checks the GPU loss against the reference; without one it says so and succeeds.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include <contrastive/contrastive.h>
#include <contrastive/contrastive.hpp>
#include <contrastive/reference.hpp>

int main() {
  namespace infonce = contrastive::infonce;
  using contrastive::Status;
  infonce::Params params;
  params.batch = 3;
  params.num_keys = 5;
  params.dim = 4;
  params.positive_offset = 1;
  std::size_t workspace_bytes = 0, saved_bytes = 0;
  if (infonce::workspace_size(params, &workspace_bytes) != Status::kSuccess ||
      infonce::saved_size(params, &saved_bytes) != Status::kSuccess) {
    std::fprintf(stderr, "size queries failed: %s\n", contrastive::last_error_message());
    return 1;
  }
  std::vector<double> q(12), k(20);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::sin(1.0 + i);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::cos(2.0 * i);
  contrastive::reference::InfoNCEForward expected;
  if (contrastive::reference::infonce_forward(params, q.data(), k.data(), &expected) !=
      Status::kSuccess) {
    return 1;
  }
  std::printf("reference loss %.6f, workspace %zu bytes\n", expected.loss[0], workspace_bytes);

  contrastive_handle_t c_handle = nullptr;
  const int c_status = contrastive_create(&c_handle, -1);
  if (c_status != CONTRASTIVE_SUCCESS) {
    std::printf("no GPU path: %s (%s)\n", contrastive_status_string(c_status),
                contrastive_last_error());
    return c_status == CONTRASTIVE_NO_DEVICE ? 0 : 1;
  }
  contrastive_destroy(c_handle);

  contrastive::Handle handle;
  if (contrastive::Handle::create(&handle) != Status::kSuccess) return 1;
  const std::vector<float> q32(q.begin(), q.end()), k32(k.begin(), k.end());
  float *d_q = nullptr, *d_k = nullptr, *d_loss = nullptr;
  void *d_saved = nullptr, *d_workspace = nullptr;
  cudaMalloc(&d_q, q32.size() * sizeof(float));
  cudaMalloc(&d_k, k32.size() * sizeof(float));
  cudaMalloc(&d_loss, sizeof(float));
  cudaMalloc(&d_saved, saved_bytes);
  cudaMalloc(&d_workspace, workspace_bytes);
  cudaMemcpy(d_q, q32.data(), q32.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(d_k, k32.data(), k32.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaStream_t stream = nullptr;
  cudaStreamCreate(&stream);
  const Status status = infonce::forward(handle, params, {d_q, d_k, d_loss, d_saved}, d_workspace,
                                         workspace_bytes, stream);
  float loss = NAN;
  cudaMemcpyAsync(&loss, d_loss, sizeof(float), cudaMemcpyDeviceToHost, stream);
  cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  for (void* pointer : {static_cast<void*>(d_q), static_cast<void*>(d_k),
                        static_cast<void*>(d_loss), d_saved, d_workspace}) {
    cudaFree(pointer);
  }
  std::printf("GPU loss %.6f (%s)\n", loss, contrastive::status_string(status));
  const bool close =
      std::fabs(loss - expected.loss[0]) <= 1e-4 * (1.0 + std::fabs(expected.loss[0]));
  return status == Status::kSuccess && close ? 0 : 1;
}
