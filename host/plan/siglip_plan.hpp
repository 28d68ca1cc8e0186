// Internal: SigLIP's checks and its logits problem (the sigmoid head), no device needed
// (contrastive_cpu).
#pragma once

#include "contrastive/export.h"
#include "contrastive/siglip.hpp"
#include "host/plan/logits_plan.hpp"

namespace contrastive::siglip::detail {

/// Shapes, strides, scalars and enum values (the dtype only for being known); used by the
/// reference, which runs every dtype.
CONTRASTIVE_API Status check_problem(const Params& params);

/// t, from the scale as given (t or log t).
CONTRASTIVE_API float scale_of(const Params& params);

CONTRASTIVE_API logits::Problem to_problem(const Params& params);

}  // namespace contrastive::siglip::detail
