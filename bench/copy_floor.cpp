#include "bench/copy_floor.hpp"

#include <cuda_runtime_api.h>

namespace contrastive::bench {
namespace {

// A copy reads each byte it copies once and writes it once.
constexpr std::size_t kBytesMovedPerByteCopied = 2;
// Any byte but zero: a copy's time does not depend on the values (cudaMalloc memory is not
// compressible), and drawing up to a GiB of normals would cost seconds on the host.
constexpr int kSourceByte = 0x3f;

}  // namespace

CopyFloor::CopyFloor(GpuFixture& gpu, std::size_t bytes_moved) : gpu_(gpu) {
  ready_ = gpu_.ready() && set_up(bytes_moved / kBytesMovedPerByteCopied);
}

bool CopyFloor::set_up(std::size_t bytes_copied) {
  return gpu_.allocate(bytes_copied, &source_) && gpu_.allocate(bytes_copied, &destination_) &&
         gpu_.check(cudaMemsetAsync(source_.get(), kSourceByte, source_.bytes(), gpu_.stream()),
                    "cudaMemsetAsync(copy source)") &&
         gpu_.synchronize();
}

bool CopyFloor::enqueue() {
  return gpu_.check(cudaMemcpyAsync(destination_.get(), source_.get(), source_.bytes(),
                                    cudaMemcpyDeviceToDevice, gpu_.stream()),
                    "cudaMemcpyAsync(copy floor)");
}

bool time_against_copy_floor(GpuFixture& gpu, const Work& library, std::size_t bytes_moved) {
  CopyFloor floor(gpu, bytes_moved);
  if (!floor.ready()) return false;
  const Work floor_work = [&] { return floor.enqueue(); };
  double copy_milliseconds = 0.0;
  double library_milliseconds = 0.0;
  if (!gpu.time_against_floor(floor_work, library, &copy_milliseconds, &library_milliseconds)) {
    return false;
  }
  gpu.report_bytes(static_cast<double>(bytes_moved));
  gpu.report_copy_floor(library_milliseconds, copy_milliseconds);
  return true;
}

}  // namespace contrastive::bench
