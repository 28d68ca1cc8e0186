// Thread safety as documented: one handle per thread. Several threads, each with its own handle,
// stream and buffers, run every loss at once, repeatedly; every result must have the bits of the
// same call made on the test's own thread. Skips without a GPU.
#include <cuda_runtime_api.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/device.hpp"
#include "support/loss_drivers.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::Fill;
using testing::LossDriver;
using testing::LossFactory;
using testing::Shape;
using testing::Snapshot;

constexpr int kThreads = 4;
constexpr int kRounds = 5;

class ReliabilityThreads : public testing::GpuFixture<> {};

TEST_F(ReliabilityThreads, OneHandlePerThreadGivesTheSameBits) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  Shape s;
  s.batch = 129;
  s.candidates = 15;
  s.dim = 64;
  s.symmetric = true;
  const std::vector<LossFactory> losses = testing::all_losses();
  std::vector<Snapshot> expected;
  for (const LossFactory& factory : losses) {
    const std::unique_ptr<LossDriver> driver = factory.make();
    driver->make(s, seed);
    driver->upload();
    ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, handle_, stream_));
    expected.push_back(driver->download(Pass::kForwardBackward));
  }

  const int device = handle_.device();
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Everything this thread uses is its own: the handle, the stream, the buffers.
      if (cudaSetDevice(device) != cudaSuccess) {
        ++failures;
        return;
      }
      Handle handle;
      if (Handle::create(&handle) != Status::kSuccess) {
        errors[t] = last_error_message();
        ++failures;
        return;
      }
      cudaStream_t stream = nullptr;
      if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        ++failures;
        return;
      }
      for (std::size_t loss = 0; loss < losses.size(); ++loss) {
        const std::unique_ptr<LossDriver> driver = losses[loss].make();
        driver->make(s, seed);
        driver->upload();
        for (int round = 0; round < kRounds; ++round) {
          driver->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
          const Status status = driver->run(Pass::kForwardBackward, handle, stream);
          if (status != Status::kSuccess || cudaStreamSynchronize(stream) != cudaSuccess) {
            errors[t] = std::string(losses[loss].name) + ": " + last_error_message();
            ++failures;
            break;
          }
          if (!testing::bitwise_equal(expected[loss], driver->download(Pass::kForwardBackward))) {
            errors[t] = std::string(losses[loss].name) + " round " + std::to_string(round) +
                        ": not the bits of the single-thread call";
            ++mismatches;
          }
        }
      }
      cudaStreamDestroy(stream);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace contrastive
