// cuBLASLt GEMM with cached plans; plain cuBLAS where cuBLASLt's heuristic has no algorithm (for
// example 16-bit rows only 2-byte aligned).
//
// Scale type (alpha, beta) and accumulation are fp32 whatever the element types.
//
// Row-major descriptions become column-major calls as host/blas/row_major_gemm.hpp explains.
#include "host/blas/gemm.hpp"

#include <algorithm>
#include <new>

#include "host/blas/cublas_gemm.hpp"
#include "host/plan/error.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::detail {
namespace {

constexpr std::uint32_t kMaxAlignment = 256;  // what cuBLASLt assumes unless told otherwise

// Largest power of two (<= 256) dividing both the address and the leading dimension in bytes:
// cuBLASLt kernels need both aligned for their vector loads.
std::uint32_t alignment_of(const void* pointer, std::int64_t ld, DType type) {
  const std::uint64_t bits = reinterpret_cast<std::uintptr_t>(pointer) |
                             (static_cast<std::uint64_t>(ld) * dtype_size(type)) | kMaxAlignment;
  return static_cast<std::uint32_t>(bits & (~bits + 1));
}

Status blas_failure(const char* what, cublasStatus_t status) {
  return fail(Status::kCublasError, "%s failed: %s (%s)", what, cublasLtGetStatusName(status),
              cublasLtGetStatusString(status));
}

#define CONTRASTIVE_TRY_BLAS(call)                           \
  do {                                                       \
    const cublasStatus_t contrastive_blas_status_ = (call);  \
    if (contrastive_blas_status_ != CUBLAS_STATUS_SUCCESS) { \
      return blas_failure(#call, contrastive_blas_status_);  \
    }                                                        \
  } while (0)

// Column-major layout of a stored operand: (rows, cols) before the transpose flag is applied.
Status make_layout(cublasLtMatrixLayout_t* layout, DType type, std::int64_t rows, std::int64_t cols,
                   std::int64_t ld) {
  CONTRASTIVE_TRY_BLAS(cublasLtMatrixLayoutCreate(layout, kernels::cuda_data_type(type),
                                                  static_cast<std::uint64_t>(rows),
                                                  static_cast<std::uint64_t>(cols), ld));
  return Status::kSuccess;
}

Status build_plan(cublasLtHandle_t cublaslt, const GemmKey& key, GemmPlan* plan) {
  // Column-major problem: C' (m', n') = op(A') op(B'), m' = n, n' = m, A' = B, B' = A.
  const std::int64_t m = key.n, n = key.m, k = key.k;
  const cublasOperation_t op_a = key.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = key.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasComputeType_t compute = compute_type(key.input_type, key.allow_tf32);
  CONTRASTIVE_TRY_BLAS(cublasLtMatmulDescCreate(&plan->operation, compute, CUDA_R_32F));
  CONTRASTIVE_TRY_BLAS(cublasLtMatmulDescSetAttribute(plan->operation, CUBLASLT_MATMUL_DESC_TRANSA,
                                                      &op_a, sizeof(op_a)));
  CONTRASTIVE_TRY_BLAS(cublasLtMatmulDescSetAttribute(plan->operation, CUBLASLT_MATMUL_DESC_TRANSB,
                                                      &op_b, sizeof(op_b)));
  const DType in = key.input_type;
  CONTRASTIVE_TRY(op_a == CUBLAS_OP_N ? make_layout(&plan->a, in, m, k, key.ldb)
                                      : make_layout(&plan->a, in, k, m, key.ldb));
  CONTRASTIVE_TRY(op_b == CUBLAS_OP_N ? make_layout(&plan->b, in, k, n, key.lda)
                                      : make_layout(&plan->b, in, n, k, key.lda));
  CONTRASTIVE_TRY(make_layout(&plan->c, key.output_type, m, n, key.ldc));

  cublasLtMatmulPreference_t preference = nullptr;
  CONTRASTIVE_TRY_BLAS(cublasLtMatmulPreferenceCreate(&preference));
  const std::uint64_t workspace_bytes = key.workspace_bytes;
  const std::uint32_t align_a = key.align_b, align_b = key.align_a, align_c = key.align_c;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t status =
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const std::uint32_t*> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c}};
  for (const auto& [attribute, value] : alignments) {
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulPreferenceSetAttribute(preference, attribute, value, sizeof(*value));
    }
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(cublaslt, plan->operation, plan->a, plan->b, plan->c,
                                            plan->c, preference, 1, &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(preference);
  if (status != CUBLAS_STATUS_SUCCESS)
    return blas_failure("cublasLtMatmulAlgoGetHeuristic", status);
  if (found == 0) {
    plan->plain_cublas = true;  // cublasGemmEx takes any layout cuBLASLt turns down
    return Status::kSuccess;
  }
  plan->algorithm = result.algo;
  return Status::kSuccess;
}

}  // namespace

void destroy_gemm_plan(GemmPlan* plan) {
  if (plan->operation != nullptr) cublasLtMatmulDescDestroy(plan->operation);
  if (plan->a != nullptr) cublasLtMatrixLayoutDestroy(plan->a);
  if (plan->b != nullptr) cublasLtMatrixLayoutDestroy(plan->b);
  if (plan->c != nullptr) cublasLtMatrixLayoutDestroy(plan->c);
  *plan = GemmPlan{};
}

Status gemm(const Handle& handle, const RowMajorGemm& g, bool allow_tf32, void* workspace,
            std::size_t workspace_bytes, cudaStream_t stream) {
  Handle::Impl& impl = *handle.impl();
  GemmKey key;
  key.transpose_a = g.transpose_a;
  key.transpose_b = g.transpose_b;
  key.allow_tf32 = allow_tf32;
  key.input_type = g.input_type;
  key.output_type = g.output_type;
  key.m = g.m;
  key.n = g.n;
  key.k = g.k;
  key.lda = g.lda;
  key.ldb = g.ldb;
  key.ldc = g.ldc;
  key.align_a = alignment_of(g.a, g.lda, g.input_type);
  key.align_b = alignment_of(g.b, g.ldb, g.input_type);
  key.align_c = alignment_of(g.c, g.ldc, g.output_type);
  key.workspace_bytes = workspace_bytes;
  auto found = impl.gemm_plans.find(key);
  if (found == impl.gemm_plans.end()) {
    GemmPlan plan;
    const Status status = build_plan(impl.cublaslt, key, &plan);
    if (status != Status::kSuccess) {
      destroy_gemm_plan(&plan);
      return status;
    }
    try {
      found = impl.gemm_plans.emplace(key, plan).first;
    } catch (const std::bad_alloc&) {  // the C++ API returns statuses, never throws
      destroy_gemm_plan(&plan);
      return fail(Status::kInternalError, "gemm: out of host memory caching a GEMM plan");
    }
  }
  const GemmPlan& plan = found->second;
  if (plan.plain_cublas) {
    // The caller's workspace and stream, set per call: nothing allocated, nothing on stream 0.
    CONTRASTIVE_TRY_BLAS(cublasSetStream(impl.cublas, stream));
    CONTRASTIVE_TRY_BLAS(cublasSetWorkspace(impl.cublas, workspace, workspace_bytes));
    CONTRASTIVE_TRY_BLAS(cublas_gemm(impl.cublas, g, allow_tf32));
    return Status::kSuccess;
  }
  CONTRASTIVE_TRY_BLAS(cublasLtMatmul(impl.cublaslt, plan.operation, &g.alpha, g.b, plan.a, g.a,
                                      plan.b, &g.beta, g.c, plan.c, g.c, plan.c, &plan.algorithm,
                                      workspace, workspace_bytes, stream));
  return Status::kSuccess;
}

}  // namespace contrastive::detail
