// Standard normal inputs drawn on the device: a counter-based generator (SplitMix64 of the seed
// and the element's index, then Box-Muller), so that inputs of any size take microseconds, not the
// seconds a host generator takes for the largest (B N D up to 10^9) shapes, and element i has the
// same value in every dtype (drawn as a float, then rounded to the dtype).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/types.hpp"

namespace contrastive::bench {

/// Writes `count` standard normal values from `seed` into `out`, stored in `dtype`, on `stream`.
cudaError_t fill_standard_normal(void* out, std::size_t count, std::uint64_t seed, DType dtype,
                                 cudaStream_t stream);

/// Reads `bytes` (a multiple of 16) from `source` and writes nothing but, when the bytes xor to a
/// value no input has, one word to `sink`: the memory floor of a pass that only reads.
cudaError_t read_bytes(const void* source, std::size_t bytes, unsigned* sink, cudaStream_t stream);

}  // namespace contrastive::bench
