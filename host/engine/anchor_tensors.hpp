// Internal: the tensors of a per-anchor call (per-anchor MNR, Repel), the same shape for the three
// passes, so that each loss has one run function and its entry points only name the pass.
#pragma once

#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"

namespace contrastive::detail {

/// What a pass (or a loss: Repel has no positives and no scale) does not use is null. The saved
/// buffer is written by the forward passes and read by the backward passes.
struct AnchorTensors {
  const void* anchors = nullptr;    ///< (B, stride)
  const void* positives = nullptr;  ///< (B, stride), per-anchor MNR
  const void* negatives = nullptr;  ///< (B * n, stride)
  float* loss = nullptr;            ///< forward passes
  void* saved = nullptr;            ///< forward passes: written
  const void* saved_in = nullptr;   ///< backward passes: read (forward_backward: the same buffer)
  const float* grad_loss = nullptr;
  void* grad_anchors = nullptr;
  void* grad_positives = nullptr;
  void* grad_negatives = nullptr;
  float* grad_scale = nullptr;
};

inline AnchorTensors tensors_of(const mnr::PerAnchorForwardArgs& a) {
  return {a.anchors, a.positives, a.negatives, a.loss, a.saved};
}
inline AnchorTensors tensors_of(const mnr::PerAnchorBackwardArgs& a) {
  return {a.anchors,   a.positives,    a.negatives,      nullptr,          nullptr,     a.saved,
          a.grad_loss, a.grad_anchors, a.grad_positives, a.grad_negatives, a.grad_scale};
}
inline AnchorTensors tensors_of(const mnr::PerAnchorForwardBackwardArgs& a) {
  return {a.anchors,   a.positives,    a.negatives,      a.loss,           a.saved,     a.saved,
          a.grad_loss, a.grad_anchors, a.grad_positives, a.grad_negatives, a.grad_scale};
}
inline AnchorTensors tensors_of(const repel::ForwardArgs& a) {
  return {a.anchors, nullptr, a.negatives, a.loss, a.saved};
}
inline AnchorTensors tensors_of(const repel::BackwardArgs& a) {
  return {a.anchors, nullptr,     a.negatives,    nullptr, nullptr,
          a.saved,   a.grad_loss, a.grad_anchors, nullptr, a.grad_negatives};
}
inline AnchorTensors tensors_of(const repel::ForwardBackwardArgs& a) {
  return {a.anchors, nullptr,     a.negatives,    a.loss,  a.saved,
          a.saved,   a.grad_loss, a.grad_anchors, nullptr, a.grad_negatives};
}

}  // namespace contrastive::detail
