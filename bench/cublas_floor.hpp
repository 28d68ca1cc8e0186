// The cuBLAS floor: the GEMMs an operation cannot avoid, run by plain cuBLAS on the fixture's
// stream as the library runs them (inputs in their dtype, fp32 compute and outputs, TF32 off). A
// loss kernel can at best match it, so (library time) / (floor time) says how much the rest of the
// operation costs.
#pragma once

#include <cstdint>

#include <cublas_api.h>

#include "bench/gpu_fixture.hpp"
#include "host/blas/row_major_gemm.hpp"

namespace contrastive::bench {

/// The same GEMM descriptions the library runs (host/blas/row_major_gemm.hpp).
using detail::RowMajorGemm;

/// Flops of an (m, n, k) GEMM: one multiply and one add per term of each dot product.
double gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k);

/// The GEMMs a loss over the logits S = scale * Q K^T cannot avoid, with Q (rows, dim) and K
/// (cols, dim) dense: S, and for a gradient pass also dQ = scale * G K and dK = scale * G^T Q.
/// S goes to `logits`, which then stands in for G (only the time matters).
struct LogitsGemms {
  const void* q = nullptr;  ///< (rows, dim) dtype
  const void* k = nullptr;  ///< (cols, dim) dtype
  std::int64_t rows = 0, cols = 0, dim = 0;
  DType dtype = DType::kF32;  ///< of Q, K and G; S and the gradient sums are fp32, as the library's
  float scale = 1.0f;
  float* logits = nullptr;  ///< (rows, cols) fp32 S, then read as G in dtype (only time matters)
  float* grad_q = nullptr;  ///< (rows, dim) fp32; with grad_k null: S alone (a forward pass)
  float* grad_k = nullptr;  ///< (cols, dim) fp32

  bool gradients() const { return grad_q != nullptr && grad_k != nullptr; }
  double flops() const;
};

class CublasFloor {
 public:
  /// Creates the cuBLAS handle on gpu's stream with a workspace of its own; on failure reports it
  /// through `gpu` and ready() is false. `gpu` must be ready and outlive this object.
  explicit CublasFloor(GpuFixture& gpu);
  ~CublasFloor();
  CublasFloor(const CublasFloor&) = delete;
  CublasFloor& operator=(const CublasFloor&) = delete;

  bool ready() const { return ready_; }

  /// Enqueues `gemm` on the fixture's stream; reports a failure through the fixture.
  bool enqueue(const RowMajorGemm& gemm);
  /// Enqueues each GEMM of `gemms` in turn.
  bool enqueue(const LogitsGemms& gemms);

  /// The cuBLAS handle (on the fixture's stream, with its own workspace), for other baselines.
  cublasHandle_t handle() const { return handle_; }

 private:
  bool set_up();

  GpuFixture& gpu_;
  bool ready_ = false;
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
};

/// The compute-bound benchmark's timing: `library` (which must have run once), the cuBLAS floor
/// of `gemms` and, when given, the unfused baseline (run once already), timed side by side
/// (GpuFixture::time_side_by_side), reported as report_work(gemms.flops(), bytes_per_iteration),
/// report_floor() and report_unfused(). The floor writes gemms' outputs: validate the library's
/// before.
bool time_against_cublas_floor(GpuFixture& gpu, const LogitsGemms& gemms, const Work& library,
                               double bytes_per_iteration, const Work* unfused = nullptr);

}  // namespace contrastive::bench
