// The NaN policy (docs/reliability.md) for the float64 references, which judge every GPU result:
// a NaN in any input row gives a NaN loss, NaN in every gradient element of that row and a NaN
// temperature or scale gradient; +-inf does the same under cosine similarity; under dot similarity
// an infinite query or anchor element gives a loss that is not finite. Also: the references are
// scale invariant under cosine similarity for rows of norm 2^+-100 (what the GPU edge tests rely
// on). CPU only.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using Sets = std::vector<std::vector<double>>;  // the input row sets, dense (rows, dim)

struct Result {
  std::vector<double> loss;
  Sets grads;  // one per input set, (rows, dim)
  double scalar = 0.0;
};

struct Loss {
  const char* name;
  bool similarity_choice;
  bool has_scalar;
  std::vector<std::int64_t> rows;  // of each set
  std::int64_t dim;
  std::function<Result(Similarity, float eps, const Sets&)> evaluate;
};

void PrintTo(const Loss& loss, std::ostream* out) {
  *out << loss.name;
}

constexpr std::int64_t kDim = 6;

std::vector<Loss> losses() {
  Loss infonce{
      "InfoNCE", true, true, {5, 7}, kDim, [](Similarity similarity, float eps, const Sets& in) {
        infonce::Params p;
        p.batch = 5;
        p.num_keys = 7;
        p.dim = kDim;
        p.positive_offset = 1;
        p.symmetric = true;
        p.similarity = similarity;
        p.eps = eps;
        Result r;
        reference::InfoNCEForward forward;
        reference::InfoNCEBackward backward;
        EXPECT_EQ(reference::infonce_forward(p, in[0].data(), in[1].data(), &forward),
                  Status::kSuccess);
        EXPECT_EQ(reference::infonce_backward(p, in[0].data(), in[1].data(), nullptr, &backward),
                  Status::kSuccess);
        r.loss = forward.loss;
        r.grads = {backward.grad_q, backward.grad_k};
        r.scalar = backward.grad_temperature;
        return r;
      }};
  Loss per_anchor{
      "MnrPerAnchor",
      true,
      true,
      {4, 4, 12},
      kDim,
      [](Similarity similarity, float eps, const Sets& in) {
        mnr::PerAnchorParams p;
        p.batch = 4;
        p.negatives = 3;
        p.dim = kDim;
        p.similarity = similarity;
        p.scale = 20.0f;
        p.eps = eps;
        Result r;
        reference::MnrPerAnchorForward forward;
        reference::MnrPerAnchorBackward backward;
        EXPECT_EQ(reference::mnr_per_anchor_forward(p, in[0].data(), in[1].data(), in[2].data(),
                                                    &forward),
                  Status::kSuccess);
        EXPECT_EQ(reference::mnr_per_anchor_backward(p, in[0].data(), in[1].data(), in[2].data(),
                                                     nullptr, &backward),
                  Status::kSuccess);
        r.loss = forward.loss;
        r.grads = {backward.grad_anchors, backward.grad_positives, backward.grad_negatives};
        r.scalar = backward.grad_scale;
        return r;
      }};
  Loss in_batch{
      "MnrInBatch", true, true, {4, 8}, kDim, [](Similarity similarity, float eps, const Sets& in) {
        mnr::InBatchParams p;
        p.batch = 4;
        p.hard_negatives = 1;
        p.dim = kDim;
        p.symmetric = true;
        p.similarity = similarity;
        p.eps = eps;
        Result r;
        reference::InfoNCEForward forward;
        reference::MnrInBatchBackward backward;
        EXPECT_EQ(reference::mnr_in_batch_forward(p, in[0].data(), in[1].data(), &forward),
                  Status::kSuccess);
        EXPECT_EQ(
            reference::mnr_in_batch_backward(p, in[0].data(), in[1].data(), nullptr, &backward),
            Status::kSuccess);
        r.loss = forward.loss;
        r.grads = {backward.grad_anchors, backward.grad_candidates};
        r.scalar = backward.grad_scale;
        return r;
      }};
  Loss repel{"Repel", false, false, {4, 12}, kDim, [](Similarity, float eps, const Sets& in) {
               repel::Params p;
               p.batch = 4;
               p.negatives = 3;
               p.dim = kDim;
               p.margin = -0.2f;  // most terms active, so gradients flow
               p.eps = eps;
               Result r;
               reference::RepelForward forward;
               reference::RepelBackward backward;
               EXPECT_EQ(reference::repel_forward(p, in[0].data(), in[1].data(), &forward),
                         Status::kSuccess);
               EXPECT_EQ(
                   reference::repel_backward(p, in[0].data(), in[1].data(), nullptr, &backward),
                   Status::kSuccess);
               r.loss = forward.loss;
               r.grads = {backward.grad_anchors, backward.grad_negatives};
               return r;
             }};
  return {infonce, per_anchor, in_batch, repel};
}

Sets random_sets(const Loss& loss, std::mt19937_64& engine) {
  Sets sets;
  for (const std::int64_t rows : loss.rows) {
    sets.push_back(testing::random_normal(static_cast<std::size_t>(rows * loss.dim), engine));
  }
  return sets;
}

class ReferenceNaNPolicy : public ::testing::TestWithParam<Loss> {};

TEST_P(ReferenceNaNPolicy, NonFiniteInputNeverGivesAFiniteLoss) {
  const Loss& loss = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const Sets clean = random_sets(loss, engine);
  std::vector<Similarity> similarities{Similarity::kCosine};
  if (loss.similarity_choice) similarities.push_back(Similarity::kDot);
  const double injections[] = {std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity()};
  for (const Similarity similarity : similarities) {
    const bool cosine = similarity == Similarity::kCosine;
    EXPECT_TRUE(std::isfinite(loss.evaluate(similarity, 1e-12f, clean).loss[0]));
    for (std::size_t set = 0; set < clean.size(); ++set) {
      for (const double value : injections) {
        const bool is_nan = std::isnan(value);
        if (!is_nan && !cosine && set != 0) continue;  // see gpu/every_loss_nan_policy_gpu.cpp
        SCOPED_TRACE(std::string(cosine ? "cosine, " : "dot, ") + std::to_string(value) +
                     " in set " + std::to_string(set));
        Sets sets = clean;
        const std::int64_t row = loss.rows[set] - 1;
        sets[set][static_cast<std::size_t>(row * loss.dim + loss.dim / 2)] = value;
        const Result result = loss.evaluate(similarity, 1e-12f, sets);
        if (is_nan || cosine) {
          EXPECT_TRUE(std::isnan(result.loss[0])) << "loss " << result.loss[0];
        } else {
          EXPECT_FALSE(std::isfinite(result.loss[0])) << "loss " << result.loss[0];
          continue;
        }
        for (std::int64_t c = 0; c < loss.dim; ++c) {
          EXPECT_TRUE(std::isnan(result.grads[set][static_cast<std::size_t>(row * loss.dim + c)]))
              << "gradient of row " << row << ", element " << c;
        }
        if (loss.has_scalar) {
          EXPECT_TRUE(std::isnan(result.scalar)) << result.scalar;
        }
      }
    }
  }
}

// Rows scaled by 2^100, 2^-100 or 1 (cycling): cosine similarity sees the same rows, so the loss
// is unchanged and each gradient row is divided by its factor (eps 1e-36 keeps the tiny rows
// normalized rather than clamped).
TEST_P(ReferenceNaNPolicy, CosineIsScaleInvariantAtTwoToThePlusMinus100) {
  const Loss& loss = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const Sets clean = random_sets(loss, engine);
  const double huge = std::ldexp(1.0, 100);
  auto factor = [huge](std::size_t set, std::int64_t row) {
    const double cycle[] = {huge, 1.0 / huge, 1.0};
    return cycle[(static_cast<std::size_t>(row) + set) % 3];
  };
  Sets scaled = clean;
  for (std::size_t set = 0; set < scaled.size(); ++set) {
    for (std::size_t i = 0; i < scaled[set].size(); ++i) {
      scaled[set][i] *= factor(set, static_cast<std::int64_t>(i) / loss.dim);
    }
  }
  const Result base = loss.evaluate(Similarity::kCosine, 1e-36f, clean);
  const Result result = loss.evaluate(Similarity::kCosine, 1e-36f, scaled);
  EXPECT_NEAR(result.loss[0], base.loss[0], 1e-12 * (1.0 + std::fabs(base.loss[0])));
  EXPECT_NEAR(result.scalar, base.scalar, 1e-12 * (1.0 + std::fabs(base.scalar)));
  for (std::size_t set = 0; set < base.grads.size(); ++set) {
    double largest = 0.0;
    for (double g : base.grads[set]) largest = std::max(largest, std::fabs(g));
    for (std::size_t i = 0; i < base.grads[set].size(); ++i) {
      const double rescaled =
          result.grads[set][i] * factor(set, static_cast<std::int64_t>(i) / loss.dim);
      EXPECT_NEAR(rescaled, base.grads[set][i], 1e-12 * (1.0 + largest))
          << "set " << set << ", element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Losses, ReferenceNaNPolicy, ::testing::ValuesIn(losses()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace contrastive
