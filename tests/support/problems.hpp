// Valid problems of each loss, in the C++ API (contrastive::*::Params) and the C API
// (contrastive_*_params_t) alike, for tests that edit one thing of a valid problem: B = 8 rows,
// n = 3 negatives per anchor or K = 2 blocks of hard negatives, D = 16 unless given. CUDA-free.
#pragma once

#include <cstdint>
#include <type_traits>

#include "contrastive/contrastive.h"
#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/repel.hpp"
#include "contrastive/siglip.hpp"

namespace contrastive::testing {

constexpr std::int64_t kProblemBatch = 8, kProblemNegatives = 3, kProblemHardNegatives = 2,
                       kProblemDim = 16;

/// A C++ Params starts at its defaults; a C params struct is brought there by its params_init.
template <typename P>
void init_params(P&) {}
inline void init_params(contrastive_infonce_params_t& p) {
  contrastive_infonce_params_init(&p);
}
inline void init_params(contrastive_mnr_per_anchor_params_t& p) {
  contrastive_mnr_per_anchor_params_init(&p);
}
inline void init_params(contrastive_mnr_in_batch_params_t& p) {
  contrastive_mnr_in_batch_params_init(&p);
}
inline void init_params(contrastive_repel_params_t& p) {
  contrastive_repel_params_init(&p);
}
inline void init_params(contrastive_siglip_params_t& p) {
  contrastive_siglip_params_init(&p);
}

/// InfoNCE or SigLIP (their C++ Params or C params structs): M = `keys`, or B when 0.
template <typename P>
P infonce_problem(std::int64_t batch = kProblemBatch, std::int64_t dim = kProblemDim,
                  std::int64_t keys = 0) {
  P p;
  init_params(p);
  p.batch = batch;
  p.num_keys = keys > 0 ? keys : batch;
  p.dim = dim;
  return p;
}

template <typename P>
constexpr bool kInBatchLayout =
    std::is_same_v<P, mnr::InBatchParams> || std::is_same_v<P, contrastive_mnr_in_batch_params_t>;

/// Per-anchor MNR or Repel (n negatives per anchor), or in-batch MNR (K blocks of hard negatives),
/// in either API; `candidates` 0 takes n = 3 or K = 2.
template <typename P>
P anchor_problem(std::int64_t batch = kProblemBatch, std::int64_t candidates = 0,
                 std::int64_t dim = kProblemDim) {
  P p;
  init_params(p);
  p.batch = batch;
  p.dim = dim;
  if constexpr (kInBatchLayout<P>) {
    p.hard_negatives = candidates > 0 ? candidates : kProblemHardNegatives;
  } else {
    p.negatives = candidates > 0 ? candidates : kProblemNegatives;
  }
  return p;
}

}  // namespace contrastive::testing
