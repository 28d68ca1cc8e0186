// How a block's threads share a row of a logits tile: thread t of T owns the chunks of N
// consecutive columns t, t + T, t + 2T, ... (each read with one vector load when the row is
// 16-byte aligned), then the columns of the tail past the last whole chunk, one at a time. Each
// thread visits its columns in increasing order, so its partial sums have a fixed order. Shared by
// the kernels and the CPU tests that check every column is visited exactly once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/host_device.hpp"

namespace contrastive::kernels {

/// chunk(c) for each whole chunk [c, c + N) that thread t of T owns, then element(c) for each of
/// its tail columns.
template <int N, typename Chunk, typename Element>
CONTRASTIVE_HOST_DEVICE inline void for_each_owned(std::int64_t cols, int t, int threads,
                                                   Chunk&& chunk, Element&& element) {
  const std::int64_t whole = cols / N * N;
  for (std::int64_t c = static_cast<std::int64_t>(t) * N; c < whole;
       c += static_cast<std::int64_t>(threads) * N) {
    chunk(c);
  }
  for (std::int64_t c = whole + t; c < cols; c += threads) element(c);
}

/// Whether rows of a tile (every `ld` elements of `element_bytes` from `data`) and, when given, of
/// its gradient `grad` (the same ld) take 16-byte chunks: both bases 16-byte aligned and the row
/// pitch a multiple of 16 bytes. The logits engine's tiles always do (256-byte aligned pieces,
/// rows padded to 128 elements); another caller gets the one-element path.
CONTRASTIVE_HOST_DEVICE inline bool rows_take_packs(const void* data, std::int64_t ld,
                                                    std::size_t element_bytes,
                                                    const void* grad = nullptr) {
  constexpr std::uint64_t kBytes = 16;
  return reinterpret_cast<std::uintptr_t>(data) % kBytes == 0 &&
         reinterpret_cast<std::uintptr_t>(grad) % kBytes == 0 &&
         static_cast<std::uint64_t>(ld) * element_bytes % kBytes == 0;
}

}  // namespace contrastive::kernels
