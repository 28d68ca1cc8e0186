// The float64 reference of InfoNCE and in-batch MNR with ids (include/contrastive/ids.hpp): central
// finite differences of every gradient in every mode, identities with the plain references, the
// loss written out (SimCLR, SupCon's L_out, masking as removing keys), the edge cases (no positive
// anywhere, a row with every key masked), the threshold's fixed mask, and the valid combinations.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/ids.hpp"
#include "contrastive/reference.hpp"
#include "support/finite_difference.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using ids::IdOptions;
using ids::IdType;
using reference::IdsForward;
using reference::InfoNCEBackward;
using reference::InfoNCEForward;
using testing::random_normal;

constexpr double kExact = 1e-12;

/// InfoNCE with ids: the inputs of one call and its results.
struct Problem {
  infonce::Params params;
  IdOptions options;
  std::vector<double> q, k;  // (B, D), (M, D)
  std::vector<std::int64_t> query_ids, key_ids;

  const std::int64_t* qid() const { return query_ids.empty() ? nullptr : query_ids.data(); }
  const std::int64_t* kid() const { return key_ids.empty() ? nullptr : key_ids.data(); }
  IdsForward forward() const {
    return testing::reference_output<IdsForward>([&](auto* out) {
      return reference::infonce_ids_forward(params, options, q.data(), k.data(), qid(), kid(), out);
    });
  }
  InfoNCEBackward backward(const std::vector<double>& upstream) const {
    return testing::reference_output<InfoNCEBackward>([&](auto* out) {
      return reference::infonce_ids_backward(params, options, q.data(), k.data(), qid(), kid(),
                                             upstream.data(), out);
    });
  }
  InfoNCEForward plain_forward() const {
    return testing::reference_output<InfoNCEForward>(
        [&](auto* out) { return reference::infonce_forward(params, q.data(), k.data(), out); });
  }
  InfoNCEBackward plain_backward(const std::vector<double>& upstream) const {
    return testing::reference_output<InfoNCEBackward>([&](auto* out) {
      return reference::infonce_backward(params, q.data(), k.data(), upstream.data(), out);
    });
  }
  std::int64_t outputs() const { return params.reduction == Reduction::kNone ? params.batch : 1; }
};

Problem make_problem(std::int64_t batch, std::int64_t keys, std::int64_t dim,
                     std::mt19937_64& engine) {
  Problem problem;
  problem.params.batch = batch;
  problem.params.num_keys = keys;
  problem.params.dim = dim;
  problem.params.temperature = 0.3f;
  problem.q = random_normal(static_cast<std::size_t>(batch * dim), engine);
  problem.k = random_normal(static_cast<std::size_t>(keys * dim), engine);
  return problem;
}

void expect_near_all(const std::vector<double>& a, const std::vector<double>& b, double tolerance,
                     const std::string& name) {
  ASSERT_EQ(a.size(), b.size()) << name;
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tolerance) << name << i;
}

void expect_all_zero(const std::vector<double>& values, const std::string& name) {
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(values[i], 0.0) << name << i;
}

/// sim(q_i, k_j) for every pair, from the plain reference's logits.
std::vector<double> similarities(const Problem& problem) {
  std::vector<double> sim = problem.plain_forward().logits;
  for (double& value : sim) value *= static_cast<double>(problem.params.temperature);
  return sim;
}

/// A margin whose threshold sim_i,pos - m lies in the widest gap between the differences
/// sim_ij - sim_i,pos of the row (and, symmetric, column) direction: some keys leave, some stay,
/// and none is within half that gap of the threshold, so finite differences never cross it.
float margin_away_from_thresholds(const Problem& problem, double* half_gap) {
  const infonce::Params& p = problem.params;
  const std::int64_t b = p.batch, m = p.num_keys;
  const std::vector<double> sim = similarities(problem);
  std::vector<double> differences;
  for (std::int64_t i = 0; i < b; ++i) {
    const std::int64_t positive = i + p.positive_offset;
    for (std::int64_t j = 0; j < m; ++j) {
      if (j != positive) differences.push_back(sim[i * m + j] - sim[i * m + positive]);
    }
    for (std::int64_t r = 0; p.symmetric && r < b; ++r) {
      if (r != i) differences.push_back(sim[r * m + positive] - sim[i * m + positive]);
    }
  }
  std::sort(differences.begin(), differences.end());
  double best = -1.0, middle = 0.0;
  for (std::size_t e = 1; e < differences.size(); ++e) {
    const double gap = differences[e] - differences[e - 1];
    if (gap > best) {
      best = gap;
      middle = 0.5 * (differences[e] + differences[e - 1]);
    }
  }
  *half_gap = 0.5 * best;
  // The float margin moves the threshold by at most ~1e-7 from the middle of the gap.
  return static_cast<float>(-middle);
}

// ---- Finite differences over every mode -----------------------------------------------------

enum class Mode { kMasking, kMultiPositive, kExcludeSelf, kThreshold, kThresholdAndIds };

struct Case {
  bool mnr;  // in-batch MNR (keys = (1 + K) B candidates, offset 0), else InfoNCE
  Mode mode;
  bool symmetric;
  Similarity similarity;
  Reduction reduction;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  const char* modes[] = {"masking", "multi_positive", "exclude_self", "threshold",
                         "threshold_and_ids"};
  const char* reductions[] = {"mean", "sum", "none"};
  return std::string(c.mnr ? "mnr_" : "infonce_") + modes[static_cast<int>(c.mode)] +
         (c.symmetric ? "_symmetric_" : "_") +
         (c.similarity == Similarity::kCosine ? "cosine_" : "dot_") +
         reductions[static_cast<int>(c.reduction)];
}

void PrintTo(const Case& c, std::ostream* out) {
  *out << case_name(::testing::TestParamInfo<Case>(c, 0));
}

class IdsFiniteDifferences : public ::testing::TestWithParam<Case> {};

TEST_P(IdsFiniteDifferences, GradientsMatchCentralDifferences) {
  const Case& c = GetParam();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const auto draw = [&](std::int64_t low, std::int64_t high) {
    return std::uniform_int_distribution<std::int64_t>(low, high)(engine);
  };
  const bool threshold = c.mode == Mode::kThreshold || c.mode == Mode::kThresholdAndIds;
  // D >= 2 with a threshold: with D = 1 every cosine is +-1 and the thresholds coincide.
  const std::int64_t batch = draw(threshold ? 2 : 1, 5), dim = draw(threshold ? 2 : 1, 4);
  const std::int64_t hard_negatives = draw(0, 2);
  std::int64_t keys = c.mnr ? (1 + hard_negatives) * batch : batch + draw(0, 4);
  if (threshold && keys < 3) keys = c.mnr ? keys : 3;
  Problem problem = make_problem(batch, keys, dim, engine);
  infonce::Params& p = problem.params;
  p.positive_offset = c.mnr ? 0 : draw(0, keys - batch);
  p.similarity = c.similarity;
  p.reduction = c.reduction;
  p.symmetric = c.symmetric;
  IdOptions& o = problem.options;
  if (c.mode != Mode::kThreshold) {
    o.type = draw(0, 1) ? IdType::kInt32 : IdType::kInt64;  // the reference reads int64 either way
    // A few ids for many rows: duplicates, several positives, rows without one.
    for (std::int64_t i = 0; i < batch; ++i) problem.query_ids.push_back(draw(0, 2));
    for (std::int64_t j = 0; j < keys; ++j) problem.key_ids.push_back(draw(0, 2));
  }
  o.multi_positive = c.mode == Mode::kMultiPositive || c.mode == Mode::kExcludeSelf;
  o.exclude_self = c.mode == Mode::kExcludeSelf;
  if (threshold) {
    double half_gap = 0.0;
    o.false_negative_threshold = true;
    o.false_negative_margin = margin_away_from_thresholds(problem, &half_gap);
    ASSERT_GT(half_gap, 1e-4) << "the thresholds are too close to tell apart";
    const IdsForward f = problem.forward();
    const auto kept = std::count(f.kept.begin(), f.kept.end(), 1);
    if (c.mode == Mode::kThreshold && !c.symmetric) {
      // The margin falls between two row differences: some keys leave, some stay.
      EXPECT_GT(kept, batch);
      EXPECT_LT(kept, batch * keys);
    }
  }
  const std::vector<double> upstream =
      random_normal(static_cast<std::size_t>(problem.outputs()), engine);

  if (!c.mnr) {
    const InfoNCEBackward analytic = problem.backward(upstream);
    const auto objective = [&] { return testing::weighted_sum(problem.forward().loss, upstream); };
    testing::expect_gradient(problem.q, batch, dim, dim, analytic.grad_q, objective, "grad_q");
    testing::expect_gradient(problem.k, keys, dim, dim, analytic.grad_k, objective, "grad_k");
    testing::expect_float_derivative(p.temperature, analytic.grad_temperature, objective,
                                     "grad_temperature");
    return;
  }
  mnr::InBatchParams mp;
  mp.batch = batch;
  mp.hard_negatives = hard_negatives;
  mp.dim = dim;
  mp.similarity = c.similarity;
  mp.reduction = c.reduction;
  mp.symmetric = c.symmetric;
  mp.scale = 7.0f;
  const auto forward = [&] {
    return testing::reference_output<IdsForward>([&](auto* out) {
      return reference::mnr_in_batch_ids_forward(mp, o, problem.q.data(), problem.k.data(),
                                                 problem.qid(), problem.kid(), out);
    });
  };
  const reference::MnrInBatchBackward analytic =
      testing::reference_output<reference::MnrInBatchBackward>([&](auto* out) {
        return reference::mnr_in_batch_ids_backward(mp, o, problem.q.data(), problem.k.data(),
                                                    problem.qid(), problem.kid(), upstream.data(),
                                                    out);
      });
  const auto objective = [&] { return testing::weighted_sum(forward().loss, upstream); };
  testing::expect_gradient(problem.q, batch, dim, dim, analytic.grad_anchors, objective,
                           "grad_anchors");
  testing::expect_gradient(problem.k, keys, dim, dim, analytic.grad_candidates, objective,
                           "grad_candidates");
  testing::expect_float_derivative(mp.scale, analytic.grad_scale, objective, "grad_scale");
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (bool mnr : {false, true}) {
    for (Mode mode : {Mode::kMasking, Mode::kMultiPositive, Mode::kExcludeSelf, Mode::kThreshold,
                      Mode::kThresholdAndIds}) {
      const bool multi = mode == Mode::kMultiPositive || mode == Mode::kExcludeSelf;
      for (bool symmetric : {false, true}) {
        if (symmetric && multi) continue;  // not defined (ids.hpp)
        for (Similarity similarity : {Similarity::kCosine, Similarity::kDot}) {
          for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
            all.push_back({mnr, mode, symmetric, similarity, reduction});
          }
        }
      }
    }
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(AllModes, IdsFiniteDifferences, ::testing::ValuesIn(cases()), case_name);

// ---- Identities with the plain references ----------------------------------------------------

void expect_same_as_plain(const Problem& problem, const std::string& name) {
  SCOPED_TRACE(name);
  const std::vector<double> upstream(static_cast<std::size_t>(problem.outputs()), 0.7);
  const IdsForward f = problem.forward();
  const InfoNCEForward plain = problem.plain_forward();
  expect_near_all(f.loss, plain.loss, kExact, "loss");
  expect_near_all(f.row_lse, plain.row_lse, kExact, "row_lse");
  expect_near_all(f.col_lse, plain.col_lse, kExact, "col_lse");
  EXPECT_EQ(f.positive_rows, problem.params.batch);
  const InfoNCEBackward g = problem.backward(upstream), h = problem.plain_backward(upstream);
  expect_near_all(g.grad_q, h.grad_q, kExact, "grad_q");
  expect_near_all(g.grad_k, h.grad_k, kExact, "grad_k");
  expect_near_all(g.grad_logits, h.grad_logits, kExact, "grad_logits");
  EXPECT_NEAR(g.grad_temperature, h.grad_temperature, kExact);
}

TEST(ReferenceIds, NoIdsAndDistinctIdsEqualPlainInfoNCE) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  for (bool symmetric : {false, true}) {
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      Problem problem = make_problem(4, 7, 3, engine);
      problem.params.positive_offset = 2;
      problem.params.symmetric = symmetric;
      problem.params.reduction = reduction;
      expect_same_as_plain(problem, "no ids");
      // Distinct ids: each query shares its id with its positive key only.
      problem.options.type = IdType::kInt64;
      problem.query_ids = {10, 11, 12, 13};
      problem.key_ids = {20, 21, 10, 11, 12, 13, 26};
      expect_same_as_plain(problem, "distinct ids");
      if (!symmetric) {  // one positive per row: SupCon's L_out is InfoNCE
        problem.options.multi_positive = true;
        expect_same_as_plain(problem, "distinct ids, multi-positive");
      }
    }
  }
}

TEST(ReferenceIds, InBatchMnrIsInfoNCEWithTheScale) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const std::int64_t batch = 3, hard_negatives = 1, dim = 4, keys = (1 + hard_negatives) * batch;
  mnr::InBatchParams mp;
  mp.batch = batch;
  mp.hard_negatives = hard_negatives;
  mp.dim = dim;
  mp.scale = 4.0f;  // = 1 / 0.25, exact
  Problem problem = make_problem(batch, keys, dim, engine);
  problem.params.temperature = 0.25f;
  problem.options.type = IdType::kInt64;
  problem.options.multi_positive = true;
  problem.query_ids = {0, 1, 0};
  problem.key_ids = {0, 1, 0, 1, 2, 0};
  IdsForward f;
  ASSERT_EQ(reference::mnr_in_batch_ids_forward(mp, problem.options, problem.q.data(),
                                                problem.k.data(), problem.qid(), problem.kid(), &f),
            Status::kSuccess);
  expect_near_all(f.loss, problem.forward().loss, kExact, "loss");
  reference::MnrInBatchBackward g;
  ASSERT_EQ(
      reference::mnr_in_batch_ids_backward(mp, problem.options, problem.q.data(), problem.k.data(),
                                           problem.qid(), problem.kid(), nullptr, &g),
      Status::kSuccess);
  const InfoNCEBackward h = problem.backward({1.0});
  expect_near_all(g.grad_anchors, h.grad_q, kExact, "grad_anchors");
  expect_near_all(g.grad_candidates, h.grad_k, kExact, "grad_candidates");
  // logits = sim * scale = sim / t: dL/dscale = -t^2 dL/dt
  EXPECT_NEAR(g.grad_scale, -0.25 * 0.25 * h.grad_temperature, kExact);
}

// ---- The losses written out ------------------------------------------------------------------

// Masking (and the threshold) as removing keys: row i's loss is plain InfoNCE of q_i against the
// keys it keeps. The masks are computed here from the rules, not read from the reference.
TEST(ReferenceIds, MaskedRowsEqualInfoNCEOverTheKeptKeys) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const std::int64_t batch = 4, keys = 9, dim = 3, offset = 3;
  Problem problem = make_problem(batch, keys, dim, engine);
  problem.params.positive_offset = offset;
  problem.params.reduction = Reduction::kNone;
  problem.options.type = IdType::kInt32;
  problem.query_ids = {5, 6, 5, 7};
  problem.key_ids = {5, 6, 7, 5, 6, 5, 7, 8, 5};  // duplicates of every query's id
  for (bool threshold : {false, true}) {
    problem.options.false_negative_threshold = threshold;
    if (threshold) problem.options.false_negative_margin = 0.05f;
    const double margin = problem.options.false_negative_margin;
    const std::vector<double> sim = similarities(problem);
    const std::vector<double> rows = problem.forward().loss;
    for (std::int64_t i = 0; i < batch; ++i) {
      const std::int64_t positive = i + offset;
      Problem row = problem;  // q_i against its kept keys, no ids
      row.options = IdOptions{};
      row.params.batch = 1;
      row.q.assign(problem.q.begin() + i * dim, problem.q.begin() + (i + 1) * dim);
      row.k.clear();
      for (std::int64_t j = 0; j < keys; ++j) {
        const bool same_id = problem.key_ids[j] == problem.query_ids[i];
        const bool false_negative =
            threshold && sim[i * keys + j] > sim[i * keys + positive] - margin;
        if (j != positive && (same_id || false_negative)) continue;
        if (j == positive)
          row.params.positive_offset = static_cast<std::int64_t>(row.k.size()) / dim;
        row.k.insert(row.k.end(), problem.k.begin() + j * dim, problem.k.begin() + (j + 1) * dim);
      }
      row.params.num_keys = static_cast<std::int64_t>(row.k.size()) / dim;
      EXPECT_NEAR(rows[i], row.plain_forward().loss[0], kExact) << "row " << i;
    }
  }
}

// SupCon's L_out as the paper writes it: -(1 / |P(i)|) sum_{p in P(i)} log(exp(S_ip) /
// sum_{a in A(i)} exp(S_ia)), A(i) = every key but i itself, P(i) = A(i) with i's label; the mean
// over the anchors that have a positive.
TEST(ReferenceIds, MultiPositiveIsSupConsLOut) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const std::int64_t n = 7, dim = 5;
  const std::vector<std::int64_t> labels = {0, 1, 0, 2, 1, 0, 3};  // label 2 and 3: no positive
  Problem problem = make_problem(n, n, dim, engine);
  problem.k = problem.q;  // one set of rows
  problem.options.type = IdType::kInt64;
  problem.options.multi_positive = true;
  problem.options.exclude_self = true;
  problem.query_ids = labels;
  problem.key_ids = labels;
  const std::vector<double> sim = similarities(problem);
  const double t = static_cast<double>(problem.params.temperature);
  double total = 0.0;
  std::int64_t anchors = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    double denominator = 0.0, sum = 0.0;
    std::int64_t positives = 0;
    for (std::int64_t a = 0; a < n; ++a) {
      if (a != i) denominator += std::exp(sim[i * n + a] / t);
    }
    for (std::int64_t p = 0; p < n; ++p) {
      if (p != i && labels[p] == labels[i]) {
        sum += std::log(std::exp(sim[i * n + p] / t) / denominator);
        ++positives;
      }
    }
    if (positives > 0) {
      total += -sum / static_cast<double>(positives);
      ++anchors;
    }
  }
  const IdsForward f = problem.forward();
  EXPECT_EQ(f.positive_rows, 5);
  EXPECT_EQ(anchors, 5);
  EXPECT_NEAR(f.loss[0], total / static_cast<double>(anchors), 1e-11);
  problem.params.reduction = Reduction::kSum;
  EXPECT_NEAR(problem.forward().loss[0], total, 1e-11);
}

// NT-Xent over 2 views with id = sample index and self-exclusion is SimCLR's loss:
// l(i, j) = -log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t)) over z = [z1; z2] (2N rows, cosine),
// L = (1 / 2N) sum_k [l(k, k + N) + l(k + N, k)].
TEST(ReferenceIds, NTXentOverTwoViewsIsSimCLR) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const std::int64_t n = 5, dim = 4, rows = 2 * n;
  const std::vector<double> z = random_normal(static_cast<std::size_t>(rows * dim), engine);
  std::vector<double> s(static_cast<std::size_t>(rows * rows));
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < rows; ++j) {
      double dot = 0.0, ni = 0.0, nj = 0.0;
      for (std::int64_t c = 0; c < dim; ++c) {
        dot += z[i * dim + c] * z[j * dim + c];
        ni += z[i * dim + c] * z[i * dim + c];
        nj += z[j * dim + c] * z[j * dim + c];
      }
      s[i * rows + j] = dot / std::sqrt(ni * nj);
    }
  }
  const float temperature = 0.5f;
  const double t = static_cast<double>(temperature);
  const auto l = [&](std::int64_t i, std::int64_t j) {
    double denominator = 0.0;
    for (std::int64_t k = 0; k < rows; ++k) {
      if (k != i) denominator += std::exp(s[i * rows + k] / t);
    }
    return -std::log(std::exp(s[i * rows + j] / t) / denominator);
  };
  double simclr = 0.0;
  for (std::int64_t k = 0; k < n; ++k) simclr += l(k, k + n) + l(k + n, k);
  simclr /= static_cast<double>(rows);

  Problem problem;
  problem.params.batch = rows;
  problem.params.num_keys = rows;
  problem.params.dim = dim;
  problem.params.temperature = temperature;
  problem.q = z;
  problem.k = z;
  problem.options.type = IdType::kInt64;
  problem.options.multi_positive = true;
  problem.options.exclude_self = true;
  for (std::int64_t view = 0; view < 2; ++view) {
    for (std::int64_t k = 0; k < n; ++k) problem.query_ids.push_back(k);
  }
  problem.key_ids = problem.query_ids;
  const IdsForward f = problem.forward();
  EXPECT_NEAR(f.loss[0], simclr, 1e-11);
  EXPECT_EQ(f.positive_rows, rows);
  for (std::int64_t i = 0; i < rows; ++i) EXPECT_EQ(f.kept[i * rows + i], 0) << i;
}

// ---- Edges -------------------------------------------------------------------------------------

TEST(ReferenceIds, NoPositivePairGivesZeroLossAndZeroGradients) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    for (bool exclude_self : {false, true}) {
      Problem problem = make_problem(4, 4, 3, engine);
      problem.params.reduction = reduction;
      problem.options.type = IdType::kInt64;
      problem.options.multi_positive = true;
      problem.options.exclude_self = exclude_self;
      problem.query_ids = {0, 1, 2, 3};
      // With self-exclusion one set of distinct labels; without it, keys with other ids.
      problem.key_ids = exclude_self ? problem.query_ids : std::vector<std::int64_t>{4, 5, 6, 7};
      if (exclude_self) problem.k = problem.q;
      const IdsForward f = problem.forward();
      EXPECT_EQ(f.positive_rows, 0);
      expect_all_zero(f.loss, "loss");
      for (double lse : f.row_lse) EXPECT_TRUE(std::isfinite(lse));
      const InfoNCEBackward g =
          problem.backward(std::vector<double>(static_cast<std::size_t>(problem.outputs()), 1.0));
      expect_all_zero(g.grad_q, "grad_q");
      expect_all_zero(g.grad_k, "grad_k");
      expect_all_zero(g.grad_logits, "grad_logits");
      EXPECT_EQ(g.grad_temperature, 0.0);
    }
  }
}

TEST(ReferenceIds, RowWithEveryKeyMaskedIsDefined) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  // One row, one key, itself: nothing is left in the denominator.
  Problem alone = make_problem(1, 1, 3, engine);
  alone.k = alone.q;
  alone.options.type = IdType::kInt64;
  alone.options.multi_positive = true;
  alone.options.exclude_self = true;
  alone.query_ids = {4};
  alone.key_ids = {4};
  const IdsForward f = alone.forward();
  EXPECT_EQ(f.row_lse[0], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(f.loss[0], 0.0);
  EXPECT_EQ(f.positive_rows, 0);
  const InfoNCEBackward g = alone.backward({1.0});
  expect_all_zero(g.grad_q, "grad_q");
  expect_all_zero(g.grad_k, "grad_k");
  EXPECT_EQ(g.grad_temperature, 0.0);
}

// Rows without a positive contribute 0 and the mean runs over the rows that have one.
TEST(ReferenceIds, MeanRunsOverTheRowsWithAPositive) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  Problem problem = make_problem(5, 6, 3, engine);
  problem.params.positive_offset = 1;
  problem.options.type = IdType::kInt64;
  problem.options.multi_positive = true;
  problem.query_ids = {0, 1, 9, 0, 8};  // 9 and 8: no key has them
  problem.key_ids = {0, 0, 1, 2, 1, 3};
  problem.params.reduction = Reduction::kNone;
  const std::vector<double> rows = problem.forward().loss;
  EXPECT_EQ(rows[2], 0.0);
  EXPECT_EQ(rows[4], 0.0);
  problem.params.reduction = Reduction::kMean;
  const IdsForward f = problem.forward();
  EXPECT_EQ(f.positive_rows, 3);
  EXPECT_NEAR(f.loss[0], (rows[0] + rows[1] + rows[3]) / 3.0, kExact);
  const InfoNCEBackward g = problem.backward({1.0});
  for (std::int64_t i : {2, 4}) {
    for (std::int64_t j = 0; j < 6; ++j) EXPECT_EQ(g.grad_logits[i * 6 + j], 0.0) << i;
  }
}

// ---- The false-negative threshold --------------------------------------------------------------

// Qwen3-Embedding's sign: margin -0.1 drops the keys more similar than the positive by over 0.1.
TEST(ReferenceIds, ThresholdDropsKeysAboveThePositiveMinusTheMargin) {
  const auto unit = [](double cosine) {
    return std::vector<double>{cosine, std::sqrt(1 - cosine * cosine)};
  };
  Problem problem;
  problem.params.batch = 1;
  problem.params.num_keys = 4;
  problem.params.dim = 2;
  problem.q = {1.0, 0.0};
  for (double cosine : {0.5, 0.7, 0.55, 0.9}) {  // the positive first
    const std::vector<double> key = unit(cosine);
    problem.k.insert(problem.k.end(), key.begin(), key.end());
  }
  problem.options.false_negative_threshold = true;
  problem.options.false_negative_margin = -0.1f;  // threshold 0.5 + 0.1
  EXPECT_EQ(problem.forward().kept, (std::vector<std::uint8_t>{1, 0, 1, 0}));
  problem.options.false_negative_margin = 0.0f;  // GIST: anything above the positive
  EXPECT_EQ(problem.forward().kept, (std::vector<std::uint8_t>{1, 0, 0, 0}));
  problem.options.false_negative_margin = -0.5f;
  EXPECT_EQ(problem.forward().kept, (std::vector<std::uint8_t>{1, 1, 1, 1}));
}

// The threshold's mask is a constant for the gradient: the same keys dropped by ids instead give
// the same loss and the same gradients, the temperature's included.
TEST(ReferenceIds, ThresholdMaskIsAConstantForTheGradient) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  Problem threshold = make_problem(1, 8, 3, engine);
  threshold.params.positive_offset = 2;
  double half_gap = 0.0;
  threshold.options.false_negative_threshold = true;
  threshold.options.false_negative_margin = margin_away_from_thresholds(threshold, &half_gap);
  const IdsForward f = threshold.forward();
  Problem by_ids = threshold;
  by_ids.options = IdOptions{};
  by_ids.options.type = IdType::kInt64;
  by_ids.query_ids = {1};
  for (std::int64_t j = 0; j < 8; ++j) by_ids.key_ids.push_back(f.kept[j] ? 2 : 1);
  expect_near_all(by_ids.forward().loss, f.loss, kExact, "loss");
  const InfoNCEBackward a = threshold.backward({1.0}), b = by_ids.backward({1.0});
  expect_near_all(a.grad_q, b.grad_q, kExact, "grad_q");
  expect_near_all(a.grad_k, b.grad_k, kExact, "grad_k");
  EXPECT_NEAR(a.grad_temperature, b.grad_temperature, kExact);
}

// ---- Valid combinations ------------------------------------------------------------------------

TEST(ReferenceIds, InvalidCombinationsAreRefusedWithAMessage) {
  infonce::Params params;
  params.batch = 2;
  params.num_keys = 2;
  params.dim = 2;
  const auto expect_refused = [&](const IdOptions& options, bool symmetric, const char* words) {
    infonce::Params p = params;
    p.symmetric = symmetric;
    EXPECT_EQ(ids::check(options, p), Status::kInvalidArgument) << words;
    EXPECT_NE(std::string(last_error_message()).find(words), std::string::npos)
        << last_error_message();
    const std::vector<double> x = {1, 0, 0, 1};
    const std::vector<std::int64_t> id = {0, 1};
    IdsForward out;
    EXPECT_EQ(
        reference::infonce_ids_forward(p, options, x.data(), x.data(), id.data(), id.data(), &out),
        Status::kInvalidArgument);
  };
  IdOptions o;
  o.multi_positive = true;
  expect_refused(o, false, "multi_positive needs ids");
  o = IdOptions{};
  o.type = IdType::kInt64;
  o.exclude_self = true;
  expect_refused(o, false, "exclude_self needs multi_positive");
  o.multi_positive = true;
  o.false_negative_threshold = true;
  expect_refused(o, false, "false_negative_threshold needs single-positive mode");
  o = IdOptions{};
  o.false_negative_threshold = true;
  o.false_negative_margin = std::numeric_limits<float>::infinity();
  expect_refused(o, false, "false_negative_margin must be finite");
  o = IdOptions{};
  o.type = IdType::kInt32;
  o.multi_positive = true;
  expect_refused(o, true, "symmetric with multi_positive");
  o = IdOptions{};
  o.type = static_cast<IdType>(7);
  expect_refused(o, false, "unknown ids type");

  // What is valid passes, for InfoNCE and in-batch MNR.
  o = IdOptions{};
  EXPECT_EQ(ids::check(o, params), Status::kSuccess);
  o.type = IdType::kInt64;
  o.multi_positive = true;
  o.exclude_self = true;
  EXPECT_EQ(ids::check(o, params), Status::kSuccess) << last_error_message();
  o = IdOptions{};
  o.false_negative_threshold = true;
  o.false_negative_margin = -0.1f;
  params.symmetric = true;
  EXPECT_EQ(ids::check(o, params), Status::kSuccess) << last_error_message();
  mnr::InBatchParams mp;
  mp.batch = 2;
  mp.dim = 2;
  mp.symmetric = true;
  o.multi_positive = true;
  o.false_negative_threshold = false;
  o.type = IdType::kInt32;
  EXPECT_EQ(ids::check(o, mp), Status::kInvalidArgument);
  mp.symmetric = false;
  EXPECT_EQ(ids::check(o, mp), Status::kSuccess) << last_error_message();
  // The loss's own params are checked first.
  params.num_keys = 1;
  EXPECT_EQ(ids::check(IdOptions{}, params), Status::kInvalidArgument);
}

TEST(ReferenceIds, MissingIdsAreANullPointer) {
  Problem problem;
  problem.params.batch = 2;
  problem.params.num_keys = 2;
  problem.params.dim = 2;
  problem.q = {1, 0, 0, 1};
  problem.k = problem.q;
  problem.options.type = IdType::kInt64;
  IdsForward out;
  EXPECT_EQ(reference::infonce_ids_forward(problem.params, problem.options, problem.q.data(),
                                           problem.k.data(), nullptr, nullptr, &out),
            Status::kNullPointer);
  problem.options.type = IdType::kNone;  // no ids: none are read
  EXPECT_EQ(reference::infonce_ids_forward(problem.params, problem.options, problem.q.data(),
                                           problem.k.data(), nullptr, nullptr, &out),
            Status::kSuccess);
}

}  // namespace
}  // namespace contrastive
