// Internal: the one place that talks to cuBLASLt. Callers think in row-major; the column-major
// translation (host/blas/row_major_gemm.hpp) happens in gemm.cpp, once.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "contrastive/handle.hpp"
#include "host/api/handle_impl.hpp"
#include "host/blas/row_major_gemm.hpp"

namespace contrastive::detail {

/// Runs `gemm` on `stream` with cuBLASLt (fp32 accumulation; TF32 tensor cores only when
/// allow_tf32). The algorithm is chosen once per shape, alignment and workspace size and cached in
/// the handle, so repeated calls give bitwise-identical results.
Status gemm(const Handle& handle, const RowMajorGemm& gemm, bool allow_tf32, void* workspace,
            std::size_t workspace_bytes, cudaStream_t stream);

void destroy_gemm_plan(GemmPlan* plan);

}  // namespace contrastive::detail
