// The per-anchor kernels (kernels/anchor_candidates.cu) emulated on the CPU: the same arithmetic
// (kernels/anchor_math.hpp), the same mapping of anchors and candidates onto warps and lanes, the
// same fixed order of every sum (chunks within a lane, butterflies over lanes, per-warp partials
// merged in warp order), against the float64 reference. Also: the vector and scalar paths give
// the same bits, rows scaled by powers of two give the same similarities bit for bit, and a
// confident row keeps its small loss.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/reference.hpp"
#include "kernels/anchor_math.hpp"
#include "kernels/numeric.hpp"
#include "kernels/online_softmax.hpp"

namespace contrastive::kernels {
namespace {

using anchor::kChunkElements;
using anchor::kLanes;
using anchor::kTileChunks;
using anchor::kTileElements;

// ---- The emulator
// --------------------------------------------------------------------------------

enum class Load { kVector, kScalar };

template <typename T>
struct AnchorProblem {
  std::int64_t batch = 0, count = 0, dim = 0;
  bool cosine = true;
  float eps = 1e-12f;
  std::vector<T> anchors;       // (B, D)
  std::vector<T> candidates;    // (B, count, D): candidate t of anchor b is row b * count + t
  std::vector<float> upstream;  // softmax: (B) per row; hinge: (B, count) per term
};

struct Emulated {
  std::vector<float> sim, inverse_norm, anchor_inverse_norm, weight;  // saved state, weights
  std::vector<float> loss;  // softmax: (B) row losses; hinge: (B, count) terms
  std::vector<float> grad_anchors, grad_candidates;  // as T, widened
};

// A warp's xor butterfly: every lane combines its value with its partner's, five times. Returns
// lane 0's result and checks that every lane ends with the same bits.
template <typename V, typename Op>
V butterfly(std::array<V, kLanes> lanes, Op op) {
  for (int mask = kLanes / 2; mask > 0; mask /= 2) {
    std::array<V, kLanes> next{};
    for (int l = 0; l < kLanes; ++l) next[l] = op(lanes[l], lanes[l ^ mask]);
    lanes = next;
  }
  for (int l = 1; l < kLanes; ++l) {
    EXPECT_EQ(std::memcmp(&lanes[l], &lanes[0], sizeof(V)), 0) << "lane " << l << " differs";
  }
  return lanes[0];
}

template <typename T>
void load_chunk(const T* row, std::int64_t chunk, std::int64_t dim, Load load,
                float (&out)[kChunkElements<T>]) {
  constexpr int kV = kChunkElements<T>;
  T values[kV];
  if (load == Load::kVector) {
    std::memcpy(values, row + chunk * kV, sizeof(values));  // the 16-byte load (dim % kV == 0)
  } else {
    for (int i = 0; i < kV; ++i) {
      const std::int64_t d = chunk * kV + i;
      values[i] = d < dim ? row[d] : from_float<T>(0.0f);
    }
  }
  for (int i = 0; i < kV; ++i) out[i] = to_float(values[i]);
}

template <typename T>
void store_chunk(std::vector<float>& row_out, std::int64_t offset, std::int64_t chunk,
                 std::int64_t dim, const float (&in)[kChunkElements<T>]) {
  for (int i = 0; i < kChunkElements<T>; ++i) {
    const std::int64_t d = chunk * kChunkElements<T> + i;
    if (d < dim) row_out[static_cast<std::size_t>(offset + d)] = round_to<T>(in[i]);
  }
}

struct SoftmaxRule {
  float scale;
};
struct HingeRule {
  float margin;
};

// Phase 1 for every (anchor, candidate): lane l sums chunks l, l + 32, ... in order.
template <typename T>
void phase1(const AnchorProblem<T>& p, Load load, Emulated& out) {
  constexpr int kV = kChunkElements<T>;
  const std::int64_t chunks = (p.dim + kV - 1) / kV;
  out.sim.assign(static_cast<std::size_t>(p.batch * p.count), 0.0f);
  out.inverse_norm = out.sim;
  out.anchor_inverse_norm.assign(static_cast<std::size_t>(p.batch), 1.0f);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const T* a_row = p.anchors.data() + b * p.dim;
    std::vector<double> dots(static_cast<std::size_t>(p.count));
    for (std::int64_t t = 0; t < p.count; ++t) {
      const T* c_row = p.candidates.data() + (b * p.count + t) * p.dim;
      std::array<anchor::RowSums, kLanes> lanes{};
      for (int l = 0; l < kLanes; ++l) {
        for (std::int64_t chunk = l; chunk < chunks; chunk += kLanes) {
          float a[kV], c[kV];
          load_chunk(a_row, chunk, p.dim, load, a);
          load_chunk(c_row, chunk, p.dim, load, c);
          anchor::add_chunk<T>(a, c, p.cosine, p.cosine && t == 0, lanes[l]);
        }
      }
      auto field = [&](double anchor::RowSums::*member) {
        std::array<double, kLanes> values{};
        for (int l = 0; l < kLanes; ++l) values[l] = lanes[l].*member;
        return butterfly(values, [](double x, double y) { return x + y; });
      };
      dots[t] = field(&anchor::RowSums::dot);
      const auto slot = static_cast<std::size_t>(b * p.count + t);
      out.inverse_norm[slot] =
          p.cosine ? anchor::encode_inverse_norm(field(&anchor::RowSums::squares), p.eps) : 1.0f;
      if (p.cosine && t == 0) {
        out.anchor_inverse_norm[b] =
            anchor::encode_inverse_norm(field(&anchor::RowSums::anchor_squares), p.eps);
      }
    }
    for (std::int64_t t = 0; t < p.count; ++t) {
      const auto slot = static_cast<std::size_t>(b * p.count + t);
      out.sim[slot] =
          p.cosine ? anchor::cosine(dots[t], out.anchor_inverse_norm[b], out.inverse_norm[slot])
                   : static_cast<float>(dots[t]);
    }
  }
}

template <typename F>
float lanes_sum(std::int64_t count, F term) {  // lanes strided over candidates, then a butterfly
  std::array<float, kLanes> lanes{};
  for (int l = 0; l < kLanes; ++l) {
    for (std::int64_t t = l; t < count; t += kLanes) lanes[l] += term(t);
  }
  return butterfly(lanes, [](float x, float y) { return x + y; });
}

// The heads: per-row losses and each candidate's weight; returns sum_t w_t sim_t per row.
template <typename T>
std::vector<float> head(const AnchorProblem<T>& p, SoftmaxRule rule, Emulated& out) {
  std::vector<float> weighted(static_cast<std::size_t>(p.batch));
  out.weight.assign(out.sim.size(), 0.0f);
  out.loss.assign(static_cast<std::size_t>(p.batch), 0.0f);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const float* sim = out.sim.data() + b * p.count;
    float* weight = out.weight.data() + b * p.count;
    std::array<float, kLanes> maxima;
    maxima.fill(-INFINITY);
    for (int l = 0; l < kLanes; ++l) {
      for (std::int64_t t = l; t < p.count; t += kLanes) {
        maxima[l] = nan_propagating_max(maxima[l], rule.scale * sim[t]);
      }
    }
    const float max = butterfly(maxima, [](float x, float y) { return nan_propagating_max(x, y); });
    const float others = lanes_sum(p.count, [&](std::int64_t t) {
      return t == 0 ? 0.0f : std::exp(rule.scale * sim[t] - max);
    });
    const PositiveTerms row = softmax_positive(max, rule.scale * sim[0], others);
    out.loss[b] = row.loss;
    const float row_weight = p.upstream[b];
    for (std::int64_t t = 0; t < p.count; ++t) {
      const float logit = rule.scale * sim[t];
      weight[t] = row_weight * (t == 0 ? row.grad : std::exp(logit - row.lse)) * rule.scale;
    }
    weighted[b] = lanes_sum(p.count, [&](std::int64_t t) { return weight[t] * sim[t]; });
  }
  return weighted;
}

template <typename T>
std::vector<float> head(const AnchorProblem<T>& p, HingeRule rule, Emulated& out) {
  std::vector<float> weighted(static_cast<std::size_t>(p.batch));
  out.weight.assign(out.sim.size(), 0.0f);
  out.loss.assign(out.sim.size(), 0.0f);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t t = 0; t < p.count; ++t) {
      const auto slot = static_cast<std::size_t>(b * p.count + t);
      out.loss[slot] = anchor::hinge_term(out.sim[slot], rule.margin);
      out.weight[slot] = anchor::hinge_weight(out.sim[slot], rule.margin, p.upstream[slot]);
    }
    const float* sim = out.sim.data() + b * p.count;
    const float* weight = out.weight.data() + b * p.count;
    weighted[b] = lanes_sum(p.count, [&](std::int64_t t) { return weight[t] * sim[t]; });
  }
  return weighted;
}

// Phase 2: tiles of the embedding; warp w of an anchor takes candidates w, w + W, ... and keeps
// its share of sum_t w_t c_hat_t; the shares merge in warp order.
template <typename T>
void phase2(const AnchorProblem<T>& p, Load load, const std::vector<float>& weighted,
            Emulated& out) {
  constexpr int kV = kChunkElements<T>, kK = kTileChunks<T>;
  const std::int64_t chunks = (p.dim + kV - 1) / kV;
  const int per_anchor = anchor::anchor_grouping(p.count).warps_per_anchor;
  const std::int64_t used = std::min<std::int64_t>(per_anchor, p.count);
  out.grad_anchors.assign(static_cast<std::size_t>(p.batch * p.dim), NAN);
  out.grad_candidates.assign(static_cast<std::size_t>(p.batch * p.count * p.dim), NAN);
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const T* a_row = p.anchors.data() + b * p.dim;
    const float anchor_encoded = out.anchor_inverse_norm[b];
    const float a_inv = p.cosine ? anchor::inverse_norm(anchor_encoded) : 1.0f;
    const float anchor_term = p.cosine && !anchor::clamped(anchor_encoded) ? weighted[b] : 0.0f;
    for (std::int64_t tile = 0; tile < chunks; tile += kLanes * kK) {
      std::vector<float> partial(static_cast<std::size_t>(per_anchor * kTileElements), 0.0f);
      for (int warp = 0; warp < per_anchor; ++warp) {
        for (int lane = 0; lane < kLanes; ++lane) {
          for (int k = 0; k < kK; ++k) {
            const std::int64_t chunk = tile + k * kLanes + lane;
            if (chunk >= chunks) continue;
            float a_hat[kV];
            load_chunk(a_row, chunk, p.dim, load, a_hat);
            for (int i = 0; i < kV; ++i) a_hat[i] *= a_inv;
            float* accumulated = partial.data() + warp * kTileElements + (k * kLanes + lane) * kV;
            for (std::int64_t t = warp; t < p.count; t += per_anchor) {
              const auto slot = static_cast<std::size_t>(b * p.count + t);
              const std::int64_t grad_offset = (b * p.count + t) * p.dim;
              const float w = out.weight[slot];
              if (w == 0.0f) {
                const float zeros[kV] = {};
                store_chunk<T>(out.grad_candidates, grad_offset, chunk, p.dim, zeros);
                continue;
              }
              float c[kV], grad[kV];
              load_chunk(p.candidates.data() + grad_offset, chunk, p.dim, load, c);
              const float encoded = out.inverse_norm[slot];
              const float c_inv = anchor::inverse_norm(encoded);
              const float projection = p.cosine && !anchor::clamped(encoded) ? out.sim[slot] : 0.0f;
              for (int i = 0; i < kV; ++i) {
                if (p.cosine) {
                  const float c_hat = c[i] * c_inv;
                  grad[i] = anchor::cosine_candidate_grad(a_hat[i], c_hat, projection, w * c_inv);
                  accumulated[i] = std::fma(w, c_hat, accumulated[i]);
                } else {
                  grad[i] = w * a_hat[i];
                  accumulated[i] = std::fma(w, c[i], accumulated[i]);
                }
              }
              store_chunk<T>(out.grad_candidates, grad_offset, chunk, p.dim, grad);
            }
          }
        }
      }
      for (int j = 0; j < kLanes * kK; ++j) {
        const std::int64_t chunk = tile + j;
        if (chunk >= chunks) break;
        float sum[kV], a[kV];
        for (int i = 0; i < kV; ++i) sum[i] = partial[j * kV + i];
        for (std::int64_t w = 1; w < used; ++w) {
          for (int i = 0; i < kV; ++i) sum[i] += partial[w * kTileElements + j * kV + i];
        }
        if (p.cosine) {
          load_chunk(a_row, chunk, p.dim, load, a);
          for (int i = 0; i < kV; ++i) {
            sum[i] = anchor::cosine_anchor_grad(sum[i], a[i] * a_inv, anchor_term, a_inv);
          }
        }
        store_chunk<T>(out.grad_anchors, b * p.dim, chunk, p.dim, sum);
      }
    }
  }
}

template <typename T, typename Rule>
Emulated emulate(const AnchorProblem<T>& p, Rule rule, Load load) {
  Emulated out;
  phase1(p, load, out);
  const std::vector<float> weighted = head(p, rule, out);
  phase2(p, load, weighted, out);
  return out;
}

// ---- Inputs and checks
// ---------------------------------------------------------------------------

template <typename T>
AnchorProblem<T> make_problem(std::int64_t batch, std::int64_t count, std::int64_t dim, bool cosine,
                              std::size_t upstream, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> positive(0.5f, 1.5f);
  AnchorProblem<T> p;
  p.batch = batch;
  p.count = count;
  p.dim = dim;
  p.cosine = cosine;
  const float spread = cosine ? 1.0f : 1.0f / std::sqrt(static_cast<float>(dim));
  for (std::int64_t i = 0; i < batch * dim; ++i) p.anchors.push_back(from_float<T>(normal(engine)));
  for (std::int64_t i = 0; i < batch * count * dim; ++i) {
    p.candidates.push_back(from_float<T>(spread * normal(engine)));
  }
  for (std::size_t i = 0; i < upstream; ++i) p.upstream.push_back(positive(engine));
  return p;
}

template <typename T>
std::vector<double> widen(const std::vector<T>& values) {
  std::vector<double> out;
  for (const T& value : values) out.push_back(to_float(value));
  return out;
}

// |x - ref| <= rtol |ref| + atol max|ref| for each value (atol relative to the largest).
void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                  double rtol, double atol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double largest = 0.0;
  for (double value : expected) largest = std::max(largest, std::fabs(value));
  int reported = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double error = std::fabs(actual[i] - expected[i]);
    if (!(error <= rtol * std::fabs(expected[i]) + atol * largest) && reported++ < 5) {
      ADD_FAILURE() << what << "[" << i << "] = " << actual[i] << ", reference " << expected[i];
    }
  }
}

void expect_same_bits(const std::vector<float>& x, const std::vector<float>& y,
                      const std::string& what) {
  ASSERT_EQ(x.size(), y.size()) << what;
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << what;
}

void expect_same_bits(const Emulated& x, const Emulated& y) {
  expect_same_bits(x.sim, y.sim, "sim");
  expect_same_bits(x.inverse_norm, y.inverse_norm, "inverse norms");
  expect_same_bits(x.loss, y.loss, "loss");
  expect_same_bits(x.grad_anchors, y.grad_anchors, "grad_anchors");
  expect_same_bits(x.grad_candidates, y.grad_candidates, "grad_candidates");
}

struct Shape {
  std::int64_t batch, count, dim;
  bool cosine;
};

std::string shape_name(const ::testing::TestParamInfo<Shape>& info) {
  const Shape& s = info.param;
  return "B" + std::to_string(s.batch) + "_count" + std::to_string(s.count) + "_D" +
         std::to_string(s.dim) + (s.cosine ? "_cosine" : "_dot");
}

// Counts that put 8, 4, 2 and 1 anchors in a block, a count that leaves a warp idle (3), several
// candidates per warp (17, 128); widths below a chunk, with a scalar tail, over several tiles.
const Shape kShapes[] = {
    {5, 1, 8, true},    {5, 2, 64, true},    {3, 3, 3, true},    {5, 4, 1000, true},
    {3, 17, 40, false}, {2, 17, 1100, true}, {2, 128, 96, true}, {3, 2, 33, false},
    {9, 2, 768, true},  {2, 9, 384, false},
};

class AnchorEmulation : public ::testing::TestWithParam<Shape> {};

template <typename T>
void check_softmax(const Shape& s, double rtol, double atol) {
  const AnchorProblem<T> p =
      make_problem<T>(s.batch, s.count, s.dim, s.cosine, static_cast<std::size_t>(s.batch), 7);
  if (s.count < 2) return;  // MNR needs a negative
  const SoftmaxRule rule{s.cosine ? 16.0f : 1.0f};
  const Emulated out = emulate(p, rule, Load::kScalar);
  mnr::PerAnchorParams params;
  params.batch = s.batch;
  params.negatives = s.count - 1;
  params.dim = s.dim;
  params.similarity = s.cosine ? Similarity::kCosine : Similarity::kDot;
  params.reduction = Reduction::kNone;
  params.scale = rule.scale;
  params.eps = p.eps;
  const std::vector<double> anchors = widen(p.anchors), candidates = widen(p.candidates);
  std::vector<double> positives, negatives;
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t t = 0; t < s.count; ++t) {
      auto& to = t == 0 ? positives : negatives;
      to.insert(to.end(), candidates.begin() + (b * s.count + t) * s.dim,
                candidates.begin() + (b * s.count + t + 1) * s.dim);
    }
  }
  const std::vector<double> upstream(p.upstream.begin(), p.upstream.end());
  reference::MnrPerAnchorForward forward;
  reference::MnrPerAnchorBackward backward;
  ASSERT_EQ(reference::mnr_per_anchor_forward(params, anchors.data(), positives.data(),
                                              negatives.data(), &forward),
            Status::kSuccess);
  ASSERT_EQ(reference::mnr_per_anchor_backward(params, anchors.data(), positives.data(),
                                               negatives.data(), upstream.data(), &backward),
            Status::kSuccess);
  expect_close(out.loss, forward.loss, rtol, atol, "loss");
  std::vector<double> grad_candidates;
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t t = 0; t < s.count; ++t) {
      const auto& from = t == 0 ? backward.grad_positives : backward.grad_negatives;
      const std::int64_t row = t == 0 ? b : b * (s.count - 1) + t - 1;
      grad_candidates.insert(grad_candidates.end(), from.begin() + row * s.dim,
                             from.begin() + (row + 1) * s.dim);
    }
  }
  expect_close(out.grad_anchors, backward.grad_anchors, rtol, atol, "grad_anchors");
  expect_close(out.grad_candidates, grad_candidates, rtol, atol, "grad_candidates");
}

template <typename T>
void check_hinge(const Shape& s, double rtol, double atol) {
  if (!s.cosine) return;  // Repel is cosine only
  const AnchorProblem<T> p = make_problem<T>(s.batch, s.count, s.dim, true,
                                             static_cast<std::size_t>(s.batch * s.count), 11);
  // A margin at the median similarity: about half the terms are inactive (zero weight, skipped).
  Emulated probe;
  phase1(p, Load::kScalar, probe);
  std::vector<float> sorted = probe.sim;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t middle = sorted.size() / 2;
  const float margin =
      middle == 0 ? sorted[0] - 0.5f : 0.5f * (sorted[middle - 1] + sorted[middle]);
  const Emulated out = emulate(p, HingeRule{margin}, Load::kScalar);
  repel::Params params;
  params.batch = s.batch;
  params.negatives = s.count;
  params.dim = s.dim;
  params.reduction = Reduction::kNone;
  params.margin = margin;
  params.eps = p.eps;
  const std::vector<double> anchors = widen(p.anchors), negatives = widen(p.candidates);
  const std::vector<double> upstream(p.upstream.begin(), p.upstream.end());
  reference::RepelForward forward;
  reference::RepelBackward backward;
  ASSERT_EQ(reference::repel_forward(params, anchors.data(), negatives.data(), &forward),
            Status::kSuccess);
  ASSERT_EQ(reference::repel_backward(params, anchors.data(), negatives.data(), upstream.data(),
                                      &backward),
            Status::kSuccess);
  expect_close(out.sim, forward.similarities, 4e-7, 4e-7, "similarities");
  expect_close(out.loss, forward.loss, rtol, atol, "terms");
  expect_close(out.grad_anchors, backward.grad_anchors, rtol, atol, "grad_anchors");
  expect_close(out.grad_candidates, backward.grad_negatives, rtol, atol, "grad_negatives");
}

TEST_P(AnchorEmulation, SoftmaxHeadMatchesTheReferenceFp32) {
  check_softmax<float>(GetParam(), 2e-5, 2e-6);
}
TEST_P(AnchorEmulation, SoftmaxHeadMatchesTheReferenceBf16) {
  check_softmax<__nv_bfloat16>(GetParam(), 1.0 / 128, 1.0 / 256);
}
TEST_P(AnchorEmulation, HingeHeadMatchesTheReferenceFp32) {
  check_hinge<float>(GetParam(), 2e-5, 2e-6);
}
TEST_P(AnchorEmulation, HingeHeadMatchesTheReferenceBf16) {
  check_hinge<__nv_bfloat16>(GetParam(), 1.0 / 128, 1.0 / 256);
}

TEST_P(AnchorEmulation, SoftmaxHeadMatchesTheReferenceFp16) {
  check_softmax<__half>(GetParam(), 1.0 / 512, 1.0 / 1024);
}
TEST_P(AnchorEmulation, HingeHeadMatchesTheReferenceFp16) {
  check_hinge<__half>(GetParam(), 1.0 / 512, 1.0 / 1024);
}

// Where a chunk is whole (D a multiple of 16 bytes), the 16-byte loads and the element loads sum
// the same chunks in the same order: the same bits, whatever the rows' alignment decides.
template <typename T>
void check_paths_agree(const Shape& s) {
  if (s.dim % kChunkElements<T> != 0) return;
  const AnchorProblem<T> p = make_problem<T>(s.batch, s.count, s.dim, s.cosine,
                                             static_cast<std::size_t>(s.batch * s.count), 3);
  expect_same_bits(emulate(p, SoftmaxRule{8.0f}, Load::kVector),
                   emulate(p, SoftmaxRule{8.0f}, Load::kScalar));
  expect_same_bits(emulate(p, HingeRule{0.0f}, Load::kVector),
                   emulate(p, HingeRule{0.0f}, Load::kScalar));
}

TEST_P(AnchorEmulation, VectorAndScalarPathsGiveTheSameBits) {
  check_paths_agree<float>(GetParam());
  check_paths_agree<__nv_bfloat16>(GetParam());
  check_paths_agree<__half>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Shapes, AnchorEmulation, ::testing::ValuesIn(kShapes), shape_name);

// Phase 1's four-in-one warp sum (warp_sum_four in the kernel): lanes keep half their values at
// the first two steps and send the rest. Lane 8q's total of value q has the same bits as a full
// butterfly of value q.
TEST(AnchorReduction, FourSumsInOneButterflyGiveTheButterflyBits) {
  std::mt19937_64 engine(17);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  for (int trial = 0; trial < 20; ++trial) {
    std::array<std::array<double, 4>, kLanes> values{};
    for (auto& lane : values) {
      for (double& v : lane) v = uniform(engine) * std::pow(10.0, trial % 7);
    }
    // The exchange, lane by lane.
    std::array<double, kLanes> keep0{}, keep1{}, keep{};
    for (int l = 0; l < kLanes; ++l) {
      const bool upper = (l & 16) != 0;
      const auto& mine = values[l];
      const auto& partner = values[l ^ 16];
      keep0[l] = (upper ? mine[2] : mine[0]) + (upper ? partner[2] : partner[0]);
      keep1[l] = (upper ? mine[3] : mine[1]) + (upper ? partner[3] : partner[1]);
    }
    for (int l = 0; l < kLanes; ++l) {
      const bool odd = (l & 8) != 0;
      keep[l] = (odd ? keep1[l] : keep0[l]) + (odd ? keep1[l ^ 8] : keep0[l ^ 8]);
    }
    for (int mask = 4; mask > 0; mask /= 2) {
      std::array<double, kLanes> next{};
      for (int l = 0; l < kLanes; ++l) next[l] = keep[l] + keep[l ^ mask];
      keep = next;
    }
    for (int q = 0; q < 4; ++q) {
      std::array<double, kLanes> column{};
      for (int l = 0; l < kLanes; ++l) column[l] = values[l][q];
      const double full = butterfly(column, [](double x, double y) { return x + y; });
      for (int l = 8 * q; l < 8 * q + 8; ++l) {
        ASSERT_EQ(std::memcmp(&keep[l], &full, sizeof(double)), 0)
            << "value " << q << " lane " << l;
      }
    }
  }
}

// ---- Mapping and shared memory
// -------------------------------------------------------------------

TEST(AnchorMapping, WarpsPerAnchorFillTheBlock) {
  const std::int64_t counts[] = {1, 2, 3, 4, 5, 8, 9, 17, 128, 2048};
  const int warps[] = {1, 2, 4, 4, 8, 8, 8, 8, 8, 8};
  for (std::size_t i = 0; i < std::size(counts); ++i) {
    const anchor::Grouping g = anchor::anchor_grouping(counts[i]);
    EXPECT_EQ(g.warps_per_anchor, warps[i]) << "count " << counts[i];
    EXPECT_EQ(g.warps_per_anchor * g.anchors_per_block, anchor::kWarps);
  }
  // MNR with n = 1 (two candidates): four anchors per block, every warp busy.
  EXPECT_EQ(anchor::anchor_blocks(256, 2), 64);
  EXPECT_EQ(anchor::anchor_blocks(257, 2), 65);  // the last block's spare anchors idle
  EXPECT_EQ(anchor::anchor_blocks(8192, 128), 8192);
}

TEST(AnchorMapping, SharedMemoryFitsEveryCount) {
  for (std::int64_t count = 1; count <= 2048; ++count) {
    const std::size_t forward = anchor::anchor_shared_bytes(count, false);
    const std::size_t backward = anchor::anchor_shared_bytes(count, true);
    ASSERT_LE(backward, 227u * 1024) << "count " << count;  // the H100/H200 per-block limit
    ASSERT_EQ(backward - forward, std::size_t{anchor::kWarps} * kTileElements * sizeof(float));
    ASSERT_EQ(forward % 16, 0u);
  }
  EXPECT_LE(anchor::anchor_shared_bytes(128, true), 48u * 1024);  // no opt-in for common counts
}

// ---- Chunk sums
// ----------------------------------------------------------------------------------

// Rows times 2^100 or 2^-100 give the same similarity and inverse norms times the factor's
// inverse, bit for bit: each chunk is summed at its own power-of-two scale.
TEST(AnchorChunks, PowerOfTwoScalingIsExact) {
  for (const float factor : {0x1p100f, 0x1p-100f, 0x1p60f}) {
    AnchorProblem<float> p = make_problem<float>(3, 4, 100, true, 3, 5);
    p.eps = 1e-36f;
    Emulated plain;
    phase1(p, Load::kScalar, plain);
    for (float& x : p.candidates) x *= factor;
    for (float& x : p.anchors) x *= factor;
    Emulated scaled;
    phase1(p, Load::kScalar, scaled);
    expect_same_bits(scaled.sim, plain.sim, "similarities");
    for (std::size_t i = 0; i < plain.inverse_norm.size(); ++i) {
      ASSERT_EQ(scaled.inverse_norm[i], plain.inverse_norm[i] / factor) << i;
    }
  }
}

TEST(AnchorChunks, BfloatRowsNearTheTopOfTheRangeStayFinite) {
  AnchorProblem<__nv_bfloat16> p = make_problem<__nv_bfloat16>(2, 2, 64, true, 2, 9);
  for (auto& x : p.candidates) x = from_float<__nv_bfloat16>(to_float(x) * 0x1p120f);
  Emulated out;
  phase1(p, Load::kVector, out);
  for (float sim : out.sim) {
    ASSERT_TRUE(std::isfinite(sim));
    ASSERT_LE(std::fabs(sim), 1.0f + 1e-6f);
  }
}

TEST(AnchorChunks, ChunkDotIsPairwise) {
  const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(anchor::chunk_dot(x, y), 36.0f);
  const float big[4] = {0x1p24f, 1.0f, 1.0f, 1.0f}, ones[4] = {1, 1, 1, 1};
  // (2^24 + 1) + (1 + 1) = 2^24 + 2; left to right each +1 would round away, giving 2^24.
  EXPECT_EQ(anchor::chunk_dot(big, ones), 0x1p24f + 2.0f);
}

TEST(AnchorChunks, ZeroAndNaNRows) {
  float a[4] = {0, 0, 0, 0}, c[4] = {1, 2, 3, 4};
  anchor::RowSums sums;
  anchor::add_chunk<float>(a, c, true, true, sums);
  EXPECT_EQ(sums.dot, 0.0);
  EXPECT_EQ(sums.anchor_squares, 0.0);
  EXPECT_EQ(sums.squares, 30.0);
  const float encoded = anchor::encode_inverse_norm(0.0, 1e-12f);
  EXPECT_TRUE(anchor::clamped(encoded)) << "a zero row is clamped to eps";
  EXPECT_EQ(anchor::inverse_norm(encoded), 1.0f / 1e-12f);
  float nan_row[4] = {1, NAN, 0, 0}, d[4] = {1, 1, 1, 1};
  anchor::RowSums nan_sums;
  anchor::add_chunk<float>(nan_row, d, true, true, nan_sums);
  EXPECT_TRUE(std::isnan(nan_sums.dot));
  const float nan_encoded = anchor::encode_inverse_norm(nan_sums.anchor_squares, 1e-12f);
  EXPECT_TRUE(std::isnan(nan_encoded));
  EXPECT_FALSE(anchor::clamped(nan_encoded));
  EXPECT_TRUE(std::isnan(anchor::hinge_weight(NAN, 0.3f, 1.0f))) << "never skipped as inactive";
  EXPECT_EQ(anchor::hinge_weight(0.2f, 0.3f, 1.0f), 0.0f);
  EXPECT_EQ(anchor::hinge_weight(0.4f, 0.3f, 2.0f), 2.0f);
}

// ---- The positive's terms
// ------------------------------------------------------------------------

TEST(SoftmaxPositive, ConfidentRowsKeepTheirLoss) {
  // logit_0 = top, the others 0: loss = log(1 + n e^{-top}), far below 1e-7 |lse|; the tolerance
  // allows for the fp32 sum of the n equal terms.
  for (const double top : {20.0, 40.0, 80.0}) {
    for (const int others : {1, 3, 127}) {
      float max = static_cast<float>(top), sum = 0.0f;
      for (int t = 0; t < others; ++t) sum += std::exp(0.0f - max);
      const PositiveTerms row = softmax_positive(max, max, sum);
      const double loss = std::log1p(others * std::exp(-top));
      const double grad = -others * std::exp(-top) / (1.0 + others * std::exp(-top));
      EXPECT_NEAR(row.loss, loss, 1e-5 * loss) << top << " " << others;
      EXPECT_NEAR(row.grad, grad, 1e-5 * std::fabs(grad)) << top << " " << others;
      EXPECT_GT(row.loss, 0.0f);
      EXPECT_NEAR(row.lse, top + std::log1p(others * std::exp(-top)), 4e-6 * top);
    }
  }
}

TEST(SoftmaxPositive, OrdinaryRowsMatchTheDirectForms) {
  const std::vector<std::vector<double>> rows = {
      {1.0, 2.0, 3.0}, {3.0, 2.0, 1.0}, {0.0, 0.0}, {-5.0, 4.0, 4.0, -1.0}, {2.5, 2.5000001}};
  for (const auto& logits : rows) {
    double max = logits[0];
    for (double x : logits) max = std::max(max, x);
    double z = 0.0;
    for (double x : logits) z += std::exp(x - max);
    const double lse = max + std::log(z);
    const auto max_f = static_cast<float>(max);
    float others = 0.0f;
    for (std::size_t t = 1; t < logits.size(); ++t) {
      others += std::exp(static_cast<float>(logits[t]) - max_f);
    }
    const PositiveTerms row = softmax_positive(max_f, static_cast<float>(logits[0]), others);
    EXPECT_NEAR(row.lse, lse, 1e-6 * (1.0 + std::fabs(lse)));
    EXPECT_NEAR(row.loss, lse - logits[0], 1e-6 * (1.0 + std::fabs(lse)));
    EXPECT_NEAR(row.grad, std::exp(logits[0] - lse) - 1.0, 1e-6);
  }
}

TEST(SoftmaxPositive, NaNStaysNaN) {
  const PositiveTerms row = softmax_positive(NAN, 1.0f, 0.5f);
  EXPECT_TRUE(std::isnan(row.lse));
  EXPECT_TRUE(std::isnan(row.loss));
  EXPECT_TRUE(std::isnan(row.grad));
  const PositiveTerms others = softmax_positive(2.0f, 2.0f, NAN);
  EXPECT_TRUE(std::isnan(others.loss));
  EXPECT_TRUE(std::isnan(others.grad));
}

}  // namespace
}  // namespace contrastive::kernels
