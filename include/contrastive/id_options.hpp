// The options of ids for the losses over B x M logits (InfoNCE, in-batch MNR); their meaning and
// valid combinations are in contrastive/ids.hpp.
#pragma once

namespace contrastive::ids {

/// Element type of the id arrays (the reference reads int64 ids on the host whatever the type,
/// as it reads double inputs whatever the dtype). kNone: no ids.
enum class IdType : int {
  kNone = 0,
  kInt32 = 1,
  kInt64 = 2,
};

/// The options of ids; the defaults change nothing (no ids, no threshold).
struct IdOptions {
  IdType type = IdType::kNone;  ///< ids of the query rows (B) and key rows (M), or none
  bool multi_positive = false;  ///< SupCon's L_out: every kept key with the query's id is positive
  /// Queries are keys [offset, offset + B): key i + offset leaves row i (multi-positive only).
  bool exclude_self = false;
  bool false_negative_threshold = false;  ///< drop keys with sim_ij > sim_i,pos - margin
  float false_negative_margin = 0.0f;     ///< the margin m of the threshold; finite, any sign
};

}  // namespace contrastive::ids
