// Validation of the ids options: which combinations are defined (include/contrastive/ids.hpp).
#include "host/plan/ids_plan.hpp"

#include <cmath>

#include "host/plan/error.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/plan/mnr_plan.hpp"

namespace contrastive::ids {
namespace detail {

using contrastive::detail::fail;

Status check_options(const char* loss, const IdOptions& o, bool symmetric) {
  if (o.type != IdType::kNone && o.type != IdType::kInt32 && o.type != IdType::kInt64) {
    return fail(Status::kInvalidArgument, "%s: unknown ids type value %d", loss,
                static_cast<int>(o.type));
  }
  if (o.multi_positive && o.type == IdType::kNone) {
    return fail(Status::kInvalidArgument,
                "%s: multi_positive needs ids (type kInt32 or kInt64): the positives of a row are "
                "the keys with its id",
                loss);
  }
  if (o.exclude_self && !o.multi_positive) {
    return fail(Status::kInvalidArgument,
                "%s: exclude_self needs multi_positive: in single-positive mode key i + "
                "positive_offset is row i's positive",
                loss);
  }
  if (o.false_negative_threshold) {
    if (!std::isfinite(o.false_negative_margin)) {
      return fail(Status::kInvalidArgument, "%s: false_negative_margin must be finite, got %g",
                  loss, static_cast<double>(o.false_negative_margin));
    }
    if (o.multi_positive) {
      return fail(Status::kInvalidArgument,
                  "%s: false_negative_threshold needs single-positive mode: its threshold "
                  "sim_i,pos - margin is that of the one positive",
                  loss);
    }
  }
  if (symmetric && o.multi_positive) {
    return fail(Status::kInvalidArgument,
                "%s: symmetric with multi_positive is not defined: call the loss twice with the "
                "queries and keys swapped",
                loss);
  }
  return Status::kSuccess;
}

}  // namespace detail

Status check(const IdOptions& options, const infonce::Params& params) {
  CONTRASTIVE_TRY(infonce::check(params));
  return detail::check_options("infonce", options, params.symmetric);
}

Status check(const IdOptions& options, const mnr::InBatchParams& params) {
  CONTRASTIVE_TRY(mnr::check(params));
  return detail::check_options(mnr::detail::kInBatch, options, params.symmetric);
}

}  // namespace contrastive::ids
