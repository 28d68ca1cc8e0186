// InfoNCE validation and its logits problem: no device needed.
#include "host/plan/infonce_plan.hpp"

#include <cmath>

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"
#include "host/plan/ids_plan.hpp"
#include "host/plan/logits_params.hpp"

namespace contrastive::infonce {
namespace detail {
namespace {

using contrastive::detail::fail;
constexpr const char* kLoss = "infonce";

}  // namespace

Status check_problem(const Params& p) {
  return logits::check_params(kLoss, p, /*labelled=*/true, [&] {
    using namespace contrastive::detail;  // the shared checks
    CONTRASTIVE_TRY(require_scale(kLoss, "temperature", p.temperature, p.log_scale, p.max_scale));
    if (p.log_scale) return Status::kSuccess;
    // Unless clamped, the logits would all be +-inf or NaN.
    if (p.max_scale == 0.0f && !std::isfinite(1.0f / p.temperature)) {
      return fail(Status::kInvalidArgument,
                  "infonce: temperature must be >= %.9g (its reciprocal, the logit scale, must be "
                  "a finite float), got %g",
                  static_cast<double>(logits::min_finite_reciprocal()),
                  static_cast<double>(p.temperature));
    }
    return Status::kSuccess;
  });
}

logits::Problem to_problem(const Params& p) {
  if (logits::masks_keys(p.ids)) {
    logits::Problem problem =
        logits::problem_of(p, p.symmetric ? logits::HeadKind::kMaskedSoftmaxRowsAndColumns
                                          : logits::HeadKind::kMaskedSoftmaxRows);
    problem.ids = p.ids;
    return problem;
  }
  return logits::problem_of(
      p, p.symmetric ? logits::HeadKind::kSoftmaxRowsAndColumns : logits::HeadKind::kSoftmaxRows);
}

}  // namespace detail

Status check(const Params& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  CONTRASTIVE_TRY(
      contrastive::detail::require_supported_logits("infonce", params.logits_dtype, params.dtype));
  return ids::detail::check_options("infonce", params.ids, params.symmetric);
}

Status workspace_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "infonce: bytes is null");
  }
  CONTRASTIVE_TRY(check(params));
  logits::WorkspacePlan plan;
  CONTRASTIVE_TRY(logits::plan_workspace(detail::to_problem(params), "infonce", &plan));
  *bytes = plan.required_bytes;
  return Status::kSuccess;
}

Status saved_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr) {
    return contrastive::detail::fail(Status::kNullPointer, "infonce: bytes is null");
  }
  CONTRASTIVE_TRY(check(params));
  *bytes = logits::saved_bytes(detail::to_problem(params));
  return Status::kSuccess;
}

}  // namespace contrastive::infonce
