// Anchor against its own candidates, fused. A block of eight warps holds G anchors (G = 8 / W,
// W = warps per anchor = min(8, count rounded up to a power of two)); warp w of anchor g takes
// candidates t = w, w + W, ... (docs/per-anchor-kernels.md).
//   phase 1  (forward passes) a warp per candidate row, two rows in flight: a . c, c . c and, for
//            candidate 0, a . a, in one read of the row; each lane sums its 16-byte chunks (lane,
//            lane + 32, ...) in fp32 within a chunk and in double across chunks, then a butterfly
//   head     the anchor's first warp, lanes over candidates: similarities, MNR's log-sum-exp and
//            loss, or Repel's hinge terms (forward); each candidate's weight dLoss/dsim
//            (backward). Forward saves similarities and inverse norms; backward starts here
//   phase 2  (backward passes) the embedding in tiles of 512 elements: a warp per candidate row
//            (two in flight) writes dc_t = w_t dsim_t/dc_t and keeps its share of sum_t w_t c_hat_t
//            in registers; the anchor's warps' partials merge in warp order through shared memory
//            into da
// Cosine derivatives with x_hat = x / max(|x|, eps): dsim/dx = (a_hat - x_hat sim) / |x|, or
// a_hat / eps where |x| <= eps (x_hat = x / eps is linear there); the same for the anchor.
// Inputs and gradients are T (fp32, fp16 or bf16); phase 1 sums in fp32 within a chunk and in
// double across chunks, everything else is fp32. Rows move in 16-byte vectors when every row set
// allows it, else element by element through the same chunks: both paths give the same bits, and
// every sum runs in a fixed order, so results are bitwise repeatable.
#include <cstdint>
#include <cstring>

#include "kernels/anchor_candidates.hpp"
#include "kernels/anchor_math.hpp"
#include "kernels/numeric.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/vector_access.cuh"
#include "kernels/warp_reduce.cuh"

namespace contrastive::kernels {
namespace {

using anchor::kChunkElements;
using anchor::kLanes;
using anchor::kPhase1Chunks;
using anchor::kThreads;
using anchor::kTileChunks;
using anchor::kTileElements;
using anchor::kWarps;

constexpr int kMinBlocksPerSm = 2;                 // 128 registers per thread: no spills (ptxas -v)
constexpr std::size_t kDefaultShared = 48 * 1024;  // above it the launch must opt in

// ---- Rows
// ----------------------------------------------------------------------------------------

template <typename T>
__device__ const T* candidate_row(const AnchorCandidates& in, std::int64_t b, std::int64_t t) {
  if (in.first != nullptr) {
    if (t == 0) return static_cast<const T*>(in.first) + b * in.first_ld;
    return static_cast<const T*>(in.rest) + (b * (in.count - 1) + t - 1) * in.rest_ld;
  }
  return static_cast<const T*>(in.rest) + (b * in.count + t) * in.rest_ld;
}

template <typename T>
__device__ T* candidate_grad_row(const AnchorCandidateGrads& grads, const AnchorCandidates& in,
                                 std::int64_t b, std::int64_t t) {
  auto* first = static_cast<T*>(grads.first);
  auto* rest = static_cast<T*>(grads.rest);
  if (in.first != nullptr) {
    if (t == 0) return first == nullptr ? nullptr : first + b * in.dim;
    return rest == nullptr ? nullptr : rest + (b * (in.count - 1) + t - 1) * in.dim;
  }
  return rest == nullptr ? nullptr : rest + (b * in.count + t) * in.dim;
}

// Chunk `chunk` of a row (kChunkElements<T> elements) as raw bits: one 16-byte load on the vector
// path, element loads on the scalar path with the elements past `dim` zero. Either way the same
// bits reach the arithmetic.
template <typename T, bool kVector>
__device__ __forceinline__ uint4 load_chunk(const T* __restrict__ row, std::int64_t chunk,
                                            std::int64_t dim) {
  constexpr int kV = kChunkElements<T>;
  if constexpr (kVector) {
    return *reinterpret_cast<const uint4*>(row + chunk * kV);
  } else {
    T values[kV];
#pragma unroll
    for (int i = 0; i < kV; ++i) {
      const std::int64_t d = chunk * kV + i;
      values[i] = d < dim ? row[d] : from_float<T>(0.0f);
    }
    uint4 raw;
    std::memcpy(&raw, values, sizeof(raw));
    return raw;
  }
}

template <typename T>
__device__ __forceinline__ void unpack(const uint4& raw, float (&out)[kChunkElements<T>]) {
  T values[kChunkElements<T>];
  std::memcpy(values, &raw, sizeof(raw));
#pragma unroll
  for (int i = 0; i < kChunkElements<T>; ++i) out[i] = to_float(values[i]);
}

template <typename T, bool kVector>
__device__ __forceinline__ void store_chunk(T* __restrict__ row, std::int64_t chunk,
                                            std::int64_t dim,
                                            const float (&in)[kChunkElements<T>]) {
  constexpr int kV = kChunkElements<T>;
  if constexpr (kVector) {
    store_vector(row + chunk * kV, in);
  } else {
#pragma unroll
    for (int i = 0; i < kV; ++i) {
      const std::int64_t d = chunk * kV + i;
      if (d < dim) row[d] = from_float<T>(in[i]);
    }
  }
}

__device__ inline float warp_all_max(float value) {
  for (int mask = kWarpSize / 2; mask > 0; mask /= 2) {
    value = nan_propagating_max(value, __shfl_xor_sync(kFullWarp, value, mask));
  }
  return value;
}

// Four warp sums at the cost of about one: at the first two butterfly steps each lane keeps half
// of its values and sends the other half, so lane 8q ends with the total of values[q] (lanes
// 8q .. 8q + 7 all hold it). Each total is the same tree of additions as warp_all_sum's, so the
// bits are the same. With `four` false only values[0] and values[2] are summed (lanes 0 and 16).
__device__ inline double warp_sum_four(const double (&values)[4], bool four) {
  const bool upper = (threadIdx.x & 16u) != 0;
  double keep0 = upper ? values[2] : values[0], keep1 = upper ? values[3] : values[1];
  keep0 += __shfl_xor_sync(kFullWarp, upper ? values[0] : values[2], 16);
  double keep;
  int mask = 8;
  if (four) {
    const bool odd = (threadIdx.x & 8u) != 0;
    keep1 += __shfl_xor_sync(kFullWarp, upper ? values[1] : values[3], 16);
    keep = odd ? keep1 : keep0;
    keep += __shfl_xor_sync(kFullWarp, odd ? keep0 : keep1, 8);
    mask = 4;
  } else {
    keep = keep0;
  }
  for (; mask > 0; mask /= 2) keep += __shfl_xor_sync(kFullWarp, keep, mask);
  return keep;
}

// ---- Heads: the anchor's first warp, lanes over the candidates
// -----------------------------------

// Writes weight[t] = dLoss/dsim_t (backward passes); returns sum_t weight_t sim_t on every lane.
template <AnchorPass kPass>
__device__ float run_head(const SoftmaxHead& head, std::int64_t b, std::int64_t count,
                          const float* sim, float* weight, int lane) {
  const float scale = *head.scale;  // resolved on the device: it may be learnable there
  float max = -INFINITY;
  for (std::int64_t t = lane; t < count; t += kLanes) {
    max = nan_propagating_max(max, scale * sim[t]);
  }
  max = warp_all_max(max);
  float others = 0.0f;  // sum_{t != 0} exp(logit_t - max)
  for (std::int64_t t = lane; t < count; t += kLanes) {
    if (t != 0) others += expf(scale * sim[t] - max);
  }
  others = warp_all_sum(others);
  const PositiveTerms row = softmax_positive(max, scale * sim[0], others);
  if (kPass != AnchorPass::kBackward && lane == 0) {
    head.row_lse[b] = row.lse;
    head.row_loss[b] = row.loss;
  }
  if (kPass == AnchorPass::kForward) return 0.0f;
  const float row_weight = head.upstream.weight(b);
  float grad_dot_logit = 0.0f, weighted_sim = 0.0f;
  for (std::int64_t t = lane; t < count; t += kLanes) {
    const float logit = scale * sim[t];
    const float grad_logit = row_weight * (t == 0 ? row.grad : expf(logit - row.lse));
    weight[t] = grad_logit * scale;  // logit = scale * sim
    grad_dot_logit += grad_logit * logit;
    weighted_sim += weight[t] * sim[t];
  }
  grad_dot_logit = warp_all_sum(grad_dot_logit);
  if (lane == 0 && head.row_logit_grad != nullptr) head.row_logit_grad[b] = grad_dot_logit;
  return warp_all_sum(weighted_sim);
}

template <AnchorPass kPass>
__device__ float run_head(const HingeHead& head, std::int64_t b, std::int64_t count,
                          const float* sim, float* weight, int lane) {
  if (kPass != AnchorPass::kBackward) {
    float row_sum = 0.0f, row_active = 0.0f;
    for (std::int64_t t = lane; t < count; t += kLanes) {
      const float term = anchor::hinge_term(sim[t], head.margin);
      if (head.terms != nullptr) head.terms[b * count + t] = term;
      row_sum += term;
      row_active += sim[t] - head.margin > 0.0f ? 1.0f : 0.0f;
    }
    row_sum = warp_all_sum(row_sum);
    row_active = warp_all_sum(row_active);
    if (lane == 0 && head.row_sum != nullptr) head.row_sum[b] = row_sum;
    if (lane == 0 && head.row_active != nullptr) head.row_active[b] = row_active;
  }
  if (kPass == AnchorPass::kForward) return 0.0f;
  float active_scale = 1.0f;
  if (head.active_total != nullptr) {
    const float total = *head.active_total;
    active_scale = total > 0.0f ? 1.0f / total : 0.0f;
  }
  float weighted_sim = 0.0f;
  for (std::int64_t t = lane; t < count; t += kLanes) {
    weight[t] = anchor::hinge_weight(sim[t], head.margin,
                                     head.upstream.weight(b * count + t) * active_scale);
    weighted_sim += weight[t] * sim[t];
  }
  return warp_all_sum(weighted_sim);
}

// ---- The kernel
// ----------------------------------------------------------------------------------

// Shared memory of a block (anchor::anchor_shared_bytes), G anchors of `count` candidates.
struct SharedLayout {
  double* dot;             // (G, count) phase 1's a . c
  double* anchor_squares;  // (G)
  float* sim;              // (G, count)
  float* inverse_norm;     // (G, count) encoded (anchor::encode_inverse_norm)
  float* weight;           // (G, count) dLoss/dsim
  float* anchor_state;     // (G, 2): encoded inverse norm, sum_t weight_t sim_t
  float* partial;          // (kWarps, kTileElements): each warp's share of sum_t w_t c_hat_t

  __device__ SharedLayout(unsigned char* base, std::int64_t anchors, std::int64_t count) {
    const std::int64_t slots = anchors * count;
    dot = reinterpret_cast<double*>(base);
    anchor_squares = dot + slots;
    sim = reinterpret_cast<float*>(anchor_squares + anchors);
    inverse_norm = sim + slots;
    weight = inverse_norm + slots;
    anchor_state = weight + slots;
    const auto end = reinterpret_cast<std::uintptr_t>(anchor_state + 2 * anchors);
    partial = reinterpret_cast<float*>((end + anchor::kChunkBytes - 1) / anchor::kChunkBytes *
                                       anchor::kChunkBytes);
  }
};

template <AnchorPass kPass, typename Head, typename T, bool kVector>
__global__ __launch_bounds__(kThreads, kMinBlocksPerSm) void anchor_candidates_kernel(
    AnchorCandidates in, Head head, AnchorCandidateGrads grads, SavedSimilarities saved) {
  constexpr int kV = kChunkElements<T>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const anchor::Grouping grouping = anchor::anchor_grouping(in.count);
  const int per_anchor = grouping.warps_per_anchor;
  const std::int64_t count = in.count;
  const SharedLayout s(shared_bytes, grouping.anchors_per_block, count);
  const int warp = static_cast<int>(threadIdx.x) / kLanes,
            lane = static_cast<int>(threadIdx.x) % kLanes;
  const int g = warp / per_anchor, my_warp = warp % per_anchor;  // anchor in block, warp in anchor
  const std::int64_t b = static_cast<std::int64_t>(blockIdx.x) * grouping.anchors_per_block + g;
  const bool active = b < in.batch;  // the last block's spare anchors still reach every barrier
  const T* __restrict__ anchor_row =
      static_cast<const T*>(in.anchors) + (active ? b : 0) * in.anchor_ld;
  const std::int64_t chunks = (in.dim + kV - 1) / kV;
  double* dot = s.dot + g * count;
  float* sim = s.sim + g * count;
  float* inverse_norm = s.inverse_norm + g * count;
  float* weight = s.weight + g * count;

  if constexpr (kPass != AnchorPass::kBackward) {  // phase 1: two candidate rows per warp at once
    for (std::int64_t t = my_warp; active && t < count; t += 2 * per_anchor) {
      const std::int64_t t2 = t + per_anchor;  // the warp's second row, when there is one
      const bool pair = t2 < count;
      const T* __restrict__ row = candidate_row<T>(in, b, t);
      const T* __restrict__ row2 = candidate_row<T>(in, b, pair ? t2 : t);
      anchor::RowSums sums, sums2;
      const bool anchor_squares = in.cosine && t == 0;
      for (std::int64_t base = lane; base < chunks; base += kLanes * kPhase1Chunks) {
        uint4 a_raw[kPhase1Chunks], c_raw[kPhase1Chunks], c2_raw[kPhase1Chunks];
#pragma unroll
        for (int k = 0; k < kPhase1Chunks; ++k) {
          const std::int64_t chunk = base + k * kLanes;
          if (chunk < chunks) {
            a_raw[k] = load_chunk<T, kVector>(anchor_row, chunk, in.dim);
            c_raw[k] = load_chunk<T, kVector>(row, chunk, in.dim);
            if (pair) c2_raw[k] = load_chunk<T, kVector>(row2, chunk, in.dim);
          }
        }
#pragma unroll
        for (int k = 0; k < kPhase1Chunks; ++k) {
          if (base + k * kLanes < chunks) {
            float a[kV], c[kV];
            unpack<T>(a_raw[k], a);
            unpack<T>(c_raw[k], c);
            anchor::add_chunk<T>(a, c, in.cosine, anchor_squares, sums);
            if (pair) {
              unpack<T>(a_raw[k], a);  // add_chunk scaled the first copy
              unpack<T>(c2_raw[k], c);
              anchor::add_chunk<T>(a, c, in.cosine, false, sums2);
            }
          }
        }
      }
      if (anchor_squares) sums.anchor_squares = warp_all_sum(sums.anchor_squares);
      if (anchor_squares && lane == 0) s.anchor_squares[g] = sums.anchor_squares;
      // Lane 0: dot of t, lane 8: squares of t, lane 16: dot of t2, lane 24: squares of t2.
      double values[4] = {sums.dot, sums.squares, sums2.dot, sums2.squares};
      const double total = warp_sum_four(values, in.cosine);
      const int quarter = lane / (kLanes / 4);
      const std::int64_t slot = quarter < 2 ? t : t2;
      if (lane % (kLanes / 4) == 0 && (quarter < 2 || pair) && (quarter % 2 == 0 || in.cosine)) {
        if (quarter % 2 == 0) {
          dot[slot] = total;
          if (!in.cosine) inverse_norm[slot] = 1.0f;
        } else {
          inverse_norm[slot] = anchor::encode_inverse_norm(total, in.eps);
        }
      }
    }
    __syncthreads();
  }

  if (active && my_warp == 0) {  // head
    float anchor_encoded;
    if constexpr (kPass == AnchorPass::kBackward) {
      anchor_encoded = saved.anchor_inverse_norms[b];
      for (std::int64_t t = lane; t < count; t += kLanes) {
        sim[t] = saved.similarities[b * count + t];
        inverse_norm[t] = saved.inverse_norms[b * count + t];
      }
    } else {
      anchor_encoded = in.cosine ? anchor::encode_inverse_norm(s.anchor_squares[g], in.eps) : 1.0f;
      for (std::int64_t t = lane; t < count; t += kLanes) {
        sim[t] = in.cosine ? anchor::cosine(dot[t], anchor_encoded, inverse_norm[t])
                           : static_cast<float>(dot[t]);
        saved.similarities[b * count + t] = sim[t];
        saved.inverse_norms[b * count + t] = inverse_norm[t];
      }
      if (lane == 0) saved.anchor_inverse_norms[b] = anchor_encoded;
    }
    __syncwarp();
    const float weighted_sim = run_head<kPass>(head, b, count, sim, weight, lane);
    if (lane == 0) {
      s.anchor_state[2 * g] = anchor_encoded;
      s.anchor_state[2 * g + 1] = weighted_sim;
    }
  }
  if constexpr (kPass == AnchorPass::kForward) return;
  if (grads.anchors == nullptr && grads.first == nullptr && grads.rest == nullptr) return;
  __syncthreads();

  // phase 2
  constexpr int kK = kTileChunks<T>;  // chunks per lane per tile
  const float anchor_encoded = s.anchor_state[2 * g];
  const float a_inv = in.cosine ? anchor::inverse_norm(anchor_encoded) : 1.0f;
  const float anchor_term =
      in.cosine && !anchor::clamped(anchor_encoded) ? s.anchor_state[2 * g + 1] : 0.0f;
  T* __restrict__ grad_anchor =
      grads.anchors == nullptr || !active ? nullptr : static_cast<T*>(grads.anchors) + b * in.dim;
  const std::int64_t used_warps = count < per_anchor ? count : per_anchor;
  for (std::int64_t tile = 0; tile < chunks; tile += kLanes * kK) {
    float accumulated[kK][kV] = {};  // this warp's sum_t w_t c_hat_t (cosine) or w_t c_t (dot)
    if (active) {
      float a_hat[kK][kV];
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        const std::int64_t chunk = tile + k * kLanes + lane;
        if (chunk < chunks) {
          unpack<T>(load_chunk<T, kVector>(anchor_row, chunk, in.dim), a_hat[k]);
#pragma unroll
          for (int i = 0; i < kV; ++i) a_hat[k][i] *= a_inv;
        }
      }
      // Candidate t's chunks of this tile are read only when its weight is non-zero and a
      // gradient wants them; a zero weight writes a zero row.
      auto wanted = [&](std::int64_t t) {
        return weight[t] != 0.0f &&
               (grad_anchor != nullptr || candidate_grad_row<T>(grads, in, b, t) != nullptr);
      };
      auto load_rows = [&](std::int64_t t, uint4(&raw)[kK]) {
        const T* __restrict__ row = candidate_row<T>(in, b, t);
#pragma unroll
        for (int k = 0; k < kK; ++k) {
          const std::int64_t chunk = tile + k * kLanes + lane;
          if (chunk < chunks) raw[k] = load_chunk<T, kVector>(row, chunk, in.dim);
        }
      };
      auto finish = [&](std::int64_t t, const uint4(&raw)[kK], bool read) {
        const float w = weight[t];
        T* __restrict__ grad_row = candidate_grad_row<T>(grads, in, b, t);
        if (w == 0.0f) {  // inactive hinge term or vanished probability
          if (grad_row == nullptr) return;
          const float zeros[kV] = {};
#pragma unroll
          for (int k = 0; k < kK; ++k) {
            const std::int64_t chunk = tile + k * kLanes + lane;
            if (chunk < chunks) store_chunk<T, kVector>(grad_row, chunk, in.dim, zeros);
          }
          return;
        }
        if (!read) return;
        const float encoded = inverse_norm[t];
        const float c_inv = anchor::inverse_norm(encoded);
        const float projection = in.cosine && !anchor::clamped(encoded) ? sim[t] : 0.0f;
        const float weight_inverse = w * c_inv;
#pragma unroll
        for (int k = 0; k < kK; ++k) {
          const std::int64_t chunk = tile + k * kLanes + lane;
          if (chunk >= chunks) continue;
          float c[kV], grad[kV];
          unpack<T>(raw[k], c);
#pragma unroll
          for (int i = 0; i < kV; ++i) {
            if (in.cosine) {
              const float c_hat = c[i] * c_inv;
              grad[i] =
                  anchor::cosine_candidate_grad(a_hat[k][i], c_hat, projection, weight_inverse);
              accumulated[k][i] = fmaf(w, c_hat, accumulated[k][i]);
            } else {
              grad[i] = w * a_hat[k][i];
              accumulated[k][i] = fmaf(w, c[i], accumulated[k][i]);
            }
          }
          if (grad_row != nullptr) store_chunk<T, kVector>(grad_row, chunk, in.dim, grad);
        }
      };
      // Two candidate rows in flight per warp; their sums still run in candidate order.
      for (std::int64_t t = my_warp; t < count; t += 2 * per_anchor) {
        const std::int64_t t2 = t + per_anchor;
        const bool read = wanted(t), read2 = t2 < count && wanted(t2);
        uint4 raw[kK], raw2[kK];
        if (read) load_rows(t, raw);
        if (read2) load_rows(t2, raw2);
        finish(t, raw, read);
        if (t2 < count) finish(t2, raw2, read2);
      }
    }
    if (grads.anchors == nullptr) continue;
    float* mine = s.partial + warp * kTileElements;
#pragma unroll
    for (int k = 0; k < kK; ++k) {
#pragma unroll
      for (int i = 0; i < kV; ++i) mine[(k * kLanes + lane) * kV + i] = accumulated[k][i];
    }
    __syncthreads();
    // The anchor's warps merge their partials in warp order, a chunk per thread.
    for (int j = my_warp * kLanes + lane; active && j < kLanes * kK; j += per_anchor * kLanes) {
      const std::int64_t chunk = tile + j;
      if (chunk >= chunks) break;
      float sum[kV], a[kV];
      const float* first = s.partial + (g * per_anchor) * kTileElements + j * kV;
#pragma unroll
      for (int i = 0; i < kV; ++i) sum[i] = first[i];
      for (std::int64_t w = 1; w < used_warps; ++w) {
#pragma unroll
        for (int i = 0; i < kV; ++i) sum[i] += first[w * kTileElements + i];
      }
      if (in.cosine) {
        unpack<T>(load_chunk<T, kVector>(anchor_row, chunk, in.dim), a);
#pragma unroll
        for (int i = 0; i < kV; ++i) {
          sum[i] = anchor::cosine_anchor_grad(sum[i], a[i] * a_inv, anchor_term, a_inv);
        }
      }
      store_chunk<T, kVector>(grad_anchor, chunk, in.dim, sum);
    }
    __syncthreads();
  }
}

// Every row set (anchors, candidates, dense gradients) must allow 16-byte access for the vector
// path; one that does not sends the whole launch down the scalar path (same bits, slower).
template <typename T>
bool vector_path(const AnchorCandidates& rows, const AnchorCandidateGrads& grads) {
  const std::size_t element = sizeof(T);
  const std::int64_t d = rows.dim;
  auto ok = [&](const void* base, std::int64_t ld) {
    return base == nullptr || vectorizable(base, ld, d, element);
  };
  return ok(rows.anchors, rows.anchor_ld) && ok(rows.first, rows.first_ld) &&
         ok(rows.rest, rows.rest_ld) && ok(grads.anchors, d) && ok(grads.first, d) &&
         ok(grads.rest, d);
}

template <AnchorPass kPass, typename T, typename Head>
cudaError_t launch_typed(const AnchorCandidates& rows, const Head& head,
                         const AnchorCandidateGrads& grads, const SavedSimilarities& saved,
                         cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(anchor::anchor_blocks(rows.batch, rows.count));
  const std::size_t shared = anchor::anchor_shared_bytes(rows.count, kPass != AnchorPass::kForward);
  auto* kernel = vector_path<T>(rows, grads) ? anchor_candidates_kernel<kPass, Head, T, true>
                                             : anchor_candidates_kernel<kPass, Head, T, false>;
  if (shared > kDefaultShared) {
    const cudaError_t status = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (status != cudaSuccess) return status;
  }
  kernel<<<blocks, kThreads, shared, stream>>>(rows, head, grads, saved);
  return cudaGetLastError();
}

template <typename T, typename Head>
cudaError_t launch(AnchorPass pass, const AnchorCandidates& rows, const Head& head,
                   const AnchorCandidateGrads& grads, const SavedSimilarities& saved,
                   cudaStream_t stream) {
  switch (pass) {
    case AnchorPass::kForward:
      return launch_typed<AnchorPass::kForward, T>(rows, head, grads, saved, stream);
    case AnchorPass::kBackward:
      return launch_typed<AnchorPass::kBackward, T>(rows, head, grads, saved, stream);
    case AnchorPass::kForwardBackward: break;
  }
  return launch_typed<AnchorPass::kForwardBackward, T>(rows, head, grads, saved, stream);
}

}  // namespace

template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const SoftmaxHead& head, const AnchorCandidateGrads& grads,
                                     const SavedSimilarities& saved, cudaStream_t stream) {
  return launch<T>(pass, rows, head, grads, saved, stream);
}

template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const HingeHead& head, const AnchorCandidateGrads& grads,
                                     const SavedSimilarities& saved, cudaStream_t stream) {
  return launch<T>(pass, rows, head, grads, saved, stream);
}

#define CONTRASTIVE_INSTANTIATE(T)                                                                \
  template cudaError_t launch_anchor_candidates<T>(                                               \
      AnchorPass, const AnchorCandidates&, const SoftmaxHead&, const AnchorCandidateGrads&,       \
      const SavedSimilarities&, cudaStream_t);                                                    \
  template cudaError_t launch_anchor_candidates<T>(AnchorPass, const AnchorCandidates&,           \
                                                   const HingeHead&, const AnchorCandidateGrads&, \
                                                   const SavedSimilarities&, cudaStream_t);
CONTRASTIVE_INSTANTIATE(float)
CONTRASTIVE_INSTANTIATE(__half)
CONTRASTIVE_INSTANTIATE(__nv_bfloat16)
#undef CONTRASTIVE_INSTANTIATE

}  // namespace contrastive::kernels
