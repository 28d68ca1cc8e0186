// Ids for the losses over B x M logits (InfoNCE, in-batch MNR): duplicates out of the denominator,
// several positives (SupCon), self-exclusion (NT-Xent), a false-negative threshold.
//
// Notation: S_ij = s * sim(q_i, k_j) are the logits (s = 1 / temperature for InfoNCE, the scale for
// in-batch MNR; sim = cosine or dot), pos(i) = i + positive_offset is row i's positive key, and
// a_i (B) and b_j (M) are the integer ids of the query rows and the key rows (in-batch MNR: of the
// anchors and of the (1 + K) B candidates). A key is *kept* in row i when it is in row i's
// denominator; every other key gets dLoss/dS_ij = 0.
//
// Single-positive mode (multi_positive = false; the default):
//   masking      with ids, a key j != pos(i) with b_j == a_i leaves row i (a duplicate of the
//                positive: the same text twice, the same product twice). The positive is always
//                kept, whatever its id.
//   threshold    with false_negative_threshold, a key j != pos(i) with
//                  sim_ij > sim_i,pos(i) - false_negative_margin
//                leaves row i (Qwen3-Embedding's mask has margin -0.1: keys more similar than the
//                positive by 0.1 leave; GIST with the model as its own guide has margin 0). The
//                rule compares similarities, not logits, so it does not depend on the temperature
//                or scale; the mask is a constant for every gradient (that of the temperature or
//                scale included). A key exactly at the threshold is kept.
//   row loss     l_i = lse_{j kept} S_ij - S_i,pos(i), and
//                dl_i/dS_ij = softmax_kept(S_i)_j - [j = pos(i)].
//   Every row keeps its positive, so no row is empty; a row that keeps only its positive has
//   l_i = 0 and no gradient.
//
// Multi-positive mode (multi_positive = true; SupCon's L_out; needs ids):
//   kept         every key, except key pos(i) with exclude_self (Q and K are one set of rows:
//                queries are rows [offset, offset + B) of the keys, so key i + offset is row i
//                itself and leaves row i).
//   positives    P(i) = { j kept : b_j == a_i }.
//   row loss     l_i = lse_{j kept} S_ij - (1 / |P(i)|) sum_{p in P(i)} S_ip, and
//                dl_i/dS_ij = softmax_kept(S_i)_j - [j in P(i)] / |P(i)|.
//   A row with no positive (P(i) empty) contributes l_i = 0 and no gradient. kMean divides the sum
//   by the number of rows that have a positive (reported as positive_rows), not by B; a batch in
//   which no row has one gives loss 0 and zero gradients. kSum and kNone are unchanged (kNone
//   gives 0 for a row with no positive).
//   NT-Xent over V views (features [B, V, D], one id per sample) is Q = K = the B V rows, ids =
//   the sample index, exclude_self, offset 0; with V = 2 it is SimCLR's loss. SupCon is the same
//   with ids = the class labels.
//
// A row whose every key is masked (multi-positive mode only, e.g. B = M = 1 with exclude_self):
// its log-sum-exp over the empty set is -infinity (reported as such), it has no positive, and so
// it contributes 0 to the loss and nothing to any gradient: never NaN.
//
// Symmetric (CLIP) mode with ids is defined by symmetry, in single-positive mode: the column
// direction over the B positive columns c = pos(i) is the same loss with Q and K swapped, so
// row r != i leaves column c when a_r == b_c, or (threshold) when
// sim_rc > sim_ic - false_negative_margin; c_i = lse_{r kept} S_rc - S_ic and each row's loss is
// (l_i + c_i) / 2. Symmetric multi-positive (and so exclude_self) is refused: call the loss twice
// with Q and K swapped instead.
//
// Valid combinations (check() returns kInvalidArgument with a message for any other):
//   multi_positive needs ids (type kInt32 or kInt64);
//   exclude_self needs multi_positive (in single-positive mode key i + offset is the positive);
//   false_negative_threshold needs single-positive mode (sim_i,pos is that of the one positive)
//   and a finite margin; it works with or without ids;
//   symmetric needs single-positive mode.
//
// The float64 reference (reference.hpp, "Ids") defines these semantics. On the GPU, the options
// are infonce::Params::ids and mnr::InBatchParams::ids, and the ids are device arrays in the args
// structs (query_ids / key_ids, anchor_ids / candidate_ids); the logits engine's masked softmax
// head recomputes the mask of each tile from them. docs/ids.md maps SupCon and NT-Xent onto the
// options and states the conventions.
#pragma once

#include "contrastive/export.h"
#include "contrastive/id_options.hpp"
#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/status.hpp"

namespace contrastive::ids {

/// Validates `options` with InfoNCE's `params` (which are checked first, as infonce::check).
/// Returns kInvalidArgument with a message for an unknown type or an invalid combination.
CONTRASTIVE_API Status check(const IdOptions& options, const infonce::Params& params);

/// The same for in-batch MNR (keys = the (1 + K) B candidates, positive offset 0).
CONTRASTIVE_API Status check(const IdOptions& options, const mnr::InBatchParams& params);

}  // namespace contrastive::ids
