// The copy floor: a device-to-device cudaMemcpyAsync on the fixture's stream that moves as many
// bytes as a memory-bound loss must. A copy reads and writes every byte it copies, so moving
// `bytes_moved` copies half of them. A loss pass can at best match it, so (copy time) / (loss time)
// is the fraction of the copy's bandwidth the loss achieves, measured in the same run.
#pragma once

#include <cstddef>

#include "bench/gpu_fixture.hpp"

namespace contrastive::bench {

class CopyFloor {
 public:
  /// Allocates a source and a destination of bytes_moved / 2 each and fills the source; on failure
  /// reports it through `gpu` and ready() is false. `gpu` must be ready and outlive this object.
  CopyFloor(GpuFixture& gpu, std::size_t bytes_moved);

  bool ready() const { return ready_; }

  /// Enqueues the copy on the fixture's stream; reports a failure through the fixture.
  bool enqueue();

 private:
  bool set_up(std::size_t bytes_copied);

  GpuFixture& gpu_;
  bool ready_ = false;
  DeviceBuffer source_;
  DeviceBuffer destination_;
};

/// The memory-bound benchmark's timing: the copy floor of `bytes_moved` and then `library` (which
/// must have run once) in the same run, reported as report_bytes(bytes_moved) and
/// report_copy_floor().
bool time_against_copy_floor(GpuFixture& gpu, const Work& library, std::size_t bytes_moved);

}  // namespace contrastive::bench
