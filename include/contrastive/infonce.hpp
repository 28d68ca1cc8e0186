// InfoNCE (and CLIP's symmetric form) over a rectangular similarity matrix, forward and backward.
//
//   Q (B, D) queries, K (M, D) keys, M >= B; the positive of query row i is key row i + offset.
//   S = sim(Q, K) / temperature, sim = cosine (default) or dot.
//   row loss     l_i = logsumexp_j S_ij - S_{i, i+offset}
//   column loss  c_i = logsumexp_r S_{r, i+offset} - S_{i, i+offset}     (symmetric mode only)
//   i.e. the column direction runs over the B positive columns, against the B queries: with M == B
//   this is CLIP's loss; with M > B it is sentence-transformers' symmetric MNR over the positives.
//   Symmetric mode uses (l_i + c_i) / 2 per row, so mean/sum/none stay consistent with each other.
//
// Lifecycle: check -> workspace_size / saved_size -> forward -> backward (or forward_backward).
// Forward writes, besides the loss, a small "saved" buffer (per-row log-sum-exp, inverse norms)
// that backward reads; the workspace is scratch and need not survive between calls.
// No call allocates device memory, synchronizes the host or uses a stream other than the one given.
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/handle.hpp"
#include "contrastive/id_options.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::infonce {

/// The problem: shapes, dtype and options. Plain data; defaults give the usual loss
/// (cosine, temperature 0.1, mean) once the three sizes are set.
struct Params {
  std::int64_t batch = 0;            ///< B: rows of Q, >= 1
  std::int64_t num_keys = 0;         ///< M: rows of K, >= B
  std::int64_t dim = 0;              ///< D: embedding width, >= 1
  std::int64_t positive_offset = 0;  ///< positive of row i is key i + offset; 0 <= offset <= M - B
  std::int64_t q_row_stride = 0;     ///< elements between rows of Q; 0 means D; else >= D
  std::int64_t k_row_stride = 0;     ///< elements between rows of K; 0 means D; else >= D
  DType dtype = DType::kF32;         ///< of Q, K and the gradients: f32, f16 or bf16
  Similarity similarity = Similarity::kCosine;
  Reduction reduction = Reduction::kMean;
  float temperature = 0.1f;  ///< > 0 and finite; logits are sim / temperature
  /// temperature holds theta, the log of the logit scale (CLIP's learnable logit_scale): logits
  /// are exp(theta) * sim and grad_temperature is dLoss/dtheta.
  bool log_scale = false;
  /// > 0: the logit scale s (1 / temperature, or exp(theta)) is clamped at max_scale, with no
  /// gradient where it clamps (open_clip: 100); 0: no clamp.
  float max_scale = 0.0f;
  float eps = 1e-12f;       ///< cosine only: norms are clamped to at least eps; > 0
  bool symmetric = false;   ///< CLIP: average row and (positive-)column losses
  bool allow_tf32 = false;  ///< f32 only: let cuBLAS use TF32 tensor cores for the GEMMs
  /// Element type of the logits tile between the GEMM and the softmax kernels: kF32 (default) or,
  /// with kBF16 inputs, kBF16 (half the tile's memory traffic and size, at bf16's rounding of each
  /// logit).
  DType logits_dtype = DType::kF32;
  /// How the B x M logits are walked. kAuto takes the materialized path when its workspace is at
  /// most workspace_budget bytes and the tiled path otherwise; the other two force a path.
  Tiling tiling = Tiling::kAuto;
  std::size_t workspace_budget = kDefaultWorkspaceBudget;
  /// Tiled path: the tile (its logits, and dLoss/dlogits where they are stored apart) is sized to
  /// fit this many bytes of L2, so it is written and read back without a trip to DRAM. 0 means
  /// kDefaultTileCacheBytes; Handle::l2_cache_bytes() tells the device's L2.
  std::size_t tile_cache_bytes = 0;
  /// An explicit tile (rows x columns), overriding `tiling`: 0 means the whole dimension. Tiles
  /// smaller than the matrix bound the workspace by the tile instead of B x M, at the cost of
  /// recomputing logits in backward.
  std::int64_t tile_rows = 0;
  std::int64_t tile_cols = 0;
  /// Ids of the query and key rows and what they mean (contrastive/ids.hpp): duplicates out of the
  /// denominator, several positives, self-exclusion, a false-negative threshold. The default: none.
  /// With a type, the args' query_ids and key_ids are required.
  ids::IdOptions ids;
};

/// Inputs and outputs of forward(). Device pointers.
struct ForwardArgs {
  const void* q = nullptr;  ///< (B, q_row_stride) row-major, dtype
  const void* k = nullptr;  ///< (M, k_row_stride) row-major, dtype
  float* loss = nullptr;    ///< (1) for mean/sum, (B) for Reduction::kNone
  void* saved = nullptr;    ///< saved_size() bytes, 4-byte aligned; read by backward()
  /// (1) device: when set, the temperature (theta with log_scale) is read here, on the stream,
  /// instead of from Params::temperature: a learnable temperature without a host read.
  const float* temperature = nullptr;
  /// (B) device, int32 or int64 per Params::ids.type: the ids of the query rows; null without ids.
  const void* query_ids = nullptr;
  const void* key_ids = nullptr;  ///< (M) device, the ids of the key rows, as query_ids
};

/// Inputs and outputs of backward(). Device pointers. Gradient outputs are dense (row stride D).
/// A null gradient output is skipped (e.g. a frozen key tower); at least one must be set.
struct BackwardArgs {
  const void* q = nullptr;             ///< (B, q_row_stride), as given to forward()
  const void* k = nullptr;             ///< (M, k_row_stride), as given to forward()
  const void* saved = nullptr;         ///< what forward() wrote for the same Params and inputs
  const float* grad_loss = nullptr;    ///< upstream gradient: (1), or (B) for kNone; null means 1
  void* grad_q = nullptr;              ///< (B, D) dtype, written (not accumulated)
  void* grad_k = nullptr;              ///< (M, D) dtype, written (not accumulated)
  float* grad_temperature = nullptr;   ///< (1): dLoss/dtemperature, scaled by grad_loss
  const float* temperature = nullptr;  ///< (1) device or null, as in ForwardArgs
  const void* query_ids = nullptr;     ///< (B) device or null, as in ForwardArgs
  const void* key_ids = nullptr;       ///< (M) device, the ids of the key rows, as query_ids
};

/// Inputs and outputs of forward_backward(): the training step in one call.
struct ForwardBackwardArgs {
  const void* q = nullptr;             ///< (B, q_row_stride)
  const void* k = nullptr;             ///< (M, k_row_stride)
  float* loss = nullptr;               ///< (1) or (B)
  void* saved = nullptr;               ///< saved_size() bytes
  const float* grad_loss = nullptr;    ///< (1) or (B); null means 1
  void* grad_q = nullptr;              ///< (B, D) or null
  void* grad_k = nullptr;              ///< (M, D) or null
  float* grad_temperature = nullptr;   ///< (1) or null
  const float* temperature = nullptr;  ///< (1) device or null, as in ForwardArgs
  const void* query_ids = nullptr;     ///< (B) device or null, as in ForwardArgs
  const void* key_ids = nullptr;       ///< (M) device, the ids of the key rows, as query_ids
};

/// Validate `params` (no device needed). Returns kInvalidArgument or kNotSupported with a message.
CONTRASTIVE_API Status check(const Params& params);

/// Scratch bytes that forward, backward and forward_backward need for `params`. Includes slack
/// so that any (even unaligned) pointer to a block of this size works.
CONTRASTIVE_API Status workspace_size(const Params& params, std::size_t* bytes);

/// Bytes of the buffer forward() fills for backward(): fp32 row log-sum-exp (B), log-sum-exp of the
/// positive columns (B, symmetric only), with ids the positive counts (B, multi-positive) or the
/// positives' similarities (B, false-negative threshold), inverse norms of Q (B) and K (M) (cosine
/// only), in order.
CONTRASTIVE_API Status saved_size(const Params& params, std::size_t* bytes);

/// Loss (and the saved statistics) on `stream`.
CONTRASTIVE_API Status forward(const Handle& handle, const Params& params, const ForwardArgs& args,
                               void* workspace, std::size_t workspace_bytes, Stream stream);

/// Gradients for Q, K and the temperature from what forward() saved. Recomputes the logits.
CONTRASTIVE_API Status backward(const Handle& handle, const Params& params,
                                const BackwardArgs& args, void* workspace,
                                std::size_t workspace_bytes, Stream stream);

/// forward() then backward() in one call; the logits are computed once with a single tile or with
/// tiles of whole rows (not symmetric), where one read of each row gives its statistics and G.
CONTRASTIVE_API Status forward_backward(const Handle& handle, const Params& params,
                                        const ForwardBackwardArgs& args, void* workspace,
                                        std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::infonce
