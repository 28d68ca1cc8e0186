// The kernel launchers, for the fuzzer only: the .cu files need nvcc, and the fuzzer runs no
// kernel. Every call the fuzzer makes has an empty, null or destroyed handle, so the library must
// reject it before launching anything: a stub that is reached aborts, and libFuzzer reports the
// input that got through. (A launcher added to kernels/ needs a stub here; the link says which.)
#include <cstdio>
#include <cstdlib>

#include "kernels/anchor_candidates.hpp"
#include "kernels/masked_softmax_xent.hpp"
#include "kernels/normalize.hpp"
#include "kernels/numeric.hpp"
#include "kernels/reduce.hpp"
#include "kernels/resolve_scalars.hpp"
#include "kernels/sigmoid_xent.hpp"
#include "kernels/softmax_xent.hpp"

namespace contrastive::kernels {
namespace {

[[noreturn]] void launched(const char* kernel) {
  std::fprintf(stderr,
               "fuzz_c_api: %s was launched: a call got past every argument check with an "
               "invalid handle\n",
               kernel);
  std::abort();
}

}  // namespace

cudaError_t launch_resolve_scalars(const ScalarInputs&, ResolvedScalars*, cudaStream_t) {
  launched("resolve_scalars");
}

template <typename T>
cudaError_t launch_normalize_rows(const T*, std::int64_t, std::int64_t, std::int64_t, float,
                                  const float*, float*, T*, cudaStream_t) {
  launched("normalize_rows");
}

template <typename T>
cudaError_t launch_normalize_rows_backward(const T*, std::int64_t, std::int64_t, std::int64_t,
                                           float, const float*, T*, cudaStream_t, const float*) {
  launched("normalize_rows_backward");
}

template <typename T>
cudaError_t launch_convert(const float*, std::int64_t, T*, cudaStream_t, const float*) {
  launched("convert");
}

template <typename L>
cudaError_t launch_row_lse_tile(const LogitsTile&, std::int64_t, LseState*, float*, bool,
                                cudaStream_t) {
  launched("row_lse_tile");
}

template <typename L>
cudaError_t launch_col_lse_tile(const LogitsTile&, LseState*, bool, cudaStream_t) {
  launched("col_lse_tile");
}

cudaError_t launch_finalize_loss(const LseState*, const LseState*, const float*, std::int64_t,
                                 Reduction, float*, float*, float*, cudaStream_t) {
  launched("finalize_loss");
}

template <typename L, typename GT>
cudaError_t launch_logits_backward_tile(const LogitsTile&, GT*, std::int64_t, std::int64_t,
                                        const float*, const float*, UpstreamGradient, float*, bool,
                                        cudaStream_t) {
  launched("logits_backward_tile");
}

template <typename L, typename GT>
cudaError_t launch_row_softmax_xent_tile(const LogitsTile&, GT*, std::int64_t, UpstreamGradient,
                                         LseState*, float*, float*, cudaStream_t) {
  launched("row_softmax_xent_tile");
}

template <typename L>
cudaError_t launch_sigmoid_forward_tile(const LogitsTile&, const float*, SigmoidLabels, float*,
                                        bool, cudaStream_t) {
  launched("sigmoid_forward_tile");
}

template <typename L, typename GT>
cudaError_t launch_sigmoid_backward_tile(const LogitsTile&, GT*, const float*, SigmoidLabels,
                                         UpstreamGradient, SigmoidRowSums, bool, cudaStream_t) {
  launched("sigmoid_backward_tile");
}

cudaError_t launch_sum(const float*, std::int64_t, double, const float*, float*, cudaStream_t,
                       const double*) {
  launched("sum");
}

template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass, const AnchorCandidates&, const SoftmaxHead&,
                                     const AnchorCandidateGrads&, const SavedSimilarities&,
                                     cudaStream_t) {
  launched("anchor_candidates (softmax head)");
}

template <typename T>
cudaError_t launch_anchor_candidates(AnchorPass, const AnchorCandidates&, const HingeHead&,
                                     const AnchorCandidateGrads&, const SavedSimilarities&,
                                     cudaStream_t) {
  launched("anchor_candidates (hinge head)");
}

template <typename T>
cudaError_t launch_positive_similarity(const T*, std::int64_t, const T*, std::int64_t, std::int64_t,
                                       std::int64_t, std::int64_t, float*, cudaStream_t) {
  launched("positive_similarity");
}

template <typename L>
cudaError_t launch_masked_row_stats_tile(const LogitsTile&, const MaskedRows&, LseState*, float*,
                                         float*, bool, cudaStream_t) {
  launched("masked_row_stats_tile");
}

template <typename L>
cudaError_t launch_masked_col_lse_tile(const LogitsTile&, const MaskedRows&, LseState*, bool,
                                       cudaStream_t) {
  launched("masked_col_lse_tile");
}

cudaError_t launch_masked_finalize_loss(const LseState*, const LseState*, const float*,
                                        const float*, std::int64_t, Reduction, bool, float*, float*,
                                        float*, float*, cudaStream_t) {
  launched("masked_finalize_loss");
}

template <typename L, typename GT>
cudaError_t launch_masked_backward_tile(const LogitsTile&, GT*, const MaskedRows&, const float*,
                                        const float*, const float*, UpstreamGradient, float*, bool,
                                        cudaStream_t) {
  launched("masked_backward_tile");
}

cudaError_t launch_positive_rows_scale(const float*, std::int64_t, ResolvedScalars*, cudaStream_t) {
  launched("positive_rows_scale");
}

#define CONTRASTIVE_STUB_TYPE(T)                                                                  \
  template cudaError_t launch_normalize_rows<T>(const T*, std::int64_t, std::int64_t,             \
                                                std::int64_t, float, const float*, float*, T*,    \
                                                cudaStream_t);                                    \
  template cudaError_t launch_normalize_rows_backward<T>(const T*, std::int64_t, std::int64_t,    \
                                                         std::int64_t, float, const float*, T*,   \
                                                         cudaStream_t, const float*);             \
  template cudaError_t launch_convert<T>(const float*, std::int64_t, T*, cudaStream_t,            \
                                         const float*);                                           \
  template cudaError_t launch_anchor_candidates<T>(                                               \
      AnchorPass, const AnchorCandidates&, const SoftmaxHead&, const AnchorCandidateGrads&,       \
      const SavedSimilarities&, cudaStream_t);                                                    \
  template cudaError_t launch_anchor_candidates<T>(AnchorPass, const AnchorCandidates&,           \
                                                   const HingeHead&, const AnchorCandidateGrads&, \
                                                   const SavedSimilarities&, cudaStream_t);       \
  template cudaError_t launch_positive_similarity<T>(const T*, std::int64_t, const T*,            \
                                                     std::int64_t, std::int64_t, std::int64_t,    \
                                                     std::int64_t, float*, cudaStream_t);
CONTRASTIVE_STUB_TYPE(float)
CONTRASTIVE_STUB_TYPE(__half)
CONTRASTIVE_STUB_TYPE(__nv_bfloat16)

#define CONTRASTIVE_STUB_TILE(L)                                                                  \
  template cudaError_t launch_row_lse_tile<L>(const LogitsTile&, std::int64_t, LseState*, float*, \
                                              bool, cudaStream_t);                                \
  template cudaError_t launch_col_lse_tile<L>(const LogitsTile&, LseState*, bool, cudaStream_t);  \
  template cudaError_t launch_sigmoid_forward_tile<L>(const LogitsTile&, const float*,            \
                                                      SigmoidLabels, float*, bool, cudaStream_t); \
  template cudaError_t launch_masked_row_stats_tile<L>(                                           \
      const LogitsTile&, const MaskedRows&, LseState*, float*, float*, bool, cudaStream_t);       \
  template cudaError_t launch_masked_col_lse_tile<L>(const LogitsTile&, const MaskedRows&,        \
                                                     LseState*, bool, cudaStream_t);
#define CONTRASTIVE_STUB_BACKWARD(L, GT)                                                         \
  template cudaError_t launch_logits_backward_tile<L, GT>(                                       \
      const LogitsTile&, GT*, std::int64_t, std::int64_t, const float*, const float*,            \
      UpstreamGradient, float*, bool, cudaStream_t);                                             \
  template cudaError_t launch_row_softmax_xent_tile<L, GT>(const LogitsTile&, GT*, std::int64_t, \
                                                           UpstreamGradient, LseState*, float*,  \
                                                           float*, cudaStream_t);                \
  template cudaError_t launch_sigmoid_backward_tile<L, GT>(const LogitsTile&, GT*, const float*, \
                                                           SigmoidLabels, UpstreamGradient,      \
                                                           SigmoidRowSums, bool, cudaStream_t);  \
  template cudaError_t launch_masked_backward_tile<L, GT>(                                       \
      const LogitsTile&, GT*, const MaskedRows&, const float*, const float*, const float*,       \
      UpstreamGradient, float*, bool, cudaStream_t);
CONTRASTIVE_STUB_TILE(float)
CONTRASTIVE_STUB_TILE(__nv_bfloat16)
CONTRASTIVE_STUB_BACKWARD(float, float)
CONTRASTIVE_STUB_BACKWARD(float, __half)
CONTRASTIVE_STUB_BACKWARD(float, __nv_bfloat16)
CONTRASTIVE_STUB_BACKWARD(__nv_bfloat16, float)
CONTRASTIVE_STUB_BACKWARD(__nv_bfloat16, __half)
CONTRASTIVE_STUB_BACKWARD(__nv_bfloat16, __nv_bfloat16)

}  // namespace contrastive::kernels
