// The device buffers and calls of any loss at fixed parameters, made from its description
// (host/describe/losses.hpp): one buffer per tensor the description names, sized by the tensor's
// extent and by the loss's size queries, and one call for the three passes. Every buffer is
// allocated once, before anything is timed; inputs are random normal, never zeros, and they and
// their gradients are in the measured dtype.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "bench/gpu_fixture.hpp"
#include "contrastive/status.hpp"
#include "contrastive/types.hpp"
#include "host/describe/losses.hpp"

namespace contrastive::bench {

/// The input dtypes every loss is measured in: fp32 and the two 16-bit training dtypes, every
/// dtype the library takes.
inline constexpr std::array<DType, 3> kMeasuredDTypes = {DType::kF32, DType::kBF16, DType::kF16};

/// The operations every loss is measured in: the library's three passes.
using Operation = Pass;
inline constexpr std::array<Operation, 3> kOperations = {Operation::kForward, Operation::kBackward,
                                                         Operation::kForwardBackward};

/// "forward", "backward", "forward_backward": the operation's part of a benchmark's name.
const char* operation_name(Operation operation);
/// Backward and forward_backward write every input's gradient; forward writes none.
bool writes_gradients(Operation operation);

/// The parameters of the loss described as `loss` ("InfoNCE", "MnrPerAnchor", ...) at `shape`.
describe::Params params_of(const char* loss, const describe::Shape& shape);
/// B, the rows of the first input, of any loss.
std::int64_t batch_of(const describe::Params& params);

/// One loss's buffers, one per tensor of its description, and its calls.
class LossBuffers {
 public:
  /// Allocates, for `params`: every input (random normal, from seeds 1, 2, 3 in the
  /// description's order), every input's gradient, the loss, the saved values and the workspace
  /// (sized by the loss's size queries), and the scalar gradient (dLoss/dtemperature or
  /// dLoss/dscale) only with `scalar_gradient`. The upstream gradient is not passed (the mean's
  /// is 1). `name` ("infonce", "mnr/per_anchor") prefixes the calls' errors.
  bool allocate(GpuFixture& gpu, std::string name, const describe::Params& params,
                bool scalar_gradient);
  /// The inputs and gradients of `timed` (which must outlive this), with Reduction::kNone and a
  /// loss, an upstream gradient (one value per row, or per term), saved values and a workspace
  /// of its own, no scalar gradient: what the reference comparison calls before timing.
  bool allocate_per_row(GpuFixture& gpu, const LossBuffers& timed);

  const describe::Params& params() const { return params_; }
  const describe::Loss& description() const { return describe::loss_of(params_); }
  const std::string& name() const { return name_; }
  /// The device pointer passed as `tensor`; null when it is not passed.
  void* at(std::string_view tensor) const;
  describe::Extent extent(std::string_view tensor) const;
  /// The tensors of `role`, in the description's order.
  std::vector<const char*> tensors(describe::Role role) const;
  /// Bytes of every input.
  std::size_t input_bytes() const;

  /// One call of `operation` on these buffers with the fixture's handle and stream.
  Status run(const GpuFixture& gpu, Operation operation) const;
  /// run(operation) as timed Work, its Status checked.
  Work work(GpuFixture& gpu, Operation operation) const;
  /// The untimed call before timing, also the warm-up (the handle chooses and caches its GEMM
  /// algorithms on first use): run(operation) with its Status checked, after an untimed forward
  /// when `operation` is backward, which reads what forward saved; then the loss and, when the
  /// operation writes them, each gradient's first entry must be finite.
  bool validate(GpuFixture& gpu, Operation operation) const;

 private:
  bool allocate_outputs(GpuFixture& gpu);

  std::string name_;
  describe::Params params_;
  std::map<std::string, DeviceBuffer, std::less<>> owned_;
  std::map<std::string, void*, std::less<>> pointers_;
  DeviceBuffer workspace_;
};

/// The rows `rows` of `tensor` as doubles: a dense (B * per_row, D) array of B blocks of per_row
/// rows each, per_row = its rows / B; |rows| blocks, in order.
bool download_rows(GpuFixture& gpu, const LossBuffers& buffers, const char* tensor,
                   const std::vector<std::int64_t>& rows, std::vector<double>* out);
/// Every element of the dense tensor `tensor`, as doubles.
bool download_all(GpuFixture& gpu, const LossBuffers& buffers, const char* tensor,
                  std::vector<double>* out);

class Comparison;

/// The calls the reference comparison makes on `none` (LossBuffers::allocate_per_row): the
/// upstream gradient `mask` (one per loss entry) uploaded, forward and backward, and the loss
/// entries forward wrote, in `losses`.
bool run_per_row(GpuFixture& gpu, const LossBuffers& none, const std::vector<float>& mask,
                 std::vector<float>* losses);
/// The timed configuration's forward on `timed`, its mean loss against the mean of the per-row
/// `losses` (the same sums, reduced), added to `comparison` as `what`.
bool add_timed_mean(GpuFixture& gpu, const LossBuffers& timed, const std::vector<float>& losses,
                    const char* what, Comparison* comparison);

}  // namespace contrastive::bench
