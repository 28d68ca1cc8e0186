// MNR on the GPU. Per-anchor negatives: one fused kernel per pass (kernels/anchor_candidates.cu)
// plus single-block sums for the loss and dLoss/dscale; forward saves the similarities, so
// backward reads each candidate row once. In-batch: the InfoNCE tile loop with the scale as the
// logit scale (host/engine/logits_engine.hpp).
#include "contrastive/mnr.hpp"

#include "host/api/handle_impl.hpp"
#include "host/engine/anchor_tensors.hpp"
#include "host/engine/dispatch.hpp"
#include "host/engine/logits_engine.hpp"
#include "host/plan/arguments.hpp"
#include "host/plan/error.hpp"
#include "host/plan/mnr_plan.hpp"
#include "kernels/anchor_candidates.hpp"
#include "kernels/reduce.hpp"
#include "kernels/resolve_scalars.hpp"

namespace contrastive::mnr {
namespace {

// ---- Per-anchor negatives
// ------------------------------------------------------------------------

Status run_per_anchor(Pass pass, const char* call, const Handle& handle, const PerAnchorParams& p,
                      const contrastive::detail::AnchorTensors& args, void* workspace,
                      std::size_t workspace_bytes, Stream stream) {
  const bool forward_pass = computes_loss(pass), backward_pass = computes_gradients(pass);
  CONTRASTIVE_TRY(check(p));
  CONTRASTIVE_TRY(contrastive::detail::check_anchor_tensors(pass, call, p.dtype,
                                                            /*with_positives=*/true, args));
  const detail::PerAnchorWorkspace plan = detail::plan_workspace(p);
  CONTRASTIVE_TRY(contrastive::detail::require_workspace(
      workspace, workspace_bytes, plan.required_bytes, plan.used_bytes, call));
  CONTRASTIVE_TRY(contrastive::detail::require_usable(handle));

  void* base = contrastive::detail::align_workspace(workspace);
  float* row_loss = contrastive::detail::workspace_piece<float>(base, plan.row_loss);
  float* row_logit_grad = contrastive::detail::workspace_piece<float>(base, plan.row_logit_grad);
  auto* scalars =
      contrastive::detail::workspace_piece<kernels::ResolvedScalars>(base, plan.scalars);
  // The scale, from the params or the device, resolved on the stream (kernels/logit_scalars.hpp):
  // the head reads it there, and the scale's gradient is sum(dLoss/dlogits * logits) / scale.
  kernels::ScalarInputs scale_in;
  scale_in.value = p.scale;
  scale_in.device_value = args.scale;
  CONTRASTIVE_TRY_CUDA(kernels::launch_resolve_scalars(scale_in, scalars, stream),
                       "resolve_scalars launch");
  // Saved: the row log-sum-exp, then the similarities and inverse norms.
  float* saved = contrastive::detail::saved_floats(pass, args);
  const detail::PerAnchorSaved layout = detail::saved_layout(p);
  const kernels::SavedSimilarities saved_similarities =
      contrastive::detail::saved_similarities(saved, layout);
  float* row_lse = saved + layout.row_lse;
  const bool per_row = p.reduction == Reduction::kNone;
  const float mean_factor =
      p.reduction == Reduction::kMean ? 1.0f / static_cast<float>(p.batch) : 1.0f;
  const kernels::AnchorCandidates rows{
      args.anchors,   row_stride_or_dim(p.anchor_row_stride, p.dim),
      args.positives, row_stride_or_dim(p.positive_row_stride, p.dim),
      args.negatives, row_stride_or_dim(p.negative_row_stride, p.dim),
      p.batch,        p.negatives + 1,
      p.dim,          p.similarity == Similarity::kCosine,
      p.eps};
  const kernels::SoftmaxHead head{&scalars->logit_scale,
                                  row_lse,
                                  per_row ? args.loss : row_loss,
                                  {args.grad_loss, per_row, mean_factor},
                                  args.grad_scale != nullptr ? row_logit_grad : nullptr};
  const kernels::AnchorCandidateGrads grads{args.grad_anchors, args.grad_positives,
                                            args.grad_negatives};
  CONTRASTIVE_TRY_CUDA(contrastive::detail::dispatch_dtype(
                           p.dtype,
                           [&](auto tag) {
                             using T = typename decltype(tag)::type;
                             return kernels::launch_anchor_candidates<T>(
                                 pass, rows, head, grads, saved_similarities, stream);
                           }),
                       "anchor_candidates launch");
  if (forward_pass && !per_row) {
    CONTRASTIVE_TRY_CUDA(
        kernels::launch_sum(row_loss, p.batch, mean_factor, nullptr, args.loss, stream),
        "sum launch");
  }
  if (backward_pass && args.grad_scale != nullptr) {
    // logits = scale * sim: dLoss/dscale = sum(dLoss/dlogits * logits) / scale
    CONTRASTIVE_TRY_CUDA(kernels::launch_sum(row_logit_grad, p.batch, 1.0, nullptr, args.grad_scale,
                                             stream, &scalars->scale_gradient_factor),
                         "sum launch");
  }
  return Status::kSuccess;
}

// ---- In-batch with hard negatives ---------------------------------------------------------------

template <typename Args>
Status run_in_batch(Pass pass, const char* call, const Handle& handle, const InBatchParams& p,
                    const Args& args, void* workspace, std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(p));
  logits::ArgumentNames names{call,           "anchors",         "candidates",
                              "grad_anchors", "grad_candidates", "grad_scale"};
  names.query_ids = "anchor_ids";
  names.key_ids = "candidate_ids";
  logits::Scalars scalars;
  scalars.value = p.scale;
  scalars.form = p.log_scale ? kernels::ScaleForm::kLogScale : kernels::ScaleForm::kScale;
  scalars.max_scale = p.max_scale;
  return logits::run(pass, names, handle, detail::to_problem(p), scalars, logits::tensors_of(args),
                     workspace, workspace_bytes, stream);
}

}  // namespace

Status forward(const Handle& handle, const PerAnchorParams& params,
               const PerAnchorForwardArgs& args, void* workspace, std::size_t workspace_bytes,
               Stream stream) {
  return run_per_anchor(Pass::kForward, "mnr::forward (per-anchor)", handle, params,
                        contrastive::detail::tensors_of(args), workspace, workspace_bytes, stream);
}

Status backward(const Handle& handle, const PerAnchorParams& params,
                const PerAnchorBackwardArgs& args, void* workspace, std::size_t workspace_bytes,
                Stream stream) {
  return run_per_anchor(Pass::kBackward, "mnr::backward (per-anchor)", handle, params,
                        contrastive::detail::tensors_of(args), workspace, workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const PerAnchorParams& params,
                        const PerAnchorForwardBackwardArgs& args, void* workspace,
                        std::size_t workspace_bytes, Stream stream) {
  return run_per_anchor(Pass::kForwardBackward, "mnr::forward_backward (per-anchor)", handle,
                        params, contrastive::detail::tensors_of(args), workspace, workspace_bytes,
                        stream);
}

Status forward(const Handle& handle, const InBatchParams& params, const InBatchForwardArgs& args,
               void* workspace, std::size_t workspace_bytes, Stream stream) {
  return run_in_batch(Pass::kForward, "mnr::forward (in-batch)", handle, params, args, workspace,
                      workspace_bytes, stream);
}

Status backward(const Handle& handle, const InBatchParams& params, const InBatchBackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  return run_in_batch(Pass::kBackward, "mnr::backward (in-batch)", handle, params, args, workspace,
                      workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const InBatchParams& params,
                        const InBatchForwardBackwardArgs& args, void* workspace,
                        std::size_t workspace_bytes, Stream stream) {
  return run_in_batch(Pass::kForwardBackward, "mnr::forward_backward (in-batch)", handle, params,
                      args, workspace, workspace_bytes, stream);
}

}  // namespace contrastive::mnr
