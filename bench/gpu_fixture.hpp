// The one GPU benchmark fixture: a library handle, a non-blocking work stream, CUDA events on that
// stream, and a scratch buffer for flushing L2. What every GPU benchmark here must control:
//   - time on the device (events on the work stream), reported with UseManualTime();
//   - cold L2 before each timed run (the flush runs outside the timed region);
//   - the host's launch latency kept out of the timed region: each timed piece of work is
//     captured once into a CUDA graph and timed as one graph launch, behind a host function that
//     holds the stream until the launch is enqueued (nvbench's "blocking kernel"); one launch
//     never fills the driver's queue, however many kernels the work has (the tiled path queues
//     thousands). Work that cannot be captured is timed as plain launches without the hold
//     (counter timed_as_graph = 0), where the launches' own latency may then show;
//   - the library and its baselines (floor, unfused path) sampled in turn, after a warm-up of
//     fixed length, so that none of them always runs first, last, cold or hot;
//   - random normal inputs, never zeros (zeros run faster than real data), in the measured dtype;
//   - nothing allocated or created inside the timed loop; each benchmark is one iteration of
//     Google Benchmark (Iterations(1)), so its buffers are allocated once, not once per attempt
//     at settling an iteration count.
// Without a usable GPU the fixture reports "no usable CUDA device: ..." through SkipWithError and
// makes no further CUDA call, so a benchmark only needs `if (!gpu.ready()) return;`.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "contrastive/handle.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"

namespace contrastive::bench {

/// Work enqueued on the fixture's stream. Returns false after it has reported a failure.
using Work = std::function<bool()>;

/// Elements of a dense (rows, cols) matrix.
std::size_t element_count(std::int64_t rows, std::int64_t cols);
/// Bytes of a dense (rows, cols) matrix of `dtype`.
std::size_t matrix_bytes(std::int64_t rows, std::int64_t cols, DType dtype);

/// Compulsory traffic of a pass over inputs of `input_bytes` in all: every input read once, and
/// for a gradient pass every input's gradient written once as well. Anything a fused kernel need
/// not store (logits, per-row statistics, the loss) is not counted.
std::size_t compulsory_bytes(std::size_t input_bytes, bool writes_gradients);

/// Sets what every benchmark here shares on `benchmark`: manual (event) time, in milliseconds, one
/// iteration (the fixture samples the work itself, see time_side_by_side).
benchmark::internal::Benchmark* timed_on_device(benchmark::internal::Benchmark* benchmark);

/// "<family>/<dtype>" ("infonce/forward/bf16"): every benchmark's name says its input dtype.
std::string family_name(const std::string& family, DType dtype);

/// A value on the device, stored in `dtype`, that must be finite after the untimed validation
/// call.
struct FiniteValue {
  const void* device_value = nullptr;
  const char* name = "";
  DType dtype = DType::kF32;
};

/// Device memory that frees itself. Empty until GpuFixture::allocate() fills it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return data_; }
  float* as_floats() const { return static_cast<float*>(data_); }
  std::size_t bytes() const { return bytes_; }

 private:
  friend class GpuFixture;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

class GpuFixture {
 public:
  /// Sets everything up for one run of `state`; on failure reports it and ready() is false.
  explicit GpuFixture(benchmark::State& state);
  ~GpuFixture();
  GpuFixture(const GpuFixture&) = delete;
  GpuFixture& operator=(const GpuFixture&) = delete;

  bool ready() const { return ready_; }
  const Handle& handle() const { return handle_; }
  cudaStream_t stream() const { return stream_; }

  /// Each returns true when the call succeeded; otherwise reports "<what>: <reason>" through
  /// SkipWithError and returns false, so callers write `if (!gpu.check(call, "what")) return;`.
  bool check(cudaError_t error, const char* what);
  bool check(cublasStatus_t status, const char* what);
  bool check(Status status, const char* what);
  /// Reports `message` through SkipWithError (the first report wins) and returns false.
  bool fail(const std::string& message);

  /// Allocates `bytes` of device memory into `out`.
  bool allocate(std::size_t bytes, DeviceBuffer* out);

  /// Allocates `count` elements of `dtype` into `out` and fills them as fill_random_normal() does.
  bool allocate_random_normal(std::size_t count, std::uint64_t seed, DType dtype,
                              DeviceBuffer* out);

  /// Fills the first `count` elements of `buffer` with standard normal values from `seed`, stored
  /// in `dtype`: the same values in every dtype (a counter-based generator on the device, drawn as
  /// floats and rounded to the dtype), on the work stream.
  bool fill_random_normal(const DeviceBuffer& buffer, std::size_t count, std::uint64_t seed,
                          DType dtype);

  /// Copies `bytes` from host `source` to device `destination` and waits for them.
  bool upload(const void* source, std::size_t bytes, void* destination);

  /// Copies `bytes` from device `source` to host `destination` and waits for them.
  bool download(const void* source, std::size_t bytes, void* destination);

  /// Waits for everything enqueued on the work stream.
  bool synchronize();

  /// Downloads each value (after the stream drains) and reports the first that is not finite.
  bool require_finite(const std::vector<FiniteValue>& values);

  /// Downloads `count` rows of `row_bytes` bytes each, row r starting at `base` + rows[r] *
  /// `row_stride_bytes`, into `out` (count * row_bytes bytes).
  bool download_rows(const void* base, std::size_t row_stride_bytes, std::size_t row_bytes,
                     const std::vector<std::int64_t>& rows, std::vector<unsigned char>* out);

  /// One of several pieces of work timed side by side: `counter` names its median ("median_ms"
  /// for the library, "floor_ms", "copy_ms", "read_ms", "unfused_ms").
  struct Timed {
    const char* counter;
    Work work;
  };

  /// Times every piece of work, each of which must have run once (a first launch may
  /// synchronize): captures each into a CUDA graph, warms them up in turn for a fixed time, then
  /// takes samples in rounds, each piece once a round in a rotating order, each sample with L2
  /// flushed and the stream held until its launch is enqueued, until the sampling time
  /// (CONTRASTIVE_BENCH_SAMPLE_SECONDS, default 0.25 s) has passed and at least a few rounds
  /// are done. Reports each median as its counter, "samples" and "timed_as_graph", and the first
  /// piece's median as the benchmark's one iteration. `medians` receives them in order.
  bool time_side_by_side(const std::vector<Timed>& pieces, std::vector<double>* medians);

  /// Counters for the work of one iteration: "flops" and "bytes", reported as rates per second.
  void report_work(double flops_per_iteration, double bytes_per_iteration);
  /// The counter "bytes" alone, for a memory-bound operation.
  void report_bytes(double bytes_per_iteration);

  /// Counter "ratio_to_floor" (library median / floor median, same run).
  void report_floor(double library_milliseconds, double floor_milliseconds);

  /// Counter "bandwidth_fraction_of_copy": the memory floor's median over the library's (same
  /// run; 1.0 moves the bytes as fast as the floor moves the same traffic), and "bytes_moved".
  void report_memory_floor(double library_milliseconds, double floor_milliseconds,
                           double bytes_moved);

  /// Counter "ratio_to_unfused" (library median / unfused median, same run).
  void report_unfused(double library_milliseconds, double unfused_milliseconds);

  /// Records the reference comparison made before timing: counters "reference_rows" (the rows
  /// compared) and "reference_worst" (the largest error / allowed error); a comparison that failed
  /// is reported through fail("reference check: <message>") and the run is not timed.
  bool report_reference(std::size_t rows, double worst_ratio, const std::string& failure);

 private:
  /// Set by the host when a timed run is fully enqueued; read by the host function holding the
  /// stream. Lives in the fixture, which waits for the stream before it is destroyed.
  struct StreamGate {
    std::atomic<bool> open{true};
    std::atomic<bool> timed_out{false};
  };

  /// The host function that holds the stream until gate_ opens (or times out).
  static void CUDART_CB hold_stream_until_open(void* gate);

  bool set_up();
  bool flush_l2();
  /// `work` captured into `*graph` (its instance); false, with nothing reported, when the work
  /// cannot be captured (then *graph is null).
  bool capture(const Work& work, cudaGraphExec_t* graph);
  /// One timed sample of `graph` (or of `work` when it is null), L2 flushed first.
  bool time_once(cudaGraphExec_t graph, const Work& work, double* milliseconds);

  benchmark::State& state_;
  bool ready_ = false;
  Handle handle_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  DeviceBuffer l2_flush_;
  StreamGate gate_;
  bool capturing_ = false;     // fail() only records while a capture is being tried
  std::string capture_error_;  // what stopped the last capture
};

/// The body of every benchmark main(): parses the flags, runs what was registered, returns the
/// exit status.
int run_registered_benchmarks(int argc, char** argv);

}  // namespace contrastive::bench
