// Device helpers for the tests that link the GPU library: is a GPU usable, and RAII buffers that
// start poisoned (every byte 0xFF, a NaN in fp32) so an element the library leaves unwritten fails.
#pragma once

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/handle.hpp"
#include "contrastive/status.hpp"
#include "support/precision.hpp"

namespace contrastive::testing {

constexpr unsigned char kPoisonByte = 0xFF;

/// True when Handle::create succeeds on the current device; otherwise *why says why. Treats a
/// failing cudaGetDeviceCount (no driver: error 35) and a count of 0 alike.
inline bool gpu_usable(std::string* why) {
  static const std::string reason = [] {
    Handle handle;
    const Status status = Handle::create(&handle);
    return status == Status::kSuccess ? std::string() : std::string(last_error_message());
  }();
  if (why != nullptr) *why = reason;
  return reason.empty();
}

#define CONTRASTIVE_SKIP_WITHOUT_GPU()                                    \
  do {                                                                    \
    std::string contrastive_skip_reason_;                                 \
    if (!::contrastive::testing::gpu_usable(&contrastive_skip_reason_)) { \
      GTEST_SKIP() << contrastive_skip_reason_;                           \
    }                                                                     \
  } while (0)

/// Base of the GPU test fixtures: skips (with the reason) without a GPU, else owns a handle and a
/// non-blocking stream. `Base` is ::testing::Test or ::testing::TestWithParam<Case>.
template <typename Base = ::testing::Test>
class GpuFixture : public Base {
 protected:
  void SetUp() override {
    CONTRASTIVE_SKIP_WITHOUT_GPU();
    ASSERT_EQ(Handle::create(&handle_), Status::kSuccess) << last_error_message();
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  /// Waits for the stream and checks that no CUDA error is pending.
  void synchronize() {
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  }

  Handle handle_;
  cudaStream_t stream_ = nullptr;
};

/// A device allocation of `count` elements of T, poisoned on creation.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(std::size_t count) : count_(count) {
    if (cudaMalloc(&data_, bytes() == 0 ? 1 : bytes()) != cudaSuccess) {
      data_ = nullptr;
      ADD_FAILURE() << "cudaMalloc of " << bytes() << " bytes failed";
      return;
    }
    poison();
  }
  ~DeviceArray() { cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() const { return static_cast<T*>(data_); }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

  // cudaMemset and a pageable cudaMemcpy run on the legacy default stream and may return before
  // the device is done, and the tests' streams are non-blocking (they do not wait for the legacy
  // stream): wait for the device, so no kernel of a test races a fill or an upload.
  void poison() {
    EXPECT_EQ(cudaMemset(data_, kPoisonByte, bytes()), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

  void upload(const std::vector<T>& values) {
    ASSERT_EQ(values.size(), count_);
    ASSERT_EQ(cudaMemcpy(data_, values.data(), bytes(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }

  std::vector<T> download() const {
    std::vector<T> values(count_);
    EXPECT_EQ(cudaMemcpy(values.data(), data_, bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return values;
  }

 private:
  void* data_ = nullptr;
  std::size_t count_ = 0;
};

/// `count` elements of a dtype chosen at run time (the inputs and gradients of a precision sweep),
/// poisoned on creation (0xFFFF is a NaN in f16 and bf16 too); values cross as double / float.
class DeviceTensor {
 public:
  DeviceTensor(DType dtype, std::size_t count)
      : dtype_(dtype), count_(count), bytes_(count * dtype_size(dtype)) {}

  void* data() const { return bytes_.data(); }
  DType dtype() const { return dtype_; }
  std::size_t size() const { return count_; }
  void poison() { bytes_.poison(); }
  /// Rounds to the dtype (the tests' inputs are exact in it already).
  void upload(const std::vector<double>& values) {
    ASSERT_EQ(values.size(), count_);
    bytes_.upload(encode(dtype_, values));
  }
  std::vector<float> download() const {
    const std::vector<unsigned char> bytes = bytes_.download();
    return decode(dtype_, bytes.data(), count_);
  }

 private:
  DType dtype_;
  std::size_t count_;
  DeviceArray<unsigned char> bytes_;
};

}  // namespace contrastive::testing
