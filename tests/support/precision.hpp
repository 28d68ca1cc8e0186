// The precisions the GPU sweeps run (input dtype, logits tile dtype, TF32 on or off) and the
// host-side encodings the tests need: inputs rounded to a dtype, packed into its bytes for upload,
// and results unpacked to float. The rounding is the kernels' own (kernels/numeric.hpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "contrastive/types.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::testing {

struct Precision {
  DType dtype = DType::kF32;         ///< inputs and gradients
  DType logits_dtype = DType::kF32;  ///< the logits tile (InfoNCE, in-batch MNR)
  bool tf32 = false;                 ///< allow_tf32 (f32 inputs)

  /// f32 results are held to the fp32 error bounds (TF32 included, with its own unit roundoff);
  /// anything that stores a value in 16 bits to the rule for 16-bit precisions (tolerance.hpp).
  bool sixteen_bit() const { return dtype != DType::kF32 || logits_dtype != DType::kF32; }
};

/// "" for plain f32, else e.g. "_tf32", "_bf16", "_f16", "_bf16_bf16tile".
inline std::string precision_suffix(const Precision& p) {
  std::string suffix;
  if (p.dtype != DType::kF32 || p.logits_dtype != DType::kF32) {
    suffix += std::string("_") + dtype_name(p.dtype);
  }
  if (p.logits_dtype != DType::kF32)
    suffix += std::string("_") + dtype_name(p.logits_dtype) + "tile";
  if (p.tf32) suffix += "_tf32";
  return suffix;
}

/// Every precision besides plain f32, in the order the sweeps rotate through them (a bf16 logits
/// tile comes from bf16 inputs only).
inline std::vector<Precision> other_precisions() {
  return {{DType::kF32, DType::kF32, true},
          {DType::kBF16, DType::kF32, false},
          {DType::kF16, DType::kF32, false},
          {DType::kBF16, DType::kBF16, false}};
}

/// The value `value` takes once stored as `dtype` (round to nearest even, through fp32).
inline double round_to(DType dtype, double value) {
  const auto single = static_cast<float>(value);
  switch (dtype) {
    case DType::kF16: return kernels::round_to<__half>(single);
    case DType::kBF16: return kernels::round_to<__nv_bfloat16>(single);
    case DType::kF32: break;
  }
  return single;
}

inline std::vector<double> round_all(DType dtype, std::vector<double> values) {
  for (double& value : values) value = round_to(dtype, value);
  return values;
}

/// A TF32 tensor-core operand: fp32 with its 13 low mantissa bits dropped. Truncation errs by up
/// to one TF32 ulp, twice round-to-nearest's bound, so it is the pessimistic emulation.
inline float truncate_to_tf32(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits &= 0xFFFFE000u;
  std::memcpy(&value, &bits, sizeof bits);
  return value;
}

/// TF32's unit roundoff for the truncating emulation (10 stored mantissa bits): 2^-10.
constexpr double kTf32UnitRoundoff = 1.0 / (1 << 10);

/// `values` as the bytes of `dtype` elements (rounded to nearest even).
inline std::vector<unsigned char> encode(DType dtype, const std::vector<double>& values) {
  std::vector<unsigned char> bytes(values.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto single = static_cast<float>(values[i]);
    unsigned char* at = bytes.data() + i * dtype_size(dtype);
    if (dtype == DType::kF16) {
      const __half h = kernels::from_float<__half>(single);
      std::memcpy(at, &h, sizeof h);
    } else if (dtype == DType::kBF16) {
      const __nv_bfloat16 b = kernels::from_float<__nv_bfloat16>(single);
      std::memcpy(at, &b, sizeof b);
    } else {
      std::memcpy(at, &single, sizeof single);
    }
  }
  return bytes;
}

/// `count` elements of `dtype` at `bytes`, as float.
inline std::vector<float> decode(DType dtype, const unsigned char* bytes, std::size_t count) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) {
    const unsigned char* at = bytes + i * dtype_size(dtype);
    if (dtype == DType::kF16) {
      __half h;
      std::memcpy(&h, at, sizeof h);
      values[i] = kernels::to_float(h);
    } else if (dtype == DType::kBF16) {
      __nv_bfloat16 b;
      std::memcpy(&b, at, sizeof b);
      values[i] = kernels::to_float(b);
    } else {
      std::memcpy(&values[i], at, sizeof(float));
    }
  }
  return values;
}

}  // namespace contrastive::testing
