// The floor's GEMMs go through host/blas/cublas_gemm.hpp: plain cuBLAS, the library's own
// descriptions.
#include "bench/cublas_floor.hpp"

#include <cublas_v2.h>

#include <vector>

#include "host/blas/cublas_gemm.hpp"

namespace contrastive::bench {
namespace {

// cuBLAS's own default workspace on Hopper; given explicitly so that nothing is allocated while
// a run is timed.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;
constexpr double kFlopsPerMultiplyAdd = 2.0;

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
  return gpu_.check(detail::cublas_gemm(handle_, gemm, /*allow_tf32=*/false), "cublasGemmEx");
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
                               double bytes_per_iteration, const Work* unfused) {
  CublasFloor floor(gpu);
  if (!floor.ready()) return false;
  const Work floor_work = [&] { return floor.enqueue(gemms); };
  // Once untimed: cuBLAS chooses its algorithms on first use.
  if (!floor_work() || !gpu.synchronize()) return false;
  std::vector<GpuFixture::Timed> pieces = {{"median_ms", library}, {"floor_ms", floor_work}};
  if (unfused != nullptr) pieces.push_back({"unfused_ms", *unfused});
  std::vector<double> medians;
  if (!gpu.time_side_by_side(pieces, &medians)) return false;
  gpu.report_work(gemms.flops(), bytes_per_iteration);
  gpu.report_floor(medians[0], medians[1]);
  if (unfused != nullptr) gpu.report_unfused(medians[0], medians[2]);
  return true;
}

}  // namespace contrastive::bench
