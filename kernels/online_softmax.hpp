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

/// Absorb one value with a single exp. A -inf value (a masked candidate, or a dot product that
/// overflowed) leaves the state as it is: it adds exp(-inf) = 0 to the sum, and pushing it into
/// the empty state must not compute exp(-inf - (-inf)) = NaN. A NaN value still poisons the state.
CONTRASTIVE_HOST_DEVICE inline LseState lse_push(LseState state, float x) {
  if (x == -INFINITY) return state;
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

/// One term of dLoss/dlogit for a softmax cross-entropy row (or column) with log-sum-exp `lse`:
/// upstream * (softmax - onehot). The reduction's factors (1/B for a mean, 1/2 in symmetric mode)
/// are not in it: the gradient GEMMs apply them in alpha, so a G stored in fp16 keeps its entries
/// (about upstream / M) in fp16's normal range. A -inf logit gives exactly 0 (its candidate is out
/// of the softmax); a NaN logit or lse gives NaN.
CONTRASTIVE_HOST_DEVICE inline float softmax_xent_grad(float logit, float lse, bool positive,
                                                       float upstream) {
  return upstream * (expf(logit - lse) - (positive ? 1.0f : 0.0f));
}

/// grad * logit, the per-element term of the temperature's (or scale's) gradient, with 0 where the
/// gradient is 0: a -inf logit left the softmax and contributes nothing, where the plain product
/// 0 * -inf would be NaN. A NaN in either factor still gives NaN (NaN != 0).
CONTRASTIVE_HOST_DEVICE inline float grad_times_logit(float grad, float logit) {
  return grad == 0.0f ? 0.0f : grad * logit;
}

/// Functor form of lse_merge for CUB reductions.
struct LseMerge {
  CONTRASTIVE_HOST_DEVICE LseState operator()(const LseState& a, const LseState& b) const {
    return lse_merge(a, b);
  }
};

}  // namespace contrastive::kernels
