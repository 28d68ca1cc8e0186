// Internal: the InfoNCE tile loop behind infonce::forward/backward/forward_backward, also run by
// in-batch MNR (rectangular InfoNCE with a scale instead of a temperature, other argument names).
#pragma once

#include "contrastive/infonce.hpp"

namespace contrastive::infonce::detail {

enum class Pass { kForward, kBackward, kForwardBackward };

/// logits = scale * sim. The scalar gradient written to `grad_temperature` is dLoss/dtemperature
/// (scale = 1/temperature) or dLoss/dscale.
struct LogitScale {
  enum class Gradient { kTemperature, kScale };
  float scale;
  Gradient gradient;
};

/// The caller's names for the arguments, so that messages speak its language.
struct ArgumentNames {
  const char* call;  ///< e.g. "infonce::forward"
  const char* q;
  const char* k;
  const char* grad_q;
  const char* grad_k;
  const char* grad_scalar;
};

/// `params` must already be valid (check_problem and the dtype); checks the pointers, the
/// workspace and the handle, in that order, then launches. args.loss is unused by kBackward and
/// the gradients by kForward.
Status run(Pass pass, const ArgumentNames& names, const Handle& handle, const Params& params,
           LogitScale logit_scale, const ForwardBackwardArgs& args, void* workspace,
           std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::infonce::detail
