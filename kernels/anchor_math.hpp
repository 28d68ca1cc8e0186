// The per-anchor kernels' arithmetic and work mapping (kernels/anchor_candidates.cu), compiled by
// nvcc for the kernels and by g++ for the CPU tests that emulate them: how anchors and candidates
// map onto warps, the fixed-order chunk sums of phase 1, the encoding of inverse norms, the heads'
// per-candidate weights and the gradient of each element. docs/per-anchor-kernels.md describes
// the kernels. (The loops over a chunk have constant trip counts: nvcc unrolls them unasked.)
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/host_device.hpp"
#include "kernels/numeric.hpp"
#include "kernels/online_softmax.hpp"

namespace contrastive::kernels::anchor {

constexpr int kThreads = 256;
constexpr int kLanes = 32;
constexpr int kWarps = kThreads / kLanes;
constexpr int kChunkBytes = 16;

/// Elements of one chunk: the 16 bytes a lane reads at once on the vector path. Every sum over
/// the embedding runs chunk by chunk, on the vector and the scalar path alike, so both give the
/// same bits.
template <typename T>
constexpr int kChunkElements = kChunkBytes / static_cast<int>(sizeof(T));

/// Phase 1: chunks each lane has in flight per row (a candidate's and the anchor's).
constexpr int kPhase1Chunks = 4;

/// Phase 2 walks the embedding in tiles of kTileElements: each lane holds kTileFloats elements
/// of its warp's partial sum of w_t c_hat_t, kTileChunks<T> chunks.
constexpr int kTileFloats = 16;
constexpr int kTileElements = kLanes * kTileFloats;
template <typename T>
constexpr int kTileChunks = kTileFloats / kChunkElements<T>;

/// Anchors per block and warps per anchor: a warp per candidate row up to eight, so that small
/// candidate counts (MNR with n = 1 has two) still fill the block's eight warps.
struct Grouping {
  int warps_per_anchor;
  int anchors_per_block;
};

CONTRASTIVE_HOST_DEVICE inline Grouping anchor_grouping(std::int64_t count) {
  int warps = 1;
  while (warps < count && warps < kWarps) warps *= 2;
  return {warps, kWarps / warps};
}

CONTRASTIVE_HOST_DEVICE inline std::int64_t anchor_blocks(std::int64_t batch, std::int64_t count) {
  const std::int64_t per_block = anchor_grouping(count).anchors_per_block;
  return (batch + per_block - 1) / per_block;
}

/// Dynamic shared memory of one block: per candidate slot a double (the phase-1 dot product) and
/// three floats (similarity, encoded inverse norm, weight); per anchor a double and two floats;
/// with a backward pass, one tile of per-warp partial sums.
CONTRASTIVE_HOST_DEVICE inline std::size_t anchor_shared_bytes(std::int64_t count, bool backward) {
  const Grouping g = anchor_grouping(count);
  const auto slots = static_cast<std::size_t>(g.anchors_per_block * count);
  const auto anchors = static_cast<std::size_t>(g.anchors_per_block);
  std::size_t bytes = slots * sizeof(double) + anchors * sizeof(double) +
                      slots * 3 * sizeof(float) + anchors * 2 * sizeof(float);
  bytes = (bytes + kChunkBytes - 1) / kChunkBytes * kChunkBytes;
  if (backward) bytes += static_cast<std::size_t>(kWarps) * kTileElements * sizeof(float);
  return bytes;
}

// ---- Phase 1: chunk sums
// -------------------------------------------------------------------------

/// 2^k as float and double, for k in [-126, 127] (normal numbers only).
CONTRASTIVE_HOST_DEVICE inline float pow2f(int k) {
  const auto bits = static_cast<std::uint32_t>(k + 127) << 23;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
CONTRASTIVE_HOST_DEVICE inline double pow2(int k) {
  const auto bits = static_cast<std::uint64_t>(k + 1023) << 52;
  double value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

/// The exponent k of a chunk's largest magnitude (clamped to [-126, 126]): the chunk is summed as
/// x * 2^-k, whose elements lie below 4 in magnitude, so fp32 partial sums neither overflow nor
/// underflow whatever the row's norm, and the result scales by exactly 2^k (a row times a power
/// of two gives the same similarity bit for bit).
CONTRASTIVE_HOST_DEVICE inline int chunk_shift(float largest_magnitude) {
  std::uint32_t bits;
  std::memcpy(&bits, &largest_magnitude, sizeof(bits));
  int exponent = static_cast<int>((bits >> 23) & 0xffu);
  exponent = exponent < 1 ? 1 : (exponent > 253 ? 253 : exponent);
  return exponent - 127;
}

/// A row's sums in double: dot = a . c, squares = c . c, anchor_squares = a . a.
struct RowSums {
  double dot = 0.0, squares = 0.0, anchor_squares = 0.0;
};

/// sum_i x_i y_i of one chunk in fp32, pairwise: products of neighbours first (one fma each),
/// then a balanced tree. Written with explicit fmaf so that nvcc and g++ round alike.
template <int kV>
CONTRASTIVE_HOST_DEVICE inline float chunk_dot(const float (&x)[kV], const float (&y)[kV]) {
  float pairs[kV / 2];
  for (int i = 0; i < kV / 2; ++i) pairs[i] = fmaf(x[2 * i], y[2 * i], x[2 * i + 1] * y[2 * i + 1]);
  for (int width = kV / 4; width >= 1; width /= 2) {
    for (int i = 0; i < width; ++i) pairs[i] = pairs[2 * i] + pairs[2 * i + 1];
  }
  return pairs[0];
}

/// Scales a chunk by 2^-k (k from its largest magnitude) and returns k; fp16 chunks, whose squares
/// cannot leave the fp32 range, are left as they are.
template <typename T, int kV>
CONTRASTIVE_HOST_DEVICE inline int normalize_chunk(float (&x)[kV]) {
  if constexpr (std::is_same_v<T, __half>) {
    return 0;
  } else {
    float largest = 0.0f;
    for (int i = 0; i < kV; ++i) largest = fmaxf(largest, fabsf(x[i]));
    const int shift = chunk_shift(largest);
    const float factor = pow2f(-shift);
    for (int i = 0; i < kV; ++i) x[i] *= factor;
    return shift;
  }
}

/// Adds one chunk of the anchor `a` and a candidate `c` (T's elements as fp32) to `sums`: each
/// partial in fp32 over the chunk, converted to double once. `squares`: the candidate's sum of
/// squares (cosine); `anchor_squares`: the anchor's too (the warp of candidate 0).
template <typename T, int kV>
CONTRASTIVE_HOST_DEVICE inline void add_chunk(float (&a)[kV], float (&c)[kV], bool squares,
                                              bool anchor_squares, RowSums& sums) {
  const int shift_a = normalize_chunk<T>(a), shift_c = normalize_chunk<T>(c);
  sums.dot += static_cast<double>(chunk_dot(a, c)) * pow2(shift_a + shift_c);
  if (squares) sums.squares += static_cast<double>(chunk_dot(c, c)) * pow2(2 * shift_c);
  if (anchor_squares)
    sums.anchor_squares += static_cast<double>(chunk_dot(a, a)) * pow2(2 * shift_a);
}

// ---- Inverse norms and similarities
// --------------------------------------------------------------

/// 1 / max(|x|, eps), negated when |x| <= eps (the clamped case, where x_hat = x / eps is linear in
/// x and dsim/dx has no projection term). Saved in this form, backward needs no other flag.
CONTRASTIVE_HOST_DEVICE inline float encode_inverse_norm(double squares, float eps) {
  const double norm = sqrt(squares);
  const float inverse = 1.0f / nan_propagating_max(static_cast<float>(norm), eps);
  return norm <= eps ? -inverse : inverse;
}
CONTRASTIVE_HOST_DEVICE inline float inverse_norm(float encoded) {
  return fabsf(encoded);
}
CONTRASTIVE_HOST_DEVICE inline bool clamped(float encoded) {
  return encoded < 0.0f;
}

/// cos = (a . c) / (max(|a|, eps) max(|c|, eps)), in double until the end.
CONTRASTIVE_HOST_DEVICE inline float cosine(double dot, float anchor_encoded, float encoded) {
  return static_cast<float>(dot * static_cast<double>(inverse_norm(anchor_encoded)) *
                            static_cast<double>(inverse_norm(encoded)));
}

// ---- Heads
// ---------------------------------------------------------------------------------------

/// Repel's term max(sim - margin, 0), NaN kept (fmaxf would drop it).
CONTRASTIVE_HOST_DEVICE inline float hinge_term(float sim, float margin) {
  const float excess = sim - margin;
  return excess > 0.0f || excess != excess ? excess : 0.0f;
}

/// dLoss/dsim of a hinge term with upstream weight `weight`: 0 when inactive, NaN when sim is NaN
/// (so a NaN row is never skipped as inactive).
CONTRASTIVE_HOST_DEVICE inline float hinge_weight(float sim, float margin, float weight) {
  const float excess = sim - margin;
  return excess != excess ? excess : (excess > 0.0f ? weight : 0.0f);
}

// ---- Phase 2: the gradient of each element
// -------------------------------------------------------

/// Candidate element (cosine): w (a_hat - c_hat sim_proj) / max(|c|, eps), with
/// `weight_inverse` = w / max(|c|, eps) and `projection` = sim, or 0 where the candidate is
/// clamped.
CONTRASTIVE_HOST_DEVICE inline float cosine_candidate_grad(float anchor_hat, float candidate_hat,
                                                           float projection, float weight_inverse) {
  return fmaf(-candidate_hat, projection, anchor_hat) * weight_inverse;
}

/// Anchor element (cosine): (sum_t w_t c_hat_t - a_hat sum_t w_t sim_t) / max(|a|, eps), with the
/// second sum 0 where the anchor is clamped.
CONTRASTIVE_HOST_DEVICE inline float cosine_anchor_grad(float weighted_candidates, float anchor_hat,
                                                        float anchor_term, float anchor_inverse) {
  return fmaf(-anchor_hat, anchor_term, weighted_candidates) * anchor_inverse;
}

}  // namespace contrastive::kernels::anchor
