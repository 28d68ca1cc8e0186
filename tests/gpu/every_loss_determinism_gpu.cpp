// Bitwise determinism of every loss on the GPU: 20 runs of forward, backward and forward_backward
// give the same bits; so do two runs at once on two streams, first with one handle (calls made one
// after the other from this thread: the handle holds no stream, and each run has its own workspace
// and outputs) and then with two handles. f32 and bf16, symmetric InfoNCE / in-batch MNR, enough
// rows for many blocks per kernel. Each test skips without a GPU.
#include <cuda_runtime_api.h>

#include <memory>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/device.hpp"
#include "support/loss_drivers.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::bitwise_equal;
using testing::Fill;
using testing::LossDriver;
using testing::LossFactory;
using testing::Shape;
using testing::Snapshot;

constexpr int kRuns = 20;

Shape determinism_shape(DType dtype) {
  Shape s;
  s.batch = 257;
  s.candidates = 31;
  s.dim = 96;
  s.dtype = dtype;
  s.symmetric = true;
  return s;
}

class ReliabilityDeterminism : public testing::EveryLossGpuTest {};

TEST_P(ReliabilityDeterminism, TwentyRunsGiveTheSameBits) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = GetParam().make();
  for (const DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    driver->make(determinism_shape(dtype), seed);
    driver->upload();
    for (const Pass pass : testing::kPasses) {
      SCOPED_TRACE(testing::pass_name(pass));
      ASSERT_TRUE(testing::run_and_wait(*driver, pass, handle_, stream_));
      const Snapshot first = driver->download(pass);
      for (int run = 1; run < kRuns; ++run) {
        driver->fill_outputs(pass, run % 2 == 0 ? Fill::kNaN : Fill::kPoisonBytes);
        ASSERT_TRUE(testing::run_and_wait(*driver, pass, handle_, stream_));
        ASSERT_TRUE(bitwise_equal(first, driver->download(pass))) << "run " << run;
      }
    }
  }
}

TEST_P(ReliabilityDeterminism, TwoStreamsAtOnceGiveTheSameBits) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const Shape s = determinism_shape(DType::kF32);
  const std::unique_ptr<LossDriver> one = GetParam().make(), two = GetParam().make();
  one->make(s, seed);
  two->make(s, seed);  // the same inputs, its own buffers and workspace
  one->upload();
  two->upload();
  ASSERT_TRUE(testing::run_and_wait(*one, Pass::kForwardBackward, handle_, stream_));
  const Snapshot expected = one->download(Pass::kForwardBackward);

  cudaStream_t other = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
  Handle second;
  ASSERT_EQ(Handle::create(&second), Status::kSuccess) << last_error_message();
  for (const bool two_handles : {false, true}) {
    SCOPED_TRACE(two_handles ? "two handles" : "one handle, calls one after the other");
    for (int round = 0; round < 3; ++round) {
      one->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
      two->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      // Both enqueued before either is waited for: the two streams run concurrently.
      ASSERT_EQ(one->run(Pass::kForwardBackward, handle_, stream_), Status::kSuccess)
          << last_error_message();
      ASSERT_EQ(two->run(Pass::kForwardBackward, two_handles ? second : handle_, other),
                Status::kSuccess)
          << last_error_message();
      ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(other), cudaSuccess);
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      EXPECT_TRUE(bitwise_equal(expected, one->download(Pass::kForwardBackward))) << "stream 1";
      EXPECT_TRUE(bitwise_equal(expected, two->download(Pass::kForwardBackward))) << "stream 2";
    }
  }
  cudaStreamDestroy(other);
}

INSTANTIATE_TEST_SUITE_P(Determinism, ReliabilityDeterminism,
                         ::testing::ValuesIn(testing::all_losses()), testing::loss_name);

}  // namespace
}  // namespace contrastive
