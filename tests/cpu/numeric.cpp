// The element-type conversions shared by kernels and host, and the dtype dispatch, on the CPU.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "host/engine/dispatch.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::kernels {
namespace {

TEST(Numeric, RoundTripsWhatTheTypeHolds) {
  for (float value : {0.0f, -0.0f, 1.0f, -2.5f, 0.15625f, 1024.0f}) {
    EXPECT_EQ(round_to<__half>(value), value);
    EXPECT_EQ(round_to<__nv_bfloat16>(value), value);
    EXPECT_EQ(round_to<float>(value), value);
  }
}

TEST(Numeric, RoundsToNearestEven) {
  // bf16 keeps 8 significant bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(round_to<__nv_bfloat16>(1.0f + 0x1p-8f), 1.0f);
  EXPECT_EQ(round_to<__nv_bfloat16>(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
  EXPECT_EQ(round_to<__nv_bfloat16>(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);
  // fp16 keeps 11: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(round_to<__half>(1.0f + 0x1p-11f), 1.0f);
  EXPECT_EQ(round_to<__half>(1.0f + 3 * 0x1p-11f), 1.0f + 0x1p-9f);
}

TEST(Numeric, RangeAndSpecialValues) {
  EXPECT_TRUE(std::isinf(round_to<__half>(70000.0f))) << "fp16 tops out at 65504";
  EXPECT_EQ(round_to<__half>(65504.0f), 65504.0f);
  EXPECT_NEAR(round_to<__nv_bfloat16>(3.0e38f), 3.0e38f, 3.0e38f * 0x1p-8f);
  EXPECT_TRUE(std::isnan(round_to<__half>(NAN)));
  EXPECT_TRUE(std::isnan(round_to<__nv_bfloat16>(NAN)));
  EXPECT_EQ(round_to<__nv_bfloat16>(-INFINITY), -INFINITY);
  EXPECT_GT(round_to<__half>(0x1p-24f), 0.0f) << "fp16's smallest subnormal survives";
}

TEST(Numeric, DispatchPicksTheElementType) {
  auto size = [](DType dtype) {
    return detail::dispatch_dtype(dtype, [](auto tag) {
      using T = typename decltype(tag)::type;
      return std::make_pair(sizeof(T), DTypeOf<T>::value);
    });
  };
  EXPECT_EQ(size(DType::kF32), std::make_pair(std::size_t{4}, DType::kF32));
  EXPECT_EQ(size(DType::kF16), std::make_pair(std::size_t{2}, DType::kF16));
  EXPECT_EQ(size(DType::kBF16), std::make_pair(std::size_t{2}, DType::kBF16));
}

}  // namespace
}  // namespace contrastive::kernels
