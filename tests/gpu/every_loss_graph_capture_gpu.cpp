// CUDA graphs, for every loss: forward, backward and forward_backward each captured on a
// non-blocking stream (cudaStreamCaptureModeGlobal, the strictest mode: any call that would
// allocate or synchronize invalidates the capture), then replayed three times with every output
// poisoned before each replay; the replays must give the bits of the same calls made eagerly. The
// library allocates nothing and synchronizes nothing inside a call, so capture must work:
//   - CapturedCallsReplayBitwise: after one eager call on the handle (its GEMM plans cached).
//   - FirstCallOnAFreshHandleCaptures: the very first call of a new handle, whose GEMM algorithm
//     choice (cuBLASLt's heuristic, host-side) happens inside the capture.
// Each test skips without a GPU.
#include <cuda_runtime_api.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

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

constexpr int kReplays = 3;

Shape graph_shape() {
  Shape s;
  s.batch = 67;
  s.candidates = 9;
  s.dim = 48;
  s.symmetric = true;
  return s;
}

/// An instantiated graph of the calls `passes` make, captured on `stream`; owns its graph.
class CapturedCalls {
 public:
  ~CapturedCalls() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
  }

  ::testing::AssertionResult capture(LossDriver& driver, const std::vector<Pass>& passes,
                                     const Handle& handle, cudaStream_t stream) {
    cudaError_t error = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
    if (error != cudaSuccess) {
      return ::testing::AssertionFailure() << "cudaStreamBeginCapture: " << cudaGetErrorName(error);
    }
    Status status = Status::kSuccess;
    std::string message;
    for (const Pass pass : passes) {
      status = driver.run(pass, handle, stream);
      if (status != Status::kSuccess) {
        message = std::string(testing::pass_name(pass)) + ": " + last_error_message();
        break;
      }
    }
    error = cudaStreamEndCapture(stream, &graph_);
    if (status != Status::kSuccess) {
      return ::testing::AssertionFailure()
             << "a call failed during capture: " << status_string(status) << ": " << message;
    }
    if (error != cudaSuccess) {
      return ::testing::AssertionFailure()
             << "cudaStreamEndCapture: " << cudaGetErrorName(error) << " ("
             << cudaGetErrorString(error) << "): something in the call broke the capture";
    }
    error = cudaGraphInstantiate(&exec_, graph_, 0);
    if (error != cudaSuccess) {
      return ::testing::AssertionFailure() << "cudaGraphInstantiate: " << cudaGetErrorName(error);
    }
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult replay(cudaStream_t stream) const {
    cudaError_t error = cudaGraphLaunch(exec_, stream);
    if (error == cudaSuccess) error = cudaStreamSynchronize(stream);
    if (error == cudaSuccess) error = cudaGetLastError();
    if (error != cudaSuccess) {
      return ::testing::AssertionFailure() << "graph replay: " << cudaGetErrorName(error);
    }
    return ::testing::AssertionSuccess();
  }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

class ReliabilityGraphs : public testing::EveryLossGpuTest {};

TEST_P(ReliabilityGraphs, CapturedCallsReplayBitwise) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = GetParam().make();
  driver->make(graph_shape(), seed);
  driver->upload();
  // Eager: forward, backward from its saved buffer, and forward_backward.
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForward, handle_, stream_));
  const Snapshot forward = driver->download(Pass::kForward);
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kBackward, handle_, stream_));
  const Snapshot backward = driver->download(Pass::kBackward);
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, handle_, stream_));
  const Snapshot both = driver->download(Pass::kForwardBackward);

  CapturedCalls forward_graph, backward_graph, both_graph, chained_graph;
  ASSERT_TRUE(forward_graph.capture(*driver, {Pass::kForward}, handle_, stream_));
  ASSERT_TRUE(backward_graph.capture(*driver, {Pass::kBackward}, handle_, stream_));
  ASSERT_TRUE(both_graph.capture(*driver, {Pass::kForwardBackward}, handle_, stream_));
  ASSERT_TRUE(chained_graph.capture(*driver, {Pass::kForward, Pass::kBackward}, handle_, stream_));
  for (int replay = 0; replay < kReplays; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    driver->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
    ASSERT_TRUE(forward_graph.replay(stream_));
    EXPECT_TRUE(bitwise_equal(forward, driver->download(Pass::kForward))) << "forward graph";
    driver->fill_outputs(Pass::kBackward, Fill::kPoisonBytes);
    ASSERT_TRUE(backward_graph.replay(stream_));
    EXPECT_TRUE(bitwise_equal(backward, driver->download(Pass::kBackward))) << "backward graph";
    driver->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
    ASSERT_TRUE(both_graph.replay(stream_));
    EXPECT_TRUE(bitwise_equal(both, driver->download(Pass::kForwardBackward)))
        << "forward_backward graph";
    driver->fill_outputs(Pass::kForwardBackward, Fill::kPoisonBytes);
    ASSERT_TRUE(chained_graph.replay(stream_));
    EXPECT_TRUE(bitwise_equal(forward, driver->download(Pass::kForward)))
        << "forward then backward in one graph: forward";
    EXPECT_TRUE(bitwise_equal(backward, driver->download(Pass::kBackward)))
        << "forward then backward in one graph: backward";
  }
  driver->expect_matches_reference(Pass::kForwardBackward);  // the chained graph's outputs
}

TEST_P(ReliabilityGraphs, FirstCallOnAFreshHandleCaptures) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = GetParam().make();
  driver->make(graph_shape(), seed);
  driver->upload();
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  Handle fresh;
  ASSERT_EQ(Handle::create(&fresh), Status::kSuccess) << last_error_message();
  CapturedCalls graph;
  ASSERT_TRUE(graph.capture(*driver, {Pass::kForwardBackward}, fresh, stream_));
  driver->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
  ASSERT_TRUE(graph.replay(stream_));
  const Snapshot replayed = driver->download(Pass::kForwardBackward);
  driver->expect_matches_reference(Pass::kForwardBackward);
  // The same call made eagerly on the same handle (its plans now cached) gives the same bits.
  driver->fill_outputs(Pass::kForwardBackward, Fill::kPoisonBytes);
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, fresh, stream_));
  EXPECT_TRUE(bitwise_equal(replayed, driver->download(Pass::kForwardBackward)));
}

// Scalars on the device (temperature, scale, bias): given as device pointers holding the params'
// values, every pass gives the bits of the host values (both are resolved by the same device
// arithmetic).
TEST_P(ReliabilityGraphs, DeviceScalarsGiveTheBitsOfTheHostValues) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = GetParam().make();
  if (driver->device_scalar_names().empty()) GTEST_SKIP() << driver->name() << ": no scalars";
  driver->make(graph_shape(), seed);
  driver->upload();
  for (const Pass pass : {Pass::kForward, Pass::kForwardBackward, Pass::kBackward}) {
    SCOPED_TRACE(testing::pass_name(pass));
    ASSERT_TRUE(testing::run_and_wait(*driver, pass, handle_, stream_));
    const Snapshot host = driver->download(pass);
    driver->use_device_scalars();
    driver->fill_outputs(pass, Fill::kNaN);
    ASSERT_TRUE(testing::run_and_wait(*driver, pass, handle_, stream_));
    EXPECT_TRUE(bitwise_equal(host, driver->download(pass)));
  }
}

// A training step with a learnable scalar, captured once as a CUDA graph: between replays the
// optimizer changes the scalar on the device (here: a new value uploaded), and each replay must
// give the bits of an eager call with that value given on the host, whose results match the
// float64 reference. No host read of the scalar anywhere.
TEST_P(ReliabilityGraphs, CapturedStepFollowsItsDeviceScalars) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> captured = GetParam().make();
  if (captured->device_scalar_names().empty()) GTEST_SKIP() << captured->name() << ": no scalars";
  captured->make(graph_shape(), seed);
  captured->upload();
  captured->use_device_scalars();
  ASSERT_TRUE(testing::run_and_wait(*captured, Pass::kForwardBackward, handle_, stream_));
  CapturedCalls step;
  ASSERT_TRUE(step.capture(*captured, {Pass::kForwardBackward}, handle_, stream_));
  for (const float logit_scale : {7.5f, 23.0f}) {
    SCOPED_TRACE("logit scale " + std::to_string(logit_scale));
    Shape shape = graph_shape();
    shape.logit_scale = logit_scale;
    const std::unique_ptr<LossDriver> eager = GetParam().make();
    eager->make(shape, seed);  // the same inputs, the new value in its params
    eager->upload();
    ASSERT_TRUE(testing::run_and_wait(*eager, Pass::kForwardBackward, handle_, stream_));
    eager->use_device_scalars();  // only to read the new values back
    for (const std::string& name : captured->device_scalar_names()) {
      const std::vector<float> value = eager->device_scalar(name).download();
      captured->device_scalar(name).upload({static_cast<double>(value.at(0))});
    }
    testing::settle();
    captured->fill_outputs(Pass::kForwardBackward, Fill::kNaN);
    ASSERT_TRUE(step.replay(stream_));
    EXPECT_TRUE(bitwise_equal(eager->download(Pass::kForwardBackward),
                              captured->download(Pass::kForwardBackward)));
    eager->expect_matches_reference(Pass::kForwardBackward);
  }
}

INSTANTIATE_TEST_SUITE_P(Graphs, ReliabilityGraphs, ::testing::ValuesIn(testing::all_losses()),
                         testing::loss_name);

}  // namespace
}  // namespace contrastive
