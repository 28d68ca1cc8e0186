// The softmax cross-entropy heads of the logits engine (kernels/softmax_xent.cu): by rows
// (InfoNCE, MNR) and by rows and positive columns (CLIP). A row's gradient needs its log-sum-exp
// over every tile first, so forward and backward walk the tiles apart, unless a tile holds whole
// rows (by rows only): then one kernel reads a row for both.
//
// Scratch words per row: the row's running (max, sum-exp), its positive logit, its sum of
// G * logit, and (rows and columns) the positive column's running state. Saved: the row's
// log-sum-exp, then (rows and columns) the positive column's.
#include <algorithm>

#include "host/engine/dispatch.hpp"
#include "host/engine/heads.hpp"
#include "kernels/reduce.hpp"

namespace contrastive::logits {
namespace {

using contrastive::detail::dispatch_dtype;
using contrastive::detail::dispatch_logits_dtype;
using kernels::LogitsTile;
using kernels::LseState;

struct SoftmaxScratch {
  LseState* row_state;
  float* positive_logit;
  float* row_logit_grad;
  LseState* col_state;  // null unless rows and columns
};

SoftmaxScratch scratch_of(const HeadCall& call) {
  const std::int64_t b = call.problem.batch;
  float* words = call.scratch;
  const bool columns = call.problem.head == HeadKind::kSoftmaxRowsAndColumns;
  return {reinterpret_cast<LseState*>(words), words + 2 * b, words + 3 * b,
          columns ? reinterpret_cast<LseState*>(words + 4 * b) : nullptr};
}

class SoftmaxHead final : public Head {
 public:
  cudaError_t forward_tile(const HeadCall& call, const LogitsTile& tile,
                           TilePosition position) const override {
    const Problem& p = call.problem;
    const SoftmaxScratch s = scratch_of(call);
    const cudaError_t error = dispatch_logits_dtype(p.logits_dtype, [&](auto tag) {
      using L = typename decltype(tag)::type;
      return kernels::launch_row_lse_tile<L>(tile, p.positive_offset, s.row_state, s.positive_logit,
                                             position.first_col_tile, call.stream);
    });
    if (error != cudaSuccess || s.col_state == nullptr) return error;
    return merge_positive_columns(call, tile, s.col_state, position.first_row_tile);
  }

  cudaError_t finish_forward(const HeadCall& call, float* loss, float* saved) const override {
    const Problem& p = call.problem;
    const SoftmaxScratch s = scratch_of(call);
    return kernels::launch_finalize_loss(
        s.row_state, s.col_state, s.positive_logit, p.batch, p.reduction, saved,
        s.col_state != nullptr ? saved + p.batch : nullptr, loss, call.stream);
  }

  // By rows, with whole rows in each tile: one kernel turns a row into its statistics and its G.
  // The column statistics need every row first.
  bool backward_also_forwards(const Problem& problem,
                              const contrastive::detail::TilePlan& tiles) const override {
    return problem.head == HeadKind::kSoftmaxRows && tiles.col_tiles() == 1;
  }

  cudaError_t backward_tile(const HeadCall& call, const LogitsTile& tile, void* grad,
                            const float* saved, const float* grad_loss, TilePosition position,
                            bool forward) const override {
    const Problem& p = call.problem;
    const SoftmaxScratch s = scratch_of(call);
    const float* col_lse = s.col_state != nullptr ? saved + p.batch : nullptr;
    const kernels::UpstreamGradient upstream{grad_loss, p.reduction == Reduction::kNone, 1.0f};
    return dispatch_logits_dtype(p.logits_dtype, [&](auto logits_tag) {
      using L = typename decltype(logits_tag)::type;
      return dispatch_dtype(p.dtype, [&](auto grad_tag) {
        using GT = typename decltype(grad_tag)::type;
        if (forward) {  // whole rows (backward_also_forwards)
          return kernels::launch_row_softmax_xent_tile<L, GT>(
              tile, static_cast<GT*>(grad), p.positive_offset, upstream, s.row_state,
              s.positive_logit, s.row_logit_grad, call.stream);
        }
        return kernels::launch_logits_backward_tile<L, GT>(
            tile, static_cast<GT*>(grad), p.positive_offset, p.batch, saved, col_lse, upstream,
            s.row_logit_grad, position.first_col_tile, call.stream);
      });
    });
  }

  cudaError_t scalar_gradients(const HeadCall& call, float* grad_scale,
                               float* /*grad_bias: no bias*/) const override {
    return softmax_scale_gradient(call, scratch_of(call).row_logit_grad, grad_scale);
  }

 private:
  // The part of a tile inside the positive columns [offset, offset + B) goes into their states.
  static cudaError_t merge_positive_columns(const HeadCall& call, const LogitsTile& tile,
                                            LseState* col_state, bool first_row_tile) {
    LogitsTile part;
    std::int64_t first = 0;
    if (!positive_columns_of(call.problem, tile, &part, &first)) return cudaSuccess;
    return dispatch_logits_dtype(call.problem.logits_dtype, [&](auto tag) {
      using L = typename decltype(tag)::type;
      return kernels::launch_col_lse_tile<L>(part, col_state + first, first_row_tile, call.stream);
    });
  }
};

}  // namespace

const Head& softmax_head() {
  static const SoftmaxHead head;
  return head;
}

}  // namespace contrastive::logits
