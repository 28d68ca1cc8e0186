// The test every loss's bad-input cases run through (Reliability/BadInput; the cases are in each
// loss's contract files, api/<loss>_contract.cpp and api/c_api_<loss>_contract.cpp, the buffers and
// calls in support/bad_input.hpp), and the names of the statuses.
#include <cuda_runtime_api.h>

#include <string>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "contrastive/contrastive.hpp"
#include "support/bad_input.hpp"

namespace contrastive {
namespace {

using testing::BadInput;

TEST_P(BadInput, ReturnsItsStatusAndMessageAndTouchesNothing) {
  const testing::BadCase& c = GetParam();
  EXPECT_EQ(c.call(*buffers_, handle_, stream_), c.status)
      << contrastive_status_string(c.status) << " expected; " << last_error_message();
  EXPECT_EQ(std::string(last_error_message()), c.message(*buffers_));
  for (const std::string& name : buffers_->outputs()) {
    EXPECT_TRUE(buffers_->block(name).untouched()) << name << " was written";
  }
  if (on_device_) {
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a CUDA error was left behind";
  }
}

// Every status the API can return has a name, and the C and C++ names agree; a value outside
// the enum is "unknown status", never null.
TEST(BadInputStatus, EveryValueHasAName) {
  for (int value = -2; value <= CONTRASTIVE_INTERNAL_ERROR + 2; ++value) {
    ASSERT_NE(contrastive_status_string(value), nullptr);
    if (value < CONTRASTIVE_SUCCESS || value > CONTRASTIVE_INTERNAL_ERROR) {
      EXPECT_STREQ(contrastive_status_string(value), "unknown status");
    }
  }
}

}  // namespace
}  // namespace contrastive
