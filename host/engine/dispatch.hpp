// Internal: the one switch from a runtime DType to the element type the templated launchers take.
//   dispatch_dtype(params.dtype, [&](auto tag) { using T = typename decltype(tag)::type; ... });
#pragma once

#include "contrastive/types.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::detail {

template <typename T>
struct TypeTag {
  using type = T;
};

/// Calls `body(TypeTag<T>{})` with T the element type of `dtype` (float for kF32, __half for
/// kF16, __nv_bfloat16 for kBF16). The dtype was validated before: anything else is treated as f32.
template <typename Body>
decltype(auto) dispatch_dtype(DType dtype, Body&& body) {
  switch (dtype) {
    case DType::kF16: return body(TypeTag<__half>{});
    case DType::kBF16: return body(TypeTag<__nv_bfloat16>{});
    case DType::kF32: break;
  }
  return body(TypeTag<float>{});
}

/// The same for the logits tile, which holds float or __nv_bfloat16 only.
template <typename Body>
decltype(auto) dispatch_logits_dtype(DType logits_dtype, Body&& body) {
  if (logits_dtype == DType::kBF16) return body(TypeTag<__nv_bfloat16>{});
  return body(TypeTag<float>{});
}

}  // namespace contrastive::detail
