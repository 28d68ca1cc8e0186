#include "bench/gpu_fixture.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/device_fill.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::bench {
namespace {

constexpr const char* kNoDevicePrefix = "no usable CUDA device: ";
// A buffer twice the size of L2 evicts everything a previous run left there.
constexpr std::size_t kL2FlushSizeFactor = 2;
constexpr int kL2FlushByte = 0;
constexpr double kMillisecondsPerSecond = 1000.0;
// Far longer than enqueueing any run takes; reached only when a call synchronized while the stream
// was held, which would otherwise deadlock.
constexpr std::chrono::seconds kGateTimeout{1};
// Sampling: warm-up rounds for this long (and at least kMinWarmupRounds), then timed rounds until
// the sampling time has passed and at least kMinRounds are done, at most kMaxRounds.
constexpr double kWarmupSeconds = 0.05;
constexpr int kMinWarmupRounds = 2;
constexpr int kMinRounds = 5;
constexpr int kMaxRounds = 1000;
constexpr double kDefaultSampleSeconds = 0.25;
constexpr const char* kSampleSecondsVariable = "CONTRASTIVE_BENCH_SAMPLE_SECONDS";

double sample_seconds() {
  const char* text = std::getenv(kSampleSecondsVariable);
  if (text == nullptr) return kDefaultSampleSeconds;
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  return (end != text && value > 0.0 && std::isfinite(value)) ? value : kDefaultSampleSeconds;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string cuda_reason(cudaError_t error) {
  return std::string(cudaGetErrorName(error)) + " (" + cudaGetErrorString(error) + ")";
}

double median_of(std::vector<double> samples) {
  if (samples.empty()) return 0.0;
  std::sort(samples.begin(), samples.end());
  const std::size_t middle = samples.size() / 2;
  if (samples.size() % 2 == 1) return samples[middle];
  return (samples[middle - 1] + samples[middle]) / 2.0;
}

// One element of `dtype` at `bytes` (host memory), as a float.
template <typename T>
float stored_value(const unsigned char* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return kernels::to_float(value);
}

float stored_value(const unsigned char* bytes, DType dtype) {
  switch (dtype) {
    case DType::kF16: return stored_value<__half>(bytes);
    case DType::kBF16: return stored_value<__nv_bfloat16>(bytes);
    case DType::kF32: break;
  }
  return stored_value<float>(bytes);
}

}  // namespace

std::size_t element_count(std::int64_t rows, std::int64_t cols) {
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
}

std::size_t matrix_bytes(std::int64_t rows, std::int64_t cols, DType dtype) {
  return element_count(rows, cols) * dtype_size(dtype);
}

std::size_t compulsory_bytes(std::size_t input_bytes, bool writes_gradients) {
  return writes_gradients ? 2 * input_bytes : input_bytes;
}

benchmark::internal::Benchmark* timed_on_device(benchmark::internal::Benchmark* benchmark) {
  return benchmark->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);
}

std::string family_name(const std::string& family, DType dtype) {
  return family + "/" + dtype_name(dtype);
}

// ---- DeviceBuffer ------------------------------------------------------------------------------

DeviceBuffer::~DeviceBuffer() {
  // Nothing can be reported from a destructor; a failed free only leaks until the process ends.
  if (data_ != nullptr) (void)cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) (void)cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

// ---- GpuFixture: setup -------------------------------------------------------------------------

GpuFixture::GpuFixture(benchmark::State& state) : state_(state) {
  ready_ = set_up();
}

GpuFixture::~GpuFixture() {
  // A failed run may leave the gate's host function queued; it reads gate_, so let it finish.
  if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
  if (stop_ != nullptr) (void)cudaEventDestroy(stop_);
  if (start_ != nullptr) (void)cudaEventDestroy(start_);
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

bool GpuFixture::set_up() {
  // Without a driver cudaGetDeviceCount fails rather than reporting 0 devices: both mean "skip".
  int device_count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&device_count);
  if (count_error != cudaSuccess) {
    return fail(kNoDevicePrefix + std::string("cudaGetDeviceCount failed with ") +
                cuda_reason(count_error));
  }
  if (device_count == 0) return fail(kNoDevicePrefix + std::string("cudaGetDeviceCount found 0"));
  const Status created = Handle::create(&handle_);
  if (created != Status::kSuccess) {
    return fail(kNoDevicePrefix + std::string("Handle::create returned ") + status_string(created) +
                ": " + last_error_message());
  }
  if (!check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate")) {
    return false;
  }
  if (!check(cudaEventCreate(&start_), "cudaEventCreate(start)")) return false;
  if (!check(cudaEventCreate(&stop_), "cudaEventCreate(stop)")) return false;
  const std::size_t flush_bytes = kL2FlushSizeFactor * handle_.l2_cache_bytes();
  return flush_bytes == 0 || allocate(flush_bytes, &l2_flush_);
}

// ---- GpuFixture: errors ------------------------------------------------------------------------

bool GpuFixture::fail(const std::string& message) {
  if (capturing_) {  // a failed capture falls back to plain launches: not an error yet
    if (capture_error_.empty()) capture_error_ = message;
    return false;
  }
  state_.SkipWithError(message.c_str());
  return false;
}

bool GpuFixture::check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
  // Clear it: the library refuses to start while an earlier error is pending, and one benchmark's
  // out-of-memory allocation must not fail every later benchmark in the process.
  (void)cudaGetLastError();
  return fail(std::string(what) + ": " + cuda_reason(error));
}

bool GpuFixture::check(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return true;
  return fail(std::string(what) + ": " + cublasGetStatusName(status) + " (" +
              cublasGetStatusString(status) + ")");
}

bool GpuFixture::check(Status status, const char* what) {
  if (status == Status::kSuccess) return true;
  return fail(std::string(what) + ": " + status_string(status) + ": " + last_error_message());
}

// ---- GpuFixture: memory ------------------------------------------------------------------------

bool GpuFixture::allocate(std::size_t bytes, DeviceBuffer* out) {
  DeviceBuffer buffer;
  if (!check(cudaMalloc(&buffer.data_, bytes), "cudaMalloc")) return false;
  buffer.bytes_ = bytes;
  *out = std::move(buffer);
  return true;
}

bool GpuFixture::allocate_random_normal(std::size_t count, std::uint64_t seed, DType dtype,
                                        DeviceBuffer* out) {
  return allocate(count * dtype_size(dtype), out) && fill_random_normal(*out, count, seed, dtype);
}

bool GpuFixture::fill_random_normal(const DeviceBuffer& buffer, std::size_t count,
                                    std::uint64_t seed, DType dtype) {
  const std::size_t bytes = count * dtype_size(dtype);
  if (bytes > buffer.bytes()) {
    return fail("fill_random_normal: " + std::to_string(count) + " " + dtype_name(dtype) +
                " values do not fit in " + std::to_string(buffer.bytes()) + " bytes");
  }
  return check(fill_standard_normal(buffer.get(), count, seed, dtype, stream_),
               "fill_standard_normal") &&
         synchronize();
}

bool GpuFixture::download(const void* source, std::size_t bytes, void* destination) {
  if (!check(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync(download)")) {
    return false;
  }
  return synchronize();
}

bool GpuFixture::upload(const void* source, std::size_t bytes, void* destination) {
  if (!check(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyHostToDevice, stream_),
             "cudaMemcpyAsync(upload)")) {
    return false;
  }
  return synchronize();
}

bool GpuFixture::download_rows(const void* base, std::size_t row_stride_bytes,
                               std::size_t row_bytes, const std::vector<std::int64_t>& rows,
                               std::vector<unsigned char>* out) {
  out->resize(rows.size() * row_bytes);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto* source = static_cast<const unsigned char*>(base) +
                         static_cast<std::size_t>(rows[r]) * row_stride_bytes;
    if (!check(cudaMemcpyAsync(out->data() + r * row_bytes, source, row_bytes,
                               cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync(rows)")) {
      return false;
    }
  }
  return synchronize();
}

bool GpuFixture::synchronize() {
  return check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

bool GpuFixture::require_finite(const std::vector<FiniteValue>& values) {
  for (const FiniteValue& value : values) {
    unsigned char bytes[sizeof(float)] = {};
    if (!download(value.device_value, dtype_size(value.dtype), bytes)) return false;
    const float host_value = stored_value(bytes, value.dtype);
    if (!std::isfinite(host_value)) {
      return fail(std::string(value.name) + " is not finite: " + std::to_string(host_value));
    }
  }
  return true;
}

// ---- GpuFixture: timing ------------------------------------------------------------------------

// Runs on the stream ahead of a timed run and holds it until the host has enqueued all of it.
void CUDART_CB GpuFixture::hold_stream_until_open(void* gate) {
  auto* stream_gate = static_cast<StreamGate*>(gate);
  const auto deadline = std::chrono::steady_clock::now() + kGateTimeout;
  while (!stream_gate->open.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() > deadline) {
      stream_gate->timed_out.store(true, std::memory_order_release);
      return;
    }
    std::this_thread::yield();
  }
}

bool GpuFixture::flush_l2() {
  if (l2_flush_.bytes() == 0) return true;
  return check(cudaMemsetAsync(l2_flush_.get(), kL2FlushByte, l2_flush_.bytes(), stream_),
               "cudaMemsetAsync(L2 flush)");
}

bool GpuFixture::capture(const Work& work, cudaGraphExec_t* graph) {
  *graph = nullptr;
  capture_error_.clear();
  if (cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  capturing_ = true;
  const bool enqueued = work();
  capturing_ = false;
  cudaGraph_t captured = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &captured);
  const bool ok = enqueued && ended == cudaSuccess && captured != nullptr &&
                  cudaGraphInstantiate(graph, captured, 0) == cudaSuccess;
  if (captured != nullptr) (void)cudaGraphDestroy(captured);
  if (!ok) {
    if (*graph != nullptr) (void)cudaGraphExecDestroy(*graph);
    *graph = nullptr;
    (void)cudaGetLastError();  // the failed capture's error is not the next call's
  }
  return ok;
}

bool GpuFixture::time_once(cudaGraphExec_t graph, const Work& work, double* milliseconds) {
  // The flush is enqueued before the start event, so it is outside the measured interval.
  if (!flush_l2()) return false;
  const bool held = graph != nullptr;  // one launch: holding the stream cannot time out
  if (held) {
    gate_.open.store(false, std::memory_order_release);
    if (!check(cudaLaunchHostFunc(stream_, hold_stream_until_open, &gate_), "cudaLaunchHostFunc")) {
      gate_.open.store(true, std::memory_order_release);
      return false;
    }
  }
  const bool enqueued =
      check(cudaEventRecord(start_, stream_), "cudaEventRecord(start)") &&
      (held ? check(cudaGraphLaunch(graph, stream_), "cudaGraphLaunch") : work()) &&
      check(cudaEventRecord(stop_, stream_), "cudaEventRecord(stop)");
  gate_.open.store(true, std::memory_order_release);
  if (!enqueued) return false;
  if (!check(cudaEventSynchronize(stop_), "cudaEventSynchronize(stop)")) return false;
  if (gate_.timed_out.exchange(false, std::memory_order_acq_rel)) {
    return fail("the stream was held for over a second while one graph launch was enqueued");
  }
  float elapsed = 0.0f;
  if (!check(cudaEventElapsedTime(&elapsed, start_, stop_), "cudaEventElapsedTime")) return false;
  *milliseconds = elapsed;
  return true;
}

bool GpuFixture::time_side_by_side(const std::vector<Timed>& pieces, std::vector<double>* medians) {
  const std::size_t count = pieces.size();
  std::vector<cudaGraphExec_t> graphs(count, nullptr);
  bool all_graphs = true;
  std::string not_captured;
  for (std::size_t i = 0; i < count; ++i) {
    if (!capture(pieces[i].work, &graphs[i])) {
      all_graphs = false;
      if (not_captured.empty()) {
        not_captured = std::string(pieces[i].counter) + ": " +
                       (capture_error_.empty() ? "capture failed" : capture_error_);
      }
    }
  }
  std::vector<std::vector<double>> samples(count);
  bool ok = synchronize();
  // Warm-up: every piece in turn, for a fixed time.
  const auto warmup_start = std::chrono::steady_clock::now();
  for (int round = 0;
       ok && (round < kMinWarmupRounds || seconds_since(warmup_start) < kWarmupSeconds); ++round) {
    for (std::size_t i = 0; ok && i < count; ++i) {
      double ignored = 0.0;
      ok = time_once(graphs[i], pieces[i].work, &ignored);
    }
  }
  // Rounds, the order rotated each round.
  const double budget = sample_seconds();
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0;
       ok && round < kMaxRounds && (round < kMinRounds || seconds_since(start) < budget); ++round) {
    for (std::size_t k = 0; ok && k < count; ++k) {
      const std::size_t i = (k + static_cast<std::size_t>(round)) % count;
      double sample = 0.0;
      ok = time_once(graphs[i], pieces[i].work, &sample);
      if (ok) samples[i].push_back(sample);
    }
  }
  for (cudaGraphExec_t graph : graphs) {
    if (graph != nullptr) (void)cudaGraphExecDestroy(graph);
  }
  if (!ok) return false;
  medians->clear();
  for (std::size_t i = 0; i < count; ++i) {
    medians->push_back(median_of(samples[i]));
    state_.counters[pieces[i].counter] = medians->back();
  }
  state_.counters["samples"] = static_cast<double>(samples[0].size());
  state_.counters["timed_as_graph"] = all_graphs ? 1.0 : 0.0;
  if (!all_graphs) state_.SetLabel("plain launches (" + not_captured.substr(0, 100) + ")");
  for (auto _ : state_) {
    state_.SetIterationTime(medians->front() / kMillisecondsPerSecond);
  }
  return true;
}

// ---- GpuFixture: counters ----------------------------------------------------------------------

void GpuFixture::report_work(double flops_per_iteration, double bytes_per_iteration) {
  // Iteration-invariant rates: Google Benchmark multiplies by the iterations and divides by the
  // manual (event) time.
  state_.counters["flops"] =
      benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
  report_bytes(bytes_per_iteration);
}

void GpuFixture::report_bytes(double bytes_per_iteration) {
  state_.counters["bytes"] =
      benchmark::Counter(bytes_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void GpuFixture::report_floor(double library_milliseconds, double floor_milliseconds) {
  state_.counters["ratio_to_floor"] = library_milliseconds / floor_milliseconds;
}

void GpuFixture::report_memory_floor(double library_milliseconds, double floor_milliseconds,
                                     double bytes_moved) {
  state_.counters["bytes_moved"] = bytes_moved;
  state_.counters["bandwidth_fraction_of_copy"] = floor_milliseconds / library_milliseconds;
}

void GpuFixture::report_unfused(double library_milliseconds, double unfused_milliseconds) {
  state_.counters["ratio_to_unfused"] = library_milliseconds / unfused_milliseconds;
}

bool GpuFixture::report_reference(std::size_t rows, double worst_ratio,
                                  const std::string& failure) {
  state_.counters["reference_rows"] = static_cast<double>(rows);
  state_.counters["reference_worst"] = worst_ratio;
  if (!failure.empty()) return fail("reference check: " + failure);
  return true;
}

// ---- main --------------------------------------------------------------------------------------

// What ran the benchmarks, in the JSON's "context" beside Google Benchmark's own fields: the GPU,
// its clocks, the driver and the CUDA runtime (no NVML: CUDA's own queries; gpu-check.sh adds
// nvidia-smi's clocks, power and temperature before and after each binary).
void add_device_context() {
  int driver = 0, runtime = 0, device = 0;
  (void)cudaDriverGetVersion(&driver);
  (void)cudaRuntimeGetVersion(&runtime);
  auto version = [](int v) {
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  };
  benchmark::AddCustomContext("cuda_driver_api", driver > 0 ? version(driver) : "none");
  benchmark::AddCustomContext("cuda_runtime", version(runtime));
  // Debian's libbenchmark is built without NDEBUG, so Google Benchmark's own "library_build_type"
  // field says "debug": that is the build of Google Benchmark, not of this project.
  benchmark::AddCustomContext("google_benchmark_build_note",
                              "library_build_type describes the Google Benchmark package "
                              "(Debian's is a debug build), not contrastive, which is built " +
                                  std::string(CONTRASTIVE_BENCH_BUILD_TYPE));
  cudaDeviceProp properties{};
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
    (void)cudaGetLastError();
    benchmark::AddCustomContext("gpu", "none usable");
    return;
  }
  int sm_clock_khz = 0, memory_clock_khz = 0, bus_bits = 0;
  (void)cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, device);
  (void)cudaDeviceGetAttribute(&memory_clock_khz, cudaDevAttrMemoryClockRate, device);
  (void)cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
  benchmark::AddCustomContext("gpu", properties.name);
  benchmark::AddCustomContext("gpu_compute_capability", std::to_string(properties.major) + "." +
                                                            std::to_string(properties.minor));
  benchmark::AddCustomContext("gpu_memory_GiB",
                              std::to_string(static_cast<double>(properties.totalGlobalMem) /
                                             static_cast<double>(std::size_t{1} << 30)));
  benchmark::AddCustomContext("gpu_l2_MiB", std::to_string(properties.l2CacheSize >> 20));
  benchmark::AddCustomContext("gpu_max_sm_clock_MHz", std::to_string(sm_clock_khz / 1000));
  benchmark::AddCustomContext("gpu_max_memory_clock_MHz", std::to_string(memory_clock_khz / 1000));
  benchmark::AddCustomContext("gpu_memory_bus_bits", std::to_string(bus_bits));
}

int run_registered_benchmarks(int argc, char** argv) {
  add_device_context();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace contrastive::bench
