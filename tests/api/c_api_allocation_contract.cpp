// Host allocation failures through the C API: no exception escapes an entry point, each failure is
// a status with a message, and nothing leaks. This file replaces the global operator new and
// delete of the API test program; the library resolves them to these (ELF interposition), so a
// failure can be injected into the library's own allocations: the k-th allocation on this thread
// after arm(k) fails, for k = 0, 1, 2 ... until a call runs with no injected failure.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.h"
#include "support/device.hpp"

namespace {

std::atomic<long> g_live{0};         // allocations through these operators not yet freed
thread_local long t_countdown = -1;  // allocations left before the injected failure; -1: none
thread_local long t_injected = 0;    // injected failures since arm()

void* allocate(std::size_t size) noexcept {
  if (t_countdown == 0) {
    t_countdown = -1;
    ++t_injected;
    return nullptr;
  }
  if (t_countdown > 0) --t_countdown;
  void* pointer = std::malloc(size == 0 ? 1 : size);
  if (pointer != nullptr) g_live.fetch_add(1, std::memory_order_relaxed);
  return pointer;
}

void release(void* pointer) noexcept {
  if (pointer == nullptr) return;
  g_live.fetch_sub(1, std::memory_order_relaxed);
  std::free(pointer);
}

}  // namespace

void* operator new(std::size_t size) {
  void* pointer = allocate(size);
  if (pointer == nullptr) throw std::bad_alloc();
  return pointer;
}
void* operator new[](std::size_t size) {
  void* pointer = allocate(size);
  if (pointer == nullptr) throw std::bad_alloc();
  return pointer;
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return allocate(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return allocate(size);
}
void operator delete(void* pointer) noexcept {
  release(pointer);
}
void operator delete[](void* pointer) noexcept {
  release(pointer);
}
void operator delete(void* pointer, std::size_t) noexcept {
  release(pointer);
}
void operator delete[](void* pointer, std::size_t) noexcept {
  release(pointer);
}
void operator delete(void* pointer, const std::nothrow_t&) noexcept {
  release(pointer);
}
void operator delete[](void* pointer, const std::nothrow_t&) noexcept {
  release(pointer);
}

namespace contrastive {
namespace {

/// One run of `call` with the k-th allocation failing.
struct Injected {
  int status = -1;
  bool threw = false;
  bool failure_injected = false;
  long leaked = 0;  // allocations left live by the run (after `cleanup`)
  std::string message;
};

template <typename Call, typename Cleanup>
Injected run_with_failure(long k, Call call, Cleanup cleanup) {
  Injected result;
  const long live_before = g_live.load();
  t_injected = 0;
  t_countdown = k;
  try {
    result.status = call();
  } catch (...) {
    result.threw = true;
  }
  t_countdown = -1;
  result.failure_injected = t_injected > 0;
  cleanup(result.status);  // a successful destroy leaves the last error as it was
  result.leaked = g_live.load() - live_before;
  result.message = contrastive_last_error();  // allocates: after the count
  return result;
}

constexpr long kMaxAllocations = 10000;

// Creating a handle allocates its wrapper and its registry entry before anything else (then, with
// a GPU, the handle's state). Without a GPU the sweep ends at NO_DEVICE, with a GPU at SUCCESS.
TEST(CApiAllocation, CreateSurvivesEveryAllocationFailure) {
  {  // the registry's first entry also allocates its buckets, which it keeps: not a leak
    contrastive_handle_t handle = nullptr;
    if (contrastive_create(&handle, -1) == CONTRASTIVE_SUCCESS) contrastive_destroy(handle);
  }
  const int expected_end =
      testing::gpu_usable(nullptr) ? CONTRASTIVE_SUCCESS : CONTRASTIVE_NO_DEVICE;
  long injected = 0;
  for (long k = 0; k < kMaxAllocations; ++k) {
    contrastive_handle_t handle = nullptr;
    const Injected run = run_with_failure(
        k, [&] { return contrastive_create(&handle, -1); },
        [&](int status) {
          if (status == CONTRASTIVE_SUCCESS) {
            EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
          }
        });
    ASSERT_FALSE(run.threw) << "an exception escaped contrastive_create (k = " << k << ")";
    EXPECT_EQ(run.leaked, 0) << "k = " << k;
    if (!run.failure_injected) {
      EXPECT_EQ(run.status, expected_end) << run.message;
      break;
    }
    ++injected;
    EXPECT_NE(run.status, CONTRASTIVE_SUCCESS) << "k = " << k;
    EXPECT_EQ(handle, nullptr) << "k = " << k;
    if (run.status == CONTRASTIVE_INTERNAL_ERROR) {
      EXPECT_EQ(run.message.rfind("contrastive_create: out of host memory", 0), 0u) << run.message;
    } else {
      EXPECT_FALSE(run.message.empty()) << "k = " << k << ", status " << run.status;
    }
  }
  // At least the wrapper (nothrow new: "out of host memory") and its registry entry
  // (std::bad_alloc, caught at the boundary).
  EXPECT_GE(injected, 2);
}

// The calls that take no handle allocate nothing: with every allocation failing they still give
// their answers.
TEST(CApiAllocation, ChecksAndSizeQueriesAllocateNothing) {
  contrastive_infonce_params_t infonce;
  contrastive_infonce_params_init(&infonce);
  infonce.batch = 4;
  infonce.num_keys = 6;
  infonce.dim = 8;
  contrastive_mnr_per_anchor_params_t per_anchor;
  contrastive_mnr_per_anchor_params_init(&per_anchor);
  per_anchor.batch = 4;
  per_anchor.negatives = 3;
  per_anchor.dim = 8;
  contrastive_mnr_in_batch_params_t in_batch;
  contrastive_mnr_in_batch_params_init(&in_batch);
  in_batch.batch = 4;
  in_batch.hard_negatives = 1;
  in_batch.dim = 8;
  contrastive_repel_params_t repel;
  contrastive_repel_params_init(&repel);
  repel.batch = 4;
  repel.negatives = 3;
  repel.dim = 8;
  size_t bytes[8] = {};
  // Each loss: check, both size queries, and a forward that fails on its first input (null).
  const Injected run = run_with_failure(
      0,
      [&]() -> int {
        const int statuses[] = {
            contrastive_infonce_check(&infonce),
            contrastive_infonce_workspace_size(&infonce, &bytes[0]),
            contrastive_infonce_saved_size(&infonce, &bytes[1]),
            contrastive_mnr_per_anchor_check(&per_anchor),
            contrastive_mnr_per_anchor_workspace_size(&per_anchor, &bytes[2]),
            contrastive_mnr_per_anchor_saved_size(&per_anchor, &bytes[3]),
            contrastive_mnr_in_batch_check(&in_batch),
            contrastive_mnr_in_batch_workspace_size(&in_batch, &bytes[4]),
            contrastive_mnr_in_batch_saved_size(&in_batch, &bytes[5]),
            contrastive_repel_check(&repel),
            contrastive_repel_workspace_size(&repel, &bytes[6]),
            contrastive_repel_saved_size(&repel, &bytes[7]),
        };
        for (const int status : statuses) {
          if (status != CONTRASTIVE_SUCCESS) return status;
        }
        const int refused[] = {
            contrastive_infonce_forward(nullptr, &infonce, nullptr, nullptr, nullptr, nullptr,
                                        nullptr, 0, nullptr),
            contrastive_mnr_per_anchor_forward(nullptr, &per_anchor, nullptr, nullptr, nullptr,
                                               nullptr, nullptr, nullptr, 0, nullptr),
            contrastive_mnr_in_batch_forward(nullptr, &in_batch, nullptr, nullptr, nullptr, nullptr,
                                             nullptr, 0, nullptr),
            contrastive_repel_forward(nullptr, &repel, nullptr, nullptr, nullptr, nullptr, nullptr,
                                      0, nullptr),
        };
        for (const int status : refused) {
          if (status != CONTRASTIVE_NULL_POINTER) return CONTRASTIVE_SUCCESS;
        }
        return CONTRASTIVE_NULL_POINTER;
      },
      [](int) {});
  EXPECT_FALSE(run.threw);
  EXPECT_FALSE(run.failure_injected);
  EXPECT_EQ(run.status, CONTRASTIVE_NULL_POINTER) << run.message;  // each forward's first input
  for (const size_t size : bytes) EXPECT_GT(size, 0u);
  EXPECT_EQ(run.leaked, 0);
}

// With a GPU: a forward on a fresh handle fills the handle's GEMM plan cache (a std::map); every
// allocation of it failing in turn is a status, never an exception, and leaks nothing.
TEST(CApiAllocation, ForwardSurvivesEveryAllocationFailure) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  contrastive_infonce_params_t params;
  contrastive_infonce_params_init(&params);
  params.batch = 4;
  params.num_keys = 6;
  params.dim = 8;
  size_t workspace_bytes = 0, saved_bytes = 0;
  ASSERT_EQ(contrastive_infonce_workspace_size(&params, &workspace_bytes), CONTRASTIVE_SUCCESS);
  ASSERT_EQ(contrastive_infonce_saved_size(&params, &saved_bytes), CONTRASTIVE_SUCCESS);
  void *q = nullptr, *k = nullptr, *loss = nullptr, *saved = nullptr, *workspace = nullptr;
  const std::vector<float> ones(6 * 8, 1.0f);
  ASSERT_EQ(cudaMalloc(&q, 4 * 8 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&k, 6 * 8 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&loss, sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&saved, saved_bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&workspace, workspace_bytes), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(q, ones.data(), 4 * 8 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(k, ones.data(), 6 * 8 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);

  {  // the registry's buckets, kept once allocated
    contrastive_handle_t handle = nullptr;
    ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS) << contrastive_last_error();
    EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
  }
  long injected = 0;
  for (long attempt = 0; attempt < kMaxAllocations; ++attempt) {
    const long live_before = g_live.load();
    contrastive_handle_t handle = nullptr;  // fresh: its plan cache is empty
    ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS) << contrastive_last_error();
    int status = -1;
    bool threw = false;
    t_injected = 0;
    t_countdown = attempt;
    try {
      status = contrastive_infonce_forward(handle, &params, q, k, static_cast<float*>(loss), saved,
                                           workspace, workspace_bytes, nullptr);
    } catch (...) {
      threw = true;
    }
    t_countdown = -1;
    const bool failure_injected = t_injected > 0;
    const cudaError_t synchronized = cudaDeviceSynchronize();
    const int destroyed = contrastive_destroy(handle);
    const long leaked = g_live.load() - live_before;
    const std::string message = contrastive_last_error();  // allocates: after the count
    EXPECT_EQ(synchronized, cudaSuccess);
    EXPECT_EQ(destroyed, CONTRASTIVE_SUCCESS);
    ASSERT_FALSE(threw) << "an exception escaped contrastive_infonce_forward";
    EXPECT_EQ(leaked, 0) << "attempt " << attempt;
    if (!failure_injected) {
      EXPECT_EQ(status, CONTRASTIVE_SUCCESS) << message;
      break;
    }
    ++injected;
    EXPECT_EQ(status, CONTRASTIVE_INTERNAL_ERROR) << message;
    EXPECT_EQ(message, "contrastive_infonce_forward: out of host memory (std::bad_alloc)");
  }
  EXPECT_GE(injected, 1);  // the plan cache's node
  for (void* pointer : {q, k, loss, saved, workspace}) cudaFree(pointer);
}

}  // namespace
}  // namespace contrastive
