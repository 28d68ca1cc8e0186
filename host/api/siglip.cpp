// SigLIP's public entry points: check the params, then the B x M logits engine
// (host/engine/logits_engine.hpp) with the sigmoid head, t as the logit scale and b as its bias.
#include "contrastive/siglip.hpp"

#include "host/engine/logits_engine.hpp"
#include "host/plan/error.hpp"
#include "host/plan/siglip_plan.hpp"

namespace contrastive::siglip {
namespace {

template <typename Args>
Status call(Pass pass, const char* name, const Handle& handle, const Params& params,
            const Args& args, void* workspace, std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(params));
  const logits::ArgumentNames names{name,         "q",         "k",     "grad_q", "grad_k",
                                    "grad_scale", "grad_bias", "scale", "bias"};
  logits::Scalars scalars;
  scalars.value = params.scale;
  scalars.form = params.log_scale ? kernels::ScaleForm::kLogScale : kernels::ScaleForm::kScale;
  scalars.max_scale = params.max_scale;
  scalars.bias = params.bias;
  return logits::run(pass, names, handle, detail::to_problem(params), scalars,
                     logits::tensors_of(args), workspace, workspace_bytes, stream);
}

}  // namespace

Status forward(const Handle& handle, const Params& params, const ForwardArgs& args, void* workspace,
               std::size_t workspace_bytes, Stream stream) {
  return call(Pass::kForward, "siglip::forward", handle, params, args, workspace, workspace_bytes,
              stream);
}

Status backward(const Handle& handle, const Params& params, const BackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  return call(Pass::kBackward, "siglip::backward", handle, params, args, workspace, workspace_bytes,
              stream);
}

Status forward_backward(const Handle& handle, const Params& params, const ForwardBackwardArgs& args,
                        void* workspace, std::size_t workspace_bytes, Stream stream) {
  return call(Pass::kForwardBackward, "siglip::forward_backward", handle, params, args, workspace,
              workspace_bytes, stream);
}

}  // namespace contrastive::siglip
