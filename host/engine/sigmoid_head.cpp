// The pairwise sigmoid head of the logits engine (SigLIP; kernels/sigmoid_xent.cu). Every logit
// is its own binary cross-entropy, so tiles are independent: forward_backward walks the tiles once
// (the backward kernel also sums the loss) and nothing is saved but the inverse norms.
//
// Scratch words per row: the row's loss, its sum of G * logit (the scale's gradient) and its sum
// of G (the bias's gradient).
#include "host/engine/dispatch.hpp"
#include "host/engine/heads.hpp"
#include "kernels/reduce.hpp"
#include "kernels/sigmoid_xent.hpp"

namespace contrastive::logits {
namespace {

using contrastive::detail::dispatch_dtype;
using contrastive::detail::dispatch_logits_dtype;
using kernels::LogitsTile;

struct SigmoidScratch {
  float* row_loss;
  float* row_grad_dot_logit;
  float* row_grad;
};

SigmoidScratch scratch_of(const HeadCall& call) {
  const std::int64_t b = call.problem.batch;
  return {call.scratch, call.scratch + b, call.scratch + 2 * b};
}

kernels::SigmoidLabels labels_of(const Problem& p) {
  return {p.positive_offset, p.negatives_only};
}

class SigmoidHead final : public Head {
 public:
  cudaError_t forward_tile(const HeadCall& call, const LogitsTile& tile,
                           TilePosition position) const override {
    const Problem& p = call.problem;
    return dispatch_logits_dtype(p.logits_dtype, [&](auto tag) {
      using L = typename decltype(tag)::type;
      return kernels::launch_sigmoid_forward_tile<L>(tile, &call.scalars->bias, labels_of(p),
                                                     scratch_of(call).row_loss,
                                                     position.first_col_tile, call.stream);
    });
  }

  cudaError_t finish_forward(const HeadCall& call, float* loss, float* /*saved*/) const override {
    const Problem& p = call.problem;
    const float* row_loss = scratch_of(call).row_loss;
    if (p.reduction == Reduction::kNone) {
      return cudaMemcpyAsync(loss, row_loss, static_cast<std::size_t>(p.batch) * sizeof(float),
                             cudaMemcpyDeviceToDevice, call.stream);
    }
    const double factor =
        p.reduction == Reduction::kMean ? 1.0 / static_cast<double>(p.batch) : 1.0;
    return kernels::launch_sum(row_loss, p.batch, factor, nullptr, loss, call.stream);
  }

  bool backward_also_forwards(const Problem&, const contrastive::detail::TilePlan&) const override {
    return true;
  }

  cudaError_t backward_tile(const HeadCall& call, const LogitsTile& tile, void* grad,
                            const float* /*saved*/, const float* grad_loss, TilePosition position,
                            bool forward) const override {
    const Problem& p = call.problem;
    const SigmoidScratch s = scratch_of(call);
    const kernels::UpstreamGradient upstream{grad_loss, p.reduction == Reduction::kNone, 1.0f};
    const kernels::SigmoidRowSums sums{s.row_grad_dot_logit, s.row_grad,
                                       forward ? s.row_loss : nullptr};
    return dispatch_logits_dtype(p.logits_dtype, [&](auto logits_tag) {
      using L = typename decltype(logits_tag)::type;
      return dispatch_dtype(p.dtype, [&](auto grad_tag) {
        using GT = typename decltype(grad_tag)::type;
        return kernels::launch_sigmoid_backward_tile<L, GT>(
            tile, static_cast<GT*>(grad), &call.scalars->bias, labels_of(p), upstream, sums,
            position.first_col_tile, call.stream);
      });
    });
  }

  cudaError_t scalar_gradients(const HeadCall& call, float* grad_scale,
                               float* grad_bias) const override {
    const SigmoidScratch s = scratch_of(call);
    const double f = gradient_factor(call.problem);
    if (grad_scale != nullptr) {
      const cudaError_t error =
          kernels::launch_sum(s.row_grad_dot_logit, call.problem.batch, 1.0, nullptr, grad_scale,
                              call.stream, &call.scalars->scale_gradient_factor);
      if (error != cudaSuccess) return error;
    }
    if (grad_bias == nullptr) return cudaSuccess;
    return kernels::launch_sum(s.row_grad, call.problem.batch, f, nullptr, grad_bias, call.stream);
  }
};

}  // namespace

const Head& sigmoid_head() {
  static const SigmoidHead head;
  return head;
}

}  // namespace contrastive::logits
