// The one-thread kernel that resolves a call's scalars (kernels/logit_scalars.hpp) on the stream.
#include "kernels/resolve_scalars.hpp"

namespace contrastive::kernels {
namespace {

__global__ void resolve_scalars_kernel(ScalarInputs in, ResolvedScalars* out) {
  const float value = in.device_value != nullptr ? *in.device_value : in.value;
  const float bias = in.device_bias != nullptr ? *in.device_bias : in.bias;
  *out = resolve_scalars(value, in.form, in.max_scale, bias, in.reduction_factor);
}

}  // namespace

cudaError_t launch_resolve_scalars(const ScalarInputs& in, ResolvedScalars* out,
                                   cudaStream_t stream) {
  resolve_scalars_kernel<<<1, 1, 0, stream>>>(in, out);
  return cudaGetLastError();
}

}  // namespace contrastive::kernels
