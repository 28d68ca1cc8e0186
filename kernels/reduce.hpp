// Launcher of the deterministic single-block sum (kernels/reduce.cu) that turns per-row partials
// into a loss or a scalar gradient.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace contrastive::kernels {

/// out[0] = factor * sum(values[0, count)), summed in double in a fixed order (bitwise repeatable).
/// With `divisor` (count values) set, the sum is divided by sum(divisor) first; a zero divisor sum
/// gives 0 (a mean over no terms), unless the sum is NaN, which stays NaN. With `device_factor`
/// set, the result is also multiplied by *device_factor (a factor known only on the device, such
/// as one that depends on a scale held there).
cudaError_t launch_sum(const float* values, std::int64_t count, double factor, const float* divisor,
                       float* out, cudaStream_t stream, const double* device_factor = nullptr);

}  // namespace contrastive::kernels
