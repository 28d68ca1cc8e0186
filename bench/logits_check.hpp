// The reference comparison (bench/reference_check.hpp) of a loss over logits: InfoNCE, CLIP's
// symmetric form, in-batch MNR (rectangular InfoNCE with a scale). The library runs forward with
// Reduction::kNone and backward with kNone and an upstream gradient of 1 on the sampled rows R and
// 0 elsewhere; tests/support/sampled_reference.hpp gives the float64 per-row losses at R and every
// row of both gradients, and their fp32 error bounds, without the B x M matrix.
#pragma once

#include <cstdint>
#include <functional>

#include "bench/gpu_fixture.hpp"
#include "bench/loss_buffers.hpp"
#include "contrastive/infonce.hpp"

namespace contrastive::bench {

/// The library's calls the comparison makes, on the buffers' Q and K, with Reduction::kNone:
/// `forward(per_row_loss)` writes (B) fp32 losses; `backward(grad_loss)` reads a (B) fp32 upstream
/// gradient and writes grad_q and grad_k of the buffers. Each returns the library's Status.
struct LogitsCalls {
  std::function<Status(float* per_row_loss)> forward;
  std::function<Status(const float* grad_loss)> backward;
  /// The timed configuration's forward (its reduction), writing buffers.outputs.loss.
  std::function<Status()> timed_forward;
};

/// Compares the calls' results with the reference for `as_infonce` (the problem as InfoNCE:
/// shapes, similarity, symmetric; reduction ignored) at `logit_scale` (1 / temperature, or the
/// scale); then the timed forward's mean loss with the mean of the per-row losses. Reports
/// through GpuFixture::report_reference; false when the comparison failed or could not run.
bool check_logits_loss(GpuFixture& gpu, const infonce::Params& as_infonce, double logit_scale,
                       const LogitsLossBuffers& buffers, const LogitsCalls& calls);

}  // namespace contrastive::bench
