// Warp-wide reductions whose result is the same, bit for bit, on every lane: each butterfly step
// combines the same two values on both lanes of a pair with a symmetric operation, so there is no
// broadcast and no dependence on the lane.
#pragma once

#include "kernels/online_softmax.hpp"

namespace contrastive::kernels {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

template <typename T>
__device__ T warp_all_sum(T value) {
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2)
    value += __shfl_xor_sync(kFullWarp, value, mask);
  return value;
}

__device__ inline LseState warp_all_merge(LseState state) {
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2) {
    const LseState other{__shfl_xor_sync(kFullWarp, state.max, mask),
                         __shfl_xor_sync(kFullWarp, state.sum, mask)};
    state = lse_merge(state, other);
  }
  return state;
}

}  // namespace contrastive::kernels
