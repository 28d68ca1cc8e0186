// InfoNCE's public entry points: check the params, then the B x M logits engine
// (host/engine/logits_engine.hpp) with 1/temperature as the logit scale.
#include "contrastive/infonce.hpp"

#include "host/engine/logits_engine.hpp"
#include "host/plan/error.hpp"

namespace contrastive::infonce {

namespace {

detail::ArgumentNames names_for(const char* call) {
  return {call, "q", "k", "grad_q", "grad_k", "grad_temperature"};
}

detail::LogitScale temperature_scale(const Params& params) {
  return {1.0f / params.temperature, detail::LogitScale::Gradient::kTemperature};
}

}  // namespace

Status forward(const Handle& handle, const Params& params, const ForwardArgs& args, void* workspace,
               std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(params));
  ForwardBackwardArgs all;
  all.q = args.q;
  all.k = args.k;
  all.loss = args.loss;
  all.saved = args.saved;
  return detail::run(detail::Pass::kForward, names_for("infonce::forward"), handle, params,
                     temperature_scale(params), all, workspace, workspace_bytes, stream);
}

Status backward(const Handle& handle, const Params& params, const BackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(params));
  ForwardBackwardArgs all;
  all.q = args.q;
  all.k = args.k;
  all.saved = const_cast<void*>(args.saved);  // the backward pass only reads it
  all.grad_loss = args.grad_loss;
  all.grad_q = args.grad_q;
  all.grad_k = args.grad_k;
  all.grad_temperature = args.grad_temperature;
  return detail::run(detail::Pass::kBackward, names_for("infonce::backward"), handle, params,
                     temperature_scale(params), all, workspace, workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const Params& params, const ForwardBackwardArgs& args,
                        void* workspace, std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(params));
  return detail::run(detail::Pass::kForwardBackward, names_for("infonce::forward_backward"), handle,
                     params, temperature_scale(params), args, workspace, workspace_bytes, stream);
}

}  // namespace contrastive::infonce
