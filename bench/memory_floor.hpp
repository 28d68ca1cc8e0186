// The memory floor of a memory-bound pass, moving the same traffic as the pass must:
//   - a forward pass reads its inputs once and writes nothing of their size: the floor reads
//     `input_bytes` (a read-only kernel, bench/device_fill.hpp) and is reported as "read_ms";
//   - a gradient pass (backward, forward_backward) reads its inputs and writes a gradient of the
//     same size: the floor is a device-to-device copy of `input_bytes`, which reads and writes
//     exactly that, reported as "copy_ms".
// A pass can at best match its floor, so (floor time) / (pass time) is the fraction of the floor's
// bandwidth the pass achieves, both timed side by side in the same process.
#pragma once

#include <cstddef>

#include "bench/gpu_fixture.hpp"

namespace contrastive::bench {

class MemoryFloor {
 public:
  /// Allocates the floor's buffers (a source of input_bytes, and a destination of as many when
  /// `writes`) and fills the source; on failure reports it through `gpu` and ready() is false.
  /// `gpu` must be ready and outlive this object.
  MemoryFloor(GpuFixture& gpu, std::size_t input_bytes, bool writes);

  bool ready() const { return ready_; }
  /// The counter its median goes to: "copy_ms" or "read_ms".
  const char* counter() const { return writes_ ? "copy_ms" : "read_ms"; }
  /// Bytes it moves: input_bytes read, and as many written when `writes`.
  std::size_t bytes_moved() const;

  /// Enqueues the floor on the fixture's stream; reports a failure through the fixture.
  bool enqueue();

 private:
  GpuFixture& gpu_;
  bool writes_ = false;
  bool ready_ = false;
  DeviceBuffer source_;
  DeviceBuffer destination_;  // the copy's; for the read, one word the kernel may write
};

/// The memory-bound benchmark's timing: `library` (which must have run once), its floor for
/// `input_bytes` (see MemoryFloor) and, when given, the unfused baseline (run once already),
/// timed side by side (GpuFixture::time_side_by_side), reported as report_bytes,
/// report_memory_floor and report_unfused.
bool time_against_memory_floor(GpuFixture& gpu, const Work& library, std::size_t input_bytes,
                               bool writes, const Work* unfused = nullptr);

}  // namespace contrastive::bench
