// The cuBLAS floor: the fp32 GEMMs an operation cannot avoid, run by plain cuBLAS on the fixture's
// stream (fp32 compute, TF32 off, as the library's own fp32 GEMMs). A loss kernel can at best
// match it, so (library time) / (floor time) says how much the rest of the operation costs.
#pragma once

#include <cstdint>

#include <cublas_api.h>

#include "bench/gpu_fixture.hpp"
#include "host/row_major_gemm.hpp"

namespace contrastive::bench {

/// The same GEMM descriptions the library runs (host/row_major_gemm.hpp).
using detail::RowMajorGemm;

/// Flops of an (m, n, k) GEMM: one multiply and one add per term of each dot product.
double gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k);

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

 private:
  bool set_up();

  GpuFixture& gpu_;
  bool ready_ = false;
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace contrastive::bench
