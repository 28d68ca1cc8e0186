#include "examples/seed_inputs.hpp"

#include <cmath>

namespace contrastive::seed {

double NumpyLegacyRandom::uniform() {
  const std::uint32_t high = engine_() >> 5;  // 27 bits
  const std::uint32_t low = engine_() >> 6;   // 26 bits
  return (high * 67108864.0 + low) / 9007199254740992.0;
}

double NumpyLegacyRandom::normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  double x1 = 0.0, x2 = 0.0, r2 = 0.0;
  do {
    x1 = 2.0 * uniform() - 1.0;
    x2 = 2.0 * uniform() - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double factor = std::sqrt(-2.0 * std::log(r2) / r2);
  cached_normal_ = factor * x1;
  has_cached_normal_ = true;
  return factor * x2;
}

std::vector<double> NumpyLegacyRandom::uniform(std::size_t count) {
  std::vector<double> values(count);
  for (double& value : values) value = uniform();
  return values;
}

std::vector<double> NumpyLegacyRandom::normal(std::size_t count) {
  std::vector<double> values(count);
  for (double& value : values) value = normal();
  return values;
}

InfoNCEInputs infonce_inputs() {
  constexpr std::size_t kCount = InfoNCEInputs::kBatch * InfoNCEInputs::kDim;
  NumpyLegacyRandom random(0);
  InfoNCEInputs inputs;
  inputs.z1 = random.normal(kCount);
  const std::vector<double> noise = random.normal(kCount);
  inputs.z2.resize(kCount);
  for (std::size_t i = 0; i < kCount; ++i) inputs.z2[i] = inputs.z1[i] + 0.1 * noise[i];
  return inputs;
}

MnrInputs mnr_inputs() {
  NumpyLegacyRandom random(42);
  MnrInputs inputs;
  inputs.anchor = random.uniform(MnrInputs::kDim);
  inputs.positive = random.uniform(MnrInputs::kDim);
  inputs.negatives = random.uniform(MnrInputs::kNegatives * MnrInputs::kDim);
  return inputs;
}

RepelInputs repel_inputs() {
  NumpyLegacyRandom random(0);
  RepelInputs inputs;
  inputs.users = random.normal(RepelInputs::kBatch * RepelInputs::kDim);
  inputs.items = random.normal(RepelInputs::kBatch * RepelInputs::kNegatives * RepelInputs::kDim);
  return inputs;
}

}  // namespace contrastive::seed
