// The element types of inputs and gradients (fp32, fp16, bf16) and their conversions to and from
// fp32, for kernels and host alike: CUDA's conversion functions are __host__ __device__, so the
// CPU tests and the naive same-precision references round exactly as the kernels do.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <library_types.h>
#include <math.h>

#include "contrastive/types.hpp"
#include "kernels/host_device.hpp"

namespace contrastive::kernels {

template <typename T>
CONTRASTIVE_HOST_DEVICE inline float to_float(T value);
template <>
CONTRASTIVE_HOST_DEVICE inline float to_float(float value) {
  return value;
}
template <>
CONTRASTIVE_HOST_DEVICE inline float to_float(__half value) {
  return __half2float(value);
}
template <>
CONTRASTIVE_HOST_DEVICE inline float to_float(__nv_bfloat16 value) {
  return __bfloat162float(value);
}

/// Round to nearest even; values beyond the type's range become +-inf, NaN stays NaN.
template <typename T>
CONTRASTIVE_HOST_DEVICE inline T from_float(float value);
template <>
CONTRASTIVE_HOST_DEVICE inline float from_float(float value) {
  return value;
}
template <>
CONTRASTIVE_HOST_DEVICE inline __half from_float(float value) {
  return __float2half_rn(value);
}
template <>
CONTRASTIVE_HOST_DEVICE inline __nv_bfloat16 from_float(float value) {
  return __float2bfloat16_rn(value);
}

/// The positive's terms of a softmax cross-entropy row, `lse - logit_0` and `p_0 - 1`, without the
/// cancellation of the direct forms: a confident row (logit_0 the largest by far) has
/// loss = log(1 + sum_{t != 0} e^{logit_t - logit_0}), which `lse - logit_0` rounds to 0 once it
/// falls below about 1e-7 |lse|. `max` is the row's largest logit, `others` is
/// sum_{t != 0} e^{logit_t - max}. When logit_0 is the largest, loss = log1p(others) and
/// p_0 - 1 = -others / (1 + others); otherwise p_0 < 1/2 and the direct forms lose nothing.
struct PositiveTerms {
  float lse;   ///< log-sum-exp of the row
  float loss;  ///< lse - logit_0
  float grad;  ///< p_0 - 1 = dLoss/dlogit_0
};

CONTRASTIVE_HOST_DEVICE inline PositiveTerms softmax_positive(float max, float logit0,
                                                              float others) {
  const float lse = max + logf(expf(logit0 - max) + others);
  if (logit0 == max) return {lse, log1pf(others), -others / (1.0f + others)};
  return {lse, lse - logit0, expf(logit0 - lse) - 1.0f};
}

/// The value `value` takes once stored as T.
template <typename T>
CONTRASTIVE_HOST_DEVICE inline float round_to(float value) {
  return to_float(from_float<T>(value));
}

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct DTypeOf<__half> {
  static constexpr DType value = DType::kF16;
};
template <>
struct DTypeOf<__nv_bfloat16> {
  static constexpr DType value = DType::kBF16;
};

/// The CUDA library's name of each element type (cuBLAS, cuBLASLt).
inline cudaDataType_t cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF32: break;
  }
  return CUDA_R_32F;
}

}  // namespace contrastive::kernels
