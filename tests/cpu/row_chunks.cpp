// The division of a tile row among a block's threads (kernels/row_chunks.hpp), as the row kernels
// of the softmax and sigmoid heads walk it: every column exactly once, whole chunks aligned to
// their width and in increasing order per thread, the tail one column at a time; and the test
// that decides when a tile takes 16-byte chunks.
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/row_chunks.hpp"

namespace contrastive::kernels {
namespace {

template <int N>
void expect_every_column_once(std::int64_t cols, int threads) {
  SCOPED_TRACE(::testing::Message()
               << "N = " << N << ", cols = " << cols << ", threads = " << threads);
  std::vector<int> visits(static_cast<std::size_t>(cols), 0);
  for (int t = 0; t < threads; ++t) {
    std::int64_t last = -1;
    auto visit = [&](std::int64_t c) {
      ASSERT_GE(c, 0);
      ASSERT_LT(c, cols);
      EXPECT_GT(c, last) << "a thread's columns in increasing order";
      last = c;
      ++visits[static_cast<std::size_t>(c)];
    };
    for_each_owned<N>(
        cols, t, threads,
        [&](std::int64_t c) {
          EXPECT_EQ(c % N, 0) << "a whole chunk starts on its width";
          EXPECT_LE(c + N, cols);
          for (int i = 0; i < N; ++i) visit(c + i);
        },
        visit);
  }
  for (std::int64_t c = 0; c < cols; ++c) {
    ASSERT_EQ(visits[static_cast<std::size_t>(c)], 1) << "column " << c;
  }
}

TEST(RowChunks, EveryColumnOnceForAnyWidthAndThreadCount) {
  for (std::int64_t cols : {0, 1, 3, 4, 7, 8, 9, 255, 256, 257, 1023, 1024, 1025, 4099, 12289}) {
    for (int threads : {1, 32, 256}) {
      expect_every_column_once<1>(cols, threads);
      expect_every_column_once<4>(cols, threads);  // fp32: 16 bytes
      expect_every_column_once<8>(cols, threads);  // bf16 / fp16: 16 bytes
    }
  }
}

TEST(RowChunks, PacksNeedAlignedBasesAndPitch) {
  alignas(16) static float tile[64];
  alignas(16) static float grad[64];
  EXPECT_TRUE(rows_take_packs(tile, 128, sizeof(float)));
  EXPECT_TRUE(rows_take_packs(tile, 128, sizeof(float), grad));
  EXPECT_TRUE(rows_take_packs(tile, 8, 2));         // bf16 rows of 16 bytes
  EXPECT_FALSE(rows_take_packs(tile, 6, 2));        // a 12-byte pitch
  EXPECT_FALSE(rows_take_packs(tile + 1, 128, 4));  // a base off by 4 bytes
  EXPECT_FALSE(rows_take_packs(tile, 128, 4, grad + 2));
}

}  // namespace
}  // namespace contrastive::kernels
