// Internal: the heads of the B x M logits engine (DESIGN.md, "Heads"). The engine owns the GEMMs,
// the tile walk, the workspace and the normalization; a head says what a tile of logits
// contributes (running statistics or partial sums in its scratch words), how forward turns them
// into the loss and what it saves, the per-element gradient G = upstream * dl/dlogit it writes
// over a tile, and its scalar gradients. Softmax by rows (InfoNCE, MNR), by rows and columns
// (CLIP), both over the kept keys under ids (the masked heads) and the pairwise sigmoid (SigLIP)
// are the heads today.
#pragma once

#include <algorithm>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "host/plan/logits_plan.hpp"
#include "kernels/reduce.hpp"
#include "kernels/resolve_scalars.hpp"
#include "kernels/softmax_xent.hpp"

namespace contrastive::logits {

/// The scalars of a call as the caller gives them: logits are s * sim (+ bias, sigmoid head), with
/// s from a temperature, a scale or a log-scale (kernels/logit_scalars.hpp), each a host float or
/// a device pointer. The engine resolves them on the stream at the start of every call.
struct Scalars {
  float value = 1.0f;
  const float* device_value = nullptr;
  kernels::ScaleForm form = kernels::ScaleForm::kScale;
  float max_scale = 0.0f;
  float bias = 0.0f;
  const float* device_bias = nullptr;
};

/// What a head's launches see: the problem, the head's scratch words (head_layout() of them per
/// row), the resolved scalars (device) and the stream.
struct HeadCall {
  const Problem& problem;
  float* scratch;
  kernels::ResolvedScalars* scalars;
  cudaStream_t stream;
  const void* query_ids = nullptr;  ///< masked heads: (B) device ids of the query rows, or null
  const void* key_ids = nullptr;    ///< (M) of the key rows
  /// The head's piece of the saved buffer in this pass: what forward writes (prepare_forward's
  /// part is complete when the walk starts), or what backward reads. Null when none.
  const float* saved = nullptr;
};

/// Where a tile lies in the walk: its first column tile starts each row's sums over.
struct TilePosition {
  bool first_col_tile;  ///< the first tile of its rows: row sums start over
  bool first_row_tile;  ///< the first tile of its columns: column sums start over
};

class Head {
 public:
  virtual ~Head() = default;

  /// Forward, before the walk: what the tiles need from the operands (the GEMMs' inputs), written
  /// to the head's saved piece (forward's `saved`). Most heads need nothing.
  virtual cudaError_t prepare_forward(const HeadCall& /*call*/, const TileOperands& /*operands*/,
                                      float* /*saved*/) const {
    return cudaSuccess;
  }

  /// Backward, once forward's saved piece is complete and before the walk: e.g. a reduction's
  /// factor known on the device only, into the call's scalars. Most heads need nothing.
  virtual cudaError_t prepare_backward(const HeadCall& /*call*/, const float* /*saved*/) const {
    return cudaSuccess;
  }

  /// Forward: merge the tile into the running statistics.
  virtual cudaError_t forward_tile(const HeadCall& call, const kernels::LogitsTile& tile,
                                   TilePosition position) const = 0;

  /// Forward, after the walk: the loss (1, or B for Reduction::kNone) and the head's saved piece.
  virtual cudaError_t finish_forward(const HeadCall& call, float* loss, float* saved) const = 0;

  /// Whether backward_tile() can also produce forward's statistics on this walk (no row needs
  /// statistics of other tiles first: the sigmoid always, the row softmax when a tile holds whole
  /// rows): then forward_backward walks the tiles once and reads each logit once.
  virtual bool backward_also_forwards(const Problem& problem,
                                      const contrastive::detail::TilePlan& tiles) const = 0;

  /// Backward: G over the tile into `grad` (the problem's dtype; may be tile.data when the tile's
  /// type is the same) and the per-row sums of the scalar gradients; `saved` is the head's piece
  /// of what forward saved, `grad_loss` the upstream gradient (null: 1). With `forward` (only
  /// when backward_also_forwards()), also forward_tile()'s statistics.
  virtual cudaError_t backward_tile(const HeadCall& call, const kernels::LogitsTile& tile,
                                    void* grad, const float* saved, const float* grad_loss,
                                    TilePosition position, bool forward) const = 0;

  /// Backward, after the walk: the scalar gradients asked for (either may be null).
  virtual cudaError_t scalar_gradients(const HeadCall& call, float* grad_scale,
                                       float* grad_bias) const = 0;
};

/// The part of `tile` inside the positive columns [offset, offset + B), whose states the softmax
/// heads keep for CLIP's column direction: false when the tile holds none of them. `first` is the
/// first of those columns' index in [0, B).
inline bool positive_columns_of(const Problem& p, const kernels::LogitsTile& tile,
                                kernels::LogitsTile* part, std::int64_t* first) {
  const std::int64_t begin = std::max(tile.col0, p.positive_offset);
  const std::int64_t end = std::min(tile.col0 + tile.cols, p.positive_offset + p.batch);
  if (begin >= end) return false;
  *part = tile;
  part->data = static_cast<char*>(tile.data) +
               (begin - tile.col0) * static_cast<std::int64_t>(dtype_size(p.logits_dtype));
  part->col0 = begin;
  part->cols = end - begin;
  *first = begin - p.positive_offset;
  return true;
}

/// The softmax heads' scale gradient: the rows' sums of G * logit times the factor resolved on
/// the device (kernels/logit_scalars.hpp).
inline cudaError_t softmax_scale_gradient(const HeadCall& call, const float* row_logit_grad,
                                          float* grad_scale) {
  if (grad_scale == nullptr) return cudaSuccess;
  return kernels::launch_sum(row_logit_grad, call.problem.batch, 1.0, nullptr, grad_scale,
                             call.stream, &call.scalars->scale_gradient_factor);
}

const Head& softmax_head();         // host/engine/softmax_head.cpp: both softmax kinds
const Head& masked_softmax_head();  // host/engine/masked_softmax_head.cpp: both masked kinds
const Head& sigmoid_head();         // host/engine/sigmoid_head.cpp

inline const Head& head_of(HeadKind kind) {
  switch (kind) {
    case HeadKind::kSigmoid: return sigmoid_head();
    case HeadKind::kMaskedSoftmaxRows:
    case HeadKind::kMaskedSoftmaxRowsAndColumns: return masked_softmax_head();
    case HeadKind::kSoftmaxRows:
    case HeadKind::kSoftmaxRowsAndColumns: break;
  }
  return softmax_head();
}

}  // namespace contrastive::logits
