#include "bench/loss_buffers.hpp"

#include <cmath>
#include <utility>
#include <variant>

#include "bench/reference_check.hpp"

namespace contrastive::bench {

using describe::Role;

const char* operation_name(Operation operation) {
  switch (operation) {
    case Operation::kForward: return "forward";
    case Operation::kBackward: return "backward";
    case Operation::kForwardBackward: return "forward_backward";
  }
  return "unknown";
}

bool writes_gradients(Operation operation) {
  return operation != Operation::kForward;
}

describe::Params params_of(const char* loss, const describe::Shape& shape) {
  return describe::loss_named(loss).params(shape);
}

std::int64_t batch_of(const describe::Params& params) {
  return std::visit([](const auto& p) { return p.batch; }, params);
}

// ---- LossBuffers -------------------------------------------------------------------------------

bool LossBuffers::allocate(GpuFixture& gpu, std::string name, const describe::Params& params,
                           bool scalar_gradient) {
  name_ = std::move(name);
  params_ = params;
  std::uint64_t seed = 0;
  for (const describe::Tensor& tensor : description().tensors) {
    const describe::Extent e = extent(tensor.name);
    DeviceBuffer& buffer = owned_[tensor.name];
    bool allocated = true;
    if (tensor.role == Role::kInput) {
      allocated = gpu.allocate_random_normal(static_cast<std::size_t>(e.elements()), ++seed,
                                             e.dtype, &buffer);
    } else if (tensor.role == Role::kGradient) {
      allocated = gpu.allocate(matrix_bytes(e.rows, e.cols, e.dtype), &buffer);
    } else if (tensor.role == Role::kScalarGradient && scalar_gradient) {
      allocated = gpu.allocate(sizeof(float), &buffer);
    }
    if (!allocated) return false;
    if (buffer.get() != nullptr) pointers_[tensor.name] = buffer.get();
  }
  return allocate_outputs(gpu);
}

bool LossBuffers::allocate_per_row(GpuFixture& gpu, const LossBuffers& timed) {
  name_ = timed.name_;
  params_ = timed.params_;
  std::visit([](auto& p) { p.reduction = Reduction::kNone; }, params_);
  for (const Role role : {Role::kInput, Role::kGradient}) {
    for (const char* tensor : timed.tensors(role)) pointers_[tensor] = timed.at(tensor);
  }
  const std::size_t per_row_bytes = matrix_bytes(extent("loss").rows, 1, DType::kF32);
  if (!gpu.allocate(per_row_bytes, &owned_["grad_loss"])) return false;
  pointers_["grad_loss"] = owned_["grad_loss"].get();
  return allocate_outputs(gpu);
}

// The loss, the saved values and the workspace, sized for params_.
bool LossBuffers::allocate_outputs(GpuFixture& gpu) {
  std::size_t workspace_bytes = 0, saved_bytes = 0;
  DeviceBuffer& loss = owned_["loss"];
  DeviceBuffer& saved = owned_["saved"];
  if (!gpu.check(describe::workspace_size(params_, &workspace_bytes), "workspace_size") ||
      !gpu.check(describe::saved_size(params_, &saved_bytes), "saved_size") ||
      !gpu.allocate(matrix_bytes(extent("loss").rows, 1, DType::kF32), &loss) ||
      !gpu.allocate(saved_bytes, &saved) || !gpu.allocate(workspace_bytes, &workspace_)) {
    return false;
  }
  pointers_["loss"] = loss.get();
  pointers_["saved"] = saved.get();
  return true;
}

void* LossBuffers::at(std::string_view tensor) const {
  const auto found = pointers_.find(tensor);
  return found == pointers_.end() ? nullptr : found->second;
}

describe::Extent LossBuffers::extent(std::string_view tensor) const {
  return describe::extent(params_, tensor);
}

std::vector<const char*> LossBuffers::tensors(Role role) const {
  std::vector<const char*> names;
  for (const describe::Tensor& tensor : description().tensors) {
    if (tensor.role == role) names.push_back(tensor.name);
  }
  return names;
}

std::size_t LossBuffers::input_bytes() const {
  std::size_t bytes = 0;
  for (const char* input : tensors(Role::kInput)) {
    const describe::Extent e = extent(input);
    bytes += matrix_bytes(e.rows, e.cols, e.dtype);
  }
  return bytes;
}

Status LossBuffers::run(const GpuFixture& gpu, Operation operation) const {
  return describe::run(
      operation, gpu.handle(), params_, [this](std::string_view tensor) { return at(tensor); },
      workspace_.get(), workspace_.bytes(), gpu.stream());
}

Work LossBuffers::work(GpuFixture& gpu, Operation operation) const {
  const std::string what = name_ + "/" + operation_name(operation);
  return [&gpu, this, operation, what] { return gpu.check(run(gpu, operation), what.c_str()); };
}

bool LossBuffers::validate(GpuFixture& gpu, Operation operation) const {
  if (operation == Operation::kBackward && !work(gpu, Operation::kForward)()) return false;
  if (!work(gpu, operation)()) return false;
  // Backward's loss is its forward's.
  std::vector<std::string> names = {"loss"};
  std::vector<FiniteValue> values = {{at("loss"), "loss"}};
  if (writes_gradients(operation)) {
    for (const describe::Tensor& tensor : description().tensors) {
      const bool gradient = tensor.role == Role::kGradient;
      if (at(tensor.name) == nullptr || (!gradient && tensor.role != Role::kScalarGradient)) {
        continue;
      }
      names.push_back(gradient ? std::string(tensor.name) + "[0]" : tensor.name);
      values.push_back({at(tensor.name), nullptr, extent(tensor.name).dtype});
    }
  }
  for (std::size_t i = 0; i < values.size(); ++i) values[i].name = names[i].c_str();
  return gpu.require_finite(values);
}

// ---- Downloads ---------------------------------------------------------------------------------

bool download_rows(GpuFixture& gpu, const LossBuffers& buffers, const char* tensor,
                   const std::vector<std::int64_t>& rows, std::vector<double>* out) {
  const describe::Extent e = buffers.extent(tensor);
  const std::int64_t per_row = e.rows / batch_of(buffers.params());
  const std::size_t block = matrix_bytes(per_row, e.cols, e.dtype);
  std::vector<unsigned char> bytes;
  if (!gpu.download_rows(buffers.at(tensor), block, block, rows, &bytes)) return false;
  *out = to_doubles(bytes, e.dtype);
  return true;
}

bool download_all(GpuFixture& gpu, const LossBuffers& buffers, const char* tensor,
                  std::vector<double>* out) {
  const describe::Extent e = buffers.extent(tensor);
  std::vector<unsigned char> bytes(matrix_bytes(e.rows, e.cols, e.dtype));
  if (!gpu.download(buffers.at(tensor), bytes.size(), bytes.data())) return false;
  *out = to_doubles(bytes, e.dtype);
  return true;
}

// ---- The reference comparison's calls ---------------------------------------------------------

bool run_per_row(GpuFixture& gpu, const LossBuffers& none, const std::vector<float>& mask,
                 std::vector<float>* losses) {
  const std::size_t bytes = mask.size() * sizeof(float);
  losses->resize(mask.size());
  const std::string& name = none.name();
  return gpu.upload(mask.data(), bytes, none.at("grad_loss")) &&
         gpu.check(none.run(gpu, Operation::kForward), (name + "/forward(none)").c_str()) &&
         gpu.check(none.run(gpu, Operation::kBackward), (name + "/backward(none)").c_str()) &&
         gpu.download(none.at("loss"), bytes, losses->data());
}

bool add_timed_mean(GpuFixture& gpu, const LossBuffers& timed, const std::vector<float>& losses,
                    const char* what, Comparison* comparison) {
  float mean = 0.0f;
  if (!gpu.check(timed.run(gpu, Operation::kForward), (timed.name() + "/forward").c_str()) ||
      !gpu.download(timed.at("loss"), sizeof(float), &mean)) {
    return false;
  }
  double sum = 0.0, magnitude = 0.0;
  for (const float loss : losses) {
    sum += loss;
    magnitude += std::fabs(loss);
  }
  const double count = static_cast<double>(losses.size());
  comparison->add(what, 0, mean, sum / count, mean_tolerance(count, magnitude));
  return true;
}

}  // namespace contrastive::bench
