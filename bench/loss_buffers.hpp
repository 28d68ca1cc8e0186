// Device buffers of the losses' benchmarks, in the two input layouts the losses here take, the
// settings and operations the losses are measured at, and the untimed call that validates an
// operation before it is timed. All buffers are allocated once, before anything is timed; inputs
// are random normal, never zeros, and they and their gradients are in the measured dtype.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/cublas_floor.hpp"
#include "bench/gpu_fixture.hpp"
#include "contrastive/handle.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::bench {

/// The input dtypes every loss is measured in: fp32 and the two 16-bit training dtypes, every
/// dtype the library takes.
inline constexpr std::array<DType, 3> kMeasuredDTypes = {DType::kF32, DType::kBF16, DType::kF16};

/// The operations every loss is measured in: the library's three passes.
using Operation = Pass;
inline constexpr std::array<Operation, 3> kOperations = {Operation::kForward, Operation::kBackward,
                                                         Operation::kForwardBackward};

/// "forward", "backward", "forward_backward": the operation's part of a benchmark's name.
const char* operation_name(Operation operation);
/// Backward and forward_backward write every input's gradient; forward writes none.
bool writes_gradients(Operation operation);

/// One loss at fixed parameters and buffers, as a benchmark calls it.
struct LossCalls {
  std::string name;                       ///< "infonce", "mnr/per_anchor": prefixes its errors
  std::function<Status(Operation)> call;  ///< runs one operation, returns its Status

  /// call(operation) as timed Work, its Status checked.
  Work work(GpuFixture& gpu, Operation operation) const;
  /// The untimed call before timing, also the warm-up (the handle chooses and caches its GEMM
  /// algorithms on first use): call(operation) with its Status checked, after an untimed forward
  /// when `operation` is backward, which reads what forward saved; then `values` must be finite.
  bool validate(GpuFixture& gpu, Operation operation, const std::vector<FiniteValue>& values) const;
};

/// What a loss call writes besides gradients, and its workspace.
struct LossOutputs {
  DeviceBuffer loss;       // (1): Reduction::kMean or kSum
  DeviceBuffer saved;      // saved_size() bytes
  DeviceBuffer workspace;  // workspace_size() bytes
};

/// Allocates `out` for a loss's `params`, sized by that loss's workspace_size() and saved_size()
/// (found by argument-dependent lookup).
template <typename LossParams>
bool allocate_loss_outputs(GpuFixture& gpu, const LossParams& params, LossOutputs* out) {
  std::size_t workspace_bytes = 0;
  std::size_t saved_bytes = 0;
  return gpu.check(workspace_size(params, &workspace_bytes), "workspace_size") &&
         gpu.check(saved_size(params, &saved_bytes), "saved_size") &&
         gpu.allocate(sizeof(float), &out->loss) && gpu.allocate(saved_bytes, &out->saved) &&
         gpu.allocate(workspace_bytes, &out->workspace);
}

/// Calls a loss's `entry` point (forward, backward or forward_backward) with the fixture's handle
/// and stream and the workspace in `outputs`.
template <typename LossParams, typename Args>
Status call_loss(Status (*entry)(const Handle&, const LossParams&, const Args&, void*, std::size_t,
                                 Stream),
                 const GpuFixture& gpu, const LossParams& params, const Args& args,
                 const LossOutputs& outputs) {
  return entry(gpu.handle(), params, args, outputs.workspace.get(), outputs.workspace.bytes(),
               gpu.stream());
}

/// The settings a loss over logits (infonce::Params, mnr::InBatchParams) is measured at: inputs in
/// `dtype`, an fp32 logits tile, cosine, mean, not symmetric, no TF32. Shapes and the logit scale
/// are the caller's.
template <typename LossParams>
LossParams logits_loss_params(DType dtype) {
  LossParams params;
  params.dtype = dtype;
  params.logits_dtype = DType::kF32;
  params.similarity = Similarity::kCosine;
  params.reduction = Reduction::kMean;
  params.symmetric = false;
  params.allow_tf32 = false;
  return params;
}

/// Q (rows, dim), K (cols, dim) and the logits S (rows, cols).
struct LogitsShape {
  std::int64_t rows = 0, cols = 0, dim = 0;
};

/// A loss over the logits S = scale * Q K^T (InfoNCE; in-batch MNR with Q the anchors and K the
/// candidates), and what its cuBLAS floor needs.
struct LogitsLossBuffers {
  LogitsShape shape;
  DType dtype = DType::kF32;  // of Q, K and the library's gradients
  DeviceBuffer q;             // (rows, dim) dtype, random normal
  DeviceBuffer k;             // (cols, dim) dtype, random normal
  DeviceBuffer grad_q;        // (rows, dim) dtype
  DeviceBuffer grad_k;        // (cols, dim) dtype
  // The floor's outputs, fp32 as the library's GEMM outputs are in any dtype.
  DeviceBuffer floor_logits;  // (rows, cols): the floor's S, reused as its G in dtype
  DeviceBuffer floor_grad_q;  // (rows, dim)
  DeviceBuffer floor_grad_k;  // (cols, dim)
  LossOutputs outputs;

  /// Allocates every buffer above but `outputs` (see allocate_loss_outputs); without
  /// `with_floor`, not the floor's either (their B x M logits would not fit at large B).
  bool allocate(GpuFixture& gpu, const LogitsShape& logits_shape, DType input_dtype,
                bool with_floor = true);
  /// Q and K.
  std::size_t input_bytes() const;
  /// The floor's GEMMs over these buffers: S alone, or with `gradients` also dQ and dK.
  LogitsGemms floor_gemms(float scale, bool gradients) const;
};

/// Anchors (batch, dim) and `negatives` rows per anchor.
struct AnchorNegativeShape {
  std::int64_t batch = 0, negatives = 0, dim = 0;
};

/// The parameters of a loss over anchors and per-anchor negatives (repel::Params,
/// mnr::PerAnchorParams) at `shape`, inputs in `dtype`, mean; everything else at the loss's
/// defaults.
template <typename LossParams>
LossParams anchor_negative_params(const AnchorNegativeShape& shape, DType dtype) {
  LossParams params;
  params.batch = shape.batch;
  params.negatives = shape.negatives;
  params.dim = shape.dim;
  params.dtype = dtype;
  params.reduction = Reduction::kMean;
  return params;
}

/// A loss over anchors (B, D) and N negatives per anchor (B * N, D), row b * N + n (Repel; MNR
/// with per-anchor negatives adds its positives).
struct AnchorNegativeBuffers {
  AnchorNegativeShape shape;
  DType dtype = DType::kF32;    // of every buffer below but `outputs`
  DeviceBuffer anchors;         // (B, D) random normal
  DeviceBuffer negatives;       // (B * N, D) random normal
  DeviceBuffer grad_anchors;    // (B, D)
  DeviceBuffer grad_negatives;  // (B * N, D)
  LossOutputs outputs;

  /// Allocates every buffer above but `outputs` (see allocate_loss_outputs).
  bool allocate(GpuFixture& gpu, const AnchorNegativeShape& buffer_shape, DType input_dtype);
  /// Anchors and negatives.
  std::size_t input_bytes() const;
};

/// Registers the (B, N, D) at which the anchor-and-negatives losses are measured in `operation`,
/// as arguments "B", "N", "D"; anchor_negative_shape() reads them back. Every operation at
/// (4096, 64, 256), (16384, 64, 256), (4096, 16, 768); forward and forward_backward also on the
/// grid B in {256, 8192} x N in {1, 3, 16, 127} x D in {384, 768}.
benchmark::internal::Benchmark* at_anchor_negative_shapes(benchmark::internal::Benchmark* benchmark,
                                                          Operation operation);
AnchorNegativeShape anchor_negative_shape(const benchmark::State& state);

/// Rows the reference comparison samples (bench/reference_check.hpp).
inline constexpr int kSampledRows = 8;

/// The sampled rows R of an anchor-and-negatives problem, downloaded as doubles: anchors (|R|, D),
/// their negatives (|R| N, D) and, when given, positives (|R|, D).
struct SampledAnchorRows {
  std::vector<std::int64_t> rows;
  std::vector<double> anchors, negatives, positives;
};
/// Downloads the rows of `rows` from dense anchors (B, D), negatives (B N, D) and, unless null,
/// positives (B, D), all in `buffers.dtype`.
bool download_anchor_rows(GpuFixture& gpu, const AnchorNegativeBuffers& buffers,
                          const void* positives, const std::vector<std::int64_t>& rows,
                          SampledAnchorRows* out);
/// The rows of `rows` of a dense (B * per_row, D) device array in `dtype` (per_row rows each), as
/// doubles.
bool download_block_rows(GpuFixture& gpu, const void* base, std::int64_t per_row, std::int64_t dim,
                         DType dtype, const std::vector<std::int64_t>& rows,
                         std::vector<double>* out);

}  // namespace contrastive::bench
