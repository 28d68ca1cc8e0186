// The unfused baselines of the memory-bound losses, per-anchor MNR and Repel: what a
// straightforward cuBLAS + elementwise-kernel implementation of the same loss does (the formulas of
// bench/compare's PyTorch baseline), one kernel per step as a framework's eager mode runs it, so
// that the fused kernel's claim has a baseline measured in the same run. forward_backward, dense
// rows, mean, f32, f16 or bf16 inputs: the similarities, softmax and hinge in fp32, the backward
// GEMMs read the similarities' gradient G in the input dtype, as autocast would. The similarities
// are a strided batched GEMM per anchor, anchors (B, 1, D) x candidates (B, J, D)^T -> (B, J).
// Only the time matters: the loss is checked finite, not exact.
//
// Per-anchor MNR, J = 1 + n candidates per anchor:
//   forward:  C = cat(P, N) (B, J, D)                             1 kernel
//             A_hat, C_hat = normalize(A), normalize(C)           2 kernels (cosine; dot: none)
//             S = scale A_hat C_hat^T                             batched GEMM
//             m = rowmax(S); E = exp(S - m); z = rowsum(E)        3 kernels
//             L = S - m - log z                                   1 kernel
//             loss = -mean_b L[b, 0]                              1 kernel
//   backward: G = (exp(L) - onehot_0) / B, in dtype               1 kernel
//             dA_hat = scale G C_hat, dC_hat = scale G^T A_hat    2 batched GEMMs
//             normalize backward (cosine)                         2 kernels
//             dA; dP, dN = split(dC), in dtype                    2 kernels
//   The scale's gradient is not computed (the default scale 1 is a fixed hyperparameter).
// Repel (cosine), J = N negatives per anchor:
//   forward:  A_hat, N_hat = normalize(A), normalize(N)           2 kernels
//             S = A_hat N_hat^T                                   batched GEMM
//             H = max(S - margin, 0); loss = mean(H)              2 kernels
//   backward: G = [S > margin] / (B N), in dtype                  1 kernel
//             dA_hat = G N_hat, dN_hat = G^T A_hat                2 batched GEMMs
//             dA, dN = normalize backward                         2 kernels
#pragma once

#include <functional>

#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"

namespace contrastive::bench {

/// Sets up the unfused forward_backward of the loss of `buffers` (per-anchor MNR or Repel, at
/// their parameters; Repel's mean_over_active off) on their inputs, writing its loss and gradients
/// there (no scale gradient), with a cuBLAS handle of its own; runs it once (its loss must be
/// finite), then returns use(its work), for timing beside the library. False, with the failure
/// reported through `gpu`, when it cannot run.
bool with_unfused(GpuFixture& gpu, const LossBuffers& buffers,
                  const std::function<bool(const Work&)>& use);

}  // namespace contrastive::bench
