// Launchers of the row L2-normalization kernels (kernels/normalize.cu), for T in float, __half and
// __nv_bfloat16 (explicitly instantiated there).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace contrastive::kernels {

/// x_hat (rows, dim) dense = x (rows, ld) / max(|x_row|, eps), rounded to T.
/// inv_norm_in: when not null, the saved 1 / max(|x_row|, eps) is used instead of recomputing it.
/// inv_norm_out: when not null (and inv_norm_in is null), receives 1 / max(|x_row|, eps) (rows).
template <typename T>
cudaError_t launch_normalize_rows(const T* x, std::int64_t rows, std::int64_t ld, std::int64_t dim,
                                  float eps, const float* inv_norm_in, float* inv_norm_out,
                                  T* x_hat, cudaStream_t stream);

/// grad_x (rows, dim) dense, T = d/dx [x / max(|x|, eps)] applied to grad_x_hat (rows, dim) fp32:
/// (g - x_hat (x_hat . g)) / |x| where |x| > eps, else g / eps. With `scale` (device, 1 value)
/// set, g is scale * grad_x_hat: the logit scale the gradient GEMMs left out.
template <typename T>
cudaError_t launch_normalize_rows_backward(const T* x, std::int64_t rows, std::int64_t ld,
                                           std::int64_t dim, float eps, const float* grad_x_hat,
                                           T* grad_x, cudaStream_t stream,
                                           const float* scale = nullptr);

/// out[i] = in[i] (times *scale when `scale`, a device value, is set) rounded to T, for `count`
/// values (fp32 accumulators into 16-bit gradients). `out` may be `in` (T = float).
template <typename T>
cudaError_t launch_convert(const float* in, std::int64_t count, T* out, cudaStream_t stream,
                           const float* scale = nullptr);

}  // namespace contrastive::kernels
