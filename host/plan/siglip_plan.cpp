// SigLIP validation and its logits problem: no device needed.
#include "host/plan/siglip_plan.hpp"

#include <cmath>

#include "host/plan/checks.hpp"
#include "host/plan/error.hpp"
#include "host/plan/logits_params.hpp"

namespace contrastive::siglip {
namespace detail {
namespace {

using contrastive::detail::fail;
constexpr const char* kLoss = "siglip";

}  // namespace

float scale_of(const Params& p) {
  const float t = p.log_scale ? std::exp(p.scale) : p.scale;
  return p.max_scale > 0.0f && t > p.max_scale ? p.max_scale : t;
}

Status check_problem(const Params& p) {
  return logits::check_params(kLoss, p, /*labelled=*/!p.negatives_only, [&] {
    CONTRASTIVE_TRY(
        contrastive::detail::require_scale(kLoss, "scale", p.scale, p.log_scale, p.max_scale));
    if (!std::isfinite(p.bias)) {
      return fail(Status::kInvalidArgument, "siglip: bias must be finite, got %g",
                  static_cast<double>(p.bias));
    }
    return Status::kSuccess;
  });
}

logits::Problem to_problem(const Params& p) {
  logits::Problem problem = logits::problem_of(p, logits::HeadKind::kSigmoid);
  problem.positive_offset = p.negatives_only ? 0 : p.positive_offset;
  problem.negatives_only = p.negatives_only;
  return problem;
}

}  // namespace detail

Status check(const Params& params) {
  CONTRASTIVE_TRY(detail::check_problem(params));
  return contrastive::detail::require_supported_logits(detail::kLoss, params.logits_dtype,
                                                       params.dtype);
}

Status workspace_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr)
    return contrastive::detail::fail(Status::kNullPointer, "siglip: bytes is null");
  CONTRASTIVE_TRY(check(params));
  logits::WorkspacePlan plan;
  CONTRASTIVE_TRY(logits::plan_workspace(detail::to_problem(params), detail::kLoss, &plan));
  *bytes = plan.required_bytes;
  return Status::kSuccess;
}

Status saved_size(const Params& params, std::size_t* bytes) {
  if (bytes == nullptr)
    return contrastive::detail::fail(Status::kNullPointer, "siglip: bytes is null");
  CONTRASTIVE_TRY(check(params));
  *bytes = logits::saved_bytes(detail::to_problem(params));
  return Status::kSuccess;
}

}  // namespace contrastive::siglip
