// Internal: a RowMajorGemm (row_major_gemm.hpp) through plain cuBLAS, cublasGemmEx. The library
// falls back to it where cuBLASLt's heuristic offers no algorithm (odd alignments of 16-bit rows);
// the benchmarks time it as the floor.
// Row-major to column-major: host/blas/row_major_gemm.hpp.
#pragma once

#include <cublas_v2.h>

#include "host/blas/row_major_gemm.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::detail {

/// fp32 accumulation; TF32 tensor cores only for fp32 operands and only when asked for.
inline cublasComputeType_t compute_type(DType input_type, bool allow_tf32) {
  return allow_tf32 && input_type == DType::kF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                 : CUBLAS_COMPUTE_32F;
}

/// Enqueues `g` on the handle's stream (alpha and beta on the host).
inline cublasStatus_t cublas_gemm(cublasHandle_t handle, const RowMajorGemm& g, bool allow_tf32) {
  const cudaDataType_t in = kernels::cuda_data_type(g.input_type);
  return cublasGemmEx_64(handle, g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                         g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, g.n, g.m, g.k, &g.alpha, g.b,
                         in, g.ldb, g.a, in, g.lda, &g.beta, g.c,
                         kernels::cuda_data_type(g.output_type), g.ldc,
                         compute_type(g.input_type, allow_tf32), CUBLAS_GEMM_DEFAULT);
}

}  // namespace contrastive::detail
