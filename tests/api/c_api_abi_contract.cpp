// The C API's layouts and errors (docs/c-api.md): every params struct carries struct_size and
// magic that the library checks before reading anything else; a caller compiled against the
// header from before those fields (tests/c_api_previous_layout.c) is refused, never written past;
// a CUDA error left pending by the caller's own work is reported as such and left pending.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api/previous_layout_caller.h"
#include "contrastive/contrastive.h"
#include "support/device.hpp"

namespace contrastive {
namespace {

constexpr unsigned char kPoison = 0xA5;

// One loss's C API, by params type.
template <typename P>
struct CApi;
template <>
struct CApi<contrastive_infonce_params_t> {
  static constexpr const char* name = "contrastive_infonce_params_t";
  static constexpr const char* init_name = "contrastive_infonce_params_init";
  static constexpr auto init_sized = contrastive_infonce_params_init_sized;
  static constexpr auto check = contrastive_infonce_check;
  static constexpr auto workspace_size = contrastive_infonce_workspace_size;
  static void init(contrastive_infonce_params_t* p) { contrastive_infonce_params_init(p); }
  static void set_sizes(contrastive_infonce_params_t* p) {
    p->batch = 4;
    p->num_keys = 6;
    p->dim = 8;
  }
  static int forward(const contrastive_infonce_params_t* p) {
    return contrastive_infonce_forward(nullptr, p, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                       nullptr);
  }
};
template <>
struct CApi<contrastive_mnr_per_anchor_params_t> {
  static constexpr const char* name = "contrastive_mnr_per_anchor_params_t";
  static constexpr const char* init_name = "contrastive_mnr_per_anchor_params_init";
  static constexpr auto init_sized = contrastive_mnr_per_anchor_params_init_sized;
  static constexpr auto check = contrastive_mnr_per_anchor_check;
  static constexpr auto workspace_size = contrastive_mnr_per_anchor_workspace_size;
  static void init(contrastive_mnr_per_anchor_params_t* p) {
    contrastive_mnr_per_anchor_params_init(p);
  }
  static void set_sizes(contrastive_mnr_per_anchor_params_t* p) {
    p->batch = 4;
    p->negatives = 3;
    p->dim = 8;
  }
  static int forward(const contrastive_mnr_per_anchor_params_t* p) {
    return contrastive_mnr_per_anchor_forward(nullptr, p, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, nullptr, 0, nullptr);
  }
};
template <>
struct CApi<contrastive_mnr_in_batch_params_t> {
  static constexpr const char* name = "contrastive_mnr_in_batch_params_t";
  static constexpr const char* init_name = "contrastive_mnr_in_batch_params_init";
  static constexpr auto init_sized = contrastive_mnr_in_batch_params_init_sized;
  static constexpr auto check = contrastive_mnr_in_batch_check;
  static constexpr auto workspace_size = contrastive_mnr_in_batch_workspace_size;
  static void init(contrastive_mnr_in_batch_params_t* p) {
    contrastive_mnr_in_batch_params_init(p);
  }
  static void set_sizes(contrastive_mnr_in_batch_params_t* p) {
    p->batch = 4;
    p->hard_negatives = 1;
    p->dim = 8;
  }
  static int forward(const contrastive_mnr_in_batch_params_t* p) {
    return contrastive_mnr_in_batch_forward(nullptr, p, nullptr, nullptr, nullptr, nullptr, nullptr,
                                            0, nullptr);
  }
};
template <>
struct CApi<contrastive_repel_params_t> {
  static constexpr const char* name = "contrastive_repel_params_t";
  static constexpr const char* init_name = "contrastive_repel_params_init";
  static constexpr auto init_sized = contrastive_repel_params_init_sized;
  static constexpr auto check = contrastive_repel_check;
  static constexpr auto workspace_size = contrastive_repel_workspace_size;
  static void init(contrastive_repel_params_t* p) { contrastive_repel_params_init(p); }
  static void set_sizes(contrastive_repel_params_t* p) {
    p->batch = 4;
    p->negatives = 3;
    p->dim = 8;
  }
  static int forward(const contrastive_repel_params_t* p) {
    return contrastive_repel_forward(nullptr, p, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                     nullptr);
  }
};

// SigLIP's struct had struct_size and magic from the start: it has no previous layout below, and
// the library exports no unsuffixed contrastive_siglip_params_init symbol for one.
template <>
struct CApi<contrastive_siglip_params_t> {
  static constexpr const char* name = "contrastive_siglip_params_t";
  static constexpr const char* init_name = "contrastive_siglip_params_init";
  static constexpr auto init_sized = contrastive_siglip_params_init_sized;
  static constexpr auto check = contrastive_siglip_check;
  static constexpr auto workspace_size = contrastive_siglip_workspace_size;
  static void init(contrastive_siglip_params_t* p) { contrastive_siglip_params_init(p); }
  static void set_sizes(contrastive_siglip_params_t* p) {
    p->batch = 4;
    p->num_keys = 6;
    p->dim = 8;
  }
  static int forward(const contrastive_siglip_params_t* p) {
    return contrastive_siglip_forward(nullptr, p, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                      nullptr);
  }
};

template <typename P>
class CApiLayout : public ::testing::Test {};
using ParamsTypes =
    ::testing::Types<contrastive_infonce_params_t, contrastive_mnr_per_anchor_params_t,
                     contrastive_mnr_in_batch_params_t, contrastive_repel_params_t,
                     contrastive_siglip_params_t>;
struct ParamsNames {
  template <typename P>
  static std::string GetName(int) {
    return std::string(CApi<P>::name).substr(sizeof("contrastive_") - 1);
  }
};
TYPED_TEST_SUITE(CApiLayout, ParamsTypes, ParamsNames);

template <typename P>
P valid() {
  P params;
  CApi<P>::init(&params);
  CApi<P>::set_sizes(&params);
  return params;
}

template <typename P>
bool all_poison(const P& params) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(&params);
  for (std::size_t i = 0; i < sizeof params; ++i) {
    if (bytes[i] != kPoison) return false;
  }
  return true;
}

// The refusal of a struct whose magic is not CONTRASTIVE_PARAMS_MAGIC.
template <typename P>
std::string magic_message(std::uint32_t magic) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(magic));
  return std::string(CApi<P>::name) + ": magic is " + hex +
         ", not CONTRASTIVE_PARAMS_MAGIC: call " + CApi<P>::init_name +
         "() before setting fields (a caller built against a contrastive.h without struct_size "
         "and magic must be rebuilt)";
}

template <typename P>
std::string newer_message(std::size_t size) {
  return std::string(CApi<P>::name) + ": struct_size " + std::to_string(size) +
         " is larger than this library's " + std::to_string(sizeof(P)) +
         ": the caller was built against a newer contrastive.h than the library it runs with";
}

template <typename P>
std::string unknown_size_message(std::size_t size) {
  return std::string(CApi<P>::name) + ": struct_size " + std::to_string(size) +
         " is not a layout this library knows (it has " + std::to_string(sizeof(P)) +
         " bytes): set struct_size with " + CApi<P>::init_name + "()";
}

TYPED_TEST(CApiLayout, InitSetsTheHeaderAndReserved) {
  using P = TypeParam;
  P params;
  std::memset(&params, kPoison, sizeof params);
  CApi<P>::init(&params);
  EXPECT_EQ(params.struct_size, sizeof(P));
  EXPECT_EQ(params.magic, CONTRASTIVE_PARAMS_MAGIC);
  EXPECT_EQ(params.reserved, 0u);
  EXPECT_EQ(offsetof(P, struct_size), 0u);
  EXPECT_EQ(offsetof(P, magic), 4u);
  // No padding: every_loss_description_contract.cpp adds the fields' sizes up to sizeof(P).
  CApi<P>::set_sizes(&params);
  EXPECT_EQ(CApi<P>::check(&params), CONTRASTIVE_SUCCESS) << contrastive_last_error();
}

TYPED_TEST(CApiLayout, InitWithAnUnknownSizeWritesNothing) {
  using P = TypeParam;
  P params;
  std::memset(&params, kPoison, sizeof params);
  EXPECT_EQ(CApi<P>::init_sized(&params, sizeof(P) + 8), CONTRASTIVE_NOT_SUPPORTED);
  EXPECT_EQ(contrastive_last_error(), newer_message<P>(sizeof(P) + 8));
  // 4 bytes short: no layout (8 short may be an older one, which is served).
  EXPECT_EQ(CApi<P>::init_sized(&params, sizeof(P) - 4), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), unknown_size_message<P>(sizeof(P) - 4));
  EXPECT_EQ(CApi<P>::init_sized(&params, 0), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), unknown_size_message<P>(0));
  EXPECT_TRUE(all_poison(params));
  EXPECT_EQ(CApi<P>::init_sized(nullptr, sizeof(P)), CONTRASTIVE_NULL_POINTER);
  EXPECT_EQ(contrastive_last_error(), std::string(CApi<P>::init_name) + "_sized: params is null");
  EXPECT_EQ(CApi<P>::init_sized(&params, sizeof(P)), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(params.magic, CONTRASTIVE_PARAMS_MAGIC);
}

// A struct filled without _params_init (zeroed, or left as it was) is refused before any field is
// read, by check and by a full call (params are checked before the handle).
TYPED_TEST(CApiLayout, AStructNotSetUpByInitIsRefused) {
  using P = TypeParam;
  P params;
  std::memset(&params, 0, sizeof params);
  CApi<P>::set_sizes(&params);
  EXPECT_EQ(CApi<P>::check(&params), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), magic_message<P>(0));
  EXPECT_EQ(CApi<P>::forward(&params), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), magic_message<P>(0));
  std::memset(&params, kPoison, sizeof params);
  EXPECT_EQ(CApi<P>::check(&params), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), magic_message<P>(0xA5A5A5A5u));
}

TYPED_TEST(CApiLayout, AnotherStructSizeIsRefused) {
  using P = TypeParam;
  P params = valid<P>();
  params.struct_size = sizeof(P) + 8;  // a caller built against a newer header
  EXPECT_EQ(CApi<P>::check(&params), CONTRASTIVE_NOT_SUPPORTED);
  EXPECT_EQ(contrastive_last_error(), newer_message<P>(sizeof(P) + 8));
  EXPECT_EQ(CApi<P>::forward(&params), CONTRASTIVE_NOT_SUPPORTED);
  params.struct_size = sizeof(P) - 4;
  EXPECT_EQ(CApi<P>::check(&params), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), unknown_size_message<P>(sizeof(P) - 4));
  params.struct_size = 0;
  EXPECT_EQ(CApi<P>::forward(&params), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), unknown_size_message<P>(0));
}

TYPED_TEST(CApiLayout, ReservedMustBeZero) {
  using P = TypeParam;
  P params = valid<P>();
  params.reserved = 1;
  EXPECT_EQ(CApi<P>::check(&params), CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(contrastive_last_error(), std::string(CApi<P>::name) + ": reserved must be 0, got 1");
}

// ---- A caller compiled against the previous header ----------------------------------------------

struct PreviousCaller {
  const char* test_name;
  const char* name;
  const char* init_name;
  std::size_t previous_bytes, first_versioned_bytes;
  void (*run)(previous_layout_result*);
};

class CApiPreviousLayout : public ::testing::TestWithParam<PreviousCaller> {};

// Its init call reaches the library's unsuffixed symbol, which zeroes exactly the previous struct
// and says why; every later call is refused on the magic (the high half of its batch, 0).
TEST_P(CApiPreviousLayout, IsRefusedAndNeverWrittenPast) {
  const PreviousCaller& caller = GetParam();
  previous_layout_result result{};
  caller.run(&result);
  EXPECT_EQ(result.struct_bytes, caller.previous_bytes);
  EXPECT_EQ(result.struct_bytes + 8, caller.first_versioned_bytes);
  EXPECT_EQ(result.init_in_bounds, 1);
  EXPECT_EQ(result.init_zeroed, 1);
  EXPECT_EQ(std::string(result.init_message),
            std::string(caller.init_name) +
                ": the caller was built against a contrastive.h without struct_size and magic; "
                "rebuild it against this one");
  EXPECT_EQ(result.check, CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(result.workspace_size, CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(result.saved_size, CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(result.forward, CONTRASTIVE_INVALID_ARGUMENT);
  EXPECT_EQ(result.bytes, 77u);
  const std::string expected = std::string(caller.name) +
                               ": magic is 0x00000000, not CONTRASTIVE_PARAMS_MAGIC: call " +
                               caller.init_name +
                               "() before setting fields (a caller built against a contrastive.h "
                               "without struct_size and magic must be rebuilt)";
  EXPECT_EQ(std::string(result.forward_message), expected);
}

const PreviousCaller kPreviousCallers[] = {
    {"Infonce", "contrastive_infonce_params_t", "contrastive_infonce_params_init", 120, 128,
     previous_layout_infonce},
    {"MnrPerAnchor", "contrastive_mnr_per_anchor_params_t",
     "contrastive_mnr_per_anchor_params_init", 72, 80, previous_layout_mnr_per_anchor},
    {"MnrInBatch", "contrastive_mnr_in_batch_params_t", "contrastive_mnr_in_batch_params_init", 112,
     120, previous_layout_mnr_in_batch},
    {"Repel", "contrastive_repel_params_t", "contrastive_repel_params_init", 64, 72,
     previous_layout_repel},
};

// A caller built against the header before the scalars' fields (log_scale, max_scale, the device
// scalars) passes its smaller struct_size: init writes exactly that many bytes, and its calls take
// the new fields' defaults (no clamp, the host values).
template <typename P>
void expect_an_older_layout_served(std::size_t older_bytes) {
  P older;
  std::memset(&older, kPoison, sizeof older);
  ASSERT_EQ(CApi<P>::init_sized(&older, older_bytes), CONTRASTIVE_SUCCESS)
      << contrastive_last_error();
  const auto* bytes = reinterpret_cast<const unsigned char*>(&older);
  for (std::size_t i = older_bytes; i < sizeof(P); ++i) {
    EXPECT_EQ(bytes[i], kPoison) << "init wrote byte " << i << " past the older struct";
  }
  CApi<P>::set_sizes(&older);
  EXPECT_EQ(CApi<P>::check(&older), CONTRASTIVE_SUCCESS) << contrastive_last_error();
  P current;
  CApi<P>::init(&current);
  CApi<P>::set_sizes(&current);
  size_t older_workspace = 0, current_workspace = 0;
  EXPECT_EQ(CApi<P>::workspace_size(&older, &older_workspace), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(CApi<P>::workspace_size(&current, &current_workspace), CONTRASTIVE_SUCCESS);
  EXPECT_EQ(older_workspace, current_workspace);
}

TEST(CApiLayoutBeforeTheScalarFields, IsServedWithTheirDefaults) {
  expect_an_older_layout_served<contrastive_infonce_params_t>(128);
  expect_an_older_layout_served<contrastive_mnr_per_anchor_params_t>(80);
  expect_an_older_layout_served<contrastive_mnr_in_batch_params_t>(120);
  expect_an_older_layout_served<contrastive_siglip_params_t>(136);
}

INSTANTIATE_TEST_SUITE_P(Losses, CApiPreviousLayout, ::testing::ValuesIn(kPreviousCallers),
                         [](const auto& info) { return std::string(info.param.test_name); });

// ---- CUDA errors from before a call
// ---------------------------------------------------------------

// Device buffers for one InfoNCE forward (B = 4, M = 6, D = 8, f32).
struct DeviceForward {
  contrastive_infonce_params_t params = valid<contrastive_infonce_params_t>();
  void *q = nullptr, *k = nullptr, *loss = nullptr, *saved = nullptr, *workspace = nullptr;
  size_t workspace_bytes = 0;

  DeviceForward() {
    size_t saved_bytes = 0;
    EXPECT_EQ(contrastive_infonce_workspace_size(&params, &workspace_bytes), CONTRASTIVE_SUCCESS);
    EXPECT_EQ(contrastive_infonce_saved_size(&params, &saved_bytes), CONTRASTIVE_SUCCESS);
    std::vector<float> q_host(4 * 8), k_host(6 * 8);
    for (std::size_t i = 0; i < q_host.size(); ++i) q_host[i] = std::sin(0.7f * i + 0.1f);
    for (std::size_t i = 0; i < k_host.size(); ++i) k_host[i] = std::cos(0.3f * i + 0.2f);
    EXPECT_EQ(cudaMalloc(&q, q_host.size() * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&k, k_host.size() * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&loss, sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&saved, saved_bytes), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&workspace, workspace_bytes), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(q, q_host.data(), q_host.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    EXPECT_EQ(cudaMemcpy(k, k_host.data(), k_host.size() * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    EXPECT_EQ(cudaMemset(loss, 0xFF, sizeof(float)), cudaSuccess);  // NaN until written
  }
  ~DeviceForward() {
    for (void* pointer : {q, k, loss, saved, workspace}) cudaFree(pointer);
  }
  int run(contrastive_handle_t handle) {
    return contrastive_infonce_forward(handle, &params, q, k, static_cast<float*>(loss), saved,
                                       workspace, workspace_bytes, nullptr);
  }
  float read_loss() {
    float value = 0.0f;  // cudaMemcpy waits for the default stream the forward ran on
    EXPECT_EQ(cudaMemcpy(&value, loss, sizeof value, cudaMemcpyDeviceToHost), cudaSuccess);
    return value;
  }
};

// A failed cudaMalloc of the caller's leaves cudaErrorMemoryAllocation pending on the thread. The
// call must not take it for its own launch's error (nor clear it): it reports it as an error from
// before the call, launches nothing, and leaves it for the caller; once cleared, the call runs.
TEST(CApiCudaErrors, AnErrorFromBeforeTheCallIsReportedAsSuchAndLeftPending) {
  CONTRASTIVE_SKIP_WITHOUT_GPU();
  contrastive_handle_t handle = nullptr;
  ASSERT_EQ(contrastive_create(&handle, -1), CONTRASTIVE_SUCCESS) << contrastive_last_error();
  {
    DeviceForward call;
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    void* huge = nullptr;
    ASSERT_EQ(cudaMalloc(&huge, std::size_t{1} << 60), cudaErrorMemoryAllocation);
    ASSERT_EQ(cudaPeekAtLastError(), cudaErrorMemoryAllocation);

    EXPECT_EQ(call.run(handle), CONTRASTIVE_CUDA_ERROR);
    EXPECT_EQ(std::string(contrastive_last_error()),
              std::string("a CUDA error from before this call is pending on this thread: "
                          "cudaErrorMemoryAllocation (") +
                  cudaGetErrorString(cudaErrorMemoryAllocation) +
                  "); nothing was launched and the error was left for its owner to read and "
                  "clear with cudaGetLastError() (a sticky error such as cudaErrorIllegalAddress "
                  "means the CUDA context is lost)");
    EXPECT_TRUE(std::isnan(call.read_loss()));                 // nothing written
    EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);  // still the caller's to read

    EXPECT_EQ(call.run(handle), CONTRASTIVE_SUCCESS) << contrastive_last_error();
    EXPECT_TRUE(std::isfinite(call.read_loss()));
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
  EXPECT_EQ(contrastive_destroy(handle), CONTRASTIVE_SUCCESS);
}

}  // namespace
}  // namespace contrastive
