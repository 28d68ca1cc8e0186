// Which keys a row keeps and which are its positives, under ids (contrastive/ids.hpp), one element
// at a time: the rule the masked softmax kernels (kernels/masked_softmax_xent.cu) apply to every
// element of a tile, forward and backward alike, and that the CPU tests emulate. Nothing is
// stored: the mask of a tile is recomputed from the ids and the tile's similarities each time.
// Compiles with g++ and nvcc.
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/host_device.hpp"

namespace contrastive::kernels {

/// The ids of one call as the kernels read them: device arrays of int32 or int64 (`wide`), null
/// without ids; and the options.
struct IdMask {
  const void* row_ids = nullptr;  ///< (B) the query rows' ids a_i
  const void* key_ids = nullptr;  ///< (M) the key rows' ids b_j
  bool wide = false;              ///< int64 ids (else int32)
  bool multi_positive = false;
  bool exclude_self = false;
  bool threshold = false;  ///< the false-negative threshold
  float margin = 0.0f;

  CONTRASTIVE_HOST_DEVICE bool has_ids() const { return row_ids != nullptr; }
};

CONTRASTIVE_HOST_DEVICE inline std::int64_t load_id(const void* ids, bool wide, std::int64_t i) {
  return wide ? static_cast<const std::int64_t*>(ids)[i]
              : static_cast<std::int64_t>(static_cast<const std::int32_t*>(ids)[i]);
}

/// What one logit is to the softmax it belongs to.
struct KeyRole {
  bool kept;      ///< in the denominator
  bool positive;  ///< in the numerator (its positive, or one of its positives)
};

/// The role of an element of a softmax over the keys of a row (or over the rows of a positive
/// column, symmetric mode): `is_own` says it is the row's own positive key (i + offset; for a
/// column, row i itself), `same_id` that its two ids are equal, `sim` its similarity and
/// `positive_sim` that of the softmax's one positive (threshold only).
///   single-positive: its positive is kept; another element leaves with the same id, or when
///                    sim > positive_sim - margin (a key at the threshold is kept);
///   multi-positive:  every element is kept but the row itself with exclude_self; the kept ones
///                    with the same id are the positives.
CONTRASTIVE_HOST_DEVICE inline KeyRole key_role(const IdMask& mask, bool is_own, bool same_id,
                                                float sim, float positive_sim) {
  if (mask.multi_positive) {
    const bool kept = !(mask.exclude_self && is_own);
    return {kept, kept && same_id};
  }
  if (is_own) return {true, true};
  const bool dropped = same_id || (mask.threshold && sim > positive_sim - mask.margin);
  return {!dropped, false};
}

/// dLoss/dlogit of one element of a masked softmax row with log-sum-exp `lse` over its kept
/// elements, times `upstream`: softmax - 1/count for a positive (count = 1 in single-positive
/// mode), softmax for another kept element, exactly 0 for a masked one. A row with no positive
/// (multi-positive) passes `active` false: no gradient, whatever its logits.
CONTRASTIVE_HOST_DEVICE inline float masked_xent_grad(float logit, float lse, KeyRole role,
                                                      float inverse_count, bool active,
                                                      float upstream) {
  if (!active || !role.kept) return 0.0f;
  return upstream * (expf(logit - lse) - (role.positive ? inverse_count : 0.0f));
}

/// A row's loss from its kept log-sum-exp, the sum of its positives' logits and their count:
/// lse - sum / count, and 0 for a row with no positive (whose lse may be -inf).
CONTRASTIVE_HOST_DEVICE inline float masked_row_loss(float lse, float positive_sum, float count) {
  return count > 0.0f ? lse - positive_sum / count : 0.0f;
}

}  // namespace contrastive::kernels
