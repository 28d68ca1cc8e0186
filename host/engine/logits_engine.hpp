// Internal: the B x M logits engine (the tile loop of DESIGN.md section 3) behind InfoNCE's
// forward/backward/forward_backward, also run by in-batch MNR (rectangular InfoNCE with a scale
// instead of a temperature, other argument names).
#pragma once

#include <cstddef>

#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/types.hpp"

namespace contrastive::infonce::detail {

/// logits = scale * sim. The scalar gradient written to `grad_scalar` is dLoss/dtemperature
/// (scale = 1/temperature) or dLoss/dscale.
struct LogitScale {
  enum class Gradient { kTemperature, kScale };
  float scale;
  Gradient gradient;
};

/// The caller's names for the arguments, so that messages speak its language.
struct ArgumentNames {
  const char* call;  ///< e.g. "infonce::forward"
  const char* q;
  const char* k;
  const char* grad_q;
  const char* grad_k;
  const char* grad_scalar;
};

/// The tensors of one call, the same shape for the three passes: what a pass does not use is null.
/// The saved buffer is written by the forward passes and read by the backward passes.
struct LogitsTensors {
  const void* q = nullptr;         ///< (B, q stride) queries or anchors
  const void* k = nullptr;         ///< (M, k stride) keys or candidates
  float* loss = nullptr;           ///< forward passes
  void* saved = nullptr;           ///< forward passes: written
  const void* saved_in = nullptr;  ///< backward passes: read (forward_backward: the same buffer)
  const float* grad_loss = nullptr;
  void* grad_q = nullptr;
  void* grad_k = nullptr;
  float* grad_scalar = nullptr;  ///< dLoss/dtemperature or dLoss/dscale
};

inline LogitsTensors tensors_of(const ForwardArgs& a) {
  return {a.q, a.k, a.loss, a.saved};
}
inline LogitsTensors tensors_of(const BackwardArgs& a) {
  return {a.q, a.k, nullptr, nullptr, a.saved, a.grad_loss, a.grad_q, a.grad_k, a.grad_temperature};
}
inline LogitsTensors tensors_of(const ForwardBackwardArgs& a) {
  return {a.q, a.k, a.loss, a.saved, a.saved, a.grad_loss, a.grad_q, a.grad_k, a.grad_temperature};
}
inline LogitsTensors tensors_of(const mnr::InBatchForwardArgs& a) {
  return {a.anchors, a.candidates, a.loss, a.saved};
}
inline LogitsTensors tensors_of(const mnr::InBatchBackwardArgs& a) {
  return {a.anchors,   a.candidates,   nullptr,           nullptr,     a.saved,
          a.grad_loss, a.grad_anchors, a.grad_candidates, a.grad_scale};
}
inline LogitsTensors tensors_of(const mnr::InBatchForwardBackwardArgs& a) {
  return {a.anchors,      a.candidates,      a.loss,      a.saved, a.saved, a.grad_loss,
          a.grad_anchors, a.grad_candidates, a.grad_scale};
}

/// `params` must already be valid (check_problem and the dtype); checks the pointers, the
/// workspace and the handle, in that order, then launches.
Status run(Pass pass, const ArgumentNames& names, const Handle& handle, const Params& params,
           LogitScale logit_scale, const LogitsTensors& tensors, void* workspace,
           std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::infonce::detail
