// The demo's inputs reproduce NumPy's legacy generator bit for bit (checked against the golden
// files, which NumPy wrote).
#include <vector>

#include <gtest/gtest.h>

#include "examples/seed_inputs.hpp"
#include "support/golden.hpp"

namespace contrastive::seed {
namespace {

TEST(SeedInputs, UniformMatchesNumpyRandomRand) {
  NumpyLegacyRandom random(42);  // the MNR demo: anchor, positive, then three negatives
  const std::vector<double> anchor = random.uniform(4);
  const std::vector<double> positive = random.uniform(4);
  const std::vector<double> negatives = random.uniform(12);
  EXPECT_EQ(anchor, testing::golden_numbers("seed_mnr.json", "anchor"));
  EXPECT_EQ(positive, testing::golden_numbers("seed_mnr.json", "positive"));
  EXPECT_EQ(negatives, testing::golden_numbers("seed_mnr.json", "negatives"));
}

TEST(SeedInputs, NormalMatchesNumpyRandomRandn) {
  const InfoNCEInputs inputs = infonce_inputs();
  EXPECT_EQ(inputs.z1, testing::golden_numbers("seed_infonce.json", "z1"));
  EXPECT_EQ(inputs.z2, testing::golden_numbers("seed_infonce.json", "z2"));
}

}  // namespace
}  // namespace contrastive::seed
