// InfoNCE's public entry points: check the params, then the B x M logits engine
// (host/engine/logits_engine.hpp) with 1/temperature as the logit scale.
#include "contrastive/infonce.hpp"

#include "host/engine/logits_engine.hpp"
#include "host/plan/error.hpp"

namespace contrastive::infonce {
namespace {

template <typename Args>
Status call(Pass pass, const char* name, const Handle& handle, const Params& params,
            const Args& args, void* workspace, std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(params));
  const detail::ArgumentNames names{name, "q", "k", "grad_q", "grad_k", "grad_temperature"};
  const detail::LogitScale logit_scale{1.0f / params.temperature,
                                       detail::LogitScale::Gradient::kTemperature};
  return detail::run(pass, names, handle, params, logit_scale, detail::tensors_of(args), workspace,
                     workspace_bytes, stream);
}

}  // namespace

Status forward(const Handle& handle, const Params& params, const ForwardArgs& args, void* workspace,
               std::size_t workspace_bytes, Stream stream) {
  return call(Pass::kForward, "infonce::forward", handle, params, args, workspace, workspace_bytes,
              stream);
}

Status backward(const Handle& handle, const Params& params, const BackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  return call(Pass::kBackward, "infonce::backward", handle, params, args, workspace,
              workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const Params& params, const ForwardBackwardArgs& args,
                        void* workspace, std::size_t workspace_bytes, Stream stream) {
  return call(Pass::kForwardBackward, "infonce::forward_backward", handle, params, args, workspace,
              workspace_bytes, stream);
}

}  // namespace contrastive::infonce
