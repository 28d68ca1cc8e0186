// InfoNCE on the GPU: argument checks, workspace carving and the tile loop of DESIGN.md section 3.
//
// forward:  [normalize Q, K] -> for each tile: GEMM logits = Q_hat K_hat^T / t, merge row (and
//           column) log-sum-exp, pick positives -> finalize lse and the loss.
// backward: [rebuild Q_hat, K_hat from saved inverse norms] -> for each tile: GEMM logits (unless
//           still resident), turn them into G = dLoss/dlogits in place, dQ_hat (+)= G K_hat / t,
//           dK_hat (+)= G^T Q_hat / t -> normalization backward, temperature gradient.
// With one tile (the default) forward_backward computes the logits once: three GEMMs in all.
#include <cstdint>

#include "contrastive/infonce.hpp"
#include "host/error.hpp"
#include "host/gemm.hpp"
#include "host/handle_impl.hpp"
#include "host/infonce_plan.hpp"
#include "host/workspace.hpp"
#include "kernels/normalize.hpp"
#include "kernels/softmax_xent.hpp"

namespace contrastive::infonce {
namespace {

using contrastive::detail::Extent;
using contrastive::detail::fail;
using contrastive::detail::gemm;
using contrastive::detail::RowMajorGemm;
using detail::WorkspacePlan;
using kernels::LogitsTile;
using kernels::LseState;

#define CONTRASTIVE_TRY_CUDA(call, what)                                       \
  do {                                                                         \
    const cudaError_t contrastive_cuda_error_ = (call);                        \
    if (contrastive_cuda_error_ != cudaSuccess) {                              \
      return contrastive::detail::cuda_failure(what, contrastive_cuda_error_); \
    }                                                                          \
  } while (0)

// ---- Argument checks (host only; nothing is launched before all of them pass) ----------------

Status require_pointer(const void* pointer, const char* call, const char* name) {
  if (pointer == nullptr) return fail(Status::kNullPointer, "infonce::%s: %s is null", call, name);
  return Status::kSuccess;
}

Status require_alignment(const void* pointer, std::size_t alignment, const char* call,
                         const char* name) {
  if (pointer != nullptr && reinterpret_cast<std::uintptr_t>(pointer) % alignment != 0) {
    return fail(Status::kMisalignedPointer, "infonce::%s: %s (%p) is not aligned to %zu bytes",
                call, name, pointer, alignment);
  }
  return Status::kSuccess;
}

// Inputs and outputs present and aligned to their element types.
Status require_tensor(const void* pointer, std::size_t alignment, const char* call,
                      const char* name) {
  CONTRASTIVE_TRY(require_pointer(pointer, call, name));
  return require_alignment(pointer, alignment, call, name);
}

// ---- Buffers -----------------------------------------------------------------------------------

struct Scratch {
  WorkspacePlan plan;
  float* logits_tile = nullptr;
  float* q_hat = nullptr;
  float* k_hat = nullptr;
  float* grad_q_hat = nullptr;
  float* grad_k_hat = nullptr;
  LseState* row_state = nullptr;
  LseState* col_state = nullptr;
  float* positive_logit = nullptr;
  float* row_logit_grad = nullptr;
  void* gemm_workspace = nullptr;
};

template <typename T>
T* piece(void* base, std::size_t offset) {
  if (offset == WorkspacePlan::kAbsent) return nullptr;
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

Status carve_workspace(const Params& params, void* workspace, std::size_t bytes, const char* call,
                       Scratch* scratch) {
  CONTRASTIVE_TRY(detail::plan_workspace(params, &scratch->plan));
  const WorkspacePlan& plan = scratch->plan;
  if (workspace == nullptr && bytes != 0) {
    return fail(Status::kNullPointer, "infonce::%s: workspace is null but workspace_bytes is %zu",
                call, bytes);
  }
  if (workspace == nullptr || bytes < plan.required_bytes ||
      !contrastive::detail::workspace_fits(workspace, bytes, plan.used_bytes)) {
    return fail(Status::kWorkspaceTooSmall,
                "infonce::%s: workspace of %zu bytes is too small: workspace_size() asks for %zu",
                call, bytes, plan.required_bytes);
  }
  void* base = contrastive::detail::align_workspace(workspace);
  scratch->logits_tile = piece<float>(base, plan.logits_tile);
  scratch->q_hat = piece<float>(base, plan.q_hat);
  scratch->k_hat = piece<float>(base, plan.k_hat);
  scratch->grad_q_hat = piece<float>(base, plan.grad_q_hat);
  scratch->grad_k_hat = piece<float>(base, plan.grad_k_hat);
  scratch->row_state = piece<LseState>(base, plan.row_state);
  scratch->col_state = piece<LseState>(base, plan.col_state);
  scratch->positive_logit = piece<float>(base, plan.positive_logit);
  scratch->row_logit_grad = piece<float>(base, plan.row_logit_grad);
  scratch->gemm_workspace = piece<void>(base, plan.gemm_workspace);
  return Status::kSuccess;
}

struct SavedView {
  float* row_lse = nullptr;
  float* col_lse = nullptr;
  float* q_inv_norm = nullptr;
  float* k_inv_norm = nullptr;
};

SavedView view_saved(const Params& params, const void* saved) {
  const detail::SavedLayout layout = detail::saved_layout(params);
  auto* base = static_cast<float*>(const_cast<void*>(saved));
  auto at = [base](std::int64_t offset) { return offset < 0 ? nullptr : base + offset; };
  return {at(layout.row_lse), at(layout.col_lse), at(layout.q_inv_norm), at(layout.k_inv_norm)};
}

// What the GEMMs read: normalized copies (cosine) or the caller's rows (dot).
struct Operands {
  const float* q = nullptr;
  std::int64_t ldq = 0;
  const float* k = nullptr;
  std::int64_t ldk = 0;
};

struct Call {
  const Handle& handle;
  const Params& params;
  Scratch scratch;
  cudaStream_t stream;

  float inverse_temperature() const { return 1.0f / params.temperature; }
};

// ---- Steps -------------------------------------------------------------------------------------

// With use_saved_norms the inverse norms forward() saved are reused (backward), else computed and
// saved (forward). Rebuilding from the same float inverse norm gives bit-identical rows.
Status prepare_operands(const Call& call, const float* q, const float* k, const SavedView& saved,
                        bool use_saved_norms, Operands* operands) {
  const Params& p = call.params;
  if (p.similarity == Similarity::kDot) {
    *operands = {q, detail::q_stride(p), k, detail::k_stride(p)};
    return Status::kSuccess;
  }
  const Scratch& s = call.scratch;
  CONTRASTIVE_TRY_CUDA(kernels::launch_normalize_rows(q, p.batch, detail::q_stride(p), p.dim, p.eps,
                                                      use_saved_norms ? saved.q_inv_norm : nullptr,
                                                      use_saved_norms ? nullptr : saved.q_inv_norm,
                                                      s.q_hat, call.stream),
                       "normalize_rows(Q) launch");
  CONTRASTIVE_TRY_CUDA(kernels::launch_normalize_rows(
                           k, p.num_keys, detail::k_stride(p), p.dim, p.eps,
                           use_saved_norms ? saved.k_inv_norm : nullptr,
                           use_saved_norms ? nullptr : saved.k_inv_norm, s.k_hat, call.stream),
                       "normalize_rows(K) launch");
  *operands = {s.q_hat, p.dim, s.k_hat, p.dim};
  return Status::kSuccess;
}

LogitsTile tile_view(const Call& call, Extent rows, Extent cols) {
  return {call.scratch.logits_tile,
          call.scratch.plan.tiles.tile_cols,
          rows.begin,
          rows.size,
          cols.begin,
          cols.size};
}

// logits[rows, cols] = Q_hat[rows] K_hat[cols]^T / temperature
Status compute_logits(const Call& call, const Operands& operands, Extent rows, Extent cols) {
  const RowMajorGemm g = contrastive::detail::logits_product(
      operands.q + rows.begin * operands.ldq, operands.ldq, operands.k + cols.begin * operands.ldk,
      operands.ldk, rows.size, cols.size, call.params.dim, call.scratch.logits_tile,
      call.scratch.plan.tiles.tile_cols, call.inverse_temperature());
  return gemm(call.handle, g, call.params.allow_tf32, call.scratch.gemm_workspace,
              call.scratch.plan.gemm_workspace_bytes, call.stream);
}

Status run_forward(const Call& call, const float* q, const float* k, float* loss,
                   const SavedView& saved, Operands* operands) {
  const Params& p = call.params;
  const Scratch& s = call.scratch;
  const auto& tiles = s.plan.tiles;
  CONTRASTIVE_TRY(prepare_operands(call, q, k, saved, /*use_saved_norms=*/false, operands));
  for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
    for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
      const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
      CONTRASTIVE_TRY(compute_logits(call, *operands, rows, cols));
      const LogitsTile tile = tile_view(call, rows, cols);
      CONTRASTIVE_TRY_CUDA(kernels::launch_row_lse_tile(tile, p.positive_offset, s.row_state,
                                                        s.positive_logit, c == 0, call.stream),
                           "row_lse_tile launch");
      if (p.symmetric) {
        CONTRASTIVE_TRY_CUDA(kernels::launch_col_lse_tile(tile, s.col_state, r == 0, call.stream),
                             "col_lse_tile launch");
      }
    }
  }
  CONTRASTIVE_TRY_CUDA(kernels::launch_finalize_loss(
                           s.row_state, p.symmetric ? s.col_state : nullptr, s.positive_logit,
                           p.batch, p.reduction, saved.row_lse, saved.col_lse, loss, call.stream),
                       "finalize_loss launch");
  return Status::kSuccess;
}

struct Gradients {
  const float* grad_loss = nullptr;
  float* grad_q = nullptr;
  float* grad_k = nullptr;
  float* grad_temperature = nullptr;
};

// `resident`: operands prepared by a forward pass in the same call (their logits tile is still in
// the workspace when the plan has a single tile).
Status run_backward(const Call& call, const float* q, const float* k, const SavedView& saved,
                    const Gradients& out, const Operands* resident) {
  const Params& p = call.params;
  const Scratch& s = call.scratch;
  const auto& tiles = s.plan.tiles;
  const bool cosine = p.similarity == Similarity::kCosine;
  Operands operands;
  if (resident != nullptr) {
    operands = *resident;
  } else {
    CONTRASTIVE_TRY(prepare_operands(call, q, k, saved, /*use_saved_norms=*/true, &operands));
  }
  const bool logits_resident = resident != nullptr && tiles.single_tile();
  // Cosine accumulates into fp32 scratch and then applies the normalization backward; dot
  // accumulates straight into the caller's (fp32, dense) gradients.
  float* grad_q_target = out.grad_q == nullptr ? nullptr : (cosine ? s.grad_q_hat : out.grad_q);
  float* grad_k_target = out.grad_k == nullptr ? nullptr : (cosine ? s.grad_k_hat : out.grad_k);
  float scale = p.reduction == Reduction::kMean ? 1.0f / static_cast<float>(p.batch) : 1.0f;
  if (p.symmetric) scale *= 0.5f;
  const kernels::UpstreamGradient upstream{out.grad_loss, p.reduction == Reduction::kNone, scale};

  for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
    for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
      const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
      if (!logits_resident) CONTRASTIVE_TRY(compute_logits(call, operands, rows, cols));
      const LogitsTile tile = tile_view(call, rows, cols);
      CONTRASTIVE_TRY_CUDA(
          kernels::launch_logits_backward_tile(tile, p.positive_offset, saved.row_lse,
                                               p.symmetric ? saved.col_lse : nullptr, upstream,
                                               s.row_logit_grad, c == 0, call.stream),
          "logits_backward_tile launch");
      if (grad_q_target != nullptr) {  // dQ_hat[rows] (+)= G K_hat[cols] / t
        const RowMajorGemm g = contrastive::detail::grad_q_product(
            tile.data, tile.ld, operands.k + cols.begin * operands.ldk, operands.ldk, rows.size,
            cols.size, p.dim, grad_q_target + rows.begin * p.dim, call.inverse_temperature(),
            /*accumulate=*/c > 0);
        CONTRASTIVE_TRY(gemm(call.handle, g, p.allow_tf32, s.gemm_workspace,
                             s.plan.gemm_workspace_bytes, call.stream));
      }
      if (grad_k_target != nullptr) {  // dK_hat[cols] (+)= G^T Q_hat[rows] / t
        const RowMajorGemm g = contrastive::detail::grad_k_product(
            tile.data, tile.ld, operands.q + rows.begin * operands.ldq, operands.ldq, rows.size,
            cols.size, p.dim, grad_k_target + cols.begin * p.dim, call.inverse_temperature(),
            /*accumulate=*/r > 0);
        CONTRASTIVE_TRY(gemm(call.handle, g, p.allow_tf32, s.gemm_workspace,
                             s.plan.gemm_workspace_bytes, call.stream));
      }
    }
  }
  if (cosine && out.grad_q != nullptr) {
    CONTRASTIVE_TRY_CUDA(
        kernels::launch_normalize_rows_backward(q, p.batch, detail::q_stride(p), p.dim, p.eps,
                                                s.grad_q_hat, out.grad_q, call.stream),
        "normalize_rows_backward(Q) launch");
  }
  if (cosine && out.grad_k != nullptr) {
    CONTRASTIVE_TRY_CUDA(
        kernels::launch_normalize_rows_backward(k, p.num_keys, detail::k_stride(p), p.dim, p.eps,
                                                s.grad_k_hat, out.grad_k, call.stream),
        "normalize_rows_backward(K) launch");
  }
  if (out.grad_temperature != nullptr) {
    CONTRASTIVE_TRY_CUDA(kernels::launch_temperature_grad(s.row_logit_grad, p.batch, p.temperature,
                                                          out.grad_temperature, call.stream),
                         "temperature_grad launch");
  }
  return Status::kSuccess;
}

Status check_gradient_outputs(const Params& params, const Gradients& out, const char* call) {
  if (out.grad_q == nullptr && out.grad_k == nullptr && out.grad_temperature == nullptr) {
    return fail(Status::kNullPointer,
                "infonce::%s: grad_q, grad_k and grad_temperature are all null: nothing to compute",
                call);
  }
  const std::size_t element = dtype_size(params.dtype);
  CONTRASTIVE_TRY(require_alignment(out.grad_loss, sizeof(float), call, "grad_loss"));
  CONTRASTIVE_TRY(require_alignment(out.grad_q, element, call, "grad_q"));
  CONTRASTIVE_TRY(require_alignment(out.grad_k, element, call, "grad_k"));
  return require_alignment(out.grad_temperature, sizeof(float), call, "grad_temperature");
}

enum class Pass { kForward, kBackward, kForwardBackward };

// The three public calls: every argument is checked, then the handle, before anything launches.
Status run_call(Pass pass, const char* name, const Handle& handle, const Params& params,
                const ForwardBackwardArgs& args, void* workspace, std::size_t workspace_bytes,
                Stream stream) {
  const bool forward_pass = pass != Pass::kBackward, backward_pass = pass != Pass::kForward;
  CONTRASTIVE_TRY(check(params));
  const std::size_t element = dtype_size(params.dtype);
  CONTRASTIVE_TRY(require_tensor(args.q, element, name, "q"));
  CONTRASTIVE_TRY(require_tensor(args.k, element, name, "k"));
  if (forward_pass) CONTRASTIVE_TRY(require_tensor(args.loss, sizeof(float), name, "loss"));
  CONTRASTIVE_TRY(require_tensor(args.saved, sizeof(float), name, "saved"));
  const Gradients out{args.grad_loss, static_cast<float*>(args.grad_q),
                      static_cast<float*>(args.grad_k), args.grad_temperature};
  if (backward_pass) CONTRASTIVE_TRY(check_gradient_outputs(params, out, name));
  Call call{handle, params, {}, stream};
  CONTRASTIVE_TRY(carve_workspace(params, workspace, workspace_bytes, name, &call.scratch));
  CONTRASTIVE_TRY(contrastive::detail::require_usable(handle));

  const auto* q = static_cast<const float*>(args.q);
  const auto* k = static_cast<const float*>(args.k);
  const SavedView saved = view_saved(params, args.saved);
  Operands operands;
  if (forward_pass) CONTRASTIVE_TRY(run_forward(call, q, k, args.loss, saved, &operands));
  if (!backward_pass) return Status::kSuccess;
  return run_backward(call, q, k, saved, out, forward_pass ? &operands : nullptr);
}

}  // namespace

Status forward(const Handle& handle, const Params& params, const ForwardArgs& args, void* workspace,
               std::size_t workspace_bytes, Stream stream) {
  ForwardBackwardArgs all;
  all.q = args.q;
  all.k = args.k;
  all.loss = args.loss;
  all.saved = args.saved;
  return run_call(Pass::kForward, "forward", handle, params, all, workspace, workspace_bytes,
                  stream);
}

Status backward(const Handle& handle, const Params& params, const BackwardArgs& args,
                void* workspace, std::size_t workspace_bytes, Stream stream) {
  // The backward pass only reads `saved`.
  const ForwardBackwardArgs all{
      args.q,         args.k,      nullptr,     const_cast<void*>(args.saved),
      args.grad_loss, args.grad_q, args.grad_k, args.grad_temperature};
  return run_call(Pass::kBackward, "backward", handle, params, all, workspace, workspace_bytes,
                  stream);
}

Status forward_backward(const Handle& handle, const Params& params, const ForwardBackwardArgs& args,
                        void* workspace, std::size_t workspace_bytes, Stream stream) {
  return run_call(Pass::kForwardBackward, "forward_backward", handle, params, args, workspace,
                  workspace_bytes, stream);
}

}  // namespace contrastive::infonce
