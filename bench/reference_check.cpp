#include "bench/reference_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <variant>

#include "contrastive/reference.hpp"
#include "kernels/numeric.hpp"

namespace contrastive::bench {
namespace {

template <typename T>
void convert(const std::vector<unsigned char>& bytes, std::vector<double>* out) {
  const std::size_t count = bytes.size() / sizeof(T);
  out->resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, bytes.data() + i * sizeof(T), sizeof(T));
    (*out)[i] = static_cast<double>(kernels::to_float(value));
  }
}

Status reference_of(const mnr::PerAnchorParams& p, const NamedValues& in,
                    const std::vector<double>& upstream, AnchorReference* out) {
  const double* a = in.at("anchors").data();
  const double* pos = in.at("positives").data();
  const double* neg = in.at("negatives").data();
  reference::MnrPerAnchorForward forward;
  reference::MnrPerAnchorBackward backward;
  Status status = reference::mnr_per_anchor_forward(p, a, pos, neg, &forward);
  if (status == Status::kSuccess) {
    status = reference::mnr_per_anchor_backward(p, a, pos, neg, upstream.data(), &backward);
  }
  out->loss = forward.loss;
  out->gradients = {{"grad_anchors", backward.grad_anchors},
                    {"grad_positives", backward.grad_positives},
                    {"grad_negatives", backward.grad_negatives}};
  out->largest_logit = largest_magnitude(forward.logits);
  return status;
}

Status reference_of(const repel::Params& p, const NamedValues& in,
                    const std::vector<double>& upstream, AnchorReference* out) {
  const double* a = in.at("anchors").data();
  const double* neg = in.at("negatives").data();
  reference::RepelForward forward;
  reference::RepelBackward backward;
  Status status = reference::repel_forward(p, a, neg, &forward);
  if (status == Status::kSuccess) {
    status = reference::repel_backward(p, a, neg, upstream.data(), &backward);
  }
  out->loss = forward.loss;
  out->gradients = {{"grad_anchors", backward.grad_anchors},
                    {"grad_negatives", backward.grad_negatives}};
  out->largest_logit = 1.0;  // |cos| <= 1
  return status;
}

template <typename LossParams>
Status reference_of(const LossParams&, const NamedValues&, const std::vector<double>&,
                    AnchorReference*) {
  return Status::kNotSupported;
}

}  // namespace

Status anchor_reference(const describe::Params& params, const NamedValues& inputs,
                        const std::vector<double>& upstream, AnchorReference* out) {
  return std::visit([&](const auto& p) { return reference_of(p, inputs, upstream, out); }, params);
}

std::vector<std::int64_t> sampled_rows(std::int64_t batch, int count) {
  std::vector<std::int64_t> rows;
  if (batch <= 0 || count <= 0) return rows;
  if (batch <= count) {
    for (std::int64_t r = 0; r < batch; ++r) rows.push_back(r);
    return rows;
  }
  for (int k = 0; k < count; ++k) {
    rows.push_back(static_cast<std::int64_t>(
        std::llround(static_cast<double>(k) * static_cast<double>(batch - 1) / (count - 1))));
  }
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

std::vector<double> to_doubles(const std::vector<unsigned char>& bytes, DType dtype) {
  std::vector<double> out;
  switch (dtype) {
    case DType::kF16: convert<__half>(bytes, &out); break;
    case DType::kBF16: convert<__nv_bfloat16>(bytes, &out); break;
    case DType::kF32: convert<float>(bytes, &out); break;
  }
  return out;
}

double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::kF16: return std::ldexp(1.0, -11);
    case DType::kBF16: return std::ldexp(1.0, -8);
    case DType::kF32: break;
  }
  return std::ldexp(1.0, -24);
}

double mean_tolerance(double count, double magnitude) {
  constexpr double kMeanRoundings = 16.0;
  constexpr double kFloor = 1e-7;
  if (count <= 0.0) return kFloor;
  return kMeanRoundings * std::sqrt(count) * unit_roundoff(DType::kF32) * magnitude / count +
         kFloor;
}

double anchor_relative_tolerance(DType dtype, std::int64_t dim, double largest_logit) {
  constexpr double kDotErrorSafety = 64.0;
  constexpr double kSixteenBitRoundings = 8.0;
  const double fp32 = kDotErrorSafety * std::sqrt(static_cast<double>(dim)) *
                      unit_roundoff(DType::kF32) * (1.0 + largest_logit);
  return fp32 + (dtype == DType::kF32 ? 0.0 : kSixteenBitRoundings * unit_roundoff(dtype));
}

double logits_tolerance(DType dtype, double fp32_bound, double scale, double reference) {
  // The fp32 bounds are the tests' own; the margin keeps a benchmark from stopping on a bound
  // that is tight by design (the GPU tests hold the library to it exactly).
  constexpr double kFp32Margin = 2.0;
  // 16-bit inputs: the library keeps the normalized rows and the logits' gradient in the dtype,
  // so its gradients err by a few roundings of it: a naive same-precision InfoNCE errs by about
  // 1.5 roundings of the largest entry (bench/tests/test_reference_check.cpp), the project's rule
  // allows twice that, and 4 roundings of (largest + |value|) leave room on top.
  constexpr double kSixteenBitRoundings = 4.0;
  const double roundings = dtype == DType::kF32 ? 0.0 : kSixteenBitRoundings * unit_roundoff(dtype);
  return kFp32Margin * fp32_bound + roundings * (scale + std::fabs(reference));
}

double largest_magnitude(const std::vector<double>& values) {
  double largest = 0.0;
  for (const double value : values) largest = std::max(largest, std::fabs(value));
  return largest;
}

void Comparison::add(const std::string& what, std::size_t index, double actual, double expected,
                     double allowed) {
  ++compared_;
  const double error = std::fabs(actual - expected);
  const double ratio = allowed > 0.0
                           ? error / allowed
                           : (error == 0.0 ? 0.0 : std::numeric_limits<double>::infinity());
  if (std::isnan(error) || std::isnan(ratio)) {
    worst_ratio_ = std::numeric_limits<double>::infinity();
  } else {
    worst_ratio_ = std::max(worst_ratio_, ratio);
  }
  if (error <= allowed) return;
  if (failed_++ == 0) {
    std::ostringstream message;
    message.precision(7);
    message << what << "[" << index << "] = " << actual << ", reference " << expected
            << ", allowed +-" << allowed;
    first_failure_ = message.str();
  }
}

void Comparison::add_all(const std::string& what, const std::vector<double>& actual,
                         const std::vector<double>& expected, double absolute, double relative) {
  if (actual.size() != expected.size()) {
    ++failed_;
    if (first_failure_.empty()) {
      first_failure_ = what + ": " + std::to_string(actual.size()) + " values, reference " +
                       std::to_string(expected.size());
    }
    return;
  }
  for (std::size_t i = 0; i < actual.size(); ++i) {
    add(what, i, actual[i], expected[i], absolute + relative * std::fabs(expected[i]));
  }
}

std::string Comparison::failure() const {
  if (failed_ == 0) return "";
  return first_failure_ + " (" + std::to_string(failed_) + " of " + std::to_string(compared_) +
         " values out of bounds)";
}

void add_logits_gradient(Comparison& comparison, const std::string& what, DType dtype,
                         std::int64_t dim, const std::vector<double>& actual,
                         const std::vector<double>& reference,
                         const std::vector<double>& row_bound) {
  if (actual.size() != reference.size()) {
    comparison.add_all(what, actual, reference, 0.0, 0.0);  // reports the sizes
    return;
  }
  const double largest = largest_magnitude(reference);
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const std::size_t row = i / static_cast<std::size_t>(dim);
    comparison.add(what, i, actual[i], reference[i],
                   logits_tolerance(dtype, row_bound[row], largest, reference[i]));
  }
}

void add_anchor_results(Comparison& comparison, double relative, const std::string& what,
                        const std::vector<std::size_t>& index, const std::vector<double>& loss,
                        const std::vector<std::pair<std::string, std::vector<double>>>& gradients,
                        const AnchorReference& expected) {
  if (loss.size() != expected.loss.size() || index.size() != loss.size()) {
    comparison.add_all(what, loss, expected.loss, 0.0, 0.0);  // reports the sizes
  } else {
    for (std::size_t k = 0; k < loss.size(); ++k) {
      comparison.add(what, index[k], loss[k], expected.loss[k],
                     relative * (1.0 + std::fabs(expected.loss[k])));
    }
  }
  for (const auto& [name, actual] : gradients) {
    const auto found = expected.gradients.find(name);
    const std::vector<double> none;
    const std::vector<double>& reference = found == expected.gradients.end() ? none : found->second;
    comparison.add_all(name + " (sampled rows)", actual, reference,
                       relative * largest_magnitude(reference), relative);
  }
}

}  // namespace contrastive::bench
