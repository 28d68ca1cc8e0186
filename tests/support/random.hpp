// Test inputs: a fresh seed for every test (so repeated runs explore new inputs), printed on
// failure and pinned by setting CONTRASTIVE_TEST_SEED to reproduce one.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace contrastive::testing {

inline std::uint64_t test_seed() {
  if (const char* pinned = std::getenv("CONTRASTIVE_TEST_SEED")) {
    return std::strtoull(pinned, nullptr, 10);
  }
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

/// Declares `seed`, a fresh test_seed(), and prints it with every failure that follows in scope.
#define CONTRASTIVE_TEST_SEED_TRACED(seed)                        \
  const std::uint64_t seed = ::contrastive::testing::test_seed(); \
  SCOPED_TRACE("seed " + std::to_string(seed) + " (CONTRASTIVE_TEST_SEED reproduces it)")

inline std::vector<double> random_normal(std::size_t count, std::mt19937_64& engine) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> values(count);
  for (double& value : values) value = normal(engine);
  return values;
}

/// Doubles that are exactly representable in fp32, so GPU inputs and reference inputs agree.
inline std::vector<double> random_normal_f32(std::size_t count, std::mt19937_64& engine) {
  std::vector<double> values = random_normal(count, engine);
  for (double& value : values) value = static_cast<float>(value);
  return values;
}

}  // namespace contrastive::testing
