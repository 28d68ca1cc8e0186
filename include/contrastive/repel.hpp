// Repel: a margin loss that pushes an anchor away from its negatives (mean of
// max(cos - margin, 0); PyTorch's CosineEmbeddingLoss with target -1), forward and backward.
//
//   anchors u (B, D), negatives X (B, N, D), s_bn = cos(u_b, x_bn)
//   term_bn = max(s_bn - margin, 0)       (NaN stays NaN: the clamp does not launder it)
//   loss    = mean over the B N terms (default), their sum, every term (Reduction::kNone, (B, N)),
//             or, with mean_over_active, the mean over the terms above the margin (0 when none is).
// Cosine uses x / max(|x|, eps) as torch.nn.functional.normalize, so a zero row gives finite
// results. A term's gradient flows where s_bn - margin > 0 (as relu; torch.clamp also passes it at
// exactly 0, a difference of measure zero).
// Memory-bound: one fused kernel per pass reads each row of X once and writes dX once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "contrastive/export.h"
#include "contrastive/handle.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::repel {

struct Params {
  std::int64_t batch = 0;                ///< B anchors, >= 1
  std::int64_t negatives = 0;            ///< N negatives per anchor, >= 1 (N <= 2048)
  std::int64_t dim = 0;                  ///< D, >= 1
  std::int64_t anchor_row_stride = 0;    ///< 0 means D
  std::int64_t negative_row_stride = 0;  ///< elements between negative rows (b, n); 0 means D
  DType dtype = DType::kF32;
  Reduction reduction = Reduction::kMean;
  float margin = 0.3f;            ///< finite
  float eps = 1e-12f;             ///< > 0
  bool mean_over_active = false;  ///< with kMean: divide by the number of terms above the margin
};

struct ForwardArgs {
  const void* anchors = nullptr;    ///< (B, anchor_row_stride) dtype
  const void* negatives = nullptr;  ///< (B * N, negative_row_stride) dtype: row b * N + n
  float* loss = nullptr;            ///< (1), or (B, N) for Reduction::kNone
  void* saved = nullptr;            ///< saved_size() bytes: active count, similarities, norms
};

struct BackwardArgs {
  const void* anchors = nullptr;
  const void* negatives = nullptr;
  const void* saved = nullptr;       ///< what forward() wrote (required): the similarities, reused
  const float* grad_loss = nullptr;  ///< (1), or (B, N) for kNone; null means 1
  void* grad_anchors = nullptr;      ///< (B, D) or null
  void* grad_negatives = nullptr;    ///< (B * N, D) or null
};

struct ForwardBackwardArgs {
  const void* anchors = nullptr;
  const void* negatives = nullptr;
  float* loss = nullptr;
  void* saved = nullptr;
  const float* grad_loss = nullptr;
  void* grad_anchors = nullptr;
  void* grad_negatives = nullptr;
};

CONTRASTIVE_API Status check(const Params& params);
CONTRASTIVE_API Status workspace_size(const Params& params, std::size_t* bytes);
CONTRASTIVE_API Status saved_size(const Params& params, std::size_t* bytes);
CONTRASTIVE_API Status forward(const Handle& handle, const Params& params, const ForwardArgs& args,
                               void* workspace, std::size_t workspace_bytes, Stream stream);
CONTRASTIVE_API Status backward(const Handle& handle, const Params& params,
                                const BackwardArgs& args, void* workspace,
                                std::size_t workspace_bytes, Stream stream);
/// One kernel (two with mean_over_active, whose weight needs the count over the whole batch).
CONTRASTIVE_API Status forward_backward(const Handle& handle, const Params& params,
                                        const ForwardBackwardArgs& args, void* workspace,
                                        std::size_t workspace_bytes, Stream stream);

}  // namespace contrastive::repel
