// Internal: a row-major GEMM described as plain data, and the three products of InfoNCE in that
// form. The library runs them through cuBLASLt (host/blas/gemm.hpp); the benchmarks run the same
// descriptions through plain cuBLAS as the floor, so both time exactly the same products.
// Accumulation is always fp32; A and B share one element type (f32, f16 or bf16) and C is f32 or,
// for a 16-bit logits tile, bf16.
//
// Row-major <-> column-major (cuBLAS and cuBLASLt are column-major): a row-major (r, c) matrix with
// leading dimension ld is, byte for byte, the column-major (c, r) matrix with the same ld, i.e. its
// transpose. So the row-major product C = op(A) op(B) is the column-major product
// C^T = op(B)^T op(A)^T: both wrappers pass B's memory first, keep each operand's transpose flag
// and exchange m and n. For InfoNCE's logits, row-major S[B, M] = Q K^T is column-major
// S^T = K Q^T.
#pragma once

#include <cstdint>

#include "contrastive/types.hpp"

namespace contrastive::detail {

/// Row-major C (m, n) = alpha * op(A) * op(B) + beta * C.
/// A is (m, k) with leading dimension lda, or (k, m) when transpose_a; B is (k, n), or (n, k) when
/// transpose_b; C is (m, n) with leading dimension ldc. beta == 0 overwrites C without reading it.
struct RowMajorGemm {
  bool transpose_a = false;
  bool transpose_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  std::int64_t lda = 0;
  const void* b = nullptr;
  std::int64_t ldb = 0;
  void* c = nullptr;
  std::int64_t ldc = 0;
  DType input_type = DType::kF32;   ///< of A and B
  DType output_type = DType::kF32;  ///< of C
  float alpha = 1.0f;
  float beta = 0.0f;
};

/// logits (rows, cols) = scale * Q (rows, dim) K (cols, dim)^T
inline RowMajorGemm logits_product(const void* q, std::int64_t ldq, const void* k, std::int64_t ldk,
                                   DType input_type, std::int64_t rows, std::int64_t cols,
                                   std::int64_t dim, void* logits, std::int64_t ld_logits,
                                   DType logits_type, float scale) {
  RowMajorGemm g;
  g.transpose_b = true;
  g.m = rows;
  g.n = cols;
  g.k = dim;
  g.a = q;
  g.lda = ldq;
  g.b = k;
  g.ldb = ldk;
  g.c = logits;
  g.ldc = ld_logits;
  g.input_type = input_type;
  g.output_type = logits_type;
  g.alpha = scale;
  return g;
}

/// grad_q (rows, dim) f32 dense (+)= scale * G (rows, cols) K (cols, dim)
inline RowMajorGemm grad_q_product(const void* grad_logits, std::int64_t ld_logits, const void* k,
                                   std::int64_t ldk, DType input_type, std::int64_t rows,
                                   std::int64_t cols, std::int64_t dim, float* grad_q, float scale,
                                   bool accumulate) {
  RowMajorGemm g;
  g.m = rows;
  g.n = dim;
  g.k = cols;
  g.a = grad_logits;
  g.lda = ld_logits;
  g.b = k;
  g.ldb = ldk;
  g.c = grad_q;
  g.ldc = dim;
  g.input_type = input_type;
  g.alpha = scale;
  g.beta = accumulate ? 1.0f : 0.0f;
  return g;
}

/// grad_k (cols, dim) f32 dense (+)= scale * G (rows, cols)^T Q (rows, dim)
inline RowMajorGemm grad_k_product(const void* grad_logits, std::int64_t ld_logits, const void* q,
                                   std::int64_t ldq, DType input_type, std::int64_t rows,
                                   std::int64_t cols, std::int64_t dim, float* grad_k, float scale,
                                   bool accumulate) {
  RowMajorGemm g;
  g.transpose_a = true;
  g.m = cols;
  g.n = dim;
  g.k = rows;
  g.a = grad_logits;
  g.lda = ld_logits;
  g.b = q;
  g.ldb = ldq;
  g.c = grad_k;
  g.ldc = dim;
  g.input_type = input_type;
  g.alpha = scale;
  g.beta = accumulate ? 1.0f : 0.0f;
  return g;
}

}  // namespace contrastive::detail
