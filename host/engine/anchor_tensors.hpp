// Internal: the tensors of a per-anchor call (per-anchor MNR, Repel), the same shape for the three
// passes, so that each loss has one run function and its entry points only name the pass.
#pragma once

#include <cstddef>

#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"
#include "host/plan/arguments.hpp"
#include "kernels/anchor_candidates.hpp"

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
  const float* scale = nullptr;  ///< (1) device: the scale, replacing the params' (MNR)
};

inline AnchorTensors tensors_of(const mnr::PerAnchorForwardArgs& a) {
  AnchorTensors t{a.anchors, a.positives, a.negatives, a.loss, a.saved};
  t.scale = a.scale;
  return t;
}
inline AnchorTensors tensors_of(const mnr::PerAnchorBackwardArgs& a) {
  return {a.anchors,   a.positives,    a.negatives,      nullptr,          nullptr,      a.saved,
          a.grad_loss, a.grad_anchors, a.grad_positives, a.grad_negatives, a.grad_scale, a.scale};
}
inline AnchorTensors tensors_of(const mnr::PerAnchorForwardBackwardArgs& a) {
  return {a.anchors,   a.positives,    a.negatives,      a.loss,           a.saved,      a.saved,
          a.grad_loss, a.grad_anchors, a.grad_positives, a.grad_negatives, a.grad_scale, a.scale};
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

/// The pointer checks of a per-anchor call, in the order of the arguments: the inputs (positives
/// only when `with_positives`, per-anchor MNR), the loss and the saved buffer the pass uses, then
/// for the backward passes at least one gradient (grad_scale only with positives) and the
/// alignment of each.
inline Status check_anchor_tensors(Pass pass, const char* call, DType dtype, bool with_positives,
                                   const AnchorTensors& t) {
  const std::size_t element = dtype_size(dtype);
  CONTRASTIVE_TRY(require_tensor(t.anchors, element, call, "anchors"));
  if (with_positives) CONTRASTIVE_TRY(require_tensor(t.positives, element, call, "positives"));
  CONTRASTIVE_TRY(require_tensor(t.negatives, element, call, "negatives"));
  const bool forward_pass = computes_loss(pass);
  if (forward_pass) CONTRASTIVE_TRY(require_tensor(t.loss, sizeof(float), call, "loss"));
  CONTRASTIVE_TRY(
      require_tensor(forward_pass ? t.saved : t.saved_in, sizeof(float), call, "saved"));
  CONTRASTIVE_TRY(require_alignment(t.scale, sizeof(float), call, "scale"));
  if (!computes_gradients(pass)) return Status::kSuccess;
  if (with_positives) {
    if (t.grad_anchors == nullptr && t.grad_positives == nullptr && t.grad_negatives == nullptr &&
        t.grad_scale == nullptr) {
      return fail(Status::kNullPointer,
                  "%s: grad_anchors, grad_positives, grad_negatives and grad_scale are all null: "
                  "nothing to compute",
                  call);
    }
  } else if (t.grad_anchors == nullptr && t.grad_negatives == nullptr) {
    return fail(Status::kNullPointer,
                "%s: grad_anchors and grad_negatives are both null: nothing to compute", call);
  }
  CONTRASTIVE_TRY(require_alignment(t.grad_loss, sizeof(float), call, "grad_loss"));
  CONTRASTIVE_TRY(require_alignment(t.grad_anchors, element, call, "grad_anchors"));
  if (with_positives) {
    CONTRASTIVE_TRY(require_alignment(t.grad_positives, element, call, "grad_positives"));
  }
  CONTRASTIVE_TRY(require_alignment(t.grad_negatives, element, call, "grad_negatives"));
  if (with_positives) {
    CONTRASTIVE_TRY(require_alignment(t.grad_scale, sizeof(float), call, "grad_scale"));
  }
  return Status::kSuccess;
}

/// The saved buffer as the per-anchor kernels take it: the forward passes write it, kBackward
/// only reads it through the same kernel arguments (which take one pointer type for both).
inline float* saved_floats(Pass pass, const AnchorTensors& t) {
  if (computes_loss(pass)) return static_cast<float*>(t.saved);
  return const_cast<float*>(static_cast<const float*>(t.saved_in));
}

/// The similarities and inverse norms forward saves, at their offsets in a loss's saved layout.
template <typename SavedLayout>
kernels::SavedSimilarities saved_similarities(float* saved, const SavedLayout& layout) {
  return {saved + layout.anchor_inverse_norms, saved + layout.similarities,
          saved + layout.inverse_norms};
}

}  // namespace contrastive::detail
