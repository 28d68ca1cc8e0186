// Anchor against its own candidates, fused, one block per anchor b:
//   phase 1  a warp per candidate t: sim_bt = dot or cosine of (a_b, c_bt) in one read of c_bt
//            (sums in double, so norms near 1e+-30 stay in range); sims kept in shared memory
//   head     warp 0: MNR's log-sum-exp and loss, or Repel's hinge terms (forward); the weight
//            dLoss/dsim_bt of every candidate (backward)
//   phase 2  threads over the embedding: dc_bt = w_t dsim/dc, da_b = sum_t w_t dsim/da, reading
//            each candidate row once more (from L1/L2 right after phase 1) and writing its gradient
// Cosine derivatives with x_hat = x / max(|x|, eps): dsim/dx = (a_hat - x_hat sim) / |x|, or
// a_hat / eps where |x| <= eps (x_hat = x / eps is linear there); the same for the anchor.
// All sums run in a fixed order: results are bitwise repeatable.
#include <cstdint>

#include "kernels/anchor_candidates.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/warp_reduce.cuh"

namespace contrastive::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kSharedArrays = 4;  // sim, inverse norm, projection, weight: one float per candidate

__device__ const float* candidate_row(const AnchorCandidates& in, std::int64_t b, std::int64_t t) {
  if (in.first != nullptr) {
    if (t == 0) return in.first + b * in.first_ld;
    return in.rest + (b * (in.count - 1) + t - 1) * in.rest_ld;
  }
  return in.rest + (b * in.count + t) * in.rest_ld;
}

__device__ float* candidate_grad_row(const AnchorCandidateGrads& grads, const AnchorCandidates& in,
                                     std::int64_t b, std::int64_t t) {
  if (in.first != nullptr) {
    if (t == 0) return grads.first == nullptr ? nullptr : grads.first + b * in.dim;
    return grads.rest == nullptr ? nullptr : grads.rest + (b * (in.count - 1) + t - 1) * in.dim;
  }
  return grads.rest == nullptr ? nullptr : grads.rest + (b * in.count + t) * in.dim;
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

template <AnchorPass kPass, typename Head>
__global__ __launch_bounds__(kThreads) void anchor_candidates_kernel(AnchorCandidates in, Head head,
                                                                     AnchorCandidateGrads grads) {
  extern __shared__ float shared[];
  __shared__ float anchor_inv_norm, anchor_projection, weighted_sim_sum;
  const std::int64_t count = in.count;
  const CandidateValues v{shared, shared + count, shared + 2 * count, shared + 3 * count};
  const std::int64_t b = blockIdx.x;
  const float* anchor = in.anchors + b * in.anchor_ld;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;

  if (warp == 0) {  // the anchor's norm
    double squares = 0.0;
    if (in.cosine) {
      for (std::int64_t d = lane; d < in.dim; d += kWarpSize) {
        const double value = anchor[d];
        squares += value * value;
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
    const float* row = candidate_row(in, b, t);
    double anchor_dot = 0.0, squares = 0.0;
    for (std::int64_t d = lane; d < in.dim; d += kWarpSize) {
      const double value = row[d];
      anchor_dot += static_cast<double>(anchor[d]) * value;
      squares += value * value;
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
  for (std::int64_t d = threadIdx.x; d < in.dim; d += kThreads) {  // phase 2
    const float a = anchor[d];
    const float a_hat = a * a_inv;
    float accumulated = 0.0f;  // sum_t w_t c_hat_t[d]
    for (std::int64_t t = 0; t < count; ++t) {
      const float c = candidate_row(in, b, t)[d];
      const float w = v.weight[t];
      float* grad = candidate_grad_row(grads, in, b, t);
      if (in.cosine) {
        const float c_hat = c * v.inv_norm[t];
        if (grad != nullptr) grad[d] = w * (a_hat - c_hat * v.projection[t]) * v.inv_norm[t];
        accumulated += w * c_hat;
      } else {
        if (grad != nullptr) grad[d] = w * a;
        accumulated += w * c;
      }
    }
    if (grads.anchors != nullptr) {
      grads.anchors[b * in.dim + d] =
          in.cosine ? (accumulated - a_hat * anchor_term) * a_inv : accumulated;
    }
  }
}

template <typename Head>
cudaError_t launch(AnchorPass pass, const AnchorCandidates& rows, const Head& head,
                   const AnchorCandidateGrads& grads, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(rows.batch);
  const std::size_t shared = kSharedArrays * static_cast<std::size_t>(rows.count) * sizeof(float);
  switch (pass) {
    case AnchorPass::kForward:
      anchor_candidates_kernel<AnchorPass::kForward>
          <<<blocks, kThreads, shared, stream>>>(rows, head, grads);
      break;
    case AnchorPass::kBackward:
      anchor_candidates_kernel<AnchorPass::kBackward>
          <<<blocks, kThreads, shared, stream>>>(rows, head, grads);
      break;
    case AnchorPass::kForwardBackward:
      anchor_candidates_kernel<AnchorPass::kForwardBackward>
          <<<blocks, kThreads, shared, stream>>>(rows, head, grads);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const SoftmaxHead& head, const AnchorCandidateGrads& grads,
                                     cudaStream_t stream) {
  return launch(pass, rows, head, grads, stream);
}

cudaError_t launch_anchor_candidates(AnchorPass pass, const AnchorCandidates& rows,
                                     const HingeHead& head, const AnchorCandidateGrads& grads,
                                     cudaStream_t stream) {
  return launch(pass, rows, head, grads, stream);
}

}  // namespace contrastive::kernels
