// The call sequence of the per-anchor GPU tests (gpu/mnr_gpu.cpp, gpu/repel_gpu.cpp).
#pragma once

#include <cuda_runtime_api.h>

#include <gtest/gtest.h>

#include "contrastive/handle.hpp"
#include "contrastive/status.hpp"
#include "support/anchor_cases.hpp"

namespace contrastive::testing {

// forward, then backward from what it saved, then forward_backward with every output poisoned,
// then the same call again, which must give the same bits. `Device` owns the buffers of one loss.
template <typename Device, typename Params, typename Expected>
void check_every_call(Device& gpu, const Handle& handle, cudaStream_t stream, const Params& p,
                      const Expected& expected) {
  auto run = [&](Status status) {
    ASSERT_EQ(status, Status::kSuccess) << last_error_message();
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  };
  run(gpu.forward(handle, stream));
  expect_matches(p, gpu.results(), expected, true, false);
  run(gpu.backward(handle, stream));
  expect_matches(p, gpu.results(), expected, false, true);
  gpu.poison();
  run(gpu.forward_backward(handle, stream));
  const AnchorResults first = gpu.results();
  expect_matches(p, first, expected, true, true);
  gpu.poison();
  run(gpu.forward_backward(handle, stream));
  const AnchorResults again = gpu.results();
  EXPECT_EQ(first.loss, again.loss) << "not bitwise repeatable";
  EXPECT_EQ(first.grad_anchors, again.grad_anchors) << "not bitwise repeatable";
  EXPECT_EQ(first.grad_rest, again.grad_rest) << "not bitwise repeatable";
}

}  // namespace contrastive::testing
