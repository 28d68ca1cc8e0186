// SigLIP's pairwise sigmoid loss (Zhai et al. 2023), forward and backward, over a rectangular
// similarity matrix.
//
//   Q (B, D) queries, K (M, D) keys; the positive of query row i is key row i + offset.
//   l_ij = t * sim(q_i, k_j) + b, sim = cosine (default) or dot, t the scale, b the bias.
//   label y_ij = 1 for the positive and 0 otherwise (negatives_only: every y_ij = 0, as for the
//   keys of other ranks in distributed training); z = 2y - 1.
//   row loss   L_i = sum_j softplus(-z_ij * l_ij)
//   mean (the paper's loss) = (1/B) sum_i L_i; sum = sum_i L_i; none = L_i per row.
//
// The scale is given as t, or as t' = log t (log_scale; open_clip initializes t' = log 10 and
// b = -10); grad_scale is then dLoss/dt'. No log-sum-exp: every tile of the logits is independent,
// so forward_backward computes each tile once, and memory stays O((B + M) D) on the tiled path.
//
// Lifecycle: check -> workspace_size / saved_size -> forward -> backward (or forward_backward).
// No call allocates device memory, synchronizes the host or uses a stream other than the one given.
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/handle.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::siglip {

/// The problem: shapes, dtype and options. Plain data; defaults give SigLIP's loss at its
/// initialization (cosine, t = 10, b = -10, mean over rows) once the three sizes are set.
struct Params {
  std::int64_t batch = 0;            ///< B: rows of Q, >= 1
  std::int64_t num_keys = 0;         ///< M: rows of K, >= B (>= 1 with negatives_only)
  std::int64_t dim = 0;              ///< D: embedding width, >= 1
  std::int64_t positive_offset = 0;  ///< positive of row i is key i + offset; 0 <= offset <= M - B
  std::int64_t q_row_stride = 0;     ///< elements between rows of Q; 0 means D; else >= D
  std::int64_t k_row_stride = 0;     ///< elements between rows of K; 0 means D; else >= D
  DType dtype = DType::kF32;         ///< of Q, K and the gradients: f32, f16 or bf16
  Similarity similarity = Similarity::kCosine;
  Reduction reduction = Reduction::kMean;
  float scale = 10.0f;          ///< t > 0 and finite; or, with log_scale, t' = log t (t finite)
  bool log_scale = false;       ///< scale holds log t; grad_scale is dLoss/d(log t)
  float max_scale = 0.0f;       ///< > 0: t is clamped at it (no gradient there); 0: no clamp
  float bias = -10.0f;          ///< b, finite
  bool negatives_only = false;  ///< every label is 0 (no positive); positive_offset is unused
  float eps = 1e-12f;           ///< cosine only: norms are clamped to at least eps; > 0
  bool allow_tf32 = false;      ///< f32 only: let cuBLAS use TF32 tensor cores for the GEMMs
  /// Element type of the logits tile: kF32 (default) or, with kBF16 inputs, kBF16.
  DType logits_dtype = DType::kF32;
  /// How the B x M logits are walked, as infonce::Params says: the materialized path when its
  /// workspace fits workspace_budget (kAuto), L2-sized tiles otherwise, or an explicit tile.
  Tiling tiling = Tiling::kAuto;
  std::size_t workspace_budget = kDefaultWorkspaceBudget;
  std::size_t tile_cache_bytes = 0;
  std::int64_t tile_rows = 0;
  std::int64_t tile_cols = 0;
};

/// Inputs and outputs of forward(). Device pointers.
struct ForwardArgs {
  const void* q = nullptr;  ///< (B, q_row_stride) row-major, dtype
  const void* k = nullptr;  ///< (M, k_row_stride) row-major, dtype
  float* loss = nullptr;    ///< (1) for mean/sum, (B) for Reduction::kNone
  void* saved = nullptr;    ///< saved_size() bytes (may be null when that is 0); read by backward()
  /// (1) device each: when set, the scale (log t with log_scale) and the bias are read here, on
  /// the stream, instead of from Params (learnable without a host read).
  const float* scale = nullptr;
  const float* bias = nullptr;
};

/// Inputs and outputs of backward(). Device pointers. Gradient outputs are dense (row stride D).
/// A null gradient output is skipped; at least one must be set.
struct BackwardArgs {
  const void* q = nullptr;           ///< (B, q_row_stride), as given to forward()
  const void* k = nullptr;           ///< (M, k_row_stride), as given to forward()
  const void* saved = nullptr;       ///< what forward() wrote for the same Params and inputs
  const float* grad_loss = nullptr;  ///< upstream gradient: (1), or (B) for kNone; null means 1
  void* grad_q = nullptr;            ///< (B, D) dtype, written (not accumulated)
  void* grad_k = nullptr;            ///< (M, D) dtype, written (not accumulated)
  float* grad_scale = nullptr;       ///< (1): dLoss/dt, or dLoss/dlog t with log_scale
  float* grad_bias = nullptr;        ///< (1): dLoss/db
  const float* scale = nullptr;      ///< (1) device or null, as in ForwardArgs
  const float* bias = nullptr;       ///< (1) device or null, as in ForwardArgs
};

/// Inputs and outputs of forward_backward(): the training step in one call.
struct ForwardBackwardArgs {
  const void* q = nullptr;           ///< (B, q_row_stride)
  const void* k = nullptr;           ///< (M, k_row_stride)
  float* loss = nullptr;             ///< (1) or (B)
  void* saved = nullptr;             ///< saved_size() bytes (may be null when that is 0)
  const float* grad_loss = nullptr;  ///< (1) or (B); null means 1
  void* grad_q = nullptr;            ///< (B, D) or null
  void* grad_k = nullptr;            ///< (M, D) or null
  float* grad_scale = nullptr;       ///< (1) or null
  float* grad_bias = nullptr;        ///< (1) or null
  const float* scale = nullptr;      ///< (1) device or null, as in ForwardArgs
  const float* bias = nullptr;       ///< (1) device or null, as in ForwardArgs
};

/// Validate `params` (no device needed). Returns kInvalidArgument or kNotSupported with a message.
CONTRASTIVE_API Status check(const Params& params);

/// Scratch bytes that forward, backward and forward_backward need for `params`.
CONTRASTIVE_API Status workspace_size(const Params& params, std::size_t* bytes);

/// Bytes of the buffer forward() fills for backward(): the inverse norms of Q (B) and K (M) with
/// cosine; 0 with dot.
CONTRASTIVE_API Status saved_size(const Params& params, std::size_t* bytes);

CONTRASTIVE_API Status forward(const Handle& handle, const Params& params, const ForwardArgs& args,
                               void* workspace, std::size_t workspace_bytes, Stream stream);

/// Gradients for Q, K, the scale and the bias. Recomputes the logits.
CONTRASTIVE_API Status backward(const Handle& handle, const Params& params,
                                const BackwardArgs& args, void* workspace,
                                std::size_t workspace_bytes, Stream stream);

/// The loss and the gradients in one walk over the logits.
CONTRASTIVE_API Status forward_backward(const Handle& handle, const Params& params,
                                        const ForwardBackwardArgs& args, void* workspace,
                                        std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::siglip
