// Internal: the B x M logits engine (the tile loop of DESIGN.md section 3) behind InfoNCE, in-batch
// MNR and SigLIP. A loss turns its Params into a logits::Problem (host/plan/logits_plan.hpp), whose
// head (host/engine/heads.hpp) says what the tiles turn into.
#pragma once

#include <cstddef>

#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/siglip.hpp"
#include "contrastive/types.hpp"
#include "host/engine/heads.hpp"
#include "host/plan/logits_plan.hpp"

namespace contrastive::logits {

/// The caller's names for the arguments, so that messages speak its language.
struct ArgumentNames {
  const char* call;  ///< e.g. "infonce::forward"
  const char* q;
  const char* k;
  const char* grad_q;
  const char* grad_k;
  const char* grad_scale;               ///< e.g. "grad_temperature"
  const char* grad_bias = nullptr;      ///< heads with a bias
  const char* scale = "scale";          ///< the device value of the scale, e.g. "temperature"
  const char* bias = nullptr;           ///< the device value of the bias (heads with a bias)
  const char* query_ids = "query_ids";  ///< the ids of the rows of q (masked heads)
  const char* key_ids = "key_ids";      ///< the ids of the rows of k
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
  float* grad_scale = nullptr;         ///< dLoss/d(temperature, scale or log scale)
  float* grad_bias = nullptr;          ///< dLoss/dbias
  const float* scale_value = nullptr;  ///< (1) device: the scale parameter, replacing the host one
  const float* bias_value = nullptr;   ///< (1) device: the bias, replacing the host one
  const void* query_ids = nullptr;     ///< (B) int32 / int64 ids of the rows of q (masked heads)
  const void* key_ids = nullptr;       ///< (M) ids of the rows of k
};

inline LogitsTensors tensors_of(const infonce::ForwardArgs& a) {
  LogitsTensors t{a.q, a.k, a.loss, a.saved};
  t.scale_value = a.temperature;
  t.query_ids = a.query_ids;
  t.key_ids = a.key_ids;
  return t;
}
inline LogitsTensors tensors_of(const infonce::BackwardArgs& a) {
  LogitsTensors t{a.q,      a.k,          nullptr,
                  nullptr,  a.saved,      a.grad_loss,
                  a.grad_q, a.grad_k,     a.grad_temperature,
                  nullptr,  a.temperature};
  t.query_ids = a.query_ids;
  t.key_ids = a.key_ids;
  return t;
}
inline LogitsTensors tensors_of(const infonce::ForwardBackwardArgs& a) {
  LogitsTensors t{a.q,      a.k,          a.loss,
                  a.saved,  a.saved,      a.grad_loss,
                  a.grad_q, a.grad_k,     a.grad_temperature,
                  nullptr,  a.temperature};
  t.query_ids = a.query_ids;
  t.key_ids = a.key_ids;
  return t;
}
inline LogitsTensors tensors_of(const mnr::InBatchForwardArgs& a) {
  LogitsTensors t{a.anchors, a.candidates, a.loss, a.saved};
  t.scale_value = a.scale;
  t.query_ids = a.anchor_ids;
  t.key_ids = a.candidate_ids;
  return t;
}
inline LogitsTensors tensors_of(const mnr::InBatchBackwardArgs& a) {
  LogitsTensors t{a.anchors,      a.candidates,      nullptr,      nullptr, a.saved, a.grad_loss,
                  a.grad_anchors, a.grad_candidates, a.grad_scale, nullptr, a.scale};
  t.query_ids = a.anchor_ids;
  t.key_ids = a.candidate_ids;
  return t;
}
inline LogitsTensors tensors_of(const mnr::InBatchForwardBackwardArgs& a) {
  LogitsTensors t{a.anchors,      a.candidates,      a.loss,       a.saved, a.saved, a.grad_loss,
                  a.grad_anchors, a.grad_candidates, a.grad_scale, nullptr, a.scale};
  t.query_ids = a.anchor_ids;
  t.key_ids = a.candidate_ids;
  return t;
}
inline LogitsTensors tensors_of(const siglip::ForwardArgs& a) {
  LogitsTensors t{a.q, a.k, a.loss, a.saved};
  t.scale_value = a.scale;
  t.bias_value = a.bias;
  return t;
}
inline LogitsTensors tensors_of(const siglip::BackwardArgs& a) {
  return {a.q,      a.k,      nullptr,      nullptr,     a.saved, a.grad_loss,
          a.grad_q, a.grad_k, a.grad_scale, a.grad_bias, a.scale, a.bias};
}
inline LogitsTensors tensors_of(const siglip::ForwardBackwardArgs& a) {
  return {a.q,      a.k,      a.loss,       a.saved,     a.saved, a.grad_loss,
          a.grad_q, a.grad_k, a.grad_scale, a.grad_bias, a.scale, a.bias};
}

/// `problem` must already be valid (the loss's check()); checks the pointers, the workspace and
/// the handle, in that order, then launches. The device values of `tensors` (scale_value,
/// bias_value), when set, replace the host values of `scalars`.
Status run(Pass pass, const ArgumentNames& names, const Handle& handle, const Problem& problem,
           Scalars scalars, const LogitsTensors& tensors, void* workspace,
           std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::logits
