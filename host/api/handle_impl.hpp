// Internal: what a Handle owns, and the checks every call makes before it launches anything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "contrastive/handle.hpp"
#include "contrastive/types.hpp"

namespace contrastive {

namespace detail {

/// Everything cuBLASLt's heuristic sees; two GEMMs with equal keys get the same algorithm.
struct GemmKey {
  bool transpose_a = false, transpose_b = false, allow_tf32 = false;
  DType input_type = DType::kF32, output_type = DType::kF32;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  std::uint32_t align_a = 0, align_b = 0, align_c = 0;
  std::size_t workspace_bytes = 0;

  auto tie() const {
    return std::tie(transpose_a, transpose_b, allow_tf32, input_type, output_type, m, n, k, lda,
                    ldb, ldc, align_a, align_b, align_c, workspace_bytes);
  }
  bool operator<(const GemmKey& other) const { return tie() < other.tie(); }
};

/// Descriptors and the chosen algorithm for one GemmKey, kept for the handle's lifetime; or, where
/// cuBLASLt offers no algorithm, the decision to run the GEMM through plain cuBLAS.
struct GemmPlan {
  cublasLtMatmulDesc_t operation = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algorithm{};
  bool plain_cublas = false;
};

}  // namespace detail

struct Handle::Impl {
  int device = -1;
  int compute_capability = 0;
  int multiprocessor_count = 0;
  std::size_t l2_cache_bytes = 0;
  cublasLtHandle_t cublaslt = nullptr;
  cublasHandle_t cublas = nullptr;  // the fallback for GEMMs cuBLASLt has no algorithm for
  std::map<detail::GemmKey, detail::GemmPlan> gemm_plans;

  ~Impl();
};

namespace detail {

/// kInvalidHandle for an empty handle, kWrongDevice when another device is current, kCudaError
/// when a CUDA error from before the call is pending (left pending for the caller, docs/c-api.md).
Status require_usable(const Handle& handle);

/// kCudaError with the runtime's name and text for `error`, prefixed by `what`.
Status cuda_failure(const char* what, cudaError_t error);

}  // namespace detail
}  // namespace contrastive
