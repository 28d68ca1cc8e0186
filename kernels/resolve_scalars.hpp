// Launcher of the one-thread kernel that resolves a call's scalars (kernels/logit_scalars.hpp) on
// the stream: a scale or bias held on the device is read there, in order with the caller's updates.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/logit_scalars.hpp"

namespace contrastive::kernels {

/// The scalars of a call as given: host values, or device pointers that replace them.
struct ScalarInputs {
  float value = 1.0f;                   ///< in `form`
  const float* device_value = nullptr;  ///< (1) device: replaces value
  ScaleForm form = ScaleForm::kScale;
  float max_scale = 0.0f;  ///< > 0: s = min(s, max_scale), and no gradient where it clamps
  float bias = 0.0f;
  const float* device_bias = nullptr;  ///< (1) device: replaces bias
  double reduction_factor = 1.0;       ///< f: 1/B for a mean, times 1/2 for rows and columns
};

/// One thread: reads the device values that are given and writes resolve_scalars() to `out`.
cudaError_t launch_resolve_scalars(const ScalarInputs& in, ResolvedScalars* out,
                                   cudaStream_t stream);

}  // namespace contrastive::kernels
