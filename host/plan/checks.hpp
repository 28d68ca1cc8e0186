// Internal: the parameter checks every loss makes, each failure worded once:
//   "<loss>: <name> must be >= <minimum>, got <value>", "... must be finite and > 0, got ...",
//   "<loss>: <name> (<stride>) must be 0 (dense) or >= dim (<D>)", "<loss>: unknown <enum> value".
#pragma once

#include <cmath>
#include <cstdint>

#include "contrastive/status.hpp"
#include "contrastive/types.hpp"
#include "host/plan/error.hpp"

namespace contrastive::detail {

/// Largest B, M, n, N or D: kernels index rows and columns with 32-bit grid coordinates.
constexpr std::int64_t kMaxExtent = (std::int64_t{1} << 31) - 1;

inline Status require_at_least(const char* loss, const char* name, std::int64_t value,
                               std::int64_t minimum) {
  if (value < minimum) {
    return fail(Status::kInvalidArgument, "%s: %s must be >= %lld, got %lld", loss, name,
                static_cast<long long>(minimum), static_cast<long long>(value));
  }
  return Status::kSuccess;
}

inline Status require_positive_finite(const char* loss, const char* name, float value) {
  if (!(value > 0.0f) || !std::isfinite(value)) {
    return fail(Status::kInvalidArgument, "%s: %s must be finite and > 0, got %g", loss, name,
                static_cast<double>(value));
  }
  return Status::kSuccess;
}

/// A logit scale given on the host as `value`: a positive finite scale, or with log_scale its
/// log, finite, whose exp is a finite float once clamped at max_scale. max_scale is
/// finite and >= 0 (0: no clamp). (A value given on the device is read as it is: one that gives no
/// finite positive scale makes the results NaN.)
inline Status require_scale(const char* loss, const char* name, float value, bool log_scale,
                            float max_scale) {
  if (!(max_scale >= 0.0f) || !std::isfinite(max_scale)) {
    return fail(Status::kInvalidArgument,
                "%s: max_scale must be finite and >= 0 (0: no clamp), got %g", loss,
                static_cast<double>(max_scale));
  }
  if (!log_scale) return require_positive_finite(loss, name, value);
  const float scale = std::exp(value);
  const float clamped = max_scale > 0.0f && scale > max_scale ? max_scale : scale;
  if (!std::isfinite(value) || !std::isfinite(clamped)) {
    return fail(Status::kInvalidArgument,
                "%s: %s (log of the scale with log_scale) must be finite with exp(%s) a finite "
                "float (%s <= 88.72) unless max_scale clamps it, got %g",
                loss, name, name, name, static_cast<double>(value));
  }
  return Status::kSuccess;
}

inline Status require_stride(const char* loss, const char* name, std::int64_t stride,
                             std::int64_t dim) {
  if (stride != 0 && stride < dim) {
    return fail(Status::kInvalidArgument, "%s: %s (%lld) must be 0 (dense) or >= dim (%lld)", loss,
                name, static_cast<long long>(stride), static_cast<long long>(dim));
  }
  return Status::kSuccess;
}

inline Status require_known(const char* loss, DType dtype, const char* field = "dtype") {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    return fail(Status::kInvalidArgument, "%s: unknown %s value %d", loss, field,
                static_cast<int>(dtype));
  }
  return Status::kSuccess;
}

inline Status require_known(const char* loss, Similarity similarity) {
  if (similarity != Similarity::kCosine && similarity != Similarity::kDot) {
    return fail(Status::kInvalidArgument, "%s: unknown similarity value %d", loss,
                static_cast<int>(similarity));
  }
  return Status::kSuccess;
}

inline Status require_known(const char* loss, Tiling tiling) {
  if (tiling != Tiling::kAuto && tiling != Tiling::kMaterialized && tiling != Tiling::kTiled) {
    return fail(Status::kInvalidArgument, "%s: unknown tiling value %d", loss,
                static_cast<int>(tiling));
  }
  return Status::kSuccess;
}

inline Status require_known(const char* loss, Reduction reduction) {
  if (reduction != Reduction::kMean && reduction != Reduction::kSum &&
      reduction != Reduction::kNone) {
    return fail(Status::kInvalidArgument, "%s: unknown reduction value %d", loss,
                static_cast<int>(reduction));
  }
  return Status::kSuccess;
}

/// Bytes spanned by `rows` rows of `stride` elements (the last `dim` wide); false on overflow.
inline bool span_bytes(std::int64_t rows, std::int64_t stride, std::int64_t dim,
                       std::size_t element, std::uint64_t* bytes) {
  std::uint64_t elements = 0;
  return !__builtin_mul_overflow(static_cast<std::uint64_t>(rows - 1),
                                 static_cast<std::uint64_t>(stride), &elements) &&
         !__builtin_add_overflow(elements, static_cast<std::uint64_t>(dim), &elements) &&
         !__builtin_mul_overflow(elements, static_cast<std::uint64_t>(element), bytes);
}

/// The logits tile holds f32 or bf16 (an fp16 tile would overflow at 65504), and bf16 only from
/// bf16 inputs: cuBLAS writes a bf16 product from bf16 operands, not from f32 or f16 ones. Checked
/// after every invalid value, as each loss's check() reports what is invalid before what is
/// unsupported.
inline Status require_supported_logits(const char* loss, DType logits_dtype, DType dtype) {
  if (logits_dtype != DType::kF32 && logits_dtype != DType::kBF16) {
    return fail(Status::kNotSupported, "%s: logits_dtype must be f32 or bf16, got %s", loss,
                dtype_name(logits_dtype));
  }
  if (logits_dtype == DType::kBF16 && dtype != DType::kBF16) {
    return fail(Status::kNotSupported,
                "%s: a bf16 logits tile needs bf16 inputs (cuBLAS writes bf16 from bf16 operands), "
                "got dtype %s",
                loss, dtype_name(dtype));
  }
  return Status::kSuccess;
}

}  // namespace contrastive::detail
