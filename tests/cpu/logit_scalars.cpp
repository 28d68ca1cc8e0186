// The scalars of the B x M losses: the arithmetic one device thread applies to resolve a
// temperature, scale or log-scale (clamped or not) and a bias (kernels/logit_scalars.hpp), the
// host checks of the new forms, and the float64 references of the log-parametrized and clamped
// forms, whose scalar gradients are checked by central differences and tied to the factor the
// device applies (so that a device-resolved gradient and the reference agree by construction).
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "contrastive/infonce.hpp"
#include "contrastive/mnr.hpp"
#include "contrastive/reference.hpp"
#include "contrastive/siglip.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/plan/logits_plan.hpp"
#include "host/plan/mnr_plan.hpp"
#include "host/plan/siglip_plan.hpp"
#include "kernels/logit_scalars.hpp"
#include "support/finite_difference.hpp"
#include "support/random.hpp"

namespace contrastive {
namespace {

using kernels::resolve_scalars;
using kernels::ResolvedScalars;
using kernels::ScaleForm;

TEST(LogitScalars, EachFormGivesItsScaleAndTheFactorOfItsGradient) {
  const double f = 0.25;
  ResolvedScalars r = resolve_scalars(0.07f, ScaleForm::kTemperature, 0.0f, 0.0f, f);
  EXPECT_EQ(r.logit_scale, 1.0f / 0.07f);
  EXPECT_DOUBLE_EQ(r.scale_gradient_factor, -f * static_cast<double>(1.0f / 0.07f));
  r = resolve_scalars(20.0f, ScaleForm::kScale, 0.0f, -3.0f, f);
  EXPECT_EQ(r.logit_scale, 20.0f);
  EXPECT_EQ(r.bias, -3.0f);
  EXPECT_DOUBLE_EQ(r.scale_gradient_factor, f / 20.0);
  r = resolve_scalars(std::log(10.0f), ScaleForm::kLogScale, 0.0f, 0.0f, f);
  EXPECT_NEAR(r.logit_scale, 10.0f, 1e-5f);
  EXPECT_DOUBLE_EQ(r.scale_gradient_factor, f);  // dLoss/dtheta = s dLoss/ds = f sum(G logits)
  // A log-scale far below 0 is a scale of 0, not an error.
  r = resolve_scalars(-200.0f, ScaleForm::kLogScale, 0.0f, 0.0f, f);
  EXPECT_EQ(r.logit_scale, 0.0f);
  EXPECT_DOUBLE_EQ(r.scale_gradient_factor, f);
}

TEST(LogitScalars, TheClampHoldsTheScaleAndStopsItsGradient) {
  const ResolvedScalars clamped =
      resolve_scalars(std::log(200.0f), ScaleForm::kLogScale, 100.0f, 0.0f, 1.0);
  EXPECT_EQ(clamped.logit_scale, 100.0f);
  EXPECT_EQ(clamped.scale_gradient_factor, 0.0);
  // At the clamp the gradient still flows (as torch.clamp's does).
  const ResolvedScalars at = resolve_scalars(100.0f, ScaleForm::kScale, 100.0f, 0.0f, 1.0);
  EXPECT_EQ(at.logit_scale, 100.0f);
  EXPECT_DOUBLE_EQ(at.scale_gradient_factor, 1.0 / 100.0);
  // A temperature whose reciprocal overflows is usable once clamped.
  const ResolvedScalars tiny = resolve_scalars(1e-39f, ScaleForm::kTemperature, 50.0f, 0.0f, 1.0);
  EXPECT_EQ(tiny.logit_scale, 50.0f);
  EXPECT_EQ(tiny.scale_gradient_factor, 0.0);
}

TEST(LogitScalars, AValueWithNoFinitePositiveScaleGivesNaNNotAPlausibleResult) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const ResolvedScalars& r : {resolve_scalars(0.0f, ScaleForm::kTemperature, 0.0f, 0, 1.0),
                                   resolve_scalars(-1.0f, ScaleForm::kScale, 0.0f, 0, 1.0),
                                   resolve_scalars(nan, ScaleForm::kLogScale, 100.0f, 0, 1.0),
                                   resolve_scalars(100.0f, ScaleForm::kLogScale, 0.0f, 0, 1.0)}) {
    EXPECT_TRUE(std::isnan(r.logit_scale));
    EXPECT_TRUE(std::isnan(r.scale_gradient_factor));
  }
}

TEST(LogitScalars, ChecksOfTheLogFormAndTheClamp) {
  infonce::Params p;
  p.batch = 4, p.num_keys = 6, p.dim = 8;
  p.max_scale = -1.0f;
  EXPECT_EQ(infonce::check(p), Status::kInvalidArgument);
  EXPECT_NE(std::string(last_error_message()).find("max_scale must be finite and >= 0"),
            std::string::npos);
  p.max_scale = 0.0f;
  p.log_scale = true;
  p.temperature = 100.0f;  // theta: exp overflows
  EXPECT_EQ(infonce::check(p), Status::kInvalidArgument);
  p.max_scale = 100.0f;  // clamped: fine
  EXPECT_EQ(infonce::check(p), Status::kSuccess) << last_error_message();
  p.temperature = -1.0f;  // theta < 0 is a scale below 1: fine
  EXPECT_EQ(infonce::check(p), Status::kSuccess) << last_error_message();
  p.log_scale = false;
  p.temperature = 1e-39f;  // 1 / t overflows, but the clamp holds it
  EXPECT_EQ(infonce::check(p), Status::kSuccess) << last_error_message();
  p.max_scale = 0.0f;
  EXPECT_EQ(infonce::check(p), Status::kInvalidArgument);

  mnr::InBatchParams m;
  m.batch = 4, m.dim = 8;
  m.log_scale = true;
  m.scale = -2.0f;  // log(scale): any finite value with a positive finite exp
  EXPECT_EQ(mnr::check(m), Status::kSuccess) << last_error_message();
  m.scale = std::numeric_limits<float>::infinity();
  EXPECT_EQ(mnr::check(m), Status::kInvalidArgument);

  siglip::Params s;
  s.batch = 4, s.num_keys = 4, s.dim = 8;
  s.log_scale = true;
  s.scale = 100.0f;
  s.max_scale = 100.0f;
  EXPECT_EQ(siglip::check(s), Status::kSuccess) << last_error_message();
  EXPECT_EQ(siglip::detail::scale_of(s), 100.0f);
}

std::vector<double> random_rows(std::int64_t rows, std::int64_t dim, std::mt19937_64* engine) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(static_cast<std::size_t>(rows * dim));
  for (double& v : x) v = normal(*engine);
  return x;
}

// sum(dLoss/dlogits * logits), which the kernels sum per row in fp32, times the resolved factor
// over f (the kernels' G leaves f out): what the device writes as the scale parameter's gradient.
double device_form_gradient(const std::vector<double>& grad_logits,
                            const std::vector<double>& logits, double bias,
                            const ResolvedScalars& r, double f) {
  double sum = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) sum += grad_logits[i] * (logits[i] - bias);
  return r.scale_gradient_factor / f * sum;
}

struct Form {
  bool log_scale;
  float value;
  float max_scale;
};

// theta = log 10 unclamped, log 200 clamped at 100, and a plain temperature clamped at 5.
const Form kForms[] = {{true, 2.302585f, 0.0f}, {true, 5.298317f, 100.0f}, {false, 0.1f, 5.0f}};

TEST(LogitScalars, InfoNCEReferenceInEveryFormMatchesItsDifferencesAndTheDeviceFactor) {
  std::mt19937_64 engine(testing::test_seed());
  for (const Form& form : kForms) {
    infonce::Params p;
    p.batch = 3, p.num_keys = 5, p.dim = 4, p.positive_offset = 1;
    p.log_scale = form.log_scale;
    p.temperature = form.value;
    p.max_scale = form.max_scale;
    ASSERT_EQ(infonce::check(p), Status::kSuccess) << last_error_message();
    const std::vector<double> q = random_rows(p.batch, p.dim, &engine);
    const std::vector<double> k = random_rows(p.num_keys, p.dim, &engine);
    auto loss = [&] {
      reference::InfoNCEForward out;
      EXPECT_EQ(reference::infonce_forward(p, q.data(), k.data(), &out), Status::kSuccess);
      return out.loss[0];
    };
    reference::InfoNCEBackward grads;
    ASSERT_EQ(reference::infonce_backward(p, q.data(), k.data(), nullptr, &grads),
              Status::kSuccess);
    testing::expect_float_derivative(p.temperature, grads.grad_temperature, loss,
                                     "InfoNCE temperature parameter");
    reference::InfoNCEForward forward;
    ASSERT_EQ(reference::infonce_forward(p, q.data(), k.data(), &forward), Status::kSuccess);
    const double f = logits::gradient_factor(infonce::detail::to_problem(p));
    const ResolvedScalars r =
        resolve_scalars(p.temperature, p.log_scale ? ScaleForm::kLogScale : ScaleForm::kTemperature,
                        p.max_scale, 0.0f, f);
    EXPECT_NEAR(device_form_gradient(grads.grad_logits, forward.logits, 0.0, r, f),
                grads.grad_temperature, 1e-5 * (1e-6 + std::fabs(grads.grad_temperature)));
    if (form.max_scale > 0.0f) {
      EXPECT_EQ(grads.grad_temperature, 0.0) << "clamped";
    }
    // The ids reference takes the same forms: with every id distinct it is InfoNCE.
    ids::IdOptions distinct;
    distinct.type = ids::IdType::kInt64;
    std::vector<std::int64_t> query_ids(p.batch), key_ids(p.num_keys);
    for (std::int64_t i = 0; i < p.num_keys; ++i) key_ids[i] = i;
    for (std::int64_t i = 0; i < p.batch; ++i) query_ids[i] = i + p.positive_offset;
    reference::InfoNCEBackward with_ids;
    ASSERT_EQ(reference::infonce_ids_backward(p, distinct, q.data(), k.data(), query_ids.data(),
                                              key_ids.data(), nullptr, &with_ids),
              Status::kSuccess)
        << last_error_message();
    EXPECT_NEAR(with_ids.grad_temperature, grads.grad_temperature,
                1e-12 * (1.0 + std::fabs(grads.grad_temperature)));
  }
}

TEST(LogitScalars, InBatchMnrAndSigLIPReferencesInTheLogFormMatchTheirDifferences) {
  std::mt19937_64 engine(testing::test_seed());
  for (const Form& form : kForms) {
    if (!form.log_scale) continue;
    mnr::InBatchParams m;
    m.batch = 3, m.hard_negatives = 1, m.dim = 4;
    m.log_scale = true;
    m.scale = form.value;
    m.max_scale = form.max_scale;
    const std::vector<double> a = random_rows(m.batch, m.dim, &engine);
    const std::vector<double> c = random_rows(2 * m.batch, m.dim, &engine);
    reference::MnrInBatchBackward mg;
    ASSERT_EQ(reference::mnr_in_batch_backward(m, a.data(), c.data(), nullptr, &mg),
              Status::kSuccess);
    testing::expect_float_derivative(
        m.scale, mg.grad_scale,
        [&] {
          reference::InfoNCEForward out;
          EXPECT_EQ(reference::mnr_in_batch_forward(m, a.data(), c.data(), &out), Status::kSuccess);
          return out.loss[0];
        },
        "in-batch MNR log scale");

    siglip::Params s;
    s.batch = 3, s.num_keys = 4, s.dim = 4;
    s.log_scale = true;
    s.scale = form.value;
    s.max_scale = form.max_scale;
    const std::vector<double> q = random_rows(s.batch, s.dim, &engine);
    const std::vector<double> k = random_rows(s.num_keys, s.dim, &engine);
    reference::SigLIPBackward sg;
    ASSERT_EQ(reference::siglip_backward(s, q.data(), k.data(), nullptr, &sg), Status::kSuccess);
    testing::expect_float_derivative(
        s.scale, sg.grad_scale,
        [&] {
          reference::SigLIPForward out;
          EXPECT_EQ(reference::siglip_forward(s, q.data(), k.data(), &out), Status::kSuccess);
          return out.loss[0];
        },
        "SigLIP log scale", 1.0f / 8192);  // the loss curves more at t = 10, b = -10
    reference::SigLIPForward sf;
    ASSERT_EQ(reference::siglip_forward(s, q.data(), k.data(), &sf), Status::kSuccess);
    const double f = logits::gradient_factor(siglip::detail::to_problem(s));
    const ResolvedScalars r =
        resolve_scalars(s.scale, ScaleForm::kLogScale, s.max_scale, s.bias, f);
    EXPECT_NEAR(device_form_gradient(sg.grad_logits, sf.logits, s.bias, r, f), sg.grad_scale,
                1e-5 * (1e-6 + std::fabs(sg.grad_scale)));
  }
}

}  // namespace
}  // namespace contrastive
