// Anchor against its own candidates, fused, one block per anchor b:
//   phase 1  a warp per candidate t: sim_bt = dot or cosine of (a_b, c_bt) in one read of c_bt
//            (sums in double, so norms near 1e+-30 stay in range); sims kept in shared memory
//   head     warp 0: MNR's log-sum-exp and loss, or Repel's hinge terms (forward); the weight
//            dLoss/dsim_bt of every candidate (backward)
//   phase 2  threads over the embedding: dc_bt = w_t dsim/dc, da_b = sum_t w_t dsim/da, reading
//            each candidate row once more (from L1/L2 right after phase 1) and writing its gradient
// Cosine derivatives with x_hat = x / max(|x|, eps): dsim/dx = (a_hat - x_hat sim) / |x|, or
// a_hat / eps where |x| <= eps (x_hat = x / eps is linear there); the same for the anchor.
// Inputs and gradients are T (fp32, fp16 or bf16), everything in between fp32 (double for the
// similarity sums). Rows are read and written in 16-byte vectors when every row set allows it.
// All sums run in a fixed order: results are bitwise repeatable.
#include <cstdint>

#include "kernels/anchor_candidates.hpp"
#include "kernels/numeric.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/vector_access.cuh"
#include "kernels/warp_reduce.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kSharedArrays = 4;  // sim, inverse norm, projection, weight: one float per candidate

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

// kStep consecutive elements at `row + d` as fp32: one 16-byte load on the vector path.
template <typename T, int kStep>
__device__ void load_elements(const T* row, std::int64_t d, float (&out)[kStep]) {
  if constexpr (kStep == 1) {
    out[0] = to_float(row[d]);
  } else {
    load_vector(row + d, out);
  }
}

template <typename T, int kStep>
__device__ void store_elements(T* row, std::int64_t d, const float (&in)[kStep]) {
  if constexpr (kStep == 1) {
    row[d] = from_float<T>(in[0]);
  } else {
    store_vector(row + d, in);
  }
}

// Per-candidate values of one anchor, in dynamic shared memory.
struct CandidateValues {
  float* sim;         // sim_t
  float* inv_norm;    // 1 / max(|c_t|, eps) (1 for dot)
  float* projection;  // sim_t where |c_t| > eps, else 0: the part of dsim/dc along c_hat
  float* weight;      // dLoss/dsim_t
};

// ---- Heads: run by warp 0, lanes over the candidates ---------------------------------------------

// Returns sum_t weight_t * sim_t (the anchor's cosine projection term) on every lane.
template <AnchorPass kPass>
__device__ float run_head(const SoftmaxHead& head, std::int64_t b, std::int64_t count,
                          const CandidateValues& v, int lane) {
  float lse;
  if (kPass == AnchorPass::kBackward) {
    lse = head.row_lse[b];
  } else {
    LseState state = lse_empty();
    for (std::int64_t t = lane; t < count; t += kWarpSize) state = lse_push(state, head.scale * v.sim[t]);
    lse = lse_value(warp_all_merge(state));
    if (lane == 0) {
      head.row_lse[b] = lse;
      head.row_loss[b] = lse - head.scale * v.sim[0];
    }
  }
  if (kPass == AnchorPass::kForward) return 0.0f;
  const float row_weight = head.upstream.weight(b);
  float grad_dot_logit = 0.0f, weighted_sim = 0.0f;
  for (std::int64_t t = lane; t < count; t += kWarpSize) {
    const float logit = head.scale * v.sim[t];
    const float grad_logit = row_weight * (expf(logit - lse) - (t == 0 ? 1.0f : 0.0f));
    v.weight[t] = grad_logit * head.scale;  // logit = scale * sim
    grad_dot_logit += grad_logit * logit;
    weighted_sim += v.weight[t] * v.sim[t];
  }
  grad_dot_logit = warp_all_sum(grad_dot_logit);
  if (lane == 0 && head.row_logit_grad != nullptr) head.row_logit_grad[b] = grad_dot_logit;
  return warp_all_sum(weighted_sim);
}

template <AnchorPass kPass>
__device__ float run_head(const HingeHead& head, std::int64_t b, std::int64_t count,
                          const CandidateValues& v, int lane) {
  if (kPass != AnchorPass::kBackward) {
    float row_sum = 0.0f, row_active = 0.0f;
    for (std::int64_t t = lane; t < count; t += kWarpSize) {
      const float excess = v.sim[t] - head.margin;
      const float term = excess > 0.0f || excess != excess ? excess : 0.0f;  // NaN stays NaN
      if (head.terms != nullptr) head.terms[b * count + t] = term;
      row_sum += term;
      row_active += excess > 0.0f ? 1.0f : 0.0f;
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
  for (std::int64_t t = lane; t < count; t += kWarpSize) {
    const float excess = v.sim[t] - head.margin;
    const float weight = head.upstream.weight(b * count + t) * active_scale;
    v.weight[t] = excess != excess ? excess : (excess > 0.0f ? weight : 0.0f);
    weighted_sim += v.weight[t] * v.sim[t];
  }
  return warp_all_sum(weighted_sim);
}

// ---- The kernel ----------------------------------------------------------------------------------

template <AnchorPass kPass, typename Head, typename T, int kStep>
__global__ __launch_bounds__(kThreads) void anchor_candidates_kernel(AnchorCandidates in, Head head,
                                                                     AnchorCandidateGrads grads) {
  extern __shared__ float shared[];
  __shared__ float anchor_inv_norm, anchor_projection, weighted_sim_sum;
  const std::int64_t count = in.count;
  const CandidateValues v{shared, shared + count, shared + 2 * count, shared + 3 * count};
  const std::int64_t b = blockIdx.x;
  const T* anchor = static_cast<const T*>(in.anchors) + b * in.anchor_ld;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;

  if (warp == 0) {  // the anchor's norm
    double squares = 0.0;
    if (in.cosine) {
      for (std::int64_t d = lane * kStep; d < in.dim; d += kWarpSize * kStep) {
        float values[kStep];
        load_elements<T, kStep>(anchor, d, values);
#pragma unroll
        for (int i = 0; i < kStep; ++i) squares += static_cast<double>(values[i]) * values[i];
      }
      squares = warp_all_sum(squares);
    }
    if (lane == 0) {
      const double norm = sqrt(squares);
      anchor_inv_norm = in.cosine ? 1.0f / nan_propagating_max(static_cast<float>(norm), in.eps) : 1.0f;
      anchor_projection = in.cosine && !(norm <= in.eps) ? 1.0f : 0.0f;
    }
  }
  __syncthreads();
  const float a_inv = anchor_inv_norm;

  for (std::int64_t t = warp; t < count; t += kWarps) {  // phase 1
    const T* row = candidate_row<T>(in, b, t);
    double anchor_dot = 0.0, squares = 0.0;
    for (std::int64_t d = lane * kStep; d < in.dim; d += kWarpSize * kStep) {
      float values[kStep], anchors[kStep];
      load_elements<T, kStep>(row, d, values);
      load_elements<T, kStep>(anchor, d, anchors);
#pragma unroll
      for (int i = 0; i < kStep; ++i) {
        anchor_dot += static_cast<double>(anchors[i]) * values[i];
        squares += static_cast<double>(values[i]) * values[i];
      }
    }
    anchor_dot = warp_all_sum(anchor_dot);
    squares = warp_all_sum(squares);
    if (lane == 0) {
      if (in.cosine) {
        const double norm = sqrt(squares);
        const float inv_norm = 1.0f / nan_propagating_max(static_cast<float>(norm), in.eps);
        const auto sim = static_cast<float>(anchor_dot * a_inv * inv_norm);
        v.sim[t] = sim;
        v.inv_norm[t] = inv_norm;
        v.projection[t] = !(norm <= in.eps) ? sim : 0.0f;
      } else {
        v.sim[t] = static_cast<float>(anchor_dot);
        v.inv_norm[t] = 1.0f;
        v.projection[t] = 0.0f;
      }
    }
  }
  __syncthreads();
  if (warp == 0) {
    const float sum = run_head<kPass>(head, b, count, v, lane);
    if (lane == 0) weighted_sim_sum = sum;
  }
  if constexpr (kPass == AnchorPass::kForward) return;
  __syncthreads();

  const float anchor_term = anchor_projection * weighted_sim_sum;
  T* grad_anchor =
      grads.anchors == nullptr ? nullptr : static_cast<T*>(grads.anchors) + b * in.dim;
  for (std::int64_t d = threadIdx.x * kStep; d < in.dim; d += kThreads * kStep) {  // phase 2
    float a[kStep], accumulated[kStep] = {};  // sum_t w_t c_hat_t[d]
    load_elements<T, kStep>(anchor, d, a);
    for (std::int64_t t = 0; t < count; ++t) {
      float c[kStep], grad[kStep];
      load_elements<T, kStep>(candidate_row<T>(in, b, t), d, c);
      const float w = v.weight[t];
#pragma unroll
      for (int i = 0; i < kStep; ++i) {
        if (in.cosine) {
          const float c_hat = c[i] * v.inv_norm[t];
          grad[i] = w * (a[i] * a_inv - c_hat * v.projection[t]) * v.inv_norm[t];
          accumulated[i] += w * c_hat;
        } else {
          grad[i] = w * a[i];
          accumulated[i] += w * c[i];
        }
      }
      T* grad_row = candidate_grad_row<T>(grads, in, b, t);
      if (grad_row != nullptr) store_elements<T, kStep>(grad_row, d, grad);
    }
    if (grad_anchor != nullptr) {
#pragma unroll
      for (int i = 0; i < kStep; ++i) {
        const float a_hat = a[i] * a_inv;
        accumulated[i] = in.cosine ? (accumulated[i] - a_hat * anchor_term) * a_inv : accumulated[i];
      }
      store_elements<T, kStep>(grad_anchor, d, accumulated);
    }
  }
}

// Every row set (anchors, candidates, dense gradients) must allow 16-byte access for the vector
// path; one that does not sends the whole launch down the scalar path.
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
void launch_typed(const AnchorCandidates& rows, const Head& head, const AnchorCandidateGrads& grads,
                  std::size_t shared, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(rows.batch);
  if (vector_path<T>(rows, grads)) {
    anchor_candidates_kernel<kPass, Head, T, kVectorElements<T>>
        <<<blocks, kThreads, shared, stream>>>(rows, head, grads);
  } else {
    anchor_candidates_kernel<kPass, Head, T, 1><<<blocks, kThreads, shared, stream>>>(rows, head, grads);
  }
}

template <typename T, typename Head>
cudaError_t launch(AnchorPass pass, const AnchorCandidates& rows, const Head& head,
                   const AnchorCandidateGrads& grads, cudaStream_t stream) {
  const std::size_t shared = kSharedArrays * static_cast<std::size_t>(rows.count) * sizeof(float);
  switch (pass) {
    case AnchorPass::kForward:
      launch_typed<AnchorPass::kForward, T>(rows, head, grads, shared, stream);
      break;
    case AnchorPass::kBackward:
      launch_typed<AnchorPass::kBackward, T>(rows, head, grads, shared, stream);
      break;
    case AnchorPass::kForwardBackward:
      launch_typed<AnchorPass::kForwardBackward, T>(rows, head, grads, shared, stream);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const SoftmaxHead& head, const AnchorCandidateGrads& grads,
                                     cudaStream_t stream) {
  return launch<T>(pass, rows, head, grads, stream);
}

template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const HingeHead& head, const AnchorCandidateGrads& grads,
                                     cudaStream_t stream) {
  return launch<T>(pass, rows, head, grads, stream);
}

#define CONTRASTIVE_INSTANTIATE(T)                                                             \
  template cudaError_t launch_anchor_candidates<T>(AnchorPass, const AnchorCandidates&,       \
                                                   const SoftmaxHead&,                         \
                                                   const AnchorCandidateGrads&, cudaStream_t); \
  template cudaError_t launch_anchor_candidates<T>(AnchorPass, const AnchorCandidates&,       \
                                                   const HingeHead&, const AnchorCandidateGrads&, \
                                                   cudaStream_t);
CONTRASTIVE_INSTANTIATE(float)
CONTRASTIVE_INSTANTIATE(__half)
CONTRASTIVE_INSTANTIATE(__nv_bfloat16)
#undef CONTRASTIVE_INSTANTIATE

}  // namespace contrastive::kernels
