// The upstream gradient of a loss as the kernels see it: dLoss/d(output i) for the output index i
// (a row, or a term for per-term losses), including the reduction's factor.
#pragma once

#include <cstdint>

#include "kernels/host_device.hpp"

namespace contrastive::kernels {

struct UpstreamGradient {
  const float* values;  ///< device: (1), one per output when per_output, or null for 1
  bool per_output;      ///< Reduction::kNone
  float scale;          ///< the reduction's factor, e.g. 1/B for a mean, times 1/2 when symmetric

  CONTRASTIVE_HOST_DEVICE float weight(std::int64_t output) const {
    const float value = values == nullptr ? 1.0f : values[per_output ? output : 0];
    return value * scale;
  }
};

}  // namespace contrastive::kernels
