// Internal: the one place that talks to cuBLASLt. Callers think in row-major; the column-major
// translation happens here, once.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/handle.hpp"
#include "host/handle_impl.hpp"

namespace contrastive::detail {

/// Row-major fp32 C (m, n) = alpha * op(A) * op(B) + beta * C.
/// A is (m, k) with leading dimension lda, or (k, m) when transpose_a; B is (k, n), or (n, k) when
/// transpose_b; C is (m, n) with leading dimension ldc. beta == 0 overwrites C without reading it.
struct RowMajorGemm {
  bool transpose_a = false;
  bool transpose_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  std::int64_t lda = 0;
  const float* b = nullptr;
  std::int64_t ldb = 0;
  float* c = nullptr;
  std::int64_t ldc = 0;
  float alpha = 1.0f;
  float beta = 0.0f;
};

/// Runs `gemm` on `stream` with cuBLASLt (fp32 accumulation; TF32 tensor cores only when
/// allow_tf32). The algorithm is chosen once per shape, alignment and workspace size and cached in
/// the handle, so repeated calls give bitwise-identical results.
Status gemm(const Handle& handle, const RowMajorGemm& gemm, bool allow_tf32, void* workspace,
            std::size_t workspace_bytes, cudaStream_t stream);

void destroy_gemm_plan(GemmPlan* plan);

}  // namespace contrastive::detail
