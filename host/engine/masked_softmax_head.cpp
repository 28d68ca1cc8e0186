// The masked softmax cross-entropy heads of the logits engine (kernels/masked_softmax_xent.cu):
// InfoNCE and in-batch MNR under ids (contrastive/ids.hpp), by rows and, symmetric, by rows and
// positive columns. The mask is never stored: every kernel that reads a tile recomputes each
// element's role from the ids and the element's similarity, forward and backward alike. Forward
// and backward always walk the tiles apart (a row's gradient needs its log-sum-exp first); with
// one tile backward reuses forward's logits.
//
// Scratch words per row: the row's running (max, sum-exp) over its kept keys, the sum of its
// positives' logits, their count, its sum of G * logit, and (rows and columns) the positive
// column's running state. Saved: the row's log-sum-exp, (rows and columns) the positive column's,
// then the row's positive count (multi-positive: backward's 1 / count and the number of rows
// with a positive) or its positive's similarity (the false-negative threshold's reference, from
// the GEMM operands before the walk).
#include <algorithm>

#include "host/engine/dispatch.hpp"
#include "host/engine/heads.hpp"
#include "kernels/masked_softmax_xent.hpp"
#include "kernels/reduce.hpp"

namespace contrastive::logits {
namespace {

using contrastive::detail::dispatch_dtype;
using contrastive::detail::dispatch_logits_dtype;
using kernels::LogitsTile;
using kernels::LseState;
using kernels::MaskedRows;

struct MaskedScratch {
  LseState* row_state;
  float* positive_sum;
  float* positive_count;
  float* row_logit_grad;
  LseState* col_state;  // null unless rows and columns
};

MaskedScratch scratch_of(const HeadCall& call) {
  const std::int64_t b = call.problem.batch;
  float* words = call.scratch;
  return {reinterpret_cast<LseState*>(words), words + 2 * b, words + 3 * b, words + 4 * b,
          call.problem.columns() ? reinterpret_cast<LseState*>(words + 5 * b) : nullptr};
}

// The pieces of the head's saved buffer (`F` = float when written, const float when read).
template <typename F>
struct MaskedSaved {
  F* row_lse;
  F* col_lse;       // rows and columns
  F* count;         // multi-positive
  F* positive_sim;  // threshold
};

template <typename F>
MaskedSaved<F> saved_of(const Problem& p, F* saved) {
  MaskedSaved<F> out{saved, nullptr, nullptr, nullptr};
  F* next = saved + p.batch;
  if (p.columns()) {
    out.col_lse = next;
    next += p.batch;
  }
  if (p.ids.multi_positive) out.count = next;
  if (p.ids.false_negative_threshold) out.positive_sim = next;
  return out;
}

MaskedRows rows_of(const HeadCall& call, const float* positive_sim) {
  const Problem& p = call.problem;
  MaskedRows rows;
  rows.positive_offset = p.positive_offset;
  rows.batch = p.batch;
  if (p.ids.type != ids::IdType::kNone) {
    rows.mask.row_ids = call.query_ids;
    rows.mask.key_ids = call.key_ids;
    rows.mask.wide = p.ids.type == ids::IdType::kInt64;
  }
  rows.mask.multi_positive = p.ids.multi_positive;
  rows.mask.exclude_self = p.ids.exclude_self;
  rows.mask.threshold = p.ids.false_negative_threshold;
  rows.mask.margin = p.ids.false_negative_margin;
  rows.positive_sim = positive_sim;
  return rows;
}

class MaskedSoftmaxHead final : public Head {
 public:
  // The threshold's reference: sim_i,pos(i) from the operands, saved for backward.
  cudaError_t prepare_forward(const HeadCall& call, const TileOperands& operands,
                              float* saved) const override {
    const Problem& p = call.problem;
    if (!p.ids.false_negative_threshold) return cudaSuccess;
    float* positive_sim = saved_of(p, saved).positive_sim;
    return dispatch_dtype(p.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      return kernels::launch_positive_similarity<T>(
          static_cast<const T*>(operands.q), operands.ldq, static_cast<const T*>(operands.k),
          operands.ldk, p.batch, p.dim, p.positive_offset, positive_sim, call.stream);
    });
  }

  cudaError_t forward_tile(const HeadCall& call, const LogitsTile& tile,
                           TilePosition position) const override {
    const Problem& p = call.problem;
    const MaskedScratch s = scratch_of(call);
    // The positive similarities prepare_forward() saved.
    const MaskedRows rows = rows_of(call, saved_of(p, call.saved).positive_sim);
    const cudaError_t error = dispatch_logits_dtype(p.logits_dtype, [&](auto tag) {
      using L = typename decltype(tag)::type;
      return kernels::launch_masked_row_stats_tile<L>(tile, rows, s.row_state, s.positive_sum,
                                                      s.positive_count, position.first_col_tile,
                                                      call.stream);
    });
    if (error != cudaSuccess || s.col_state == nullptr) return error;
    return merge_positive_columns(call, tile, rows, s.col_state, position.first_row_tile);
  }

  cudaError_t finish_forward(const HeadCall& call, float* loss, float* saved) const override {
    const Problem& p = call.problem;
    const MaskedScratch s = scratch_of(call);
    const MaskedSaved<float> out = saved_of(p, saved);
    return kernels::launch_masked_finalize_loss(
        s.row_state, s.col_state, s.positive_sum, s.positive_count, p.batch, p.reduction,
        p.mean_over_positive_rows(), out.row_lse, out.col_lse, out.count, loss, call.stream);
  }

  bool backward_also_forwards(const Problem& /*problem*/,
                              const contrastive::detail::TilePlan& /*tiles*/) const override {
    return false;
  }

  cudaError_t prepare_backward(const HeadCall& call, const float* saved) const override {
    const Problem& p = call.problem;
    if (!p.mean_over_positive_rows()) return cudaSuccess;
    return kernels::launch_positive_rows_scale(saved_of(p, saved).count, p.batch, call.scalars,
                                               call.stream);
  }

  cudaError_t backward_tile(const HeadCall& call, const LogitsTile& tile, void* grad,
                            const float* saved, const float* grad_loss, TilePosition position,
                            bool /*forward: never (backward_also_forwards)*/) const override {
    const Problem& p = call.problem;
    const MaskedScratch s = scratch_of(call);
    const MaskedSaved<const float> in = saved_of(p, saved);
    const MaskedRows rows = rows_of(call, in.positive_sim);
    const kernels::UpstreamGradient upstream{grad_loss, p.reduction == Reduction::kNone, 1.0f};
    return dispatch_logits_dtype(p.logits_dtype, [&](auto logits_tag) {
      using L = typename decltype(logits_tag)::type;
      return dispatch_dtype(p.dtype, [&](auto grad_tag) {
        using GT = typename decltype(grad_tag)::type;
        return kernels::launch_masked_backward_tile<L, GT>(
            tile, static_cast<GT*>(grad), rows, in.row_lse, in.col_lse, in.count, upstream,
            s.row_logit_grad, position.first_col_tile, call.stream);
      });
    });
  }

  cudaError_t scalar_gradients(const HeadCall& call, float* grad_scale,
                               float* /*grad_bias: no bias*/) const override {
    return softmax_scale_gradient(call, scratch_of(call).row_logit_grad, grad_scale);
  }

 private:
  static cudaError_t merge_positive_columns(const HeadCall& call, const LogitsTile& tile,
                                            const MaskedRows& rows, LseState* col_state,
                                            bool first_row_tile) {
    LogitsTile part;
    std::int64_t first = 0;
    if (!positive_columns_of(call.problem, tile, &part, &first)) return cudaSuccess;
    return dispatch_logits_dtype(call.problem.logits_dtype, [&](auto tag) {
      using L = typename decltype(tag)::type;
      return kernels::launch_masked_col_lse_tile<L>(part, rows, col_state + first, first_row_tile,
                                                    call.stream);
    });
  }
};

}  // namespace

const Head& masked_softmax_head() {
  static const MaskedSoftmaxHead head;
  return head;
}

}  // namespace contrastive::logits
