// One description per loss: its name, its parameters from a common problem shape, its tensors (by
// role, with their extents for given parameters), its fields and its calls, behind one face. The
// test drivers walk all_losses(); the C API, the Python bindings and the fuzz harness build their
// entry points from Described<P> (the same tables, known at compile time). Header only and
// CUDA-free: check(), workspace_size() and saved_size() need contrastive_cpu, run() needs
// contrastive. docs/adding-a-loss.md says what a new loss fills in here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <string_view>
#include <variant>
#include <vector>

#include "contrastive/handle.hpp"
#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"
#include "contrastive/siglip.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::describe {

/// A small problem in terms every loss understands.
struct Shape {
  std::int64_t batch = 8;  ///< B: queries / anchors
  /// InfoNCE and SigLIP: keys beyond B (M = B + candidates); per-anchor MNR: n negatives per
  /// anchor; in-batch MNR: K blocks of hard negatives; Repel: N negatives per anchor.
  std::int64_t candidates = 3;
  std::int64_t dim = 16;  ///< D
  DType dtype = DType::kF32;
  Similarity similarity = Similarity::kCosine;  ///< Repel is cosine whatever this says
  Reduction reduction = Reduction::kMean;
  bool symmetric = false;  ///< InfoNCE and in-batch MNR
  /// The logit scale: InfoNCE's temperature is 1 / logit_scale, MNR's and SigLIP's scale is
  /// logit_scale; 0 keeps the Params' default.
  float logit_scale = 0.0f;
  float eps = 1e-12f;
  std::int64_t tile_rows = 0, tile_cols = 0;  ///< InfoNCE and in-batch MNR: an explicit tile
};

/// The parameters of any loss.
using Params = std::variant<infonce::Params, mnr::PerAnchorParams, mnr::InBatchParams,
                            repel::Params, siglip::Params>;

/// What a pointer argument of a loss's calls holds.
enum class Role : int {
  kInput,             ///< rows of embeddings, dtype, possibly strided
  kLoss,              ///< f32: (1), or one per row (per term for Repel) with Reduction::kNone
  kSaved,             ///< f32: what forward writes for backward
  kUpstreamGradient,  ///< f32, the loss's extent: grad_loss
  kGradient,          ///< dtype, dense (rows, D): the gradient of one input
  kScalarGradient,    ///< f32 (1): dLoss/dtemperature, dLoss/dscale or dLoss/dbias
  /// f32 (1), optional: a scalar parameter (temperature, scale, bias) held on the device, read
  /// there in place of the Params field of the same name. The C API takes the Params value only.
  kScalar,
  /// int32 or int64 per the Params' ids.type (not the dtype), one per query or key row: the ids
  /// of the rows (contrastive/ids.hpp). Required with an id type, ignored without one. The C API
  /// does not take them.
  kIds,
};

/// One pointer argument, named as the argument structs name it.
struct Tensor {
  const char* name;
  Role role;
  const char* gradient_of = nullptr;  ///< kGradient: the input it belongs to
};

/// Where a tensor's elements lie for given Params: `rows` rows of `cols` elements, `stride` apart.
/// Ids (Role::kIds) are `rows` integers of the params' id type (id_bytes()); their dtype is kF32.
struct Extent {
  std::int64_t rows = 0;
  std::int64_t cols = 1;
  std::int64_t stride = 1;
  DType dtype = DType::kF32;
  /// Rows that belong to one anchor (per-anchor negatives), else 0: such an input may also be
  /// passed as (rows / group, group, cols).
  std::int64_t group = 0;
  /// Elements spanned from the first to the last (the padding after the last row excluded).
  std::int64_t elements() const { return rows == 0 ? 0 : (rows - 1) * stride + cols; }
};

/// Device pointers by tensor name; null for a tensor not passed (optional outputs).
using TensorPointers = std::function<void*(std::string_view name)>;

/// The description of one loss.
struct Loss {
  const char* name;             ///< in test and benchmark names: "InfoNCE", "MnrPerAnchor", ...
  const char* api;              ///< in entry point names: contrastive_<api>_forward, <api>_forward
  std::int64_t min_candidates;  ///< the fewest Shape::candidates it takes
  const char* logit_scale;      ///< the Params field of the logit scale, or null (Repel)
  bool similarity_choice;       ///< cosine or dot (else cosine only)
  std::vector<Tensor> tensors;  ///< every pointer argument, in the order of ForwardBackwardArgs
  Params (*params)(const Shape& shape);
};

// ---- Each loss's slots --------------------------------------------------------------------------

namespace detail {

// The id options of the losses that take ids (InfoNCE, in-batch MNR); null for the others.
inline ids::IdOptions* id_options(infonce::Params& p) {
  return &p.ids;
}
inline ids::IdOptions* id_options(mnr::InBatchParams& p) {
  return &p.ids;
}
template <typename P>
ids::IdOptions* id_options(P&) {
  return nullptr;
}

// Each loss's own check(), workspace_size() and saved_size(), found by argument-dependent lookup.
template <typename P>
Status check_of(const P& p) {
  return check(p);
}
template <typename P>
Status workspace_size_of(const P& p, std::size_t* bytes) {
  return workspace_size(p, bytes);
}
template <typename P>
Status saved_size_of(const P& p, std::size_t* bytes) {
  return saved_size(p, bytes);
}

inline Extent loss_extent(Reduction reduction, std::int64_t per_row_outputs) {
  return {reduction == Reduction::kNone ? per_row_outputs : 1, 1, 1, DType::kF32};
}
inline Extent rows(std::int64_t count, std::int64_t stride, std::int64_t dim, DType dtype) {
  return {count, dim, row_stride_or_dim(stride, dim), dtype};
}
inline Extent grouped(std::int64_t count, std::int64_t group, std::int64_t stride, std::int64_t dim,
                      DType dtype) {
  Extent e = rows(count, stride, dim, dtype);
  e.group = group;
  return e;
}
inline Extent dense(std::int64_t count, std::int64_t dim, DType dtype) {
  return {count, dim, dim, dtype};
}
template <typename P>
Extent saved_extent(const P& p) {
  std::size_t bytes = 0;
  if (saved_size_of(p, &bytes) != Status::kSuccess) return {};
  return {static_cast<std::int64_t>(bytes / sizeof(float)), 1, 1, DType::kF32};
}

// One call of `pass`: the loss's forward, backward or forward_backward (found by argument-dependent
// lookup) with the argument struct of that pass.
template <typename P, typename ForwardArgs, typename BackwardArgs, typename BothArgs>
Status call(Pass pass, const Handle& h, const P& p, const ForwardArgs& forward_args,
            const BackwardArgs& backward_args, const BothArgs& both_args, void* ws,
            std::size_t bytes, Stream stream) {
  switch (pass) {
    case Pass::kForward: return forward(h, p, forward_args, ws, bytes, stream);
    case Pass::kBackward: return backward(h, p, backward_args, ws, bytes, stream);
    case Pass::kForwardBackward: return forward_backward(h, p, both_args, ws, bytes, stream);
  }
  return Status::kInvalidArgument;
}

// The losses over queries q and keys k with InfoNCE's field names (InfoNCE, SigLIP): their params
// from a Shape, and the extents and row strides of q, k, their gradients, saved and the loss.
template <typename P>
P query_key_params(const Shape& s) {
  P p;
  p.batch = s.batch;
  p.num_keys = s.batch + s.candidates;
  p.dim = s.dim;
  p.dtype = s.dtype;
  p.similarity = s.similarity;
  p.reduction = s.reduction;
  p.eps = s.eps;
  p.tile_rows = s.tile_rows;
  p.tile_cols = s.tile_cols;
  return p;
}
template <typename P>
Extent query_key_extent(const P& p, std::string_view t) {
  if (t == "q") return rows(p.batch, p.q_row_stride, p.dim, p.dtype);
  if (t == "k") return rows(p.num_keys, p.k_row_stride, p.dim, p.dtype);
  if (t == "grad_q") return dense(p.batch, p.dim, p.dtype);
  if (t == "grad_k") return dense(p.num_keys, p.dim, p.dtype);
  if (t == "saved") return saved_extent(p);
  if (t == "loss" || t == "grad_loss") return loss_extent(p.reduction, p.batch);
  return {1};  // a scalar gradient
}
template <typename P>
std::int64_t* query_key_row_stride(P& p, std::string_view t) {
  return t == "q" ? &p.q_row_stride : t == "k" ? &p.k_row_stride : nullptr;
}

// InfoNCE: q, k.
inline Params infonce_params(const Shape& s) {
  auto p = query_key_params<infonce::Params>(s);
  p.symmetric = s.symmetric;
  if (s.logit_scale > 0.0f) p.temperature = 1.0f / s.logit_scale;
  return p;
}
inline Extent extent(const infonce::Params& p, std::string_view t) {
  if (t == "query_ids") return {p.batch};
  if (t == "key_ids") return {p.num_keys};
  return query_key_extent(p, t);
}
inline std::int64_t* row_stride(infonce::Params& p, std::string_view t) {
  return query_key_row_stride(p, t);
}
inline float* scalar_field(infonce::Params& p, std::string_view t) {
  return t == "temperature" ? &p.temperature : nullptr;
}
template <typename Pointers>
Status run(Pass pass, const Handle& h, const infonce::Params& p, const Pointers& at, void* ws,
           std::size_t bytes, Stream stream) {
  const auto* grad_loss = static_cast<const float*>(at("grad_loss"));
  auto* loss = static_cast<float*>(at("loss"));
  auto* grad_t = static_cast<float*>(at("grad_temperature"));
  const auto* t = static_cast<const float*>(at("temperature"));
  const void* qi = at("query_ids");
  const void* ki = at("key_ids");
  return call(pass, h, p, infonce::ForwardArgs{at("q"), at("k"), loss, at("saved"), t, qi, ki},
              infonce::BackwardArgs{at("q"), at("k"), at("saved"), grad_loss, at("grad_q"),
                                    at("grad_k"), grad_t, t, qi, ki},
              infonce::ForwardBackwardArgs{at("q"), at("k"), loss, at("saved"), grad_loss,
                                           at("grad_q"), at("grad_k"), grad_t, t, qi, ki},
              ws, bytes, stream);
}

// MNR, per-anchor negatives: anchors, positives, negatives.
inline Params mnr_per_anchor_params(const Shape& s) {
  mnr::PerAnchorParams p;
  p.batch = s.batch;
  p.negatives = s.candidates;
  p.dim = s.dim;
  p.dtype = s.dtype;
  p.similarity = s.similarity;
  p.reduction = s.reduction;
  if (s.logit_scale > 0.0f) p.scale = s.logit_scale;
  p.eps = s.eps;
  return p;
}
inline Extent extent(const mnr::PerAnchorParams& p, std::string_view t) {
  if (t == "anchors") return rows(p.batch, p.anchor_row_stride, p.dim, p.dtype);
  if (t == "positives") return rows(p.batch, p.positive_row_stride, p.dim, p.dtype);
  if (t == "negatives") {
    return grouped(p.batch * p.negatives, p.negatives, p.negative_row_stride, p.dim, p.dtype);
  }
  if (t == "grad_anchors" || t == "grad_positives") return dense(p.batch, p.dim, p.dtype);
  if (t == "grad_negatives") return dense(p.batch * p.negatives, p.dim, p.dtype);
  if (t == "saved") return saved_extent(p);
  if (t == "grad_scale" || t == "scale") return {1};
  return loss_extent(p.reduction, p.batch);
}
inline float* scalar_field(mnr::PerAnchorParams& p, std::string_view t) {
  return t == "scale" ? &p.scale : nullptr;
}
inline std::int64_t* row_stride(mnr::PerAnchorParams& p, std::string_view t) {
  if (t == "anchors") return &p.anchor_row_stride;
  if (t == "positives") return &p.positive_row_stride;
  return t == "negatives" ? &p.negative_row_stride : nullptr;
}
template <typename Pointers>
Status run(Pass pass, const Handle& h, const mnr::PerAnchorParams& p, const Pointers& at, void* ws,
           std::size_t bytes, Stream stream) {
  const auto* grad_loss = static_cast<const float*>(at("grad_loss"));
  auto* loss = static_cast<float*>(at("loss"));
  auto* grad_scale = static_cast<float*>(at("grad_scale"));
  const auto* scale = static_cast<const float*>(at("scale"));
  return call(
      pass, h, p,
      mnr::PerAnchorForwardArgs{at("anchors"), at("positives"), at("negatives"), loss, at("saved"),
                                scale},
      mnr::PerAnchorBackwardArgs{at("anchors"), at("positives"), at("negatives"), at("saved"),
                                 grad_loss, at("grad_anchors"), at("grad_positives"),
                                 at("grad_negatives"), grad_scale, scale},
      mnr::PerAnchorForwardBackwardArgs{
          at("anchors"), at("positives"), at("negatives"), loss, at("saved"), grad_loss,
          at("grad_anchors"), at("grad_positives"), at("grad_negatives"), grad_scale, scale},
      ws, bytes, stream);
}

// MNR, in-batch with hard negatives: anchors, candidates [P; N_1; ...; N_K].
inline Params mnr_in_batch_params(const Shape& s) {
  mnr::InBatchParams p;
  p.batch = s.batch;
  p.hard_negatives = s.candidates;
  p.dim = s.dim;
  p.dtype = s.dtype;
  p.similarity = s.similarity;
  p.reduction = s.reduction;
  p.symmetric = s.symmetric;
  if (s.logit_scale > 0.0f) p.scale = s.logit_scale;
  p.eps = s.eps;
  p.tile_rows = s.tile_rows;
  p.tile_cols = s.tile_cols;
  return p;
}
inline Extent extent(const mnr::InBatchParams& p, std::string_view t) {
  const std::int64_t candidates = (1 + p.hard_negatives) * p.batch;
  if (t == "anchors") return rows(p.batch, p.anchor_row_stride, p.dim, p.dtype);
  if (t == "candidates") return rows(candidates, p.candidate_row_stride, p.dim, p.dtype);
  if (t == "grad_anchors") return dense(p.batch, p.dim, p.dtype);
  if (t == "grad_candidates") return dense(candidates, p.dim, p.dtype);
  if (t == "anchor_ids") return {p.batch};
  if (t == "candidate_ids") return {candidates};
  if (t == "saved") return saved_extent(p);
  if (t == "grad_scale" || t == "scale") return {1};
  return loss_extent(p.reduction, p.batch);
}
inline float* scalar_field(mnr::InBatchParams& p, std::string_view t) {
  return t == "scale" ? &p.scale : nullptr;
}
inline std::int64_t* row_stride(mnr::InBatchParams& p, std::string_view t) {
  return t == "anchors"      ? &p.anchor_row_stride
         : t == "candidates" ? &p.candidate_row_stride
                             : nullptr;
}
template <typename Pointers>
Status run(Pass pass, const Handle& h, const mnr::InBatchParams& p, const Pointers& at, void* ws,
           std::size_t bytes, Stream stream) {
  const auto* grad_loss = static_cast<const float*>(at("grad_loss"));
  auto* loss = static_cast<float*>(at("loss"));
  auto* grad_scale = static_cast<float*>(at("grad_scale"));
  const auto* scale = static_cast<const float*>(at("scale"));
  const void* ai = at("anchor_ids");
  const void* ci = at("candidate_ids");
  return call(
      pass, h, p,
      mnr::InBatchForwardArgs{at("anchors"), at("candidates"), loss, at("saved"), scale, ai, ci},
      mnr::InBatchBackwardArgs{at("anchors"), at("candidates"), at("saved"), grad_loss,
                               at("grad_anchors"), at("grad_candidates"), grad_scale, scale, ai,
                               ci},
      mnr::InBatchForwardBackwardArgs{at("anchors"), at("candidates"), loss, at("saved"), grad_loss,
                                      at("grad_anchors"), at("grad_candidates"), grad_scale, scale,
                                      ai, ci},
      ws, bytes, stream);
}

// Repel: anchors, negatives; cosine only, no logit scale.
inline Params repel_params(const Shape& s) {
  repel::Params p;
  p.batch = s.batch;
  p.negatives = s.candidates;
  p.dim = s.dim;
  p.dtype = s.dtype;
  p.reduction = s.reduction;
  p.eps = s.eps;
  return p;
}
inline Extent extent(const repel::Params& p, std::string_view t) {
  if (t == "anchors") return rows(p.batch, p.anchor_row_stride, p.dim, p.dtype);
  if (t == "negatives") {
    return grouped(p.batch * p.negatives, p.negatives, p.negative_row_stride, p.dim, p.dtype);
  }
  if (t == "grad_anchors") return dense(p.batch, p.dim, p.dtype);
  if (t == "grad_negatives") return dense(p.batch * p.negatives, p.dim, p.dtype);
  if (t == "saved") return saved_extent(p);
  return loss_extent(p.reduction, p.batch * p.negatives);  // one per term
}
inline float* scalar_field(repel::Params&, std::string_view) {
  return nullptr;
}
inline std::int64_t* row_stride(repel::Params& p, std::string_view t) {
  return t == "anchors"     ? &p.anchor_row_stride
         : t == "negatives" ? &p.negative_row_stride
                            : nullptr;
}
template <typename Pointers>
Status run(Pass pass, const Handle& h, const repel::Params& p, const Pointers& at, void* ws,
           std::size_t bytes, Stream stream) {
  const auto* grad_loss = static_cast<const float*>(at("grad_loss"));
  auto* loss = static_cast<float*>(at("loss"));
  return call(pass, h, p, repel::ForwardArgs{at("anchors"), at("negatives"), loss, at("saved")},
              repel::BackwardArgs{at("anchors"), at("negatives"), at("saved"), grad_loss,
                                  at("grad_anchors"), at("grad_negatives")},
              repel::ForwardBackwardArgs{at("anchors"), at("negatives"), loss, at("saved"),
                                         grad_loss, at("grad_anchors"), at("grad_negatives")},
              ws, bytes, stream);
}

// SigLIP: q, k; scale and bias.
inline Params siglip_params(const Shape& s) {
  auto p = query_key_params<siglip::Params>(s);
  if (s.logit_scale > 0.0f) p.scale = s.logit_scale;
  return p;
}
inline Extent extent(const siglip::Params& p, std::string_view t) {
  return query_key_extent(p, t);
}
inline std::int64_t* row_stride(siglip::Params& p, std::string_view t) {
  return query_key_row_stride(p, t);
}
inline float* scalar_field(siglip::Params& p, std::string_view t) {
  return t == "scale" ? &p.scale : t == "bias" ? &p.bias : nullptr;
}
template <typename Pointers>
Status run(Pass pass, const Handle& h, const siglip::Params& p, const Pointers& at, void* ws,
           std::size_t bytes, Stream stream) {
  const auto* grad_loss = static_cast<const float*>(at("grad_loss"));
  auto* loss = static_cast<float*>(at("loss"));
  auto* grad_scale = static_cast<float*>(at("grad_scale"));
  auto* grad_bias = static_cast<float*>(at("grad_bias"));
  const auto* scale = static_cast<const float*>(at("scale"));
  const auto* bias = static_cast<const float*>(at("bias"));
  return call(
      pass, h, p, siglip::ForwardArgs{at("q"), at("k"), loss, at("saved"), scale, bias},
      siglip::BackwardArgs{at("q"), at("k"), at("saved"), grad_loss, at("grad_q"), at("grad_k"),
                           grad_scale, grad_bias, scale, bias},
      siglip::ForwardBackwardArgs{at("q"), at("k"), loss, at("saved"), grad_loss, at("grad_q"),
                                  at("grad_k"), grad_scale, grad_bias, scale, bias},
      ws, bytes, stream);
}

}  // namespace detail

// ---- Each loss's tables, known at compile time -------------------------------------------------

/// Each loss's fields, in the order the Python classes list them, named as the C++ params, the C
/// params struct (contrastive.h) and the Python params class name them: X(field) for each.
// clang-format off
#define CONTRASTIVE_INFONCE_FIELDS(X)                                                           \
  X(batch) X(num_keys) X(dim) X(positive_offset) X(q_row_stride) X(k_row_stride) X(dtype)       \
  X(similarity) X(reduction) X(temperature) X(eps) X(symmetric) X(allow_tf32) X(logits_dtype)  \
  X(tiling) X(workspace_budget) X(tile_cache_bytes) X(tile_rows) X(tile_cols) X(log_scale)      \
  X(max_scale)
#define CONTRASTIVE_MNR_PER_ANCHOR_FIELDS(X)                                                    \
  X(batch) X(negatives) X(dim) X(anchor_row_stride) X(positive_row_stride)                      \
  X(negative_row_stride) X(dtype) X(similarity) X(reduction) X(scale) X(eps)
#define CONTRASTIVE_MNR_IN_BATCH_FIELDS(X)                                                      \
  X(batch) X(hard_negatives) X(dim) X(anchor_row_stride) X(candidate_row_stride) X(dtype)       \
  X(similarity) X(reduction) X(scale) X(eps) X(symmetric) X(allow_tf32) X(logits_dtype)         \
  X(tiling) X(workspace_budget) X(tile_cache_bytes) X(tile_rows) X(tile_cols) X(log_scale)      \
  X(max_scale)
#define CONTRASTIVE_REPEL_FIELDS(X)                                                             \
  X(batch) X(negatives) X(dim) X(anchor_row_stride) X(negative_row_stride) X(dtype)             \
  X(reduction) X(margin) X(eps) X(mean_over_active)
#define CONTRASTIVE_SIGLIP_FIELDS(X)                                                            \
  X(batch) X(num_keys) X(dim) X(positive_offset) X(q_row_stride) X(k_row_stride) X(dtype)       \
  X(similarity) X(reduction) X(scale) X(log_scale) X(bias) X(negatives_only) X(eps)             \
  X(allow_tf32) X(logits_dtype) X(tiling) X(workspace_budget) X(tile_cache_bytes) X(tile_rows)  \
  X(tile_cols) X(max_scale)
// clang-format on

/// What every entry point of the loss whose params are P is built from: its names and its pointer
/// arguments (every pass takes those its role needs, in this order).
template <typename P>
struct Described;

template <>
struct Described<infonce::Params> {
  static constexpr const char* name = "InfoNCE";
  static constexpr const char* api = "infonce";
  static constexpr Tensor tensors[] = {{"q", Role::kInput},
                                       {"k", Role::kInput},
                                       {"loss", Role::kLoss},
                                       {"saved", Role::kSaved},
                                       {"grad_loss", Role::kUpstreamGradient},
                                       {"grad_q", Role::kGradient, "q"},
                                       {"grad_k", Role::kGradient, "k"},
                                       {"grad_temperature", Role::kScalarGradient},
                                       {"temperature", Role::kScalar},
                                       {"query_ids", Role::kIds},
                                       {"key_ids", Role::kIds}};
};

template <>
struct Described<mnr::PerAnchorParams> {
  static constexpr const char* name = "MnrPerAnchor";
  static constexpr const char* api = "mnr_per_anchor";
  static constexpr Tensor tensors[] = {{"anchors", Role::kInput},
                                       {"positives", Role::kInput},
                                       {"negatives", Role::kInput},
                                       {"loss", Role::kLoss},
                                       {"saved", Role::kSaved},
                                       {"grad_loss", Role::kUpstreamGradient},
                                       {"grad_anchors", Role::kGradient, "anchors"},
                                       {"grad_positives", Role::kGradient, "positives"},
                                       {"grad_negatives", Role::kGradient, "negatives"},
                                       {"grad_scale", Role::kScalarGradient},
                                       {"scale", Role::kScalar}};
};

template <>
struct Described<mnr::InBatchParams> {
  static constexpr const char* name = "MnrInBatch";
  static constexpr const char* api = "mnr_in_batch";
  static constexpr Tensor tensors[] = {{"anchors", Role::kInput},
                                       {"candidates", Role::kInput},
                                       {"loss", Role::kLoss},
                                       {"saved", Role::kSaved},
                                       {"grad_loss", Role::kUpstreamGradient},
                                       {"grad_anchors", Role::kGradient, "anchors"},
                                       {"grad_candidates", Role::kGradient, "candidates"},
                                       {"grad_scale", Role::kScalarGradient},
                                       {"scale", Role::kScalar},
                                       {"anchor_ids", Role::kIds},
                                       {"candidate_ids", Role::kIds}};
};

template <>
struct Described<repel::Params> {
  static constexpr const char* name = "Repel";
  static constexpr const char* api = "repel";
  static constexpr Tensor tensors[] = {{"anchors", Role::kInput},
                                       {"negatives", Role::kInput},
                                       {"loss", Role::kLoss},
                                       {"saved", Role::kSaved},
                                       {"grad_loss", Role::kUpstreamGradient},
                                       {"grad_anchors", Role::kGradient, "anchors"},
                                       {"grad_negatives", Role::kGradient, "negatives"}};
};

template <>
struct Described<siglip::Params> {
  static constexpr const char* name = "SigLIP";
  static constexpr const char* api = "siglip";
  static constexpr Tensor tensors[] = {{"q", Role::kInput},
                                       {"k", Role::kInput},
                                       {"loss", Role::kLoss},
                                       {"saved", Role::kSaved},
                                       {"grad_loss", Role::kUpstreamGradient},
                                       {"grad_q", Role::kGradient, "q"},
                                       {"grad_k", Role::kGradient, "k"},
                                       {"grad_scale", Role::kScalarGradient},
                                       {"grad_bias", Role::kScalarGradient},
                                       {"scale", Role::kScalar},
                                       {"bias", Role::kScalar}};
};

/// Whether a call of `pass` takes a tensor of `role`: forward the inputs, loss and saved; backward
/// the inputs, saved and the gradients; forward_backward all of them.
constexpr bool takes(Pass pass, Role role) {
  switch (role) {
    case Role::kLoss: return computes_loss(pass);
    case Role::kUpstreamGradient:
    case Role::kGradient:
    case Role::kScalarGradient: return computes_gradients(pass);
    default: return true;
  }
}

/// Positions in Described<P>::tensors, in order.
template <typename P>
struct Arguments {
  static constexpr std::size_t kMost = sizeof(Described<P>::tensors) / sizeof(Tensor);
  std::size_t index[kMost] = {};
  std::size_t count = 0;
};
/// The positions of the tensors `keep` accepts.
template <typename P, typename Keep>
constexpr Arguments<P> positions(Keep keep) {
  Arguments<P> a;
  for (std::size_t i = 0; i < Arguments<P>::kMost; ++i) {
    if (keep(Described<P>::tensors[i])) a.index[a.count++] = i;
  }
  return a;
}
/// The positions of the arguments a call of `pass` takes, in order.
template <typename P>
constexpr Arguments<P> arguments(Pass pass) {
  return positions<P>([pass](const Tensor& t) { return takes(pass, t.role); });
}
/// The positions of the arguments of the C entry point of `pass`: the same without the device
/// scalars (the C API takes the scalars in its params struct) and the ids (not in the C API).
template <typename P>
constexpr Arguments<P> c_arguments(Pass pass) {
  return positions<P>([pass](const Tensor& t) {
    return t.role != Role::kScalar && t.role != Role::kIds && takes(pass, t.role);
  });
}
/// The positions of the inputs.
template <typename P>
constexpr Arguments<P> inputs() {
  return positions<P>([](const Tensor& t) { return t.role == Role::kInput; });
}
/// The positions of the device scalars (optional in every pass).
template <typename P>
constexpr Arguments<P> device_scalars() {
  return positions<P>([](const Tensor& t) { return t.role == Role::kScalar; });
}
/// The positions of the ids (every pass takes them; required with an id type).
template <typename P>
constexpr Arguments<P> id_arrays() {
  return positions<P>([](const Tensor& t) { return t.role == Role::kIds; });
}

namespace detail {
template <typename P>
Loss describe(std::int64_t min_candidates, const char* logit_scale, bool similarity_choice,
              Params (*params)(const Shape&)) {
  using D = Described<P>;
  return {D::name,
          D::api,
          min_candidates,
          logit_scale,
          similarity_choice,
          {std::begin(D::tensors), std::end(D::tensors)},
          params};
}
}  // namespace detail

/// Every loss of the library, in the order of the Params alternatives.
inline const std::vector<Loss>& all_losses() {
  static const std::vector<Loss> losses = {
      detail::describe<infonce::Params>(0, "temperature", true, detail::infonce_params),
      detail::describe<mnr::PerAnchorParams>(1, "scale", true, detail::mnr_per_anchor_params),
      detail::describe<mnr::InBatchParams>(0, "scale", true, detail::mnr_in_batch_params),
      detail::describe<repel::Params>(1, nullptr, false, detail::repel_params),
      detail::describe<siglip::Params>(0, "scale", true, detail::siglip_params),
  };
  return losses;
}

/// The description named `name` (one of all_losses()); the first one for an unknown name.
inline const Loss& loss_named(std::string_view name) {
  for (const Loss& loss : all_losses()) {
    if (name == loss.name) return loss;
  }
  return all_losses().front();
}

/// The description of the loss `params` belongs to.
inline const Loss& loss_of(const Params& params) {
  return all_losses()[params.index()];
}

/// The tensor of `loss` that holds the logit scale's gradient (its first scalar gradient), or null.
inline const Tensor* scalar_gradient(const Loss& loss) {
  for (const Tensor& tensor : loss.tensors) {
    if (tensor.role == Role::kScalarGradient) return &tensor;
  }
  return nullptr;
}

/// Where `tensor`'s elements lie for `params`.
inline Extent extent(const Params& params, std::string_view tensor) {
  return std::visit([&](const auto& p) { return detail::extent(p, tensor); }, params);
}

/// The params field that holds `tensor`'s row stride (an input), else null.
template <typename P>
std::int64_t* row_stride(P& params, std::string_view tensor) {
  return detail::row_stride(params, tensor);
}

/// The id options of `params` (InfoNCE, in-batch MNR), else null.
inline ids::IdOptions* id_options(Params& params) {
  return std::visit([](auto& p) { return detail::id_options(p); }, params);
}

/// The bytes of one id for `params`: 4 (int32), 8 (int64), or 0 without ids (and for a loss
/// without ids).
inline std::size_t id_bytes(const Params& params) {
  Params copy = params;
  const ids::IdOptions* options = id_options(copy);
  if (options == nullptr) return 0;
  switch (options->type) {
    case ids::IdType::kInt32: return sizeof(std::int32_t);
    case ids::IdType::kInt64: return sizeof(std::int64_t);
    case ids::IdType::kNone: break;
  }
  return 0;
}

/// The params field whose value the device scalar `tensor` replaces, else null.
inline float* scalar_field(Params& params, std::string_view tensor) {
  return std::visit([&](auto& p) { return detail::scalar_field(p, tensor); }, params);
}

inline Status check(const Params& params) {
  return std::visit([](const auto& p) { return detail::check_of(p); }, params);
}
inline Status workspace_size(const Params& params, std::size_t* bytes) {
  return std::visit([&](const auto& p) { return detail::workspace_size_of(p, bytes); }, params);
}
inline Status saved_size(const Params& params, std::size_t* bytes) {
  return std::visit([&](const auto& p) { return detail::saved_size_of(p, bytes); }, params);
}

/// One call of `pass` on the tensors `pointers` names.
inline Status run(Pass pass, const Handle& handle, const Params& params,
                  const TensorPointers& pointers, void* workspace, std::size_t workspace_bytes,
                  Stream stream) {
  return std::visit(
      [&](const auto& p) {
        return detail::run(pass, handle, p, pointers, workspace, workspace_bytes, stream);
      },
      params);
}

}  // namespace contrastive::describe
