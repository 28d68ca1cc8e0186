// SigLIP's sigmoid head and its tile walk, emulated on the CPU with the engine's own plan
// (logits::plan_workspace: tiles, the padded pitch, which pieces exist), its GEMM descriptions
// (logits::tile_products, executed on the host), the kernels' per-logit math
// (kernels/sigmoid_math.hpp), the element types' rounding (kernels/numeric.hpp: the logits tile in
// logits_dtype, G in the input dtype) and the head's bookkeeping: each row's three scratch sums
// overwritten by its first column tile and accumulated over the rest, forward_backward producing
// the loss and G from the same read of a tile, the similarities in the tile with s applied by the
// kernels, the reduction's factor in the GEMMs' alpha, s applied when the gradients are finished,
// and the scalars resolved as the device resolves them (kernels/logit_scalars.hpp). Compared with
// the float64 reference under the tolerance policy across tile shapes, precisions and modes;
// scratch, tiles and accumulators start as NaN, so a read before a write shows.
//
// Also here, as TolerancePolicy does for InfoNCE: the naive fp32 SigLIP meets SigLIP's fp32
// bounds, and the bounds catch a 5 % error.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/siglip.hpp"
#include "host/engine/heads.hpp"
#include "host/plan/siglip_plan.hpp"
#include "kernels/online_softmax.hpp"
#include "kernels/sigmoid_math.hpp"
#include "support/host_gemm.hpp"
#include "support/random.hpp"
#include "support/siglip_cases.hpp"

namespace contrastive {
namespace {

using detail::Extent;
using siglip::Params;
using testing::element_of;
using testing::Inputs;
using testing::run_on_host;
using testing::SigLIPResults;
using testing::store_element;

// A buffer of `count` elements of `dtype`, every byte 0xFF (NaN in every type).
std::vector<unsigned char> poisoned(std::int64_t count, DType dtype) {
  return std::vector<unsigned char>(static_cast<std::size_t>(count) * dtype_size(dtype), 0xFF);
}

std::vector<float> floats_of(const std::vector<unsigned char>& bytes, DType dtype,
                             std::int64_t count) {
  return testing::decode(dtype, bytes.data(), static_cast<std::size_t>(count));
}

// The engine's pass `pass` over `in`, on the host.
SigLIPResults emulate(const Params& p, const Inputs& in, Pass pass) {
  const logits::Problem problem = siglip::detail::to_problem(p);
  logits::WorkspacePlan plan;
  EXPECT_EQ(logits::plan_workspace(problem, "siglip", &plan), Status::kSuccess);
  const std::int64_t b = p.batch, m = p.num_keys, d = p.dim, ld = plan.tile_pitch;
  const kernels::ResolvedScalars scalars = testing::siglip_scalars(p);
  const float s = scalars.logit_scale;
  const double f = logits::gradient_factor(problem);

  // The GEMMs' operands: normalized rows in the dtype (cosine), or the caller's strided rows.
  std::vector<float> q_norms, k_norms;
  std::vector<unsigned char> q_bytes, k_bytes;
  logits::TileOperands operands;
  if (problem.cosine()) {
    const std::vector<float> q_hat =
        testing::naive_detail::gemm_rows(in.q, b, problem.q_stride, p, &q_norms);
    const std::vector<float> k_hat =
        testing::naive_detail::gemm_rows(in.k, m, problem.k_stride, p, &k_norms);
    q_bytes = testing::encode(p.dtype, std::vector<double>(q_hat.begin(), q_hat.end()));
    k_bytes = testing::encode(p.dtype, std::vector<double>(k_hat.begin(), k_hat.end()));
    operands = {q_bytes.data(), d, k_bytes.data(), d};
  } else {
    q_bytes = testing::encode(p.dtype, in.q);
    k_bytes = testing::encode(p.dtype, in.k);
    operands = {q_bytes.data(), problem.q_stride, k_bytes.data(), problem.k_stride};
  }
  // The tile (and G's own tile when its type differs), the fp32 accumulators (or the caller's
  // f32 gradients, written directly), the head's scratch: all NaN until written.
  std::vector<unsigned char> tile = poisoned(plan.tiles.tile_rows * ld, p.logits_dtype);
  std::vector<unsigned char> own_grad_tile;
  if (plan.grad_tile != logits::WorkspacePlan::kAbsent) {
    own_grad_tile = poisoned(plan.tiles.tile_rows * ld, p.dtype);
  }
  void* grad_tile = own_grad_tile.empty() ? tile.data() : own_grad_tile.data();
  std::vector<float> grad_q_sum(static_cast<std::size_t>(b * d), NAN);
  std::vector<float> grad_k_sum(static_cast<std::size_t>(m * d), NAN);
  std::vector<float> row_loss(b, NAN), row_grad_dot_logit(b, NAN), row_grad(b, NAN);

  auto logits_of = [&](Extent rows, Extent cols) {
    std::fill(tile.begin(), tile.end(), 0xFF);
    // The GEMM writes the similarities (alpha 1); the kernels take s * sim.
    run_on_host(logits::tile_products(problem, plan, operands, rows, cols, 1.0f, tile.data(),
                                      nullptr, nullptr, nullptr, false, false)
                    .logits);
  };
  auto positive = [&](std::int64_t row, std::int64_t col) {
    return !problem.negatives_only && col == row + problem.positive_offset;
  };
  const bool forward_pass = pass != Pass::kBackward, backward_pass = pass != Pass::kForward;
  const auto& tiles = plan.tiles;
  if (pass == Pass::kForward) {  // forward_tile: the rows' losses only
    for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
      for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
        const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
        logits_of(rows, cols);
        for (std::int64_t i = 0; i < rows.size; ++i) {
          const std::int64_t row = rows.begin + i;
          float loss = 0.0f;
          for (std::int64_t j = 0; j < cols.size; ++j) {
            const float l = s * element_of(tile.data(), p.logits_dtype, i * ld + j) + scalars.bias;
            loss += kernels::sigmoid_xent(l, positive(row, cols.begin + j));
          }
          row_loss[row] = c == 0 ? loss : row_loss[row] + loss;
        }
      }
    }
  }
  if (backward_pass) {  // backward_tile (with forward's sums when fused), then the products
    // The products land in fp32 accumulators, or (f32 dot) in the caller's f32 gradients: both
    // are dense fp32 (B, D) and (M, D) here.
    float* target_q = grad_q_sum.data();
    float* target_k = grad_k_sum.data();
    for (std::int64_t r = 0; r < tiles.row_tiles(); ++r) {
      for (std::int64_t c = 0; c < tiles.col_tiles(); ++c) {
        const Extent rows = tiles.row_tile(r), cols = tiles.col_tile(c);
        logits_of(rows, cols);
        for (std::int64_t i = 0; i < rows.size; ++i) {
          const std::int64_t row = rows.begin + i;
          const float weight = testing::siglip_upstream(p, in, row);
          float dot = 0.0f, sum = 0.0f, loss = 0.0f;
          for (std::int64_t j = 0; j < cols.size; ++j) {
            const float logit = s * element_of(tile.data(), p.logits_dtype, i * ld + j);
            const float l = logit + scalars.bias;
            const bool is_positive = positive(row, cols.begin + j);
            const float g = kernels::sigmoid_xent_grad(l, is_positive, weight);
            store_element(grad_tile, p.dtype, i * ld + j, g);
            dot += kernels::grad_times_logit(g, logit);
            sum += g;
            if (forward_pass) loss += kernels::sigmoid_xent(l, is_positive);
          }
          row_grad_dot_logit[row] = c == 0 ? dot : row_grad_dot_logit[row] + dot;
          row_grad[row] = c == 0 ? sum : row_grad[row] + sum;
          if (forward_pass) row_loss[row] = c == 0 ? loss : row_loss[row] + loss;
        }
        const logits::TileProducts products =
            logits::tile_products(problem, plan, operands, rows, cols, 1.0f, tile.data(), grad_tile,
                                  target_q, target_k, c > 0, r > 0);
        run_on_host(products.grad_q);
        run_on_host(products.grad_k);
      }
    }
  }
  SigLIPResults out;
  if (forward_pass) {
    out.loss = testing::reduce_rows(p, row_loss);
    out.saved = q_norms;
    out.saved.insert(out.saved.end(), k_norms.begin(), k_norms.end());
  }
  if (!backward_pass) return out;
  // The finishing kernels take s times the products' sums.
  for (float& value : grad_q_sum) value *= s;
  for (float& value : grad_k_sum) value *= s;
  if (problem.cosine()) {
    out.grad_q =
        testing::naive_detail::normalize_backward(in.q, b, problem.q_stride, p, grad_q_sum);
    out.grad_k =
        testing::naive_detail::normalize_backward(in.k, m, problem.k_stride, p, grad_k_sum);
  } else {  // stored in the dtype (a plain copy for f32)
    out.grad_q =
        floats_of(testing::encode(p.dtype, {grad_q_sum.begin(), grad_q_sum.end()}), p.dtype, b * d);
    out.grad_k =
        floats_of(testing::encode(p.dtype, {grad_k_sum.begin(), grad_k_sum.end()}), p.dtype, m * d);
  }
  double dot_total = 0.0, grad_total = 0.0;
  for (std::int64_t i = 0; i < b; ++i) {
    dot_total += row_grad_dot_logit[i];
    grad_total += row_grad[i];
  }
  out.grad_scale = {static_cast<float>(scalars.scale_gradient_factor * dot_total)};
  out.grad_bias = {static_cast<float>(f * grad_total)};
  return out;
}

struct WalkCase {
  const char* name;
  std::int64_t batch, keys, dim, offset, tile_rows, tile_cols, row_padding;
  Similarity similarity;
  Reduction reduction;
  DType dtype, logits_dtype;
  bool log_scale, negatives_only;
  float scale, bias;

  Params params() const {
    Params p;
    p.batch = batch;
    p.num_keys = keys;
    p.dim = dim;
    p.positive_offset = offset;
    p.tile_rows = tile_rows;
    p.tile_cols = tile_cols;
    p.q_row_stride = row_padding == 0 ? 0 : dim + row_padding;
    p.k_row_stride = row_padding == 0 ? 0 : dim + 2 * row_padding;
    p.similarity = similarity;
    p.reduction = reduction;
    p.dtype = dtype;
    p.logits_dtype = logits_dtype;
    p.log_scale = log_scale;
    p.negatives_only = negatives_only;
    p.scale = scale;
    p.bias = bias;
    return p;
  }
};

void PrintTo(const WalkCase& c, std::ostream* out) {
  *out << c.name;
}

constexpr auto kCos = Similarity::kCosine;
constexpr auto kDot = Similarity::kDot;
constexpr auto kMean = Reduction::kMean;
constexpr auto kSum = Reduction::kSum;
constexpr auto kNone = Reduction::kNone;
constexpr auto kF32 = DType::kF32;
constexpr auto kBF16 = DType::kBF16;
constexpr auto kF16 = DType::kF16;

const WalkCase kWalks[] = {
    // name, B, M, D, offset, tile, padding, similarity, reduction, dtype, tile dtype,
    // log_scale, negatives_only, scale, bias
    {"OneTileF32", 37, 300, 16, 100, 0, 0, 0, kCos, kMean, kF32, kF32, false, false, 10, -10},
    {"RowAndColumnTilesF32Dot", 37, 300, 16, 200, 16, 100, 3, kDot, kSum, kF32, kF32, false, false,
     4, -1},
    {"UnevenTilesOpenClipInit", 45, 45, 8, 0, 7, 13, 0, kCos, kMean, kF32, kF32, true, false,
     2.302585f, -10},
    {"PerRowUpstreamBf16", 20, 129, 5, 109, 6, 129, 0, kCos, kNone, kBF16, kF32, false, false, 10,
     -10},
    {"NegativesOnlyF16Dot", 20, 9, 5, 0, 6, 4, 2, kDot, kMean, kF16, kF32, true, true, 1.5f, -2},
    {"Bf16TileLogScale", 33, 70, 24, 30, 10, 32, 0, kCos, kMean, kBF16, kBF16, true, false,
     2.302585f, -10},
    {"Bf16TileDotOneTile", 16, 16, 32, 0, 0, 0, 1, kDot, kSum, kBF16, kBF16, false, false, 3, 0},
    {"F16CosineNegativesOnly", 12, 40, 16, 0, 5, 17, 0, kCos, kNone, kF16, kF32, false, true, 10,
     -10},
};

class SigLIPTileWalk : public ::testing::TestWithParam<WalkCase> {};

// Every pass against the float64 reference, under the policy: f32 within the fp32 bounds, 16-bit
// within twice the naive same-precision error.
TEST_P(SigLIPTileWalk, MatchesTheFloat64Reference) {
  const Params p = GetParam().params();
  ASSERT_EQ(siglip::check(p), Status::kSuccess) << last_error_message();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  Inputs in = testing::make_inputs(p, engine);
  for (double& g : in.grad_loss) g = static_cast<float>(0.5 + std::fabs(g));
  const testing::SigLIPExpected expected = testing::expected_for(p, in);
  for (Pass pass : {Pass::kForward, Pass::kBackward, Pass::kForwardBackward}) {
    SCOPED_TRACE(pass == Pass::kForward    ? "forward"
                 : pass == Pass::kBackward ? "backward"
                                           : "forward_backward");
    const SigLIPResults out = emulate(p, in, pass);
    testing::expect_matches(p, out, expected, in, pass != Pass::kBackward, pass != Pass::kForward);
  }
}

// Tiles change only the order of fp32 sums: a walk over many tiles and one over a single tile
// agree to a few fp32 roundings of each row's magnitude.
TEST_P(SigLIPTileWalk, TilesAgreeWithOneTile) {
  const Params tiled = GetParam().params();
  Params whole = tiled;
  whole.tile_rows = whole.tile_cols = 0;
  std::mt19937_64 engine(testing::test_seed());
  const Inputs in = testing::make_inputs(tiled, engine);
  const SigLIPResults a = emulate(tiled, in, Pass::kForwardBackward);
  const SigLIPResults b = emulate(whole, in, Pass::kForwardBackward);
  const testing::SigLIPExpected expected = testing::expected_for(whole, in);
  const std::vector<double> loss(b.loss.begin(), b.loss.end());
  EXPECT_TRUE(testing::all_close(a.loss, loss, expected.tolerances.loss, 1));
  EXPECT_TRUE(
      testing::all_close(a.grad_bias, {double{b.grad_bias[0]}}, expected.tolerances.grad_bias));
}

INSTANTIATE_TEST_SUITE_P(Tiles, SigLIPTileWalk, ::testing::ValuesIn(kWalks),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- The fp32 bounds ---------------------------------------------------------------------------

// The naive fp32 SigLIP (sequential float sums) meets the fp32 bounds in every mode, and
// a 5 % error in one row of a gradient, or in a scalar gradient, does not.
TEST(SigLIPTolerance, NaiveF32MeetsTheBoundsAndTheyCatchAnError) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  for (const WalkCase& c : kWalks) {
    if (c.dtype != kF32) continue;
    for (Similarity similarity : {kCos, kDot}) {
      SCOPED_TRACE(std::string(c.name) + (similarity == kCos ? " cosine" : " dot"));
      Params p = c.params();
      p.similarity = similarity;
      const Inputs in = testing::make_inputs(p, engine);
      const testing::SigLIPExpected expected = testing::expected_for(p, in);
      SigLIPResults naive = testing::naive_siglip(p, in);
      testing::expect_matches(p, naive, expected, in, true, true);
      for (std::int64_t c = 0; c < p.dim; ++c) naive.grad_q[c] *= 1.05f;  // row 0
      naive.grad_bias[0] += 0.05f * std::fabs(naive.grad_bias[0]) + 1e-6f;
      naive.grad_scale[0] *= 1.05f;
      const testing::SigLIPTolerances& tol = expected.tolerances;
      EXPECT_FALSE(testing::all_close(naive.grad_q, expected.backward.grad_q, tol.grad_q,
                                      static_cast<std::size_t>(p.dim)));
      EXPECT_FALSE(
          testing::all_close(naive.grad_bias, {expected.backward.grad_bias}, tol.grad_bias));
      EXPECT_FALSE(
          testing::all_close(naive.grad_scale, {expected.backward.grad_scale}, tol.grad_scale));
    }
  }
}

// A 16-bit implementation with another rounding of its sums (double) passes the 16-bit rule
// against the naive float one.
TEST(SigLIPTolerance, SixteenBitRuleAdmitsAnotherSummationOrder) {
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  for (const WalkCase& c : kWalks) {
    if (c.dtype == kF32) continue;
    SCOPED_TRACE(c.name);
    const Params p = c.params();
    const Inputs in = testing::make_inputs(p, engine);
    const testing::SigLIPExpected expected = testing::expected_for(p, in);
    ASSERT_TRUE(expected.sixteen_bit);
    testing::expect_matches(p, testing::naive_siglip<double>(p, in), expected, in, true, true);
  }
}

// The GPU sweep's own cases (support/siglip_cases.hpp), those of up to 4e7 multiply-adds: valid
// params, and bounds the naive implementations meet (f32 and TF32: the naive fp32 SigLIP within
// the fp32 bounds; 16-bit: one with double sums within twice the naive float one's error), so a
// GPU failure there is the GPU's.
class SigLIPSweepBounds : public ::testing::TestWithParam<testing::SigLIPCase> {};

TEST_P(SigLIPSweepBounds, AreAttainable) {
  const Params p = GetParam().params();
  ASSERT_EQ(siglip::check(p), Status::kSuccess) << last_error_message();
  CONTRASTIVE_TEST_SEED_TRACED(seed);
  std::mt19937_64 engine(seed);
  const Inputs in = testing::make_inputs(p, engine);
  const testing::SigLIPExpected expected = testing::expected_for(p, in);
  const SigLIPResults naive =
      expected.sixteen_bit ? testing::naive_siglip<double>(p, in) : testing::naive_siglip(p, in);
  testing::expect_matches(p, naive, expected, in, true, true);
}

std::vector<testing::SigLIPCase> every_sweep_case() {
  std::vector<testing::SigLIPCase> all = testing::siglip_sweep_cases({testing::Precision{}});
  for (const testing::SigLIPCase& c : testing::siglip_sweep_cases(testing::other_precisions())) {
    all.push_back(c);
  }
  std::vector<testing::SigLIPCase> small;
  for (const testing::SigLIPCase& c : all) {
    if (c.batch * c.num_keys * c.dim <= 40000000) small.push_back(c);
  }
  return small;
}

INSTANTIATE_TEST_SUITE_P(GpuSweep, SigLIPSweepBounds, ::testing::ValuesIn(every_sweep_case()),
                         [](const auto& info) { return testing::case_name(info.param); });

}  // namespace
}  // namespace contrastive
