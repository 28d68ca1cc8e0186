// The element types of inputs and gradients (fp32, fp16, bf16) and their conversions to and from
// fp32, for kernels and host alike: CUDA's conversion functions are __host__ __device__, so the
// CPU tests and the naive same-precision references round exactly as the kernels do.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <library_types.h>

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
