#include "bench/memory_floor.hpp"

#include <cuda_runtime_api.h>

#include <vector>

#include "bench/device_fill.hpp"

namespace contrastive::bench {
namespace {

// A copy reads each byte it copies once and writes it once.
constexpr std::size_t kCopyTrafficPerByte = 2;
// Any byte but zero: a copy's or a read's time does not depend on the values (cudaMalloc memory
// is not compressible), and filling with a memset costs nothing on the host.
constexpr int kSourceByte = 0x3f;
// The read kernel loads 16 bytes at a time.
constexpr std::size_t kReadGranule = 16;

}  // namespace

MemoryFloor::MemoryFloor(GpuFixture& gpu, std::size_t input_bytes, bool writes)
    : gpu_(gpu), writes_(writes) {
  if (!gpu_.ready()) return;
  const std::size_t bytes = writes ? input_bytes : input_bytes / kReadGranule * kReadGranule;
  ready_ = gpu_.allocate(bytes, &source_) &&
           gpu_.allocate(writes ? bytes : sizeof(unsigned), &destination_) &&
           gpu_.check(cudaMemsetAsync(source_.get(), kSourceByte, source_.bytes(), gpu_.stream()),
                      "cudaMemsetAsync(floor source)") &&
           gpu_.synchronize();
}

std::size_t MemoryFloor::bytes_moved() const {
  return writes_ ? kCopyTrafficPerByte * source_.bytes() : source_.bytes();
}

bool MemoryFloor::enqueue() {
  if (writes_) {
    return gpu_.check(cudaMemcpyAsync(destination_.get(), source_.get(), source_.bytes(),
                                      cudaMemcpyDeviceToDevice, gpu_.stream()),
                      "cudaMemcpyAsync(copy floor)");
  }
  return gpu_.check(read_bytes(source_.get(), source_.bytes(),
                               static_cast<unsigned*>(destination_.get()), gpu_.stream()),
                    "read_bytes(read floor)");
}

bool time_against_memory_floor(GpuFixture& gpu, const Work& library, std::size_t input_bytes,
                               bool writes, const Work* unfused) {
  MemoryFloor floor(gpu, input_bytes, writes);
  if (!floor.ready() || !floor.enqueue() || !gpu.synchronize()) return false;
  std::vector<GpuFixture::Timed> pieces = {{"median_ms", library},
                                           {floor.counter(), [&floor] { return floor.enqueue(); }}};
  if (unfused != nullptr) pieces.push_back({"unfused_ms", *unfused});
  std::vector<double> medians;
  if (!gpu.time_side_by_side(pieces, &medians)) return false;
  const auto moved = static_cast<double>(floor.bytes_moved());
  gpu.report_bytes(moved);
  gpu.report_memory_floor(medians[0], medians[1], moved);
  if (unfused != nullptr) gpu.report_unfused(medians[0], medians[2]);
  return true;
}

}  // namespace contrastive::bench
