// The B x M logits engine behind InfoNCE and in-batch MNR: argument checks, workspace carving and
// the tile loop of DESIGN.md section 3.
//
// forward:  [normalize Q, K] -> for each tile: GEMM logits = s Q_hat K_hat^T, merge row (and
//           positive-column) log-sum-exp, pick positives -> finalize lse and the loss.
// backward: [rebuild Q_hat, K_hat from saved inverse norms] -> for each tile: GEMM logits (unless
//           still resident), turn them into G = dLoss/dlogits in place, dQ_hat (+)= s G K_hat,
//           dK_hat (+)= s G^T Q_hat -> normalization backward, temperature (or scale) gradient.
// s is 1/temperature (or MNR's scale). With one tile (the default) forward_backward computes the
// logits once: three GEMMs in all.
#include <algorithm>
#include <cstdint>

#include "contrastive/infonce.hpp"
#include "host/api/handle_impl.hpp"
#include "host/blas/gemm.hpp"
#include "host/engine/dispatch.hpp"
#include "host/engine/logits_engine.hpp"
#include "host/plan/arguments.hpp"
#include "host/plan/error.hpp"
#include "host/plan/infonce_plan.hpp"
#include "kernels/normalize.hpp"
#include "kernels/reduce.hpp"
#include "kernels/softmax_xent.hpp"

namespace contrastive::infonce {
namespace detail {
namespace {

using contrastive::detail::dispatch_dtype;
using contrastive::detail::dispatch_logits_dtype;
using contrastive::detail::Extent;
using contrastive::detail::fail;
using contrastive::detail::gemm;
using contrastive::detail::require_alignment;
using contrastive::detail::require_tensor;
using contrastive::detail::RowMajorGemm;
using contrastive::detail::workspace_piece;
using kernels::LogitsTile;
using kernels::LseState;

// ---- Buffers -----------------------------------------------------------------------------------

struct Scratch {
  WorkspacePlan plan;
  void* logits_tile = nullptr;  // logits_dtype
  void* grad_tile = nullptr;    // dtype; null when G is written over the logits
  void* q_hat = nullptr;        // dtype
  void* k_hat = nullptr;        // dtype
  float* grad_q_sum = nullptr;
  float* grad_k_sum = nullptr;
  LseState* row_state = nullptr;
  LseState* col_state = nullptr;
  float* positive_logit = nullptr;
  float* row_logit_grad = nullptr;
  void* gemm_workspace = nullptr;
};

Status carve_workspace(const Params& params, void* workspace, std::size_t bytes, const char* call,
                       Scratch* scratch) {
  CONTRASTIVE_TRY(plan_workspace(params, &scratch->plan));
  const WorkspacePlan& plan = scratch->plan;
  CONTRASTIVE_TRY(contrastive::detail::require_workspace(workspace, bytes, plan.required_bytes,
                                                         plan.used_bytes, call));
  void* base = contrastive::detail::align_workspace(workspace);
  scratch->logits_tile = workspace_piece<void>(base, plan.logits_tile);
  scratch->grad_tile = workspace_piece<void>(base, plan.grad_tile);
  scratch->q_hat = workspace_piece<void>(base, plan.q_hat);
  scratch->k_hat = workspace_piece<void>(base, plan.k_hat);
  scratch->grad_q_sum = workspace_piece<float>(base, plan.grad_q_sum);
  scratch->grad_k_sum = workspace_piece<float>(base, plan.grad_k_sum);
  scratch->row_state = workspace_piece<LseState>(base, plan.row_state);
  scratch->col_state = workspace_piece<LseState>(base, plan.col_state);
  scratch->positive_logit = workspace_piece<float>(base, plan.positive_logit);
  scratch->row_logit_grad = workspace_piece<float>(base, plan.row_logit_grad);
  scratch->gemm_workspace = workspace_piece<void>(base, plan.gemm_workspace);
  return Status::kSuccess;
}

// The saved buffer's pieces: F = float where forward writes them, const float where backward reads.
template <typename F>
struct SavedView {
  F* row_lse = nullptr;
  F* col_lse = nullptr;
  F* q_inv_norm = nullptr;
  F* k_inv_norm = nullptr;
};

template <typename F>
SavedView<F> view_saved(const Params& params, F* base) {
  const SavedLayout layout = saved_layout(params);
  auto at = [base](std::int64_t offset) { return offset < 0 ? nullptr : base + offset; };
  return {at(layout.row_lse), at(layout.col_lse), at(layout.q_inv_norm), at(layout.k_inv_norm)};
}

using Operands = TileOperands;

struct Gradients {
  const float* grad_loss = nullptr;
  void* grad_q = nullptr;  // dtype
  void* grad_k = nullptr;  // dtype
  float* grad_scalar = nullptr;
};

// Byte offset of `count` elements of `dtype` from `base`.
const void* advance(const void* base, std::int64_t count, DType dtype) {
  return static_cast<const char*>(base) + count * static_cast<std::int64_t>(dtype_size(dtype));
}

struct Call {
  const Handle& handle;
  const Params& params;
  LogitScale logit_scale;
  Scratch scratch;
  cudaStream_t stream;
};

// ---- Steps -------------------------------------------------------------------------------------

// The inverse norms are computed and saved (forward: `norms_out`) or reused from what forward()
// saved (backward: `norms_in`); the other is null. Rebuilding from the same float inverse norm
// gives bit-identical rows.
Status prepare_operands(const Call& call, const void* q, const void* k,
                        const SavedView<const float>& norms_in, const SavedView<float>& norms_out,
                        Operands* operands) {
  const Params& p = call.params;
  if (p.similarity == Similarity::kDot) {
    *operands = {q, q_stride(p), k, k_stride(p)};
    return Status::kSuccess;
  }
  const Scratch& s = call.scratch;
  CONTRASTIVE_TRY_CUDA(
      dispatch_dtype(
          p.dtype,
          [&](auto tag) {
            using T = typename decltype(tag)::type;
            const cudaError_t q_error = kernels::launch_normalize_rows<T>(
                static_cast<const T*>(q), p.batch, q_stride(p), p.dim, p.eps, norms_in.q_inv_norm,
                norms_out.q_inv_norm, static_cast<T*>(s.q_hat), call.stream);
            if (q_error != cudaSuccess) return q_error;
            return kernels::launch_normalize_rows<T>(
                static_cast<const T*>(k), p.num_keys, k_stride(p), p.dim, p.eps,
                norms_in.k_inv_norm, norms_out.k_inv_norm, static_cast<T*>(s.k_hat), call.stream);
          }),
      "normalize_rows launch");
  *operands = {s.q_hat, p.dim, s.k_hat, p.dim};
  return Status::kSuccess;
}

LogitsTile tile_view(const Call& call, Extent rows, Extent cols) {
  return {call.scratch.logits_tile,
          call.scratch.plan.tile_pitch,
          rows.begin,
          rows.size,
          cols.begin,
          cols.size};
}

Status run_gemm(const Call& call, const RowMajorGemm& g) {
  return gemm(call.handle, g, call.params.allow_tf32, call.scratch.gemm_workspace,
              call.scratch.plan.gemm_workspace_bytes, call.stream);
}

// logits[rows, cols] = s Q_hat[rows] K_hat[cols]^T
Status compute_logits(const Call& call, const Operands& operands, Extent rows, Extent cols) {
  const TileProducts products =
      tile_products(call.params, call.scratch.plan, operands, rows, cols, call.logit_scale.scale,
                    call.scratch.logits_tile, nullptr, nullptr, nullptr, false, false);
  return run_gemm(call, products.logits);
}

// Symmetric mode: the part of a tile inside the positive columns [offset, offset + B) goes into
// their column states.
Status merge_positive_columns(const Call& call, const LogitsTile& tile, bool first_row_tile) {
  const Params& p = call.params;
  const std::int64_t begin = std::max(tile.col0, p.positive_offset);
  const std::int64_t end = std::min(tile.col0 + tile.cols, p.positive_offset + p.batch);
  if (begin >= end) return Status::kSuccess;
  LogitsTile part = tile;
  part.data = const_cast<void*>(advance(tile.data, begin - tile.col0, p.logits_dtype));
  part.col0 = begin;
  part.cols = end - begin;
  CONTRASTIVE_TRY_CUDA(
      dispatch_logits_dtype(p.logits_dtype,
                            [&](auto tag) {
                              using L = typename decltype(tag)::type;
                              return kernels::launch_col_lse_tile<L>(
                                  part, call.scratch.col_state + (begin - p.positive_offset),
                                  first_row_tile, call.stream);
                            }),
      "col_lse_tile launch");
  return Status::kSuccess;
}

Status run_forward(const Call& call, const void* q, const void* k, float* loss,
                   const SavedView<float>& saved, Operands* operands) {
  const Params& p = call.params;
  const Scratch& s = call.scratch;
  const auto& tiles = s.plan.tiles;
  CONTRASTIVE_TRY(prepare_operands(call, q, k, {}, saved, operands));
  for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
    for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
      const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
      CONTRASTIVE_TRY(compute_logits(call, *operands, rows, cols));
      const LogitsTile tile = tile_view(call, rows, cols);
      CONTRASTIVE_TRY_CUDA(dispatch_logits_dtype(p.logits_dtype,
                                                 [&](auto tag) {
                                                   using L = typename decltype(tag)::type;
                                                   return kernels::launch_row_lse_tile<L>(
                                                       tile, p.positive_offset, s.row_state,
                                                       s.positive_logit, c == 0, call.stream);
                                                 }),
                           "row_lse_tile launch");
      if (p.symmetric) CONTRASTIVE_TRY(merge_positive_columns(call, tile, r == 0));
    }
  }
  CONTRASTIVE_TRY_CUDA(kernels::launch_finalize_loss(
                           s.row_state, p.symmetric ? s.col_state : nullptr, s.positive_logit,
                           p.batch, p.reduction, saved.row_lse, saved.col_lse, loss, call.stream),
                       "finalize_loss launch");
  return Status::kSuccess;
}

// `resident`: operands prepared by a forward pass in the same call (their logits tile is still in
// the workspace when the plan has a single tile).
Status run_backward(const Call& call, const void* q, const void* k,
                    const SavedView<const float>& saved, const Gradients& out,
                    const Operands* resident) {
  const Params& p = call.params;
  const Scratch& s = call.scratch;
  const auto& tiles = s.plan.tiles;
  const float logit_scale = call.logit_scale.scale;
  const bool cosine = p.similarity == Similarity::kCosine;
  Operands operands;
  if (resident != nullptr) {
    operands = *resident;
  } else {
    CONTRASTIVE_TRY(prepare_operands(call, q, k, saved, {}, &operands));
  }
  const bool logits_resident = resident != nullptr && tiles.single_tile();
  // The products accumulate in fp32 scratch (then the normalization backward, or a conversion to
  // 16 bits, writes the caller's gradients), or straight into fp32 gradients for f32 dot.
  const bool direct = s.grad_q_sum == nullptr;
  float* grad_q_target =
      out.grad_q == nullptr ? nullptr : (direct ? static_cast<float*>(out.grad_q) : s.grad_q_sum);
  float* grad_k_target =
      out.grad_k == nullptr ? nullptr : (direct ? static_cast<float*>(out.grad_k) : s.grad_k_sum);
  void* grad_tile = s.grad_tile != nullptr ? s.grad_tile : s.logits_tile;  // G, in dtype
  // G holds the upstream gradient times (softmax - onehot) only; the reduction's factor (1/B,
  // 1/2 symmetric) goes into the gradient GEMMs' alpha and the scalar gradient's factor, so that
  // a 16-bit G keeps its small entries (docs/precision.md).
  const kernels::UpstreamGradient upstream{out.grad_loss, p.reduction == Reduction::kNone, 1.0f};

  for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
    for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
      const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
      if (!logits_resident) CONTRASTIVE_TRY(compute_logits(call, operands, rows, cols));
      const LogitsTile tile = tile_view(call, rows, cols);
      CONTRASTIVE_TRY_CUDA(
          dispatch_logits_dtype(p.logits_dtype,
                                [&](auto logits_tag) {
                                  using L = typename decltype(logits_tag)::type;
                                  return dispatch_dtype(p.dtype, [&](auto grad_tag) {
                                    using GT = typename decltype(grad_tag)::type;
                                    return kernels::launch_logits_backward_tile<L, GT>(
                                        tile, static_cast<GT*>(grad_tile), p.positive_offset,
                                        p.batch, saved.row_lse,
                                        p.symmetric ? saved.col_lse : nullptr, upstream,
                                        s.row_logit_grad, c == 0, call.stream);
                                  });
                                }),
          "logits_backward_tile launch");
      // dQ_hat[rows] (+)= s f G K_hat[cols], dK_hat[cols] (+)= s f G^T Q_hat[rows]
      const TileProducts products =
          tile_products(p, s.plan, operands, rows, cols, logit_scale, s.logits_tile, grad_tile,
                        grad_q_target, grad_k_target, /*accumulate_q=*/c > 0,
                        /*accumulate_k=*/r > 0);
      if (grad_q_target != nullptr) CONTRASTIVE_TRY(run_gemm(call, products.grad_q));
      if (grad_k_target != nullptr) CONTRASTIVE_TRY(run_gemm(call, products.grad_k));
    }
  }
  if (!direct) {
    CONTRASTIVE_TRY_CUDA(
        dispatch_dtype(p.dtype,
                       [&](auto tag) {
                         using T = typename decltype(tag)::type;
                         auto finish = [&](const void* x, std::int64_t rows, std::int64_t ld,
                                           const float* sum, void* grad) {
                           if (grad == nullptr) return cudaSuccess;
                           if (!cosine) {
                             return kernels::launch_convert<T>(sum, rows * p.dim,
                                                               static_cast<T*>(grad), call.stream);
                           }
                           return kernels::launch_normalize_rows_backward<T>(
                               static_cast<const T*>(x), rows, ld, p.dim, p.eps, sum,
                               static_cast<T*>(grad), call.stream);
                         };
                         const cudaError_t q_error =
                             finish(q, p.batch, q_stride(p), s.grad_q_sum, out.grad_q);
                         if (q_error != cudaSuccess) return q_error;
                         return finish(k, p.num_keys, k_stride(p), s.grad_k_sum, out.grad_k);
                       }),
        "gradient finishing launch");
  }
  if (out.grad_scalar != nullptr) {
    // f sum(G * logits) = f sum(G * s * sim), with f the reduction's factor G leaves out:
    // dLoss/ds = f sum / s, dLoss/dt = -f sum / t with s = 1/t.
    const double factor = gradient_factor(p);
    const double sum_to_gradient = call.logit_scale.gradient == LogitScale::Gradient::kScale
                                       ? factor / static_cast<double>(logit_scale)
                                       : -factor * static_cast<double>(logit_scale);
    CONTRASTIVE_TRY_CUDA(kernels::launch_sum(s.row_logit_grad, p.batch, sum_to_gradient, nullptr,
                                             out.grad_scalar, call.stream),
                         "sum launch");
  }
  return Status::kSuccess;
}

Status check_gradient_outputs(const Params& params, const Gradients& out,
                              const ArgumentNames& names) {
  if (out.grad_q == nullptr && out.grad_k == nullptr && out.grad_scalar == nullptr) {
    return fail(Status::kNullPointer, "%s: %s, %s and %s are all null: nothing to compute",
                names.call, names.grad_q, names.grad_k, names.grad_scalar);
  }
  const std::size_t element = dtype_size(params.dtype);
  CONTRASTIVE_TRY(require_alignment(out.grad_loss, sizeof(float), names.call, "grad_loss"));
  CONTRASTIVE_TRY(require_alignment(out.grad_q, element, names.call, names.grad_q));
  CONTRASTIVE_TRY(require_alignment(out.grad_k, element, names.call, names.grad_k));
  return require_alignment(out.grad_scalar, sizeof(float), names.call, names.grad_scalar);
}

}  // namespace

Status run(Pass pass, const ArgumentNames& names, const Handle& handle, const Params& params,
           LogitScale logit_scale, const LogitsTensors& args, void* workspace,
           std::size_t workspace_bytes, Stream stream) {
  const bool forward_pass = computes_loss(pass), backward_pass = computes_gradients(pass);
  const std::size_t element = dtype_size(params.dtype);
  CONTRASTIVE_TRY(require_tensor(args.q, element, names.call, names.q));
  CONTRASTIVE_TRY(require_tensor(args.k, element, names.call, names.k));
  if (forward_pass) CONTRASTIVE_TRY(require_tensor(args.loss, sizeof(float), names.call, "loss"));
  CONTRASTIVE_TRY(require_tensor(forward_pass ? args.saved : args.saved_in, sizeof(float),
                                 names.call, "saved"));
  const Gradients out{args.grad_loss, args.grad_q, args.grad_k, args.grad_scalar};
  if (backward_pass) CONTRASTIVE_TRY(check_gradient_outputs(params, out, names));
  Call call{handle, params, logit_scale, {}, stream};
  CONTRASTIVE_TRY(carve_workspace(params, workspace, workspace_bytes, names.call, &call.scratch));
  CONTRASTIVE_TRY(contrastive::detail::require_usable(handle));

  const void* q = args.q;
  const void* k = args.k;
  Operands operands;
  if (forward_pass) {
    const SavedView<float> saved = view_saved(params, static_cast<float*>(args.saved));
    CONTRASTIVE_TRY(run_forward(call, q, k, args.loss, saved, &operands));
  }
  if (!backward_pass) return Status::kSuccess;
  const SavedView<const float> saved = view_saved(params, static_cast<const float*>(args.saved_in));
  return run_backward(call, q, k, saved, out, forward_pass ? &operands : nullptr);
}

}  // namespace detail
}  // namespace contrastive::infonce
