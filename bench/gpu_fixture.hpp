// The one GPU benchmark fixture: a library handle, a non-blocking work stream, CUDA events on that
// stream, and a scratch buffer for flushing L2. What every GPU benchmark here must control:
//   - time on the device (events on the work stream), reported with UseManualTime();
//   - cold L2 before each timed run (the flush runs outside the timed region);
//   - the host's launch latency kept out of the timed region: the stream is held until the whole
//     run is enqueued (nvbench's "blocking kernel", done with a host function);
//   - random normal inputs, never zeros (zeros run faster than real data), in the measured dtype;
//   - nothing allocated or created inside the timed loop.
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

/// Sets what every benchmark here shares on `benchmark`: manual (event) time, in milliseconds.
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
  /// in `dtype`: the same values in every dtype, drawn as floats and rounded to the dtype (once per
  /// (count, seed, dtype) on the host), then copied on the work stream.
  bool fill_random_normal(const DeviceBuffer& buffer, std::size_t count, std::uint64_t seed,
                          DType dtype);

  /// Copies `bytes` from device `source` to host `destination` and waits for them.
  bool download(const void* source, std::size_t bytes, void* destination);

  /// Waits for everything enqueued on the work stream.
  bool synchronize();

  /// Downloads each value (after the stream drains) and reports the first that is not finite.
  bool require_finite(const std::vector<FiniteValue>& values);

  /// Flushes L2, then times `work` alone with events on the work stream. `work` must have run
  /// once before (see median_milliseconds): a first launch may synchronize, which the held stream
  /// turns into a timeout error instead of a result.
  bool time_once(const Work& work, double* milliseconds);

  /// One untimed warm-up run, then the median of `runs` time_once() measurements.
  bool median_milliseconds(const Work& work, int runs, double* milliseconds);

  /// The benchmark loop: every iteration is one time_once() reported with SetIterationTime(), so
  /// `work` must have run once before, as there. `median_milliseconds` receives the median.
  bool time_iterations(const Work& work, double* median_milliseconds);

  /// A baseline and the library in the same run: median_milliseconds() of `floor` over a few
  /// runs, then time_iterations() of `library`, which must have run once.
  bool time_against_floor(const Work& floor, const Work& library, double* floor_milliseconds,
                          double* library_milliseconds);

  /// Counters for the work of one iteration: "flops" and "bytes", reported as rates per second.
  void report_work(double flops_per_iteration, double bytes_per_iteration);
  /// The counter "bytes" alone, for a memory-bound operation.
  void report_bytes(double bytes_per_iteration);

  /// Counters "median_ms", "floor_ms" and "ratio_to_floor" (library median / floor median, same
  /// run).
  void report_floor(double library_milliseconds, double floor_milliseconds);

  /// Counters "median_ms", "copy_ms" and "bandwidth_fraction_of_copy" (copy median / library
  /// median, same run: 1.0 moves the bytes as fast as a device-to-device copy of them).
  void report_copy_floor(double library_milliseconds, double copy_milliseconds);

  /// The fusion's own baseline: `unfused` computes the same loss as a straightforward
  /// implementation does (cuBLAS, then one kernel per step). It runs once untimed, `loss` must then
  /// be finite, and the median of a few runs is reported as "unfused_ms" and "ratio_to_unfused"
  /// (library median / unfused median, same run). Call after the library's timing has reported
  /// median_ms.
  bool time_unfused(const Work& unfused, const FiniteValue& loss);

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
  bool enqueue_timed_run(const Work& work);

  benchmark::State& state_;
  bool ready_ = false;
  Handle handle_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  DeviceBuffer l2_flush_;
  StreamGate gate_;
};

/// The body of every benchmark main(): parses the flags, runs what was registered, returns the
/// exit status.
int run_registered_benchmarks(int argc, char** argv);

}  // namespace contrastive::bench
