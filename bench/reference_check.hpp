// The comparison with the float64 reference (include/contrastive/reference.hpp) that every
// benchmark makes before it times anything, so that a time is never reported for wrong results.
// At the benchmarks' shapes the full reference would take minutes, so it runs on sampled rows R
// (the first, the last and rows spread between): the library is called once with
// Reduction::kNone, giving every row's loss, and once backward with kNone and an upstream
// gradient of 1 on R and 0 elsewhere, whose gradients the reference computes exactly from R alone
// (per-anchor losses: the rows of R; logits losses: every row of Q and K, see
// tests/support/sampled_reference.hpp). The timed call's mean loss must then equal the mean of the
// per-row losses.
//
// Tolerances: a sanity bound, not the precision tests' rule (tests/support/tolerance.hpp holds the
// library to that on the GPU). fp32: the fp32 error model of the reference's own bounds, with a
// margin; 16-bit inputs: plus a few roundings of the dtype, relative to each output's largest
// entry. A wrong index, a missing term or a stale buffer errs by far more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "contrastive/types.hpp"
#include "host/describe/losses.hpp"

namespace contrastive::bench {

/// Up to `count` distinct rows of [0, batch): 0, batch - 1 and rows spread evenly between.
std::vector<std::int64_t> sampled_rows(std::int64_t batch, int count);

/// Host values stored in `dtype` (bytes as downloaded) as doubles.
std::vector<double> to_doubles(const std::vector<unsigned char>& bytes, DType dtype);

/// The unit roundoff of a dtype's storage: 2^-24 (f32), 2^-11 (f16), 2^-8 (bf16).
double unit_roundoff(DType dtype);

/// The error allowed between a library's fp32 mean of `count` values whose magnitudes sum to
/// `magnitude` and the float64 mean of the same values: 16 sqrt(count) fp32 roundings of the mean
/// magnitude (a random walk of rounding errors, with a margin), plus 1e-7.
double mean_tolerance(double count, double magnitude);

/// The relative error (of each output's largest entry) the reference comparison of a per-anchor
/// loss allows: an fp32 dot product's error, 64 sqrt(D) 2^-24 of the largest logit plus one, and
/// for 16-bit inputs 8 roundings of the dtype.
double anchor_relative_tolerance(DType dtype, std::int64_t dim, double largest_logit);

/// The error the comparison of a logits loss (InfoNCE, CLIP, in-batch MNR) allows one value:
/// twice its fp32 bound from tests/support/sampled_reference.hpp, plus for 16-bit inputs 4
/// roundings of the dtype of (`scale` + |reference|), `scale` being its output's largest entry
/// (1 for a loss).
double logits_tolerance(DType dtype, double fp32_bound, double scale, double reference);

/// The largest |value|.
double largest_magnitude(const std::vector<double>& values);

/// Element-by-element comparison of library results with the reference, accumulated over several
/// outputs: the worst error / allowed ratio, and the first element out of bounds.
class Comparison {
 public:
  /// One element: passes when |actual - expected| <= allowed (NaN never passes).
  void add(const std::string& what, std::size_t index, double actual, double expected,
           double allowed);
  /// Every element of an output: allowed = absolute + relative * |expected[i]|.
  void add_all(const std::string& what, const std::vector<double>& actual,
               const std::vector<double>& expected, double absolute, double relative);

  double worst_ratio() const { return worst_ratio_; }
  std::size_t compared() const { return compared_; }
  /// "" when every element passed; else the first failure and how many failed.
  std::string failure() const;

 private:
  std::size_t compared_ = 0, failed_ = 0;
  double worst_ratio_ = 0.0;
  std::string first_failure_;
};

/// Every element of a logits loss's gradient (rows of `dim` values): `actual[i]` against
/// `reference[i]`, allowed logits_tolerance(dtype, row_bound[its row], the largest |reference|,
/// reference[i]).
void add_logits_gradient(Comparison& comparison, const std::string& what, DType dtype,
                         std::int64_t dim, const std::vector<double>& actual,
                         const std::vector<double>& reference,
                         const std::vector<double>& row_bound);

/// Values by tensor name.
using NamedValues = std::map<std::string, std::vector<double>, std::less<>>;

/// The float64 reference of a loss over anchors and per-anchor negatives (per-anchor MNR, Repel):
/// every loss entry (per row, or per (b, n) term), every input's gradient by the name of its
/// gradient tensor in the loss's description, and the largest |logit| the tolerance scales with.
struct AnchorReference {
  std::vector<double> loss;
  NamedValues gradients;
  double largest_logit = 0.0;
};

/// The reference of the loss of `params` (Reduction::kNone) on dense `inputs` named as its
/// description names them, with the upstream gradient `upstream` (one per loss entry). Status
/// kNotSupported for the losses over logits (bench/logits_losses.hpp compares those).
Status anchor_reference(const describe::Params& params, const NamedValues& inputs,
                        const std::vector<double>& upstream, AnchorReference* out);

/// The comparison of a per-anchor loss with `expected`: each loss entry `loss[k]` (reported as
/// `what`[index[k]]) within relative * (1 + |reference|), then each of `gradients` (tensor name
/// and values, in order; reported as "<name> (sampled rows)") within relative * (its largest
/// reference entry + |reference|).
void add_anchor_results(Comparison& comparison, double relative, const std::string& what,
                        const std::vector<std::size_t>& index, const std::vector<double>& loss,
                        const std::vector<std::pair<std::string, std::vector<double>>>& gradients,
                        const AnchorReference& expected);

}  // namespace contrastive::bench
