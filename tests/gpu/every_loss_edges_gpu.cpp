// Numerical edges of every loss on the GPU, each against the float64 reference under the tolerance
// policy: t = 0.01 / scale 100 in bf16 and f16, a zero vector among the inputs, all-identical rows,
// one row, a single candidate, N = 1, D = 1; and rows with norms of 2^+-100 (about 1e+-30) in fp32,
// which cosine similarity must handle exactly as rows of norm 1. Each case runs forward, backward
// from what forward saved, and forward_backward, with every output poisoned before each call.
// Every loss of support/loss_drivers.hpp runs every case; each test skips without a GPU.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/contrastive.hpp"
#include "support/device.hpp"
#include "support/loss_drivers.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using testing::LossDriver;
using testing::LossFactory;
using testing::RowSet;
using testing::Shape;

// ---- The edges ----------------------------------------------------------------------------------

enum class Edit { kNone, kZeroRows, kIdenticalRows };

struct EdgeCase {
  const char* name;
  Shape shape;
  Edit edit = Edit::kNone;
  bool fewest_candidates = false;  // the loss's min_candidates() instead of shape.candidates
  bool needs_logit_scale = false;
};

Shape shape(std::int64_t batch, std::int64_t candidates, std::int64_t dim) {
  Shape s;
  s.batch = batch;
  s.candidates = candidates;
  s.dim = dim;
  return s;
}

Shape sharp(DType dtype) {
  Shape s = shape(33, 7, 64);
  s.dtype = dtype;
  s.logit_scale = 100.0f;  // InfoNCE: t = 0.01; MNR: scale 100
  return s;
}

Shape with_similarity(Shape s, Similarity similarity) {
  s.similarity = similarity;
  return s;
}

std::vector<EdgeCase> edge_cases() {
  return {
      {"Temperature0p01OrScale100Bf16", sharp(DType::kBF16), Edit::kNone, false, true},
      {"Temperature0p01OrScale100F16", sharp(DType::kF16), Edit::kNone, false, true},
      {"ZeroVectorCosine", shape(9, 4, 24), Edit::kZeroRows},
      {"ZeroVectorDot", with_similarity(shape(9, 4, 24), Similarity::kDot), Edit::kZeroRows},
      {"IdenticalRowsCosine", shape(9, 4, 24), Edit::kIdenticalRows},
      {"IdenticalRowsDot", with_similarity(shape(9, 4, 24), Similarity::kDot),
       Edit::kIdenticalRows},
      {"OneRow", shape(1, 5, 32)},
      {"SingleCandidate", shape(1, 0, 32), Edit::kNone, true},
      {"NEquals1", shape(17, 1, 32)},
      {"DEquals1", shape(17, 3, 1)},
  };
}

// Zeroes row (set index) of each set: a zero anchor or query and zero candidates.
void zero_rows(LossDriver& driver) {
  const std::vector<RowSet> sets = driver.row_sets();
  for (std::size_t s = 0; s < sets.size(); ++s) {
    const std::int64_t row = static_cast<std::int64_t>(s) % sets[s].rows;
    for (std::int64_t c = 0; c < sets[s].dim; ++c) sets[s].at(row, c) = 0.0;
  }
}

// Every row of every set becomes the first row of the first set.
void identical_rows(LossDriver& driver) {
  const std::vector<RowSet> sets = driver.row_sets();
  std::vector<double> row(static_cast<std::size_t>(sets[0].dim));
  for (std::int64_t c = 0; c < sets[0].dim; ++c) row[c] = sets[0].at(0, c);
  for (const RowSet& set : sets) {
    for (std::int64_t r = 0; r < set.rows; ++r) {
      for (std::int64_t c = 0; c < set.dim; ++c) set.at(r, c) = row[c];
    }
  }
}

using EdgeParam = std::tuple<LossFactory, EdgeCase>;

std::string edge_name(const ::testing::TestParamInfo<EdgeParam>& info) {
  return std::string(std::get<0>(info.param).name) + "_" + std::get<1>(info.param).name;
}

class ReliabilityEdges : public testing::GpuFixture<::testing::TestWithParam<EdgeParam>> {};

TEST_P(ReliabilityEdges, MatchesTheFloat64Reference) {
  const auto& [factory, edge] = GetParam();
  const std::unique_ptr<LossDriver> driver = factory.make();
  if (edge.needs_logit_scale && !driver->has_logit_scale()) {
    GTEST_SKIP() << driver->name() << " has no temperature or scale";
  }
  if (edge.shape.similarity == Similarity::kDot && !driver->has_similarity_choice()) {
    GTEST_SKIP() << driver->name() << " is cosine only";
  }
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  Shape s = edge.shape;
  if (edge.fewest_candidates) s.candidates = driver->min_candidates();
  driver->make(s, seed);
  if (edge.edit == Edit::kZeroRows) zero_rows(*driver);
  if (edge.edit == Edit::kIdenticalRows) identical_rows(*driver);
  driver->upload();
  testing::expect_every_pass_matches(*driver, handle_, stream_);
}

INSTANTIATE_TEST_SUITE_P(Edges, ReliabilityEdges,
                         ::testing::Combine(::testing::ValuesIn(testing::all_losses()),
                                            ::testing::ValuesIn(edge_cases())),
                         edge_name);

// ---- Huge and tiny norms
// --------------------------------------------------------------------------

// Rows scaled by 2^100 (~1.27e30) and 2^-100 (~7.9e-31): powers of two, so the fp32 inputs are
// exactly the unscaled rows times the factor and cosine similarity (norms summed in double) must
// give the same loss bit for bit, and every gradient row the unscaled one divided by its factor.
// eps is 1e-36 so that the tiny rows are normalized, not clamped. The gradients, multiplied back by
// their row's factor, are held to the reference of the unscaled problem: |g - ref| / factor is
// then within the policy's bound of the reference on the scaled inputs.
enum class Norms { kHuge, kTiny, kMixed };

struct NormCase {
  const char* name;
  Norms norms;
};

constexpr double kHuge = 1267650600228229401496703205376.0;  // 2^100
const NormCase kNormCases[] = {
    {"Huge", Norms::kHuge}, {"Tiny", Norms::kTiny}, {"Mixed", Norms::kMixed}};

double row_factor(Norms norms, std::size_t set, std::int64_t row) {
  switch (norms) {
    case Norms::kHuge: return kHuge;
    case Norms::kTiny: return 1.0 / kHuge;
    case Norms::kMixed: break;
  }
  const double cycle[] = {kHuge, 1.0 / kHuge, 1.0};
  return cycle[(static_cast<std::size_t>(row) + set) % 3];
}

void scale_rows(LossDriver& driver, Norms norms, bool inverse) {
  const std::vector<RowSet> sets = driver.row_sets();
  for (std::size_t s = 0; s < sets.size(); ++s) {
    for (std::int64_t r = 0; r < sets[s].rows; ++r) {
      const double factor = row_factor(norms, s, r);
      for (std::int64_t c = 0; c < sets[s].dim; ++c) {
        sets[s].at(r, c) = inverse ? sets[s].at(r, c) / factor : sets[s].at(r, c) * factor;
      }
    }
  }
}

using NormParam = std::tuple<LossFactory, NormCase>;

std::string norm_name(const ::testing::TestParamInfo<NormParam>& info) {
  return std::string(std::get<0>(info.param).name) + "_" + std::get<1>(info.param).name;
}

class ReliabilityNorms : public testing::GpuFixture<::testing::TestWithParam<NormParam>> {};

TEST_P(ReliabilityNorms, ScaleInvariantAndMatchTheReference) {
  const auto& [factory, norm_case] = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  const std::unique_ptr<LossDriver> driver = factory.make();
  Shape s = shape(19, 5, 40);
  s.eps = 1e-36f;
  s.symmetric = true;
  driver->make(s, seed);
  driver->upload();
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, handle_, stream_));
  driver->expect_matches_reference(Pass::kForwardBackward);
  const testing::Snapshot unscaled = driver->download(Pass::kForwardBackward);

  scale_rows(*driver, norm_case.norms, /*inverse=*/false);
  driver->upload();
  driver->fill_outputs(Pass::kForwardBackward, testing::Fill::kPoisonBytes);
  ASSERT_TRUE(testing::run_and_wait(*driver, Pass::kForwardBackward, handle_, stream_));
  const std::vector<float> loss = driver->download("loss");
  EXPECT_EQ(std::memcmp(loss.data(), unscaled.at("loss").data(), loss.size() * sizeof(float)), 0)
      << "the loss moved with the norms: " << loss[0] << " vs " << unscaled.at("loss")[0];
  for (const std::string& scalar : driver->scalar_gradients()) {
    EXPECT_EQ(driver->download(scalar), unscaled.at(scalar)) << scalar << " moved with the norms";
  }
  // Gradients times their row's factor, against the reference of the unscaled inputs.
  scale_rows(*driver, norm_case.norms, /*inverse=*/true);
  const std::vector<RowSet> sets = driver->row_sets();
  for (std::size_t set = 0; set < sets.size(); ++set) {
    testing::DeviceTensor& gradient = driver->tensor(sets[set].gradient);
    const std::vector<float> scaled = gradient.download();
    std::vector<double> rescaled(scaled.size());
    for (std::int64_t r = 0; r < sets[set].rows; ++r) {
      for (std::int64_t c = 0; c < sets[set].dim; ++c) {
        const std::size_t i = static_cast<std::size_t>(r * sets[set].dim + c);
        ASSERT_TRUE(std::isfinite(scaled[i])) << sets[set].gradient << "[" << i << "]";
        rescaled[i] = static_cast<double>(scaled[i]) * row_factor(norm_case.norms, set, r);
      }
    }
    gradient.upload(rescaled);  // exact: each value is an fp32 times a power of two in range
  }
  driver->expect_matches_reference(Pass::kBackward);
}

INSTANTIATE_TEST_SUITE_P(Norms, ReliabilityNorms,
                         ::testing::Combine(::testing::ValuesIn(testing::all_losses()),
                                            ::testing::ValuesIn(kNormCases)),
                         norm_name);

// Needs no device: the drivers and the descriptions name the same losses, in the same order.
TEST(EveryLoss, EachDescriptionHasADriverOfItsName) {
  const std::vector<LossFactory> drivers = testing::all_losses();
  const std::vector<describe::Loss>& losses = describe::all_losses();
  ASSERT_EQ(drivers.size(), losses.size());
  for (std::size_t i = 0; i < losses.size(); ++i) {
    EXPECT_STREQ(drivers[i].name, losses[i].name);
    EXPECT_STREQ(drivers[i].make()->name(), losses[i].name);
  }
}

}  // namespace
}  // namespace contrastive
