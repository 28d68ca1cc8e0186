// Value types shared by every loss: element types, reductions, similarity, the stream type, the
// three passes, the per-anchor candidate limit. Plain C++: host code, kernels and tests share it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"

// The CUDA runtime's stream type is `CUstream_st*`; declaring the struct here keeps the public
// headers free of CUDA headers while a `cudaStream_t` still converts without a cast.
struct CUstream_st;

namespace contrastive {

/// A CUDA stream (`cudaStream_t`). Every call that launches work takes one.
using Stream = CUstream_st*;

/// Element type of the input embeddings (and of the gradients written for them).
/// Accumulation, the loss and the saved statistics are always fp32.
enum class DType : int {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
};

/// How per-row losses are combined into the output.
enum class Reduction : int {
  kMean = 0,  ///< one value: the mean over rows
  kSum = 1,   ///< one value: the sum over rows
  kNone = 2,  ///< one value per row
};

/// How a query row and a key row are compared before the temperature is applied.
enum class Similarity : int {
  kCosine = 0,  ///< dot product of L2-normalized rows (eps-clamped norm, as
                ///< torch.nn.functional.normalize)
  kDot = 1,     ///< plain dot product
};

/// How a loss over the B x M logits (InfoNCE, in-batch MNR) walks them.
enum class Tiling : int {
  kAuto = 0,          ///< materialized when its workspace fits the params' workspace_budget
  kMaterialized = 1,  ///< one tile: the whole matrix in the workspace; logits computed once
  kTiled = 2,         ///< L2-sized tiles: workspace O((B + M) D), independent of B x M;
                      ///< backward recomputes each tile's logits
};

/// Tiling::kAuto's default limit on the materialized workspace: 4 GiB (B = M = 32768 in fp32
/// exceeds it).
inline constexpr std::size_t kDefaultWorkspaceBudget = std::size_t{4} << 30;
/// The tiled path's default L2 share for a tile: 32 MiB (Hopper has 50 MB of L2, Ampere 40 MB).
inline constexpr std::size_t kDefaultTileCacheBytes = std::size_t{32} << 20;

/// The three calls every loss offers. forward writes the loss and the saved statistics, backward
/// reads them and writes the gradients, forward_backward does both in one call.
enum class Pass : int {
  kForward = 0,
  kBackward = 1,
  kForwardBackward = 2,
};

/// Whether `pass` computes the loss (forward, forward_backward).
constexpr bool computes_loss(Pass pass) {
  return pass != Pass::kBackward;
}
/// Whether `pass` computes gradients (backward, forward_backward).
constexpr bool computes_gradients(Pass pass) {
  return pass != Pass::kForward;
}

/// Candidates one anchor is compared with in the per-anchor losses (per-anchor MNR: the positive
/// and its n negatives; Repel: its N negatives): the fused kernel holds them in shared memory.
inline constexpr std::int64_t kMaxAnchorCandidates = 2048;

/// Elements between rows for a `*_row_stride` field of the Params: 0 means dense (the row width).
constexpr std::int64_t row_stride_or_dim(std::int64_t stride, std::int64_t dim) {
  return stride == 0 ? dim : stride;
}

/// Bytes per element of `dtype`, or 0 for a value outside the enum.
CONTRASTIVE_API std::size_t dtype_size(DType dtype) noexcept;

/// "f32", "f16", "bf16", or "unknown".
CONTRASTIVE_API const char* dtype_name(DType dtype) noexcept;

}  // namespace contrastive
