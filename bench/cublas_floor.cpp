// Row-major <-> column-major: a row-major (r, c) matrix with leading dimension ld is, byte for
// byte, the column-major (c, r) matrix with the same ld. So the row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T: pass B's memory first, keep each operand's transpose flag,
// and exchange m and n.
#include "bench/cublas_floor.hpp"

#include <cublas_v2.h>

#include "kernels/numeric.hpp"

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

double LogitsGemms::flops() const {
  constexpr int kLogitsOnly = 1;
  constexpr int kWithGradients = 3;  // S, dQ, dK: the same (rows, cols, dim) product shape
  return (gradients() ? kWithGradients : kLogitsOnly) * gemm_flops(rows, cols, dim);
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
                      gemm.m, gemm.k, &gemm.alpha, gemm.b, kernels::cuda_data_type(gemm.input_type),
                      gemm.ldb, gemm.a, kernels::cuda_data_type(gemm.input_type), gemm.lda,
                      &gemm.beta, gemm.c, kernels::cuda_data_type(gemm.output_type), gemm.ldc,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

bool CublasFloor::enqueue(const LogitsGemms& gemms) {
  const std::int64_t rows = gemms.rows, cols = gemms.cols, dim = gemms.dim;
  const DType type = gemms.dtype;
  if (!enqueue(detail::logits_product(gemms.q, dim, gemms.k, dim, type, rows, cols, dim,
                                      gemms.logits, cols, DType::kF32, gemms.scale))) {
    return false;
  }
  if (!gemms.gradients()) return true;
  return enqueue(detail::grad_q_product(gemms.logits, cols, gemms.k, dim, type, rows, cols, dim,
                                        gemms.grad_q, gemms.scale, false)) &&
         enqueue(detail::grad_k_product(gemms.logits, cols, gemms.q, dim, type, rows, cols, dim,
                                        gemms.grad_k, gemms.scale, false));
}

bool time_against_cublas_floor(GpuFixture& gpu, const LogitsGemms& gemms, const Work& library,
                               double bytes_per_iteration) {
  CublasFloor floor(gpu);
  if (!floor.ready()) return false;
  const Work floor_work = [&] { return floor.enqueue(gemms); };
  double floor_milliseconds = 0.0;
  double library_milliseconds = 0.0;
  if (!gpu.time_against_floor(floor_work, library, &floor_milliseconds, &library_milliseconds)) {
    return false;
  }
  gpu.report_work(gemms.flops(), bytes_per_iteration);
  gpu.report_floor(library_milliseconds, floor_milliseconds);
  return true;
}

}  // namespace contrastive::bench
