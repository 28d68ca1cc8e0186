// Launchers of the row L2-normalization kernels (kernels/normalize.cu).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace contrastive::kernels {

/// x_hat (rows, dim) dense = x (rows, ld) / max(|x_row|, eps).
/// inv_norm_in: when not null, the saved 1 / max(|x_row|, eps) is used instead of recomputing it.
/// inv_norm_out: when not null (and inv_norm_in is null), receives 1 / max(|x_row|, eps) (rows).
cudaError_t launch_normalize_rows(const float* x, std::int64_t rows, std::int64_t ld,
                                  std::int64_t dim, float eps, const float* inv_norm_in,
                                  float* inv_norm_out, float* x_hat, cudaStream_t stream);

/// grad_x (rows, dim) dense = d/dx [x / max(|x|, eps)] applied to grad_x_hat (rows, dim) dense:
/// (g - x_hat (x_hat . g)) / |x| where |x| > eps, else g / eps.
cudaError_t launch_normalize_rows_backward(const float* x, std::int64_t rows, std::int64_t ld,
                                           std::int64_t dim, float eps, const float* grad_x_hat,
                                           float* grad_x, cudaStream_t stream);

}  // namespace contrastive::kernels
