// 16-byte vector access to rows of fp32 / fp16 / bf16 elements, with the test that decides when a
// row set may use it: the base address, the leading dimension and the row length must all be
// multiples of 16 bytes. Kernels take the vector path when it holds and a scalar path otherwise.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/numeric.hpp"
#include "kernels/row_chunks.hpp"

namespace contrastive::kernels {

constexpr int kVectorBytes = 16;

template <typename T>
constexpr int kVectorElements = kVectorBytes / static_cast<int>(sizeof(T));

CONTRASTIVE_HOST_DEVICE inline bool vectorizable(const void* base, std::int64_t ld,
                                                 std::int64_t dim, std::size_t element_bytes) {
  return reinterpret_cast<std::uintptr_t>(base) % kVectorBytes == 0 &&
         (static_cast<std::uint64_t>(ld) * element_bytes) % kVectorBytes == 0 &&
         (static_cast<std::uint64_t>(dim) * element_bytes) % kVectorBytes == 0;
}

/// Reads kVectorElements<T> consecutive elements at a 16-byte aligned address, as fp32.
template <typename T>
__device__ inline void load_vector(const T* address, float (&out)[kVectorElements<T>]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(address);
  T values[kVectorElements<T>];
  std::memcpy(values, &raw, sizeof(raw));
#pragma unroll
  for (int i = 0; i < kVectorElements<T>; ++i) out[i] = to_float(values[i]);
}

/// Writes kVectorElements<T> fp32 values, rounded to T, at a 16-byte aligned address.
template <typename T>
__device__ inline void store_vector(T* address, const float (&in)[kVectorElements<T>]) {
  T values[kVectorElements<T>];
#pragma unroll
  for (int i = 0; i < kVectorElements<T>; ++i) values[i] = from_float<T>(in[i]);
  uint4 raw;
  std::memcpy(&raw, values, sizeof(raw));
  *reinterpret_cast<uint4*>(address) = raw;
}

/// N consecutive elements of T moved as one aligned access (N * sizeof(T) bytes, at most 16): the
/// chunk of a row that one thread reads (and, for G, writes) at once.
template <typename T, int N>
struct alignas(N * sizeof(T)) Pack {
  T values[N];
};

template <int N, typename T>
__device__ inline void load_pack(const T* address, float (&out)[N]) {
  const Pack<T, N> pack = *reinterpret_cast<const Pack<T, N>*>(address);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_float(pack.values[i]);
}

template <int N, typename T>
__device__ inline void store_pack(T* address, const float (&in)[N]) {
  Pack<T, N> pack;
#pragma unroll
  for (int i = 0; i < N; ++i) pack.values[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack<T, N>*>(address) = pack;
}

/// visit(j, value) for each column j of a row that this thread (threadIdx.x of Threads) owns
/// (kernels/row_chunks.hpp), in its fixed order, reading N elements at a time.
template <int N, int Threads, typename L, typename Visit>
__device__ inline void visit_row(const L* logits, std::int64_t cols, Visit&& visit) {
  for_each_owned<N>(
      cols, threadIdx.x, Threads,
      [&](std::int64_t c) {
        float values[N];
        load_pack<N>(logits + c, values);
#pragma unroll
        for (int i = 0; i < N; ++i) visit(c + i, values[i]);
      },
      [&](std::int64_t c) { visit(c, to_float(logits[c])); });
}

/// grads[j] = map(j, logits[j]) for each column j this thread owns, N at a time; grads may be
/// logits itself (each element is read, then written, by one thread).
template <int N, int Threads, typename L, typename GT, typename Map>
__device__ inline void map_row(const L* logits, GT* grads, std::int64_t cols, Map&& map) {
  for_each_owned<N>(
      cols, threadIdx.x, Threads,
      [&](std::int64_t c) {
        float values[N];
        load_pack<N>(logits + c, values);
#pragma unroll
        for (int i = 0; i < N; ++i) values[i] = map(c + i, values[i]);
        store_pack<N>(grads + c, values);
      },
      [&](std::int64_t c) { grads[c] = from_float<GT>(map(c, to_float(logits[c]))); });
}

}  // namespace contrastive::kernels
