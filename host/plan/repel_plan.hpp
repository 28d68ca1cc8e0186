// Internal: Repel's checks and buffers, no device needed (contrastive_cpu).
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/repel.hpp"

namespace contrastive::repel::detail {

/// Shapes, strides, scalars, enum values (the dtype only for being known); used by the reference.
CONTRASTIVE_API Status check_problem(const Params& params);

/// Per-row partials reduced into the loss, and the count of terms above the margin.
struct Workspace {
  std::size_t row_sum = 0;     ///< (B) f32: sum of the row's terms
  std::size_t row_active = 0;  ///< (B) f32: how many of the row's terms are above the margin
  std::size_t used_bytes = 0;
  std::size_t required_bytes = 0;
};
CONTRASTIVE_API Workspace plan_workspace(const Params& params);

/// Saved state, offsets in floats: the count of active terms (read with mean_over_active), then
/// what backward needs to skip the similarity pass.
struct Saved {
  std::size_t active_total = 0;          ///< (1) terms above the margin over the batch
  std::size_t anchor_inverse_norms = 0;  ///< (B) 1 / max(|u_b|, eps), negative where clamped
  std::size_t similarities = 0;          ///< (B, N)
  std::size_t inverse_norms = 0;         ///< (B, N) as the anchors'
  std::size_t floats = 0;
};
CONTRASTIVE_API Saved saved_layout(const Params& params);

}  // namespace contrastive::repel::detail
