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

}  // namespace contrastive::repel::detail
