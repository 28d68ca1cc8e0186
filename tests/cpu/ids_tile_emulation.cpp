// The masked softmax heads' tile walk (host/engine/masked_softmax_head.cpp), emulated on the CPU
// with the helpers their kernels run (kernels/id_mask.hpp, kernels/online_softmax.hpp) and the
// engine's plan of the problem (infonce::detail::to_problem: head kind, saved layout, gradient
// factor), against the float64 reference of ids: every mode, tiles narrower and shorter than the
// matrix, positive offsets, int32 and int64 ids. The tile holds fp32 similarities as the GEMM
// writes them; each row's statistics merge across column tiles, each positive column's across
// row tiles, as on the device. A mistake in the mask's indices (a tile's col0, the column
// direction's owner row, the offset) or in the multi-positive mean would be silent on a GPU
// test that happens to use one tile.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/ids.hpp"
#include "contrastive/reference.hpp"
#include "host/plan/infonce_plan.hpp"
#include "kernels/id_mask.hpp"
#include "kernels/logit_scalars.hpp"
#include "kernels/online_softmax.hpp"
#include "support/finite_difference.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using ids::IdOptions;
using ids::IdType;
using kernels::IdMask;
using kernels::key_role;
using kernels::KeyRole;
using kernels::lse_empty;
using kernels::lse_merge;
using kernels::lse_push;
using kernels::lse_value;
using kernels::LseState;
using kernels::masked_row_loss;
using kernels::masked_xent_grad;

struct Case {
  std::string name;
  std::int64_t batch, num_keys, offset;
  IdOptions options;
  bool symmetric = false;
  bool same_rows = false;  // Q = K (rows [offset, offset + B) of K): NT-Xent / SupCon
  Reduction reduction = Reduction::kMean;
  std::int64_t tile_rows = 0, tile_cols = 0;
  std::int64_t id_classes = 3;  // ids drawn from [0, id_classes)
};

struct Emulated {
  std::vector<float> loss, row_lse, col_lse;
  std::vector<double> grad_logits;  // (B, M), the reduction's factors applied
  double grad_temperature = 0.0;
};

// The engine's walk for one case: forward (row and column statistics per tile, then the finish),
// then backward (G per tile, times the reduction's factor the GEMMs' alpha and the device factor
// apply).
Emulated emulate(const Case& c, const infonce::Params& params, const std::vector<float>& sim,
                 const std::vector<float>& positive_sim, const std::vector<std::int64_t>& qid,
                 const std::vector<std::int64_t>& kid, const std::vector<float>& upstream) {
  const std::int64_t b = c.batch, m = c.num_keys, offset = c.offset;
  const logits::Problem problem = infonce::detail::to_problem(params);
  EXPECT_TRUE(problem.masked());
  const float s = 1.0f / params.temperature;
  // Ids as the kernels read them: through load_id from an int32 or int64 array.
  std::vector<std::int32_t> narrow_q(qid.begin(), qid.end()), narrow_k(kid.begin(), kid.end());
  IdMask mask;
  if (c.options.type != IdType::kNone) {
    const bool wide = c.options.type == IdType::kInt64;
    mask.row_ids = wide ? static_cast<const void*>(qid.data()) : narrow_q.data();
    mask.key_ids = wide ? static_cast<const void*>(kid.data()) : narrow_k.data();
    mask.wide = wide;
  }
  mask.multi_positive = c.options.multi_positive;
  mask.exclude_self = c.options.exclude_self;
  mask.threshold = c.options.false_negative_threshold;
  mask.margin = c.options.false_negative_margin;
  auto same = [&](std::int64_t row, std::int64_t col) {
    return mask.has_ids() && kernels::load_id(mask.key_ids, mask.wide, col) ==
                                 kernels::load_id(mask.row_ids, mask.wide, row);
  };
  auto psim = [&](std::int64_t row) { return mask.threshold ? positive_sim[row] : 0.0f; };
  std::vector<LseState> row_state(b), col_state(b);
  std::vector<float> positive_sum(b), positive_count(b);
  const std::int64_t tr = c.tile_rows, tc = c.tile_cols;
  for (std::int64_t r0 = 0; r0 < b; r0 += tr) {
    for (std::int64_t c0 = 0; c0 < m; c0 += tc) {
      const std::int64_t r1 = std::min(b, r0 + tr), c1 = std::min(m, c0 + tc);
      for (std::int64_t i = r0; i < r1; ++i) {  // the row kernel
        LseState state = lse_empty();
        float sum = 0.0f, count = 0.0f;
        for (std::int64_t j = c0; j < c1; ++j) {
          const float x = sim[i * m + j];
          const KeyRole role = key_role(mask, j == i + offset, same(i, j), x, psim(i));
          if (role.kept) state = lse_push(state, s * x);
          if (role.positive) {
            sum += s * x;
            count += 1.0f;
          }
        }
        const bool first = c0 == 0;
        row_state[i] = first ? state : lse_merge(row_state[i], state);
        positive_sum[i] = first ? sum : positive_sum[i] + sum;
        positive_count[i] = first ? count : positive_count[i] + count;
      }
      if (problem.columns()) {  // the column kernel over the part inside the positive columns
        for (std::int64_t j = std::max(c0, offset); j < std::min(c1, offset + b); ++j) {
          const std::int64_t owner = j - offset;
          LseState state = lse_empty();
          for (std::int64_t i = r0; i < r1; ++i) {
            const float x = sim[i * m + j];
            if (key_role(mask, i == owner, same(i, j), x, psim(owner)).kept) {
              state = lse_push(state, s * x);
            }
          }
          col_state[owner] = r0 == 0 ? state : lse_merge(col_state[owner], state);
        }
      }
    }
  }
  Emulated out;
  out.row_lse.resize(b);
  out.col_lse.resize(b);
  double total = 0.0, active = 0.0;
  std::vector<float> row_loss(b);
  for (std::int64_t i = 0; i < b; ++i) {  // the finish
    out.row_lse[i] = lse_value(row_state[i]);
    row_loss[i] = masked_row_loss(out.row_lse[i], positive_sum[i], positive_count[i]);
    if (problem.columns()) {
      out.col_lse[i] = lse_value(col_state[i]);
      row_loss[i] = 0.5f * (row_loss[i] + (out.col_lse[i] - positive_sum[i]));
    }
    total += row_loss[i];
    if (positive_count[i] > 0.0f) active += 1.0;
  }
  if (c.reduction == Reduction::kNone) {
    out.loss = row_loss;
  } else if (c.reduction == Reduction::kSum) {
    out.loss = {static_cast<float>(total)};
  } else {
    const double divisor = problem.mean_over_positive_rows() ? active : static_cast<double>(b);
    out.loss = {static_cast<float>(divisor > 0.0 ? total / divisor : 0.0)};
  }
  // Backward: G from what forward saved; the reduction's factor (host, or 1 / positive rows on
  // the device) applied afterwards, as the gradient GEMMs and the finishing kernels do.
  double factor = logits::gradient_factor(problem);
  if (problem.mean_over_positive_rows()) factor *= active > 0.0 ? 1.0 / active : 0.0;
  const kernels::ResolvedScalars scalars =
      kernels::resolve_scalars(params.temperature, kernels::ScaleForm::kTemperature, 0.0f, 0.0f,
                               logits::gradient_factor(problem));
  const double device_factor =
      problem.mean_over_positive_rows() ? (active > 0.0 ? 1.0 / active : 0.0) : 1.0;
  auto weight = [&](std::int64_t row) {
    return c.reduction == Reduction::kNone ? upstream[row] : upstream[0];
  };
  out.grad_logits.assign(static_cast<std::size_t>(b * m), 0.0);
  double grad_dot_logit = 0.0;
  for (std::int64_t r0 = 0; r0 < b; r0 += tr) {
    for (std::int64_t c0 = 0; c0 < m; c0 += tc) {
      const std::int64_t r1 = std::min(b, r0 + tr), c1 = std::min(m, c0 + tc);
      for (std::int64_t i = r0; i < r1; ++i) {
        const float count = c.options.multi_positive ? positive_count[i] : 1.0f;
        const bool row_active = count > 0.0f;
        float tile_sum = 0.0f;
        for (std::int64_t j = c0; j < c1; ++j) {
          const float x = sim[i * m + j], logit = s * x;
          const KeyRole role = key_role(mask, j == i + offset, same(i, j), x, psim(i));
          float g = masked_xent_grad(logit, out.row_lse[i], role, row_active ? 1.0f / count : 0.0f,
                                     row_active, weight(i));
          const std::int64_t owner = j - offset;
          if (problem.columns() && owner >= 0 && owner < b) {
            const KeyRole column = key_role(mask, i == owner, same(i, j), x, psim(owner));
            g += masked_xent_grad(logit, out.col_lse[owner], column, 1.0f, true, weight(owner));
          }
          tile_sum += kernels::grad_times_logit(g, logit);
          out.grad_logits[i * m + j] = factor * g;
        }
        grad_dot_logit += tile_sum;
      }
    }
  }
  out.grad_temperature = scalars.scale_gradient_factor * device_factor * grad_dot_logit;
  return out;
}

double cosine(const std::vector<double>& x, std::int64_t i, const std::vector<double>& y,
              std::int64_t j, std::int64_t d) {
  double dot = 0.0, nx = 0.0, ny = 0.0;
  for (std::int64_t e = 0; e < d; ++e) {
    dot += x[i * d + e] * y[j * d + e];
    nx += x[i * d + e] * x[i * d + e];
    ny += y[j * d + e] * y[j * d + e];
  }
  return dot / (std::sqrt(nx) * std::sqrt(ny));
}

void run_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const std::int64_t b = c.batch, m = c.num_keys, d = 8;
  std::mt19937_64 engine(std::hash<std::string>{}(c.name));
  std::vector<double> k = testing::random_normal_f32(static_cast<std::size_t>(m * d), engine);
  std::vector<double> q(k.begin() + c.offset * d, k.begin() + (c.offset + b) * d);
  if (!c.same_rows) q = testing::random_normal_f32(static_cast<std::size_t>(b * d), engine);
  std::uniform_int_distribution<std::int64_t> id(0, c.id_classes - 1);
  std::vector<std::int64_t> kid(static_cast<std::size_t>(m)), qid(static_cast<std::size_t>(b));
  for (auto& value : kid) value = id(engine) * 1000003 - 7;  // not small, some negative
  for (std::int64_t i = 0; i < b; ++i) {
    qid[i] = c.same_rows ? kid[i + c.offset] : id(engine) * 1000003 - 7;
  }
  infonce::Params params;
  params.batch = b;
  params.num_keys = m;
  params.dim = d;
  params.positive_offset = c.offset;
  params.temperature = 0.2f;
  params.symmetric = c.symmetric;
  params.reduction = c.reduction;
  params.ids = c.options;
  ASSERT_EQ(infonce::check(params), Status::kSuccess) << last_error_message();
  std::vector<float> sim(static_cast<std::size_t>(b * m)), positive_sim(b);
  for (std::int64_t i = 0; i < b; ++i) {
    for (std::int64_t j = 0; j < m; ++j) sim[i * m + j] = static_cast<float>(cosine(q, i, k, j, d));
    positive_sim[i] = static_cast<float>(cosine(q, i, k, i + c.offset, d));
  }
  std::vector<float> upstream(c.reduction == Reduction::kNone ? b : 1);
  std::vector<double> upstream64(upstream.size());
  for (std::size_t r = 0; r < upstream.size(); ++r) {
    upstream[r] = 0.5f + 0.25f * static_cast<float>(r % 3);
    upstream64[r] = upstream[r];
  }
  const Emulated got = emulate(c, params, sim, positive_sim, qid, kid, upstream);
  const auto want = testing::reference_output<reference::IdsForward>([&](auto* out) {
    return reference::infonce_ids_forward(params, c.options, q.data(), k.data(), qid.data(),
                                          kid.data(), out);
  });
  const auto want_grad = testing::reference_output<reference::InfoNCEBackward>([&](auto* out) {
    return reference::infonce_ids_backward(params, c.options, q.data(), k.data(), qid.data(),
                                           kid.data(), upstream64.data(), out);
  });
  ASSERT_EQ(got.loss.size(), want.loss.size());
  for (std::size_t r = 0; r < got.loss.size(); ++r) {
    EXPECT_NEAR(got.loss[r], want.loss[r], 2e-5 * (1.0 + std::abs(want.loss[r]))) << "loss " << r;
  }
  for (std::int64_t i = 0; i < b; ++i) {
    if (std::isinf(want.row_lse[i])) {
      EXPECT_EQ(got.row_lse[i], -INFINITY) << "row " << i;
    } else {
      EXPECT_NEAR(got.row_lse[i], want.row_lse[i], 2e-5 * (1.0 + std::abs(want.row_lse[i])));
    }
    if (c.symmetric) {
      EXPECT_NEAR(got.col_lse[i], want.col_lse[i], 2e-5 * (1.0 + std::abs(want.col_lse[i])));
    }
  }
  for (std::int64_t e = 0; e < b * m; ++e) {
    if (want_grad.grad_logits[e] == 0.0) {
      EXPECT_EQ(got.grad_logits[e], 0.0) << "a masked element " << e << " has a gradient";
    } else {
      EXPECT_NEAR(got.grad_logits[e], want_grad.grad_logits[e], 2e-6) << "element " << e;
    }
  }
  EXPECT_NEAR(got.grad_temperature, want_grad.grad_temperature,
              1e-4 * (1.0 + std::abs(want_grad.grad_temperature)));
}

IdOptions options(IdType type, bool multi, bool exclude_self, bool threshold, float margin) {
  IdOptions o;
  o.type = type;
  o.multi_positive = multi;
  o.exclude_self = exclude_self;
  o.false_negative_threshold = threshold;
  o.false_negative_margin = margin;
  return o;
}

TEST(IdsTileEmulation, MaskingDuplicatesEveryTileShapeAndOffset) {
  for (IdType type : {IdType::kInt32, IdType::kInt64}) {
    for (std::int64_t offset : {0, 3}) {
      for (auto tiles : {std::pair<std::int64_t, std::int64_t>{64, 64}, {5, 7}, {1, 13}, {9, 1}}) {
        Case c{"mask type " + std::to_string(static_cast<int>(type)) + " offset " +
                   std::to_string(offset) + " tile " + std::to_string(tiles.first) + "x" +
                   std::to_string(tiles.second),
               11, 19, offset, options(type, false, false, false, 0.0f)};
        c.tile_rows = tiles.first;
        c.tile_cols = tiles.second;
        run_case(c);
      }
    }
  }
}

TEST(IdsTileEmulation, ThresholdWithAndWithoutIds) {
  for (IdType type : {IdType::kNone, IdType::kInt64}) {
    for (float margin : {-0.1f, 0.0f, 0.3f}) {
      Case c{
          "threshold " + std::to_string(margin) + " ids " + std::to_string(static_cast<int>(type)),
          10, 17, 2, options(type, false, false, true, margin)};
      c.tile_rows = 4;
      c.tile_cols = 6;
      run_case(c);
    }
  }
}

TEST(IdsTileEmulation, SymmetricMaskingAndThreshold) {
  for (bool threshold : {false, true}) {
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      Case c{"symmetric threshold " + std::to_string(threshold) + " reduction " +
                 std::to_string(static_cast<int>(reduction)),
             9, 14, 4, options(IdType::kInt32, false, false, threshold, -0.05f)};
      c.symmetric = true;
      c.reduction = reduction;
      c.tile_rows = 4;
      c.tile_cols = 5;
      run_case(c);
    }
  }
}

TEST(IdsTileEmulation, MultiPositiveSupConAndNtXent) {
  for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    for (bool exclude_self : {false, true}) {
      Case c{"multi exclude_self " + std::to_string(exclude_self) + " reduction " +
                 std::to_string(static_cast<int>(reduction)),
             12, 12, 0, options(IdType::kInt64, true, exclude_self, false, 0.0f)};
      c.same_rows = true;
      c.reduction = reduction;
      c.tile_rows = 5;
      c.tile_cols = 7;
      c.id_classes = 4;
      run_case(c);
    }
  }
}

TEST(IdsTileEmulation, MultiPositiveRowsWithoutPositiveAndOffsets) {
  // Many classes: some rows have no positive (they contribute 0 and leave the mean's divisor).
  Case c{"multi sparse", 10, 24, 5, options(IdType::kInt32, true, true, false, 0.0f)};
  c.same_rows = true;
  c.tile_rows = 3;
  c.tile_cols = 8;
  c.id_classes = 12;
  run_case(c);
}

TEST(IdsTileEmulation, NoPositiveAnywhereGivesZeroAndAnEmptyRowIsNotNan) {
  // One row that is its own only key: every key masked, lse -inf, loss 0, no gradient.
  Case c{"empty row", 1, 1, 0, options(IdType::kInt32, true, true, false, 0.0f)};
  c.same_rows = true;
  c.tile_rows = 1;
  c.tile_cols = 1;
  run_case(c);
  Case distinct{"no positive", 6, 6, 0, options(IdType::kInt64, true, true, false, 0.0f)};
  distinct.same_rows = true;
  distinct.tile_rows = 4;
  distinct.tile_cols = 4;
  distinct.id_classes = 1000000;  // all distinct, almost surely
  run_case(distinct);
}

}  // namespace
}  // namespace contrastive
