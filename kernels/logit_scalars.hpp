// The scalars of the B x M losses as the device sees them. A scale s (logits = s * sim) and a bias
// (SigLIP) may be given as host floats or as device pointers (a learnable temperature needs no
// host read and a CUDA graph can capture the call); either way one thread resolves them once per
// call into a small block of the workspace, which the kernels read: the GEMMs run with host
// alphas that leave s out (1 for the similarities, the reduction's factor for the gradients), and
// the kernels apply s where they read the tile and where they finish the gradients.
// resolve_scalars() is that thread's arithmetic (kernels/resolve_scalars.cu runs it), shared
// with the host: the parameter checks and the CPU tests use it too. No CUDA headers.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/host_device.hpp"

namespace contrastive::kernels {

/// How the caller gives the scale and which gradient it asks for.
enum class ScaleForm : std::int32_t {
  kTemperature,  ///< the value is t, s = 1 / t; gradient dLoss/dt
  kScale,        ///< the value is s; gradient dLoss/ds
  kLogScale,     ///< the value is theta, s = exp(theta) (CLIP's logit_scale); gradient dLoss/dtheta
};

/// The resolved scalars, in the workspace.
struct ResolvedScalars {
  float logit_scale;  ///< s; NaN when the value gives no finite positive scale
  float bias;
  /// Turns sum(G * logits), G without f, into the gradient of the caller's parameter:
  /// dLoss/ds = f sum / s, dLoss/dt = -f sum s, dLoss/dtheta = f sum; 0 where max_scale clamps.
  double scale_gradient_factor;
  /// What the gradients' finishing kernels multiply the summed products by: s, unless a head
  /// whose reduction's factor is known on the device only (a mean over the rows that have a
  /// positive) sets s / count before backward finishes.
  float gradient_scale;
};

/// s from the value in its form, clamped at max_scale (when > 0); `clamped` tells whether the
/// clamp took effect. A value that gives no finite positive s (t <= 0, NaN, exp overflowing
/// without a clamp) gives NaN, so that the loss and the gradients are NaN rather than plausible;
/// exp(theta) may underflow to 0 (a log-scale far below 0 is a scale of 0).
CONTRASTIVE_HOST_DEVICE inline float logit_scale_of(float value, ScaleForm form, float max_scale,
                                                    bool* clamped) {
  float s = value;
  if (form == ScaleForm::kTemperature) s = 1.0f / value;
  if (form == ScaleForm::kLogScale) s = expf(value);
  *clamped = max_scale > 0.0f && s > max_scale;
  if (*clamped) s = max_scale;
  const bool positive = form == ScaleForm::kLogScale ? s >= 0.0f : s > 0.0f;
  if (!positive || !(s <= 3.402823466e+38f)) s = NAN;
  return s;
}

CONTRASTIVE_HOST_DEVICE inline ResolvedScalars resolve_scalars(float value, ScaleForm form,
                                                               float max_scale, float bias,
                                                               double f) {
  ResolvedScalars r{};
  bool clamped = false;
  const float s = logit_scale_of(value, form, max_scale, &clamped);
  r.logit_scale = s;
  r.gradient_scale = s;
  r.bias = bias;
  const double sd = static_cast<double>(s);
  double factor = f / sd;
  if (form == ScaleForm::kTemperature) factor = -f * sd;
  if (form == ScaleForm::kLogScale) factor = f;
  if (clamped) factor = 0.0;
  r.scale_gradient_factor = s == s ? factor : sd;  // NaN with s
  return r;
}

}  // namespace contrastive::kernels
