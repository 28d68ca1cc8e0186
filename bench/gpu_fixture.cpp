#include "bench/gpu_fixture.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <utility>
#include <vector>

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
// Runs behind a baseline's median (a floor's, the unfused path's): odd, so the median is one
// measured run.
constexpr int kBaselineRuns = 7;

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

// Kept for the whole process: Google Benchmark calls a benchmark several times while it settles
// the iteration count, and the largest inputs take most of a second to draw.
const std::vector<float>& random_normal_values(std::size_t count, std::uint64_t seed) {
  static std::map<std::pair<std::size_t, std::uint64_t>, std::vector<float>> cache;
  auto [entry, inserted] = cache.try_emplace({count, seed});
  if (inserted) {
    std::mt19937_64 engine(seed);
    std::normal_distribution<float> standard_normal(0.0f, 1.0f);
    entry->second.resize(count);
    for (float& value : entry->second) value = standard_normal(engine);
  }
  return entry->second;
}

// random_normal_values() rounded to T, kept likewise.
template <typename T>
const std::vector<T>& random_normal_values_as(std::size_t count, std::uint64_t seed) {
  static std::map<std::pair<std::size_t, std::uint64_t>, std::vector<T>> cache;
  auto [entry, inserted] = cache.try_emplace({count, seed});
  if (inserted) {
    const std::vector<float>& values = random_normal_values(count, seed);
    entry->second.reserve(count);
    for (const float value : values) entry->second.push_back(kernels::from_float<T>(value));
  }
  return entry->second;
}

// The host copy of `count` standard normals from `seed`, stored in `dtype`.
const void* random_normal_data(std::size_t count, std::uint64_t seed, DType dtype) {
  switch (dtype) {
    case DType::kF16: return random_normal_values_as<__half>(count, seed).data();
    case DType::kBF16: return random_normal_values_as<__nv_bfloat16>(count, seed).data();
    case DType::kF32: break;
  }
  return random_normal_values(count, seed).data();
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
  return benchmark->UseManualTime()->Unit(benchmark::kMillisecond);
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
  state_.SkipWithError(message.c_str());
  return false;
}

bool GpuFixture::check(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return true;
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
  // On the work stream: a plain cudaMemcpy runs on the legacy stream, which a non-blocking stream
  // does not wait for.
  if (!check(cudaMemcpyAsync(buffer.get(), random_normal_data(count, seed, dtype), bytes,
                             cudaMemcpyHostToDevice, stream_),
             "cudaMemcpyAsync(inputs)")) {
    return false;
  }
  return synchronize();
}

bool GpuFixture::download(const void* source, std::size_t bytes, void* destination) {
  if (!check(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToHost, stream_),
             "cudaMemcpyAsync(download)")) {
    return false;
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

bool GpuFixture::enqueue_timed_run(const Work& work) {
  // The flush is enqueued before the start event, so it is outside the measured interval.
  return flush_l2() && check(cudaEventRecord(start_, stream_), "cudaEventRecord(start)") &&
         work() && check(cudaEventRecord(stop_, stream_), "cudaEventRecord(stop)");
}

bool GpuFixture::time_once(const Work& work, double* milliseconds) {
  gate_.open.store(false, std::memory_order_release);
  if (!check(cudaLaunchHostFunc(stream_, hold_stream_until_open, &gate_), "cudaLaunchHostFunc")) {
    gate_.open.store(true, std::memory_order_release);
    return false;
  }
  const bool enqueued = enqueue_timed_run(work);
  gate_.open.store(true, std::memory_order_release);
  if (!enqueued) return false;
  if (!check(cudaEventSynchronize(stop_), "cudaEventSynchronize(stop)")) return false;
  if (gate_.timed_out.exchange(false, std::memory_order_acq_rel)) {
    return fail("a call synchronized while the stream was held for a timed run");
  }
  float elapsed = 0.0f;
  if (!check(cudaEventElapsedTime(&elapsed, start_, stop_), "cudaEventElapsedTime")) return false;
  *milliseconds = elapsed;
  return true;
}

bool GpuFixture::median_milliseconds(const Work& work, int runs, double* milliseconds) {
  // Warm-up, with the stream not held: first launches load modules and choose algorithms.
  if (!work() || !synchronize()) return false;
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(runs));
  for (int run = 0; run < runs; ++run) {
    double sample = 0.0;
    if (!time_once(work, &sample)) return false;
    samples.push_back(sample);
  }
  *milliseconds = median_of(std::move(samples));
  return true;
}

bool GpuFixture::time_iterations(const Work& work, double* median_milliseconds) {
  std::vector<double> samples;
  for (auto _ : state_) {
    double sample = 0.0;
    if (!time_once(work, &sample)) break;
    state_.SetIterationTime(sample / kMillisecondsPerSecond);
    samples.push_back(sample);
  }
  if (state_.error_occurred()) return false;
  *median_milliseconds = median_of(std::move(samples));
  return true;
}

bool GpuFixture::time_against_floor(const Work& floor, const Work& library,
                                    double* floor_milliseconds, double* library_milliseconds) {
  return median_milliseconds(floor, kBaselineRuns, floor_milliseconds) &&
         time_iterations(library, library_milliseconds);
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
  // The Time column is the mean; the ratio compares medians, so the library's is shown too.
  state_.counters["median_ms"] = library_milliseconds;
  state_.counters["floor_ms"] = floor_milliseconds;
  state_.counters["ratio_to_floor"] = library_milliseconds / floor_milliseconds;
}

void GpuFixture::report_copy_floor(double library_milliseconds, double copy_milliseconds) {
  state_.counters["median_ms"] = library_milliseconds;
  state_.counters["copy_ms"] = copy_milliseconds;
  state_.counters["bandwidth_fraction_of_copy"] = copy_milliseconds / library_milliseconds;
}

bool GpuFixture::time_unfused(const Work& unfused, const FiniteValue& loss) {
  double milliseconds = 0.0;
  if (!unfused() || !require_finite({loss}) ||
      !median_milliseconds(unfused, kBaselineRuns, &milliseconds)) {
    return false;
  }
  state_.counters["unfused_ms"] = milliseconds;
  state_.counters["ratio_to_unfused"] = state_.counters["median_ms"].value / milliseconds;
  return true;
}

// ---- main --------------------------------------------------------------------------------------

int run_registered_benchmarks(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace contrastive::bench
