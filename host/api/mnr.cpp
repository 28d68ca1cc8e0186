// MNR on the GPU. Per-anchor negatives: one fused kernel per pass (kernels/anchor_candidates.cu)
// plus single-block sums for the loss and dLoss/dscale. In-batch: the InfoNCE tile loop with the
// scale as the logit scale (host/engine/logits_engine.hpp).
#include "contrastive/mnr.hpp"

#include "host/api/handle_impl.hpp"
#include "host/engine/dispatch.hpp"
#include "host/engine/logits_engine.hpp"
#include "host/plan/arguments.hpp"
#include "host/plan/error.hpp"
#include "host/plan/mnr_plan.hpp"
#include "kernels/anchor_candidates.hpp"
#include "kernels/reduce.hpp"

namespace contrastive::mnr {
namespace {

using contrastive::detail::fail;
using contrastive::detail::require_alignment;
using contrastive::detail::require_tensor;
using kernels::AnchorPass;

// ---- Per-anchor negatives
// ------------------------------------------------------------------------

Status run_per_anchor(AnchorPass pass, const char* call, const Handle& handle,
                      const PerAnchorParams& p, const PerAnchorForwardBackwardArgs& args,
                      void* workspace, std::size_t workspace_bytes, Stream stream) {
  const bool forward_pass = pass != AnchorPass::kBackward,
             backward_pass = pass != AnchorPass::kForward;
  CONTRASTIVE_TRY(check(p));
  const std::size_t element = dtype_size(p.dtype);
  CONTRASTIVE_TRY(require_tensor(args.anchors, element, call, "anchors"));
  CONTRASTIVE_TRY(require_tensor(args.positives, element, call, "positives"));
  CONTRASTIVE_TRY(require_tensor(args.negatives, element, call, "negatives"));
  if (forward_pass) CONTRASTIVE_TRY(require_tensor(args.loss, sizeof(float), call, "loss"));
  CONTRASTIVE_TRY(require_tensor(args.saved, sizeof(float), call, "saved"));
  if (backward_pass) {
    if (args.grad_anchors == nullptr && args.grad_positives == nullptr &&
        args.grad_negatives == nullptr && args.grad_scale == nullptr) {
      return fail(Status::kNullPointer,
                  "%s: grad_anchors, grad_positives, grad_negatives and grad_scale are all null: "
                  "nothing to compute",
                  call);
    }
    CONTRASTIVE_TRY(require_alignment(args.grad_loss, sizeof(float), call, "grad_loss"));
    CONTRASTIVE_TRY(require_alignment(args.grad_anchors, element, call, "grad_anchors"));
    CONTRASTIVE_TRY(require_alignment(args.grad_positives, element, call, "grad_positives"));
    CONTRASTIVE_TRY(require_alignment(args.grad_negatives, element, call, "grad_negatives"));
    CONTRASTIVE_TRY(require_alignment(args.grad_scale, sizeof(float), call, "grad_scale"));
  }
  const detail::PerAnchorWorkspace plan = detail::plan_workspace(p);
  CONTRASTIVE_TRY(contrastive::detail::require_workspace(
      workspace, workspace_bytes, plan.required_bytes, plan.used_bytes, call));
  CONTRASTIVE_TRY(contrastive::detail::require_usable(handle));

  void* base = contrastive::detail::align_workspace(workspace);
  float* row_loss = contrastive::detail::workspace_piece<float>(base, plan.row_loss);
  float* row_logit_grad = contrastive::detail::workspace_piece<float>(base, plan.row_logit_grad);
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
  const kernels::SoftmaxHead head{p.scale,
                                  static_cast<float*>(args.saved),
                                  per_row ? args.loss : row_loss,
                                  {args.grad_loss, per_row, mean_factor},
                                  args.grad_scale != nullptr ? row_logit_grad : nullptr};
  const kernels::AnchorCandidateGrads grads{args.grad_anchors, args.grad_positives,
                                            args.grad_negatives};
  CONTRASTIVE_TRY_CUDA(
      contrastive::detail::dispatch_dtype(p.dtype,
                                          [&](auto tag) {
                                            using T = typename decltype(tag)::type;
                                            return kernels::launch_anchor_candidates<T>(
                                                pass, rows, head, grads, stream);
                                          }),
      "anchor_candidates launch");
  if (forward_pass && !per_row) {
    CONTRASTIVE_TRY_CUDA(
        kernels::launch_sum(row_loss, p.batch, mean_factor, nullptr, args.loss, stream),
        "sum launch");
  }
  if (backward_pass && args.grad_scale != nullptr) {
    // logits = scale * sim: dLoss/dscale = sum(dLoss/dlogits * logits) / scale
    CONTRASTIVE_TRY_CUDA(kernels::launch_sum(row_logit_grad, p.batch, 1.0 / p.scale, nullptr,
                                             args.grad_scale, stream),
                         "sum launch");
  }
  return Status::kSuccess;
}

// ---- In-batch with hard negatives ---------------------------------------------------------------

Status run_in_batch(infonce::detail::Pass pass, const char* call, const Handle& handle,
                    const InBatchParams& p, const InBatchForwardBackwardArgs& args, void* workspace,
                    std::size_t workspace_bytes, Stream stream) {
  CONTRASTIVE_TRY(check(p));
  infonce::ForwardBackwardArgs all;
  all.q = args.anchors;
  all.k = args.candidates;
  all.loss = args.loss;
  all.saved = args.saved;
  all.grad_loss = args.grad_loss;
  all.grad_q = args.grad_anchors;
  all.grad_k = args.grad_candidates;
  all.grad_temperature = args.grad_scale;
  const infonce::detail::ArgumentNames names{call,           "anchors",         "candidates",
                                             "grad_anchors", "grad_candidates", "grad_scale"};
  const infonce::detail::LogitScale logit_scale{p.scale,
                                                infonce::detail::LogitScale::Gradient::kScale};
  return infonce::detail::run(pass, names, handle, detail::to_infonce(p), logit_scale, all,
                              workspace, workspace_bytes, stream);
}

}  // namespace

Status forward(const Handle& handle, const PerAnchorParams& params,
               const PerAnchorForwardArgs& args, void* workspace, std::size_t workspace_bytes,
               Stream stream) {
  PerAnchorForwardBackwardArgs all;
  all.anchors = args.anchors;
  all.positives = args.positives;
  all.negatives = args.negatives;
  all.loss = args.loss;
  all.saved = args.saved;
  return run_per_anchor(AnchorPass::kForward, "mnr::forward (per-anchor)", handle, params, all,
                        workspace, workspace_bytes, stream);
}

Status backward(const Handle& handle, const PerAnchorParams& params,
                const PerAnchorBackwardArgs& args, void* workspace, std::size_t workspace_bytes,
                Stream stream) {
  PerAnchorForwardBackwardArgs all;
  all.anchors = args.anchors;
  all.positives = args.positives;
  all.negatives = args.negatives;
  all.saved = const_cast<void*>(args.saved);  // the backward pass only reads it
  all.grad_loss = args.grad_loss;
  all.grad_anchors = args.grad_anchors;
  all.grad_positives = args.grad_positives;
  all.grad_negatives = args.grad_negatives;
  all.grad_scale = args.grad_scale;
  return run_per_anchor(AnchorPass::kBackward, "mnr::backward (per-anchor)", handle, params, all,
                        workspace, workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const PerAnchorParams& params,
                        const PerAnchorForwardBackwardArgs& args, void* workspace,
                        std::size_t workspace_bytes, Stream stream) {
  return run_per_anchor(AnchorPass::kForwardBackward, "mnr::forward_backward (per-anchor)", handle,
                        params, args, workspace, workspace_bytes, stream);
}

Status forward(const Handle& handle, const InBatchParams& params, const InBatchForwardArgs& args,
               void* workspace, std::size_t workspace_bytes, Stream stream) {
  InBatchForwardBackwardArgs all;
  all.anchors = args.anchors;
  all.candidates = args.candidates;
  all.loss = args.loss;
  all.saved = args.saved;
  return run_in_batch(infonce::detail::Pass::kForward, "mnr::forward (in-batch)", handle, params,
                      all, workspace, workspace_bytes, stream);
}

Status backward(const Handle& handle, const InBatchParams& params, const InBatchBackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  InBatchForwardBackwardArgs all;
  all.anchors = args.anchors;
  all.candidates = args.candidates;
  all.saved = const_cast<void*>(args.saved);  // the backward pass only reads it
  all.grad_loss = args.grad_loss;
  all.grad_anchors = args.grad_anchors;
  all.grad_candidates = args.grad_candidates;
  all.grad_scale = args.grad_scale;
  return run_in_batch(infonce::detail::Pass::kBackward, "mnr::backward (in-batch)", handle, params,
                      all, workspace, workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const InBatchParams& params,
                        const InBatchForwardBackwardArgs& args, void* workspace,
                        std::size_t workspace_bytes, Stream stream) {
  return run_in_batch(infonce::detail::Pass::kForwardBackward, "mnr::forward_backward (in-batch)",
                      handle, params, args, workspace, workspace_bytes, stream);
}

}  // namespace contrastive::mnr
