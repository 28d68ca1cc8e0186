// The B x M logits engine behind InfoNCE, in-batch MNR and SigLIP: argument checks, workspace
// carving and the tile loop of DESIGN.md section 3; the head (host/engine/heads.hpp) says what a
// tile of logits turns into.
//
// forward:  [normalize Q, K] -> for each tile: GEMM sims = Q_hat K_hat^T, the head merges the
//           tile (logits = s sims) into its statistics -> the head's loss and saved piece.
// backward: [rebuild Q_hat, K_hat from saved inverse norms] -> for each tile: GEMM sims (unless
//           still resident), the head turns them into G = dLoss/dlogits in place, dQ_hat (+)=
//           G K_hat, dK_hat (+)= G^T Q_hat -> times s in the normalization backward, the head's
//           scalar gradients.
// s is 1/temperature, MNR's scale or SigLIP's t, given as a host float or a device pointer: the
// call first resolves it (and the bias) on the stream into the workspace, and the kernels read it
// there, so the GEMMs never need it on the host. forward_backward computes the logits once when
// there is one tile (the default), or when the head needs no statistics of other tiles (sigmoid,
// or the row softmax with whole rows in each tile): then one walk produces the loss and G from
// the same read. Three GEMMs in all (docs/design.md counts the passes).
#include <cstdint>

#include "host/api/handle_impl.hpp"
#include "host/blas/gemm.hpp"
#include "host/engine/dispatch.hpp"
#include "host/engine/logits_engine.hpp"
#include "host/plan/arguments.hpp"
#include "host/plan/error.hpp"
#include "kernels/normalize.hpp"

namespace contrastive::logits {
namespace {

using contrastive::detail::dispatch_dtype;
using contrastive::detail::Extent;
using contrastive::detail::fail;
using contrastive::detail::gemm;
using contrastive::detail::require_alignment;
using contrastive::detail::require_tensor;
using contrastive::detail::RowMajorGemm;
using contrastive::detail::workspace_piece;
using kernels::LogitsTile;

// ---- Buffers -----------------------------------------------------------------------------------

struct Scratch {
  WorkspacePlan plan;
  void* logits_tile = nullptr;  // logits_dtype
  void* grad_tile = nullptr;    // dtype; null when G is written over the logits
  void* q_hat = nullptr;        // dtype
  void* k_hat = nullptr;        // dtype
  float* grad_q_sum = nullptr;
  float* grad_k_sum = nullptr;
  float* head_scratch = nullptr;
  kernels::ResolvedScalars* scalars = nullptr;
  void* gemm_workspace = nullptr;
};

static_assert(sizeof(kernels::ResolvedScalars) <= kScalarsBytes, "the scalars' piece is too small");

Status carve_workspace(const Problem& problem, void* workspace, std::size_t bytes, const char* call,
                       Scratch* scratch) {
  CONTRASTIVE_TRY(plan_workspace(problem, call, &scratch->plan));
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
  scratch->head_scratch = workspace_piece<float>(base, plan.head_scratch);
  scratch->scalars = workspace_piece<kernels::ResolvedScalars>(base, plan.scalars);
  scratch->gemm_workspace = workspace_piece<void>(base, plan.gemm_workspace);
  return Status::kSuccess;
}

// The saved buffer's pieces: F = float where forward writes them, const float where backward reads.
template <typename F>
struct SavedView {
  F* head = nullptr;
  F* q_inv_norm = nullptr;
  F* k_inv_norm = nullptr;
};

template <typename F>
SavedView<F> view_saved(const Problem& problem, F* base) {
  const SavedLayout layout = saved_layout(problem);
  auto at = [base](std::int64_t offset) { return offset < 0 ? nullptr : base + offset; };
  return {at(layout.head), at(layout.q_inv_norm), at(layout.k_inv_norm)};
}

struct Gradients {
  const float* grad_loss = nullptr;
  void* grad_q = nullptr;  // dtype
  void* grad_k = nullptr;  // dtype
  float* grad_scale = nullptr;
  float* grad_bias = nullptr;
};

struct Call {
  const Handle& handle;
  const Problem& problem;
  const Head& head;
  Scalars scalars;
  Scratch scratch;
  cudaStream_t stream;
  const void* query_ids = nullptr;
  const void* key_ids = nullptr;

  /// `saved`: the head's saved piece in this pass (forward: written; backward: read).
  HeadCall head_call(const float* saved = nullptr) const {
    return {problem, scratch.head_scratch, scratch.scalars, stream, query_ids, key_ids, saved};
  }
};

// The call's scalars, resolved on the stream before anything reads them.
Status resolve_scalars(const Call& call) {
  kernels::ScalarInputs in;
  in.value = call.scalars.value;
  in.device_value = call.scalars.device_value;
  in.form = call.scalars.form;
  in.max_scale = call.scalars.max_scale;
  in.bias = call.scalars.bias;
  in.device_bias = call.scalars.device_bias;
  in.reduction_factor = gradient_factor(call.problem);
  CONTRASTIVE_TRY_CUDA(kernels::launch_resolve_scalars(in, call.scratch.scalars, call.stream),
                       "resolve_scalars launch");
  return Status::kSuccess;
}

// ---- Steps -------------------------------------------------------------------------------------

// The inverse norms are computed and saved (forward: `norms_out`) or reused from what forward()
// saved (backward: `norms_in`); the other is null. Rebuilding from the same float inverse norm
// gives bit-identical rows.
Status prepare_operands(const Call& call, const void* q, const void* k,
                        const SavedView<const float>& norms_in, const SavedView<float>& norms_out,
                        TileOperands* operands) {
  const Problem& p = call.problem;
  if (!p.cosine()) {
    *operands = {q, p.q_stride, k, p.k_stride};
    return Status::kSuccess;
  }
  const Scratch& s = call.scratch;
  CONTRASTIVE_TRY_CUDA(
      dispatch_dtype(
          p.dtype,
          [&](auto tag) {
            using T = typename decltype(tag)::type;
            const cudaError_t q_error = kernels::launch_normalize_rows<T>(
                static_cast<const T*>(q), p.batch, p.q_stride, p.dim, p.eps, norms_in.q_inv_norm,
                norms_out.q_inv_norm, static_cast<T*>(s.q_hat), call.stream);
            if (q_error != cudaSuccess) return q_error;
            return kernels::launch_normalize_rows<T>(
                static_cast<const T*>(k), p.num_keys, p.k_stride, p.dim, p.eps, norms_in.k_inv_norm,
                norms_out.k_inv_norm, static_cast<T*>(s.k_hat), call.stream);
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
          cols.size,
          &call.scratch.scalars->logit_scale};
}

// The GEMMs leave the logit scale s out, so that it can live on the device: the tile holds sim
// (the kernels take s * sim) and the gradient products sum f G K and f G^T Q (the gradient's
// finishing kernels multiply by s).
constexpr float kSimilarityAlpha = 1.0f;

Status run_gemm(const Call& call, const RowMajorGemm& g) {
  return gemm(call.handle, g, call.problem.allow_tf32, call.scratch.gemm_workspace,
              call.scratch.plan.gemm_workspace_bytes, call.stream);
}

// logits[rows, cols] = s Q_hat[rows] K_hat[cols]^T
Status compute_logits(const Call& call, const TileOperands& operands, Extent rows, Extent cols) {
  const TileProducts products =
      tile_products(call.problem, call.scratch.plan, operands, rows, cols, kSimilarityAlpha,
                    call.scratch.logits_tile, nullptr, nullptr, nullptr, false, false);
  return run_gemm(call, products.logits);
}

// The gradient products accumulate in fp32 scratch (then the normalization backward, or a
// conversion to 16 bits, writes the caller's gradients), or straight into fp32 gradients for f32
// dot.
struct GradientTargets {
  float* q = nullptr;
  float* k = nullptr;
  bool direct = false;
};

GradientTargets gradient_targets(const Call& call, const Gradients& out) {
  const Scratch& s = call.scratch;
  const bool direct = s.grad_q_sum == nullptr;
  return {
      out.grad_q == nullptr ? nullptr : (direct ? static_cast<float*>(out.grad_q) : s.grad_q_sum),
      out.grad_k == nullptr ? nullptr : (direct ? static_cast<float*>(out.grad_k) : s.grad_k_sum),
      direct};
}

Status run_forward(const Call& call, const void* q, const void* k, float* loss,
                   const SavedView<float>& saved, TileOperands* operands) {
  const auto& tiles = call.scratch.plan.tiles;
  const HeadCall head_call = call.head_call(saved.head);
  CONTRASTIVE_TRY(prepare_operands(call, q, k, {}, saved, operands));
  CONTRASTIVE_TRY_CUDA(call.head.prepare_forward(head_call, *operands, saved.head),
                       "prepare forward launch");
  for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
    for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
      const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
      CONTRASTIVE_TRY(compute_logits(call, *operands, rows, cols));
      CONTRASTIVE_TRY_CUDA(
          call.head.forward_tile(head_call, tile_view(call, rows, cols), {c == 0, r == 0}),
          "forward tile launch");
    }
  }
  CONTRASTIVE_TRY_CUDA(call.head.finish_forward(head_call, loss, saved.head),
                       "finish forward launch");
  return Status::kSuccess;
}

// One walk of the tiles in backward: G from each tile, then its gradient products. `operands`
// are prepared; `logits_resident`: the single tile's logits are still in the workspace;
// `forward_too`: the head also sums forward's statistics from the same read.
Status walk_backward(const Call& call, const TileOperands& operands, bool logits_resident,
                     const float* saved_head, const Gradients& out, bool forward_too) {
  const Problem& p = call.problem;
  const Scratch& s = call.scratch;
  const auto& tiles = s.plan.tiles;
  const HeadCall head_call = call.head_call(saved_head);
  const GradientTargets targets = gradient_targets(call, out);
  if (!forward_too) {
    CONTRASTIVE_TRY_CUDA(call.head.prepare_backward(head_call, saved_head),
                         "prepare backward launch");
  }
  void* grad_tile = s.grad_tile != nullptr ? s.grad_tile : s.logits_tile;  // G, in dtype
  for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
    for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
      const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
      if (!logits_resident) CONTRASTIVE_TRY(compute_logits(call, operands, rows, cols));
      CONTRASTIVE_TRY_CUDA(
          call.head.backward_tile(head_call, tile_view(call, rows, cols), grad_tile, saved_head,
                                  out.grad_loss, {c == 0, r == 0}, forward_too),
          "backward tile launch");
      // dQ_hat[rows] (+)= f G K_hat[cols], dK_hat[cols] (+)= f G^T Q_hat[rows], times s when the
      // gradients are finished: G holds the upstream gradient times dl/dlogits only; the
      // reduction's factor f goes into alpha, so that a 16-bit G keeps its small entries
      // (docs/precision.md).
      const TileProducts products = tile_products(p, s.plan, operands, rows, cols, kSimilarityAlpha,
                                                  s.logits_tile, grad_tile, targets.q, targets.k,
                                                  /*accumulate_q=*/c > 0, /*accumulate_k=*/r > 0);
      if (targets.q != nullptr) CONTRASTIVE_TRY(run_gemm(call, products.grad_q));
      if (targets.k != nullptr) CONTRASTIVE_TRY(run_gemm(call, products.grad_k));
    }
  }
  return Status::kSuccess;
}

// The caller's gradients from the fp32 sums (normalization backward or conversion), each times
// the logit scale s, then the head's scalar gradients.
Status finish_backward(const Call& call, const void* q, const void* k, const Gradients& out) {
  const Problem& p = call.problem;
  const Scratch& s = call.scratch;
  const float* scale = &s.scalars->gradient_scale;  // s, times a factor known on the device only
  const GradientTargets targets = gradient_targets(call, out);
  if (targets.direct) {  // fp32 gradients summed in place: scale them there
    auto scale_in_place = [&](float* grad, std::int64_t rows) {
      if (grad == nullptr) return cudaSuccess;
      return kernels::launch_convert<float>(grad, rows * p.dim, grad, call.stream, scale);
    };
    CONTRASTIVE_TRY_CUDA(scale_in_place(targets.q, p.batch), "gradient scaling launch");
    CONTRASTIVE_TRY_CUDA(scale_in_place(targets.k, p.num_keys), "gradient scaling launch");
  } else {
    CONTRASTIVE_TRY_CUDA(
        dispatch_dtype(p.dtype,
                       [&](auto tag) {
                         using T = typename decltype(tag)::type;
                         auto finish = [&](const void* x, std::int64_t rows, std::int64_t ld,
                                           const float* sum, void* grad) {
                           if (grad == nullptr) return cudaSuccess;
                           if (!p.cosine()) {
                             return kernels::launch_convert<T>(
                                 sum, rows * p.dim, static_cast<T*>(grad), call.stream, scale);
                           }
                           return kernels::launch_normalize_rows_backward<T>(
                               static_cast<const T*>(x), rows, ld, p.dim, p.eps, sum,
                               static_cast<T*>(grad), call.stream, scale);
                         };
                         const cudaError_t q_error =
                             finish(q, p.batch, p.q_stride, s.grad_q_sum, out.grad_q);
                         if (q_error != cudaSuccess) return q_error;
                         return finish(k, p.num_keys, p.k_stride, s.grad_k_sum, out.grad_k);
                       }),
        "gradient finishing launch");
  }
  CONTRASTIVE_TRY_CUDA(call.head.scalar_gradients(call.head_call(), out.grad_scale, out.grad_bias),
                       "scalar gradient launch");
  return Status::kSuccess;
}

Status check_gradient_outputs(const Problem& problem, const Gradients& out,
                              const ArgumentNames& names) {
  if (out.grad_q == nullptr && out.grad_k == nullptr && out.grad_scale == nullptr &&
      out.grad_bias == nullptr) {
    if (names.grad_bias != nullptr) {
      return fail(Status::kNullPointer, "%s: %s, %s, %s and %s are all null: nothing to compute",
                  names.call, names.grad_q, names.grad_k, names.grad_scale, names.grad_bias);
    }
    return fail(Status::kNullPointer, "%s: %s, %s and %s are all null: nothing to compute",
                names.call, names.grad_q, names.grad_k, names.grad_scale);
  }
  const std::size_t element = dtype_size(problem.dtype);
  CONTRASTIVE_TRY(require_alignment(out.grad_loss, sizeof(float), names.call, "grad_loss"));
  CONTRASTIVE_TRY(require_alignment(out.grad_q, element, names.call, names.grad_q));
  CONTRASTIVE_TRY(require_alignment(out.grad_k, element, names.call, names.grad_k));
  CONTRASTIVE_TRY(require_alignment(out.grad_scale, sizeof(float), names.call, names.grad_scale));
  if (names.grad_bias == nullptr) return Status::kSuccess;
  return require_alignment(out.grad_bias, sizeof(float), names.call, names.grad_bias);
}

}  // namespace

Status run(Pass pass, const ArgumentNames& names, const Handle& handle, const Problem& problem,
           Scalars scalars, const LogitsTensors& args, void* workspace, std::size_t workspace_bytes,
           Stream stream) {
  const bool forward_pass = computes_loss(pass), backward_pass = computes_gradients(pass);
  const std::size_t element = dtype_size(problem.dtype);
  CONTRASTIVE_TRY(require_tensor(args.q, element, names.call, names.q));
  CONTRASTIVE_TRY(require_tensor(args.k, element, names.call, names.k));
  if (problem.ids.type != ids::IdType::kNone) {
    const std::size_t id_bytes =
        problem.ids.type == ids::IdType::kInt64 ? sizeof(std::int64_t) : sizeof(std::int32_t);
    CONTRASTIVE_TRY(require_tensor(args.query_ids, id_bytes, names.call, names.query_ids));
    CONTRASTIVE_TRY(require_tensor(args.key_ids, id_bytes, names.call, names.key_ids));
  }
  if (forward_pass) CONTRASTIVE_TRY(require_tensor(args.loss, sizeof(float), names.call, "loss"));
  const void* saved_pointer = forward_pass ? args.saved : args.saved_in;
  if (saved_layout(problem).floats > 0) {
    CONTRASTIVE_TRY(require_tensor(saved_pointer, sizeof(float), names.call, "saved"));
  } else {  // nothing to save: the pointer may be null
    CONTRASTIVE_TRY(require_alignment(saved_pointer, sizeof(float), names.call, "saved"));
  }
  const Gradients out{args.grad_loss, args.grad_q, args.grad_k, args.grad_scale,
                      names.grad_bias != nullptr ? args.grad_bias : nullptr};
  if (backward_pass) CONTRASTIVE_TRY(check_gradient_outputs(problem, out, names));
  CONTRASTIVE_TRY(require_alignment(args.scale_value, sizeof(float), names.call, names.scale));
  if (names.bias != nullptr) {
    CONTRASTIVE_TRY(require_alignment(args.bias_value, sizeof(float), names.call, names.bias));
  }
  scalars.device_value = args.scale_value;
  scalars.device_bias = names.bias != nullptr ? args.bias_value : nullptr;
  Call call{handle, problem, head_of(problem.head), scalars, {}, stream};
  if (problem.ids.type != ids::IdType::kNone) {
    call.query_ids = args.query_ids;
    call.key_ids = args.key_ids;
  }
  CONTRASTIVE_TRY(carve_workspace(problem, workspace, workspace_bytes, names.call, &call.scratch));
  CONTRASTIVE_TRY(contrastive::detail::require_usable(handle));
  CONTRASTIVE_TRY(resolve_scalars(call));

  const void* q = args.q;
  const void* k = args.k;
  if (forward_pass && backward_pass &&
      call.head.backward_also_forwards(problem, call.scratch.plan.tiles)) {
    // One walk: each tile's read gives forward's statistics and G.
    const SavedView<float> saved = view_saved(problem, static_cast<float*>(args.saved));
    TileOperands operands;
    CONTRASTIVE_TRY(prepare_operands(call, q, k, {}, saved, &operands));
    CONTRASTIVE_TRY(walk_backward(call, operands, false, saved.head, out, true));
    CONTRASTIVE_TRY_CUDA(
        call.head.finish_forward(call.head_call(saved.head), args.loss, saved.head),
        "finish forward launch");
    return finish_backward(call, q, k, out);
  }
  TileOperands operands;
  if (forward_pass) {
    const SavedView<float> saved = view_saved(problem, static_cast<float*>(args.saved));
    CONTRASTIVE_TRY(run_forward(call, q, k, args.loss, saved, &operands));
  }
  if (!backward_pass) return Status::kSuccess;
  const SavedView<const float> saved =
      view_saved(problem, static_cast<const float*>(args.saved_in));
  if (!forward_pass) CONTRASTIVE_TRY(prepare_operands(call, q, k, saved, {}, &operands));
  const bool logits_resident = forward_pass && call.scratch.plan.tiles.single_tile();
  CONTRASTIVE_TRY(walk_backward(call, operands, logits_resident, saved.head, out, false));
  return finish_backward(call, q, k, out);
}

}  // namespace contrastive::logits
