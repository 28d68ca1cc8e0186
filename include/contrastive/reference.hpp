// The float64 CPU reference for every loss: straightforward loops, no CUDA, used by the tests, the
// benchmarks and the demo to judge the GPU results. Same Params as the GPU path; the dtype and the
// tiling fields are ignored (inputs are always double here).
#pragma once

#include <vector>

#include "contrastive/export.h"
#include "contrastive/infonce.hpp"
#include "contrastive/status.hpp"

namespace contrastive::reference {

struct InfoNCEForward {
  std::vector<double> loss;     ///< 1 value, or B for Reduction::kNone
  std::vector<double> row_lse;  ///< (B) logsumexp of each row of the logits
  std::vector<double> col_lse;  ///< (B) logsumexp of each positive column; symmetric only
  std::vector<double> logits;   ///< (B, M) row-major: sim(q_i, k_j) / temperature
};

struct InfoNCEBackward {
  std::vector<double> grad_q;       ///< (B, D) dense
  std::vector<double> grad_k;       ///< (M, D) dense
  double grad_temperature = 0.0;    ///< dLoss/dtemperature
  std::vector<double> grad_logits;  ///< (B, M) dLoss/dlogits, for diagnostics and error bounds
};

/// @param q (B, q_row_stride) row-major
/// @param k (M, k_row_stride) row-major
CONTRASTIVE_API Status infonce_forward(const infonce::Params& params, const double* q,
                                       const double* k, InfoNCEForward* out);

/// @param grad_loss upstream gradient: (1), or (B) for Reduction::kNone; null means 1
CONTRASTIVE_API Status infonce_backward(const infonce::Params& params, const double* q,
                                        const double* k, const double* grad_loss,
                                        InfoNCEBackward* out);

}  // namespace contrastive::reference
