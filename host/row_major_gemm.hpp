// Internal: a row-major fp32 GEMM described as plain data, and the three products of InfoNCE in
// that form. The library runs them through cuBLASLt (host/gemm.hpp); the benchmarks run the same
// descriptions through plain cuBLAS as the floor, so both time exactly the same products.
#pragma once

#include <cstdint>

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

/// logits (rows, cols) = scale * Q (rows, dim) K (cols, dim)^T
inline RowMajorGemm logits_product(const float* q, std::int64_t ldq, const float* k,
                                   std::int64_t ldk, std::int64_t rows, std::int64_t cols,
                                   std::int64_t dim, float* logits, std::int64_t ld_logits,
                                   float scale) {
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
  g.alpha = scale;
  return g;
}

/// grad_q (rows, dim) (+)= scale * G (rows, cols) K (cols, dim); dense output
inline RowMajorGemm grad_q_product(const float* grad_logits, std::int64_t ld_logits, const float* k,
                                   std::int64_t ldk, std::int64_t rows, std::int64_t cols,
                                   std::int64_t dim, float* grad_q, float scale, bool accumulate) {
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
  g.alpha = scale;
  g.beta = accumulate ? 1.0f : 0.0f;
  return g;
}

/// grad_k (cols, dim) (+)= scale * G (rows, cols)^T Q (rows, dim); dense output
inline RowMajorGemm grad_k_product(const float* grad_logits, std::int64_t ld_logits, const float* q,
                                   std::int64_t ldq, std::int64_t rows, std::int64_t cols,
                                   std::int64_t dim, float* grad_k, float scale, bool accumulate) {
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
  g.alpha = scale;
  g.beta = accumulate ? 1.0f : 0.0f;
  return g;
}

}  // namespace contrastive::detail
