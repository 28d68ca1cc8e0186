// Per-logit math of the pairwise sigmoid loss (SigLIP), shared by the kernels and the host: the
// loss term softplus(-z l) with z = +1 for the positive and -1 otherwise, and its derivative
// sigmoid(l) - y. Both stay finite and accurate at any |l| and keep NaN. Compiles with g++ (tested
// on the CPU) and nvcc.
#pragma once

#include <math.h>

#include "kernels/host_device.hpp"

namespace contrastive::kernels {

/// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)). NaN stays NaN (a plain fmaxf
/// would turn it into 0).
CONTRASTIVE_HOST_DEVICE inline float softplus(float x) {
  if (x != x) return x;
  return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
}

/// 1 / (1 + exp(-x)) without overflow: exp is only taken of -|x|.
CONTRASTIVE_HOST_DEVICE inline float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);  // also the NaN path: NaN >= 0 is false
  return e / (1.0f + e);
}

/// The loss of one logit l: softplus(-l) for the positive, softplus(l) for a negative.
CONTRASTIVE_HOST_DEVICE inline float sigmoid_xent(float logit, bool positive) {
  return softplus(positive ? -logit : logit);
}

/// upstream * dLoss/dl = upstream * (sigmoid(l) - y), with the positive's sigmoid(l) - 1 taken as
/// -sigmoid(-l) so that a confident positive keeps its small gradient instead of cancelling to 0.
CONTRASTIVE_HOST_DEVICE inline float sigmoid_xent_grad(float logit, bool positive, float upstream) {
  return upstream * (positive ? -sigmoid(-logit) : sigmoid(logit));
}

}  // namespace contrastive::kernels
