// Row-major <-> column-major: a row-major (r, c) matrix with leading dimension ld is, byte for
// byte, the column-major (c, r) matrix with the same ld. So the row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T: pass B's memory first, keep each operand's transpose flag,
// and exchange m and n.
#include "bench/cublas_floor.hpp"

#include <cublas_v2.h>

namespace contrastive::bench {
namespace {

// cuBLAS's own default workspace on Hopper; given explicitly so that nothing is allocated while
// a run is timed.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;
constexpr double kFlopsPerMultiplyAdd = 2.0;

cublasOperation_t operation(bool transpose) {
  return transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
}

}  // namespace

double gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k) {
  return kFlopsPerMultiplyAdd * static_cast<double>(m) * static_cast<double>(n) *
         static_cast<double>(k);
}

CublasFloor::CublasFloor(GpuFixture& gpu) : gpu_(gpu) {
  ready_ = gpu_.ready() && set_up();
}

CublasFloor::~CublasFloor() {
  if (handle_ != nullptr) (void)cublasDestroy(handle_);
}

bool CublasFloor::set_up() {
  if (!gpu_.check(cublasCreate(&handle_), "cublasCreate")) return false;
  if (!gpu_.check(cublasSetStream(handle_, gpu_.stream()), "cublasSetStream")) return false;
  if (!gpu_.allocate(kCublasWorkspaceBytes, &workspace_)) return false;
  if (!gpu_.check(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()),
                  "cublasSetWorkspace")) {
    return false;
  }
  // Default math with CUBLAS_COMPUTE_32F below: no TF32, the library's setting for fp32 inputs.
  return gpu_.check(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
}

bool CublasFloor::enqueue(const RowMajorGemm& gemm) {
  return gpu_.check(
      cublasGemmEx_64(handle_, operation(gemm.transpose_b), operation(gemm.transpose_a), gemm.n,
                      gemm.m, gemm.k, &gemm.alpha, gemm.b, CUDA_R_32F, gemm.ldb, gemm.a, CUDA_R_32F,
                      gemm.lda, &gemm.beta, gemm.c, CUDA_R_32F, gemm.ldc, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

}  // namespace contrastive::bench
