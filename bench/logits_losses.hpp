// The benchmarks of the losses over logits S = scale * Q K^T (InfoNCE, CLIP's symmetric form,
// in-batch MNR: rectangular InfoNCE with a scale, Q the anchors and K the candidates; SigLIP's
// sigmoid loss), from their descriptions: Q is the first input, K the second.
//   The reference comparison before timing (bench/reference_check.hpp): the library runs forward
// with Reduction::kNone and backward with kNone and an upstream gradient of 1 on the sampled rows
// R and 0 elsewhere; tests/support/sampled_reference.hpp gives the float64 per-row losses at R
// and every row of both gradients, and their fp32 error bounds, without the B x M matrix.
//   The cuBLAS floor (bench/cublas_floor.hpp) of the GEMMs each operation needs, in the same
// dtype: forward the logits S = Q K^T; backward (which recomputes them) and forward_backward also
// dQ = G K and dK = G^T Q.
#pragma once

#include <string>

#include <benchmark/benchmark.h>

#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"

namespace contrastive::bench {

/// The settings a loss over logits is measured at: inputs in `dtype`, cosine, mean, not
/// symmetric, no TF32, an fp32 logits tile (the Params' defaults); B, the candidates beyond B
/// (Shape::candidates), D and the logit scale are the caller's.
describe::Shape logits_shape(std::int64_t batch, std::int64_t candidates, std::int64_t dim,
                             DType dtype, float logit_scale);

/// Compares the loss of `timed` with the reference, then the timed forward's mean loss with the
/// mean of the per-row losses. Reports through GpuFixture::report_reference; false when the
/// comparison failed or could not run. Writes the buffers' gradients.
bool check_logits_loss(GpuFixture& gpu, const LossBuffers& timed);

/// The cuBLAS floor's outputs for the loss of some LossBuffers, fp32 as the library's GEMM
/// outputs are in any dtype.
struct LogitsFloor {
  DeviceBuffer logits;  // (B, M): the floor's S, reused as its G in dtype
  DeviceBuffer grad_q;  // (B, D)
  DeviceBuffer grad_k;  // (M, D)

  bool allocate(GpuFixture& gpu, const LossBuffers& buffers);
  /// The floor's GEMMs on the inputs of `buffers`: S alone, or with `gradients` also dQ and dK.
  LogitsGemms gemms(const LossBuffers& buffers, bool gradients) const;
};

/// What every benchmark of a loss over logits does before timing: allocates `buffers` (the scalar
/// gradients only with `scalar_gradients`: by default the temperature or scale is a fixed
/// hyperparameter), compares them with the reference, makes the untimed call of `operation`.
/// False, with the failure reported, when the benchmark cannot be timed.
bool prepare_logits_loss(GpuFixture& gpu, const std::string& name, const describe::Params& params,
                         Operation operation, LossBuffers* buffers, bool scalar_gradients = false);

/// Q and K read once, and for the gradient passes dQ and dK written once.
double operation_bytes(Operation operation, const LossBuffers& buffers);

/// Times `operation` of the prepared `buffers` against the cuBLAS floor of its GEMMs and, when
/// given, the unfused baseline (run once already, its loss finite).
bool time_logits_loss(GpuFixture& gpu, const LossBuffers& buffers, Operation operation,
                      const Work* unfused = nullptr);

/// One benchmark of `operation` of the loss at `params`: prepared, then timed against its floor.
void benchmark_logits_loss(benchmark::State& state, const std::string& name,
                           const describe::Params& params, Operation operation,
                           bool scalar_gradients = false);

}  // namespace contrastive::bench
