// Per-row softmax statistics shared by the kernels and the host: a running (max, sum of exp) pair
// that absorbs values one at a time or merges with another pair, so a row split over threads,
// blocks or tiles reduces to the same log-sum-exp. Compiles with g++ (tested on the CPU) and nvcc.
#pragma once

#include <math.h>

#include "kernels/host_device.hpp"

namespace contrastive::kernels {

/// sum = sum of exp(x - max) over the values absorbed; the empty state is (-inf, 0).
struct LseState {
  float max;
  float sum;
};

/// max(a, b) that keeps a NaN from either side (fmaxf would drop it and launder NaN into a loss).
CONTRASTIVE_HOST_DEVICE inline float nan_propagating_max(float a, float b) {
  return (a != a || a > b) ? a : b;
}

CONTRASTIVE_HOST_DEVICE inline LseState lse_empty() {
  return {-INFINITY, 0.0f};
}

/// Absorb one value with a single exp.
CONTRASTIVE_HOST_DEVICE inline LseState lse_push(LseState state, float x) {
  if (x > state.max || x != x) {
    return {x, state.sum * expf(state.max - x) + 1.0f};
  }
  return {state.max, state.sum + expf(x - state.max)};
}

/// Merge two states; order does not change the result beyond rounding.
CONTRASTIVE_HOST_DEVICE inline LseState lse_merge(LseState a, LseState b) {
  const float max = nan_propagating_max(a.max, b.max);
  if (max == -INFINITY) return lse_empty();  // both empty: avoid (-inf) - (-inf)
  return {max, a.sum * expf(a.max - max) + b.sum * expf(b.max - max)};
}

/// log(sum_j exp(x_j)) of the absorbed values; -inf when empty.
CONTRASTIVE_HOST_DEVICE inline float lse_value(LseState state) {
  return state.max + logf(state.sum);
}

/// Functor form of lse_merge for CUB reductions.
struct LseMerge {
  CONTRASTIVE_HOST_DEVICE LseState operator()(const LseState& a, const LseState& b) const {
    return lse_merge(a, b);
  }
};

}  // namespace contrastive::kernels
