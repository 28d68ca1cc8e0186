// Internal: everything about an InfoNCE call that needs no device: validation of the problem and
// its translation into the logits engine's Problem (host/plan/logits_plan.hpp), which plans the
// tiles, the workspace and the saved buffer. Pure C++ (contrastive_cpu).
#pragma once

#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/infonce.hpp"
#include "host/plan/logits_plan.hpp"

namespace contrastive::infonce::detail {

/// Validates shapes, strides, scalars and enum values; the dtype only for being a known value.
/// The reference uses this (it runs every dtype); check() adds what the GPU path supports.
CONTRASTIVE_API Status check_problem(const Params& params);

inline std::int64_t q_stride(const Params& p) {
  return row_stride_or_dim(p.q_row_stride, p.dim);
}
inline std::int64_t k_stride(const Params& p) {
  return row_stride_or_dim(p.k_row_stride, p.dim);
}

/// The logits engine's problem: softmax rows (or rows and columns, symmetric) over S = sim / t.
CONTRASTIVE_API logits::Problem to_problem(const Params& params);

}  // namespace contrastive::infonce::detail
