// The unfused InfoNCE baseline: what a straightforward cuBLAS + elementwise-kernel implementation
// of the same loss does, one kernel per step as a framework's eager mode runs it, so that the
// library's fusion claim has a baseline measured in the same run. Cosine, mean, not symmetric,
// M == B, f32, f16 or bf16 inputs (S and the softmax in fp32; the backward GEMMs read P in the
// input dtype, as autocast would). Only the time matters: its loss is checked finite, not exact.
//
// forward:  Q_hat, K_hat = normalize(Q), normalize(K)          2 kernels
//           S = Q_hat K_hat^T / t                              GEMM
//           m = rowmax(S); E = exp(S - m); s = rowsum(E)       3 kernels, E (B, M) written
//           L = S - m - log s                                  1 kernel,  L (B, M) written
//           loss = -mean_i L[i, i]                             1 kernel
// backward: P = (exp(L) - onehot) / B, stored in dtype         1 kernel
//           dQ_hat = P K_hat / t, dK_hat = P^T Q_hat / t       2 GEMMs
//           dQ, dK = normalize backward                        2 kernels
#pragma once

#include <cstdint>

#include <cublas_api.h>

#include "bench/gpu_fixture.hpp"
#include "contrastive/types.hpp"

namespace contrastive::bench {

class UnfusedInfoNCE {
 public:
  /// Allocates its scratch (three B x M fp32 matrices and one in dtype, the normalized rows and
  /// the fp32 gradient sums) through `gpu`; reports a failure there and returns false.
  bool allocate(GpuFixture& gpu, std::int64_t batch, std::int64_t dim, DType dtype);

  /// Enqueues forward and backward on the fixture's stream: Q, K (B, D) in dtype, dQ, dK (B, D)
  /// in dtype, the loss (1) fp32. Reports a failure through `gpu`.
  bool enqueue(GpuFixture& gpu, cublasHandle_t cublas, const void* q, const void* k, void* grad_q,
               void* grad_k, float* loss, float temperature) const;

 private:
  std::int64_t batch_ = 0, dim_ = 0;
  DType dtype_ = DType::kF32;
  DeviceBuffer q_hat_, k_hat_, inv_norms_, logits_, exps_, log_probs_, probs_, row_max_, row_sum_,
      grad_q_sum_, grad_k_sum_;
};

}  // namespace contrastive::bench
