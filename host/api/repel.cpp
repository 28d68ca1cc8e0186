// Repel on the GPU: the fused anchor-versus-negatives kernel with a hinge head
// (kernels/anchor_candidates.cu), then single-block sums for the loss and the count of active
// terms (saved for backward, with every similarity and inverse norm). forward_backward is one
// kernel, except with mean_over_active, whose weights need the count over the whole batch first.
#include "contrastive/repel.hpp"

#include "host/api/handle_impl.hpp"
#include "host/engine/anchor_tensors.hpp"
#include "host/engine/dispatch.hpp"
#include "host/plan/arguments.hpp"
#include "host/plan/error.hpp"
#include "host/plan/repel_plan.hpp"
#include "kernels/anchor_candidates.hpp"
#include "kernels/reduce.hpp"

namespace contrastive::repel {
namespace {

Status run(Pass pass, const char* call, const Handle& handle, const Params& p,
           const contrastive::detail::AnchorTensors& args, void* workspace,
           std::size_t workspace_bytes, Stream stream) {
  const bool forward_pass = computes_loss(pass), backward_pass = computes_gradients(pass);
  CONTRASTIVE_TRY(check(p));
  CONTRASTIVE_TRY(contrastive::detail::check_anchor_tensors(pass, call, p.dtype,
                                                            /*with_positives=*/false, args));
  const detail::Workspace plan = detail::plan_workspace(p);
  CONTRASTIVE_TRY(contrastive::detail::require_workspace(
      workspace, workspace_bytes, plan.required_bytes, plan.used_bytes, call));
  CONTRASTIVE_TRY(contrastive::detail::require_usable(handle));

  void* base = contrastive::detail::align_workspace(workspace);
  float* row_sum = contrastive::detail::workspace_piece<float>(base, plan.row_sum);
  float* row_active = contrastive::detail::workspace_piece<float>(base, plan.row_active);
  // Saved: the count of active terms, then the similarities and inverse norms.
  float* saved = contrastive::detail::saved_floats(pass, args);
  const detail::Saved layout = detail::saved_layout(p);
  const kernels::SavedSimilarities saved_similarities =
      contrastive::detail::saved_similarities(saved, layout);
  float* active_total = saved + layout.active_total;
  const std::int64_t terms = p.batch * p.negatives;
  const bool per_term = p.reduction == Reduction::kNone;
  const float mean_factor = p.reduction == Reduction::kMean && !p.mean_over_active
                                ? 1.0f / static_cast<float>(terms)
                                : 1.0f;
  const kernels::AnchorCandidates rows{
      args.anchors,    row_stride_or_dim(p.anchor_row_stride, p.dim),
      nullptr,         0,
      args.negatives,  row_stride_or_dim(p.negative_row_stride, p.dim),
      p.batch,         p.negatives,
      p.dim,
      /*cosine=*/true, p.eps};
  kernels::HingeHead head{p.margin,
                          per_term ? args.loss : nullptr,
                          row_sum,
                          row_active,
                          {args.grad_loss, per_term, mean_factor},
                          p.mean_over_active ? active_total : nullptr};
  const kernels::AnchorCandidateGrads grads{args.grad_anchors, nullptr, args.grad_negatives};

  auto launch = [&](Pass kernel_pass) {
    return contrastive::detail::dispatch_dtype(p.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      return kernels::launch_anchor_candidates<T>(kernel_pass, rows, head, grads,
                                                  saved_similarities, stream);
    });
  };
  // With mean_over_active the backward weights need the batch's count: forward first, apart;
  // backward then starts from the saved similarities (two passes over the negatives, not three).
  const bool fused = pass == Pass::kForwardBackward && !p.mean_over_active;
  if (forward_pass) {
    CONTRASTIVE_TRY_CUDA(launch(fused ? Pass::kForwardBackward : Pass::kForward),
                         "anchor_candidates launch");
    CONTRASTIVE_TRY_CUDA(
        kernels::launch_sum(row_active, p.batch, 1.0, nullptr, active_total, stream), "sum launch");
    if (!per_term) {
      CONTRASTIVE_TRY_CUDA(
          kernels::launch_sum(row_sum, p.batch, mean_factor,
                              p.mean_over_active ? row_active : nullptr, args.loss, stream),
          "sum launch");
    }
  }
  if (backward_pass && !fused) {
    head.terms = head.row_sum = head.row_active = nullptr;  // the backward pass writes no terms
    CONTRASTIVE_TRY_CUDA(launch(Pass::kBackward), "anchor_candidates launch");
  }
  return Status::kSuccess;
}

}  // namespace

Status forward(const Handle& handle, const Params& params, const ForwardArgs& args, void* workspace,
               std::size_t workspace_bytes, Stream stream) {
  return run(Pass::kForward, "repel::forward", handle, params,
             contrastive::detail::tensors_of(args), workspace, workspace_bytes, stream);
}

Status backward(const Handle& handle, const Params& params, const BackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  return run(Pass::kBackward, "repel::backward", handle, params,
             contrastive::detail::tensors_of(args), workspace, workspace_bytes, stream);
}

Status forward_backward(const Handle& handle, const Params& params, const ForwardBackwardArgs& args,
                        void* workspace, std::size_t workspace_bytes, Stream stream) {
  return run(Pass::kForwardBackward, "repel::forward_backward", handle, params,
             contrastive::detail::tensors_of(args), workspace, workspace_bytes, stream);
}

}  // namespace contrastive::repel
