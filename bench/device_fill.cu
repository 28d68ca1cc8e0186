#include "bench/device_fill.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/numeric.hpp"

namespace contrastive::bench {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;  // grid-stride beyond this
constexpr float kTwoPi = 6.283185307179586f;
constexpr float kTwoToMinus24 = 1.0f / 16777216.0f;
// A value the xor of real inputs practically never takes; the sink is written only then, so the
// compiler must keep every load.
constexpr unsigned kNeverXor = 0x9e3779b9u;

__device__ std::uint64_t split_mix_64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void fill_standard_normal_kernel(T* out, std::size_t count, std::uint64_t seed) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    const std::uint64_t bits = split_mix_64(seed * 0x2545f4914f6cdd1dull + i);
    // Two 24-bit uniforms: u1 in (0, 1], u2 in [0, 1).
    const float u1 = (static_cast<float>(bits >> 40) + 1.0f) * kTwoToMinus24;
    const float u2 = static_cast<float>((bits >> 16) & 0xffffffu) * kTwoToMinus24;
    const float z = sqrtf(-2.0f * logf(u1)) * cosf(kTwoPi * u2);
    out[i] = kernels::from_float<T>(z);
  }
}

__global__ void read_kernel(const uint4* source, std::size_t vectors, unsigned* sink) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  unsigned bits = 0;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors;
       i += stride) {
    const uint4 v = source[i];
    bits ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (bits == kNeverXor) *sink = bits;
}

unsigned blocks_for(std::size_t count) {
  const std::size_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? (blocks == 0 ? 1 : blocks) : kMaxBlocks);
}

}  // namespace

cudaError_t fill_standard_normal(void* out, std::size_t count, std::uint64_t seed, DType dtype,
                                 cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kF16:
      fill_standard_normal_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
          static_cast<__half*>(out), count, seed);
      break;
    case DType::kBF16:
      fill_standard_normal_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
          static_cast<__nv_bfloat16*>(out), count, seed);
      break;
    case DType::kF32:
      fill_standard_normal_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
          static_cast<float*>(out), count, seed);
      break;
  }
  return cudaGetLastError();
}

cudaError_t read_bytes(const void* source, std::size_t bytes, unsigned* sink, cudaStream_t stream) {
  const std::size_t vectors = bytes / sizeof(uint4);
  if (vectors == 0) return cudaSuccess;
  // Enough blocks to keep every SM's loads in flight; each thread then strides over the rest.
  read_kernel<<<blocks_for(vectors), kThreads, 0, stream>>>(static_cast<const uint4*>(source),
                                                            vectors, sink);
  return cudaGetLastError();
}

}  // namespace contrastive::bench
