// Internal: MNR's checks and buffers, no device needed (contrastive_cpu).
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "host/plan/logits_plan.hpp"

namespace contrastive::mnr::detail {

/// The names messages give the two layouts.
inline constexpr const char* kPerAnchor = "mnr (per-anchor)";
inline constexpr const char* kInBatch = "mnr (in-batch)";

/// Shapes, strides, scalars, enum values (the dtype only for being known); used by the reference.
CONTRASTIVE_API Status check_problem(const PerAnchorParams& params);
CONTRASTIVE_API Status check_problem(const InBatchParams& params);

/// In-batch MNR as rectangular InfoNCE: M = (1 + K) B candidates, positives at offset 0. The logit
/// scale is passed apart; the temperature here is a placeholder.
CONTRASTIVE_API infonce::Params to_infonce(const InBatchParams& params);

/// The logits engine's problem of in-batch MNR (that of to_infonce()).
CONTRASTIVE_API logits::Problem to_problem(const InBatchParams& params);

/// Per-anchor scratch: per-row partials reduced into the loss and the scale gradient.
struct PerAnchorWorkspace {
  std::size_t row_loss = 0;        ///< (B) f32
  std::size_t row_logit_grad = 0;  ///< (B) f32: sum over candidates of dLoss/dlogit * logit
  std::size_t scalars = 0;         ///< the call's resolved scale (kernels/logit_scalars.hpp)
  std::size_t used_bytes = 0;
  std::size_t required_bytes = 0;
};
CONTRASTIVE_API PerAnchorWorkspace plan_workspace(const PerAnchorParams& params);

/// Per-anchor saved state, offsets in floats: what backward needs to skip the similarity pass.
struct PerAnchorSaved {
  std::size_t row_lse = 0;               ///< (B) each row's log-sum-exp
  std::size_t anchor_inverse_norms = 0;  ///< (B) 1 / max(|a_b|, eps), negative where clamped
  std::size_t similarities = 0;          ///< (B, n + 1) positive first
  std::size_t inverse_norms = 0;         ///< (B, n + 1) as the anchors'
  std::size_t floats = 0;
};
CONTRASTIVE_API PerAnchorSaved saved_layout(const PerAnchorParams& params);

}  // namespace contrastive::mnr::detail
