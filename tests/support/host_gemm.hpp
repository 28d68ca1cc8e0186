// A GEMM description (host/blas/row_major_gemm.hpp) executed on the host, for the CPU emulations
// of the logits engine's tile walk: the tests run every product the engine describes, leading
// dimensions included, over buffers of the element types the engine uses.
#pragma once

#include <cstdint>

#include <gtest/gtest.h>

#include "host/blas/row_major_gemm.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::testing {

/// Element `index` of a buffer of `dtype` (f32, f16 or bf16), as float.
inline float element_of(const void* data, DType dtype, std::int64_t index) {
  switch (dtype) {
    case DType::kF16: return kernels::to_float(static_cast<const __half*>(data)[index]);
    case DType::kBF16: return kernels::to_float(static_cast<const __nv_bfloat16*>(data)[index]);
    case DType::kF32: break;
  }
  return static_cast<const float*>(data)[index];
}

/// Stores `value` as element `index` of a buffer of `dtype`, rounded as the kernels round.
inline void store_element(void* data, DType dtype, std::int64_t index, float value) {
  switch (dtype) {
    case DType::kF16:
      static_cast<__half*>(data)[index] = kernels::from_float<__half>(value);
      return;
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(data)[index] = kernels::from_float<__nv_bfloat16>(value);
      return;
    case DType::kF32: break;
  }
  static_cast<float*>(data)[index] = value;
}

/// Row-major C = alpha op(A) op(B) + beta C from the description alone, accumulating in double;
/// A and B of input_type (f32, f16, bf16), C f32 or bf16 (rounded to nearest even on store, as
/// cuBLAS's epilogue does).
inline void run_on_host(const detail::RowMajorGemm& g) {
  ASSERT_TRUE(g.output_type == DType::kF32 || g.output_type == DType::kBF16);
  for (std::int64_t i = 0; i < g.m; ++i) {
    for (std::int64_t j = 0; j < g.n; ++j) {
      double sum = 0.0;
      for (std::int64_t t = 0; t < g.k; ++t) {
        const float x =
            element_of(g.a, g.input_type, g.transpose_a ? t * g.lda + i : i * g.lda + t);
        const float y =
            element_of(g.b, g.input_type, g.transpose_b ? j * g.ldb + t : t * g.ldb + j);
        sum += double{x} * y;
      }
      const std::int64_t at = i * g.ldc + j;
      const double old = g.beta == 0.0f ? 0.0 : g.beta * double{element_of(g.c, g.output_type, at)};
      store_element(g.c, g.output_type, at, static_cast<float>(g.alpha * sum + old));
    }
  }
}

}  // namespace contrastive::testing
