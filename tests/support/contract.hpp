// What the API contract tests share: poisoned buffers that live on the device when a GPU is usable
// and on the host otherwise (the library never dereferences them on the failing paths under test),
// a pointer shifted off its alignment, and the library's wording of pointer and workspace failures.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support/device.hpp"

namespace contrastive::testing {

/// Base of the contract tests, which run everywhere: with a usable GPU a handle and a non-blocking
/// stream, without one an empty handle (every call then stops at the handle check, after the
/// arguments it is tested on). `Base` is ::testing::Test or ::testing::TestWithParam<Case>.
template <typename Base = ::testing::Test>
class ContractFixture : public Base {
 protected:
  void SetUp() override {
    on_device_ = gpu_usable(nullptr);
    if (on_device_) {
      ASSERT_EQ(Handle::create(&handle_), Status::kSuccess) << last_error_message();
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
    }
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  bool on_device_ = false;
  Handle handle_;
  cudaStream_t stream_ = nullptr;
};

/// A byte buffer on the device when `on_device`, else on the host, every byte kPoisonByte.
class Block {
 public:
  Block(std::size_t bytes, bool on_device) : bytes_(bytes) {
    if (on_device) {
      device_ = std::make_unique<DeviceArray<unsigned char>>(bytes);
    } else {
      host_.assign(bytes, kPoisonByte);
    }
  }
  void* data() { return device_ ? static_cast<void*>(device_->data()) : host_.data(); }
  std::vector<unsigned char> contents() const { return device_ ? device_->download() : host_; }
  /// Every byte still holds the poison.
  bool untouched() const {
    for (unsigned char byte : contents()) {
      if (byte != kPoisonByte) return false;
    }
    return true;
  }
  void fill_floats(const std::vector<float>& values) {
    std::vector<unsigned char> raw(bytes_);
    std::memcpy(raw.data(), values.data(), std::min(bytes_, values.size() * sizeof(float)));
    if (device_) {
      device_->upload(raw);
    } else {
      host_ = raw;
    }
  }

 private:
  std::size_t bytes_;
  std::unique_ptr<DeviceArray<unsigned char>> device_;
  std::vector<unsigned char> host_;
};

/// `pointer` + 1 byte: misaligned for every element type wider than a byte.
inline void* shifted(const void* pointer) {
  return const_cast<char*>(static_cast<const char*>(pointer)) + 1;
}

/// "<call>: <name> (<pointer>) is not aligned to <bytes> bytes", as the library words it.
inline std::string misaligned_message(const std::string& call, const char* name,
                                      const void* pointer, int bytes) {
  char text[200];
  std::snprintf(text, sizeof(text), "%s: %s (%p) is not aligned to %d bytes", call.c_str(), name,
                pointer, bytes);
  return text;
}

inline std::string workspace_too_small_message(const std::string& call, std::size_t bytes,
                                               std::size_t required) {
  return call + ": workspace of " + std::to_string(bytes) +
         " bytes is too small: workspace_size() asks for " + std::to_string(required);
}

inline std::string workspace_null_message(const std::string& call, std::size_t bytes) {
  return call + ": workspace is null but workspace_bytes is " + std::to_string(bytes);
}

}  // namespace contrastive::testing
