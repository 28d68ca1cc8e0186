// contrastive._jax_ffi: every loss as XLA FFI handlers, for contrastive.jax (jax.ffi.ffi_call).
//
// Two targets per loss, contrastive_<api>_forward and contrastive_<api>_backward, each with a CUDA
// handler (the library on the stream XLA gives) and a CPU handler (the library's float64 reference
// on the same buffers). The handlers are built from the loss's description (host/describe): the
// same code serves every loss. XLA allocates every buffer, the workspace and `saved` included, with
// the shapes contrastive.jax computes at trace time from the library's size queries.
//
//   forward:  operands (inputs..., [scalars...]) results (loss, saved, workspace)
//   backward: operands (inputs..., saved, grad_loss, [scalars...])
//             results (grads..., [grad_scalars...], workspace)
//
// Attribute `params`: the loss's params object as int64 words (params_words(): the handlers and
// the words come from one build of this module). [scalars...] are the loss's differentiable
// scalars (the temperature or scale, then SigLIP's bias), each a float32 operand, given all
// together when one of them is a traced value (learnable): they then replace the params' values,
// and backward returns their gradients. The CUDA handler passes them to the library as device
// values, read on XLA's stream (nothing waits); a loss whose library call took host scalars only
// would copy them to the host and wait for the stream (none does today).
#include <cuda_runtime_api.h>
#include <nanobind/nanobind.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "host/describe/losses.hpp"
#include "xla/ffi/api/ffi.h"

namespace nb = nanobind;
namespace ffi = xla::ffi;

namespace {

using contrastive::DType;
using contrastive::Pass;
using contrastive::Status;
namespace describe = contrastive::describe;
namespace ref = contrastive::reference;
using describe::Role;
using Words = ffi::Span<const std::int64_t>;

// ---- Per loss: the scalars' fields and the float64 reference's results by tensor name ----------

/// The params fields that hold the loss's differentiable scalars, in the order of its
/// kScalarGradient tensors: the temperature or scale, then SigLIP's bias.
template <typename P>
struct ScalarFields {
  static constexpr std::array<float P::*, 0> fields{};  // no differentiable scalar
};
template <>
struct ScalarFields<contrastive::infonce::Params> {
  using P = contrastive::infonce::Params;
  static constexpr std::array<float P::*, 1> fields{&P::temperature};
};
template <>
struct ScalarFields<contrastive::mnr::PerAnchorParams> {
  using P = contrastive::mnr::PerAnchorParams;
  static constexpr std::array<float P::*, 1> fields{&P::scale};
};
template <>
struct ScalarFields<contrastive::mnr::InBatchParams> {
  using P = contrastive::mnr::InBatchParams;
  static constexpr std::array<float P::*, 1> fields{&P::scale};
};
template <>
struct ScalarFields<contrastive::siglip::Params> {
  using P = contrastive::siglip::Params;
  static constexpr std::array<float P::*, 2> fields{&P::scale, &P::bias};
};
template <typename P>
constexpr std::size_t kScalars = ScalarFields<P>::fields.size();

/// The reference's gradients by tensor name (each input's, and the scalar's as one value).
struct Gradients {
  std::vector<std::pair<std::string_view, std::vector<double>>> by_name;
  void add(std::string_view name, std::vector<double> values) {
    by_name.emplace_back(name, std::move(values));
  }
  const std::vector<double>* find(std::string_view name) const {
    for (const auto& [key, values] : by_name) {
      if (key == name) return &values;
    }
    return nullptr;
  }
};

/// forward(p, inputs, loss) and backward(p, inputs, grad_loss, gradients): the reference of the
/// loss whose params are P, on dense float64 inputs in the order of its description.
template <typename P>
struct Reference;

template <>
struct Reference<contrastive::infonce::Params> {
  using P = contrastive::infonce::Params;
  static Status forward(const P& p, const double* const* in, std::vector<double>* loss) {
    ref::InfoNCEForward f;
    const Status status = ref::infonce_forward(p, in[0], in[1], &f);
    *loss = std::move(f.loss);
    return status;
  }
  static Status backward(const P& p, const double* const* in, const double* grad_loss,
                         Gradients* out) {
    ref::InfoNCEBackward g;
    const Status status = ref::infonce_backward(p, in[0], in[1], grad_loss, &g);
    out->add("grad_q", std::move(g.grad_q));
    out->add("grad_k", std::move(g.grad_k));
    out->add("grad_temperature", {g.grad_temperature});
    return status;
  }
};

template <>
struct Reference<contrastive::mnr::PerAnchorParams> {
  using P = contrastive::mnr::PerAnchorParams;
  static Status forward(const P& p, const double* const* in, std::vector<double>* loss) {
    ref::MnrPerAnchorForward f;
    const Status status = ref::mnr_per_anchor_forward(p, in[0], in[1], in[2], &f);
    *loss = std::move(f.loss);
    return status;
  }
  static Status backward(const P& p, const double* const* in, const double* grad_loss,
                         Gradients* out) {
    ref::MnrPerAnchorBackward g;
    const Status status = ref::mnr_per_anchor_backward(p, in[0], in[1], in[2], grad_loss, &g);
    out->add("grad_anchors", std::move(g.grad_anchors));
    out->add("grad_positives", std::move(g.grad_positives));
    out->add("grad_negatives", std::move(g.grad_negatives));
    out->add("grad_scale", {g.grad_scale});
    return status;
  }
};

template <>
struct Reference<contrastive::mnr::InBatchParams> {
  using P = contrastive::mnr::InBatchParams;
  static Status forward(const P& p, const double* const* in, std::vector<double>* loss) {
    ref::InfoNCEForward f;
    const Status status = ref::mnr_in_batch_forward(p, in[0], in[1], &f);
    *loss = std::move(f.loss);
    return status;
  }
  static Status backward(const P& p, const double* const* in, const double* grad_loss,
                         Gradients* out) {
    ref::MnrInBatchBackward g;
    const Status status = ref::mnr_in_batch_backward(p, in[0], in[1], grad_loss, &g);
    out->add("grad_anchors", std::move(g.grad_anchors));
    out->add("grad_candidates", std::move(g.grad_candidates));
    out->add("grad_scale", {g.grad_scale});
    return status;
  }
};

template <>
struct Reference<contrastive::repel::Params> {
  using P = contrastive::repel::Params;
  static Status forward(const P& p, const double* const* in, std::vector<double>* loss) {
    ref::RepelForward f;
    const Status status = ref::repel_forward(p, in[0], in[1], &f);
    *loss = std::move(f.loss);
    return status;
  }
  static Status backward(const P& p, const double* const* in, const double* grad_loss,
                         Gradients* out) {
    ref::RepelBackward g;
    const Status status = ref::repel_backward(p, in[0], in[1], grad_loss, &g);
    out->add("grad_anchors", std::move(g.grad_anchors));
    out->add("grad_negatives", std::move(g.grad_negatives));
    return status;
  }
};

template <>
struct Reference<contrastive::siglip::Params> {
  using P = contrastive::siglip::Params;
  static Status forward(const P& p, const double* const* in, std::vector<double>* loss) {
    ref::SigLIPForward f;
    const Status status = ref::siglip_forward(p, in[0], in[1], &f);
    *loss = std::move(f.loss);
    return status;
  }
  static Status backward(const P& p, const double* const* in, const double* grad_loss,
                         Gradients* out) {
    ref::SigLIPBackward g;
    const Status status = ref::siglip_backward(p, in[0], in[1], grad_loss, &g);
    out->add("grad_q", std::move(g.grad_q));
    out->add("grad_k", std::move(g.grad_k));
    out->add("grad_scale", {g.grad_scale});
    out->add("grad_bias", {g.grad_bias});
    return status;
  }
};

// ---- The params as attribute words --------------------------------------------------------------

// Plain data: its bytes are the params (default member initializers only, no pointers).
template <typename P>
constexpr std::size_t kWords = (sizeof(P) + sizeof(std::int64_t) - 1) / sizeof(std::int64_t);

template <typename P>
nb::bytes params_words(const P& p) {
  static_assert(std::is_trivially_copyable_v<P>);
  std::vector<std::int64_t> words(kWords<P>, 0);
  std::memcpy(words.data(), &p, sizeof(P));
  return nb::bytes(reinterpret_cast<const char*>(words.data()), words.size() * sizeof(words[0]));
}

// ---- One call's buffers, by tensor name ---------------------------------------------------------

std::string message_of(Status status) {
  return std::string(contrastive::status_string(status)) + ": " + contrastive::last_error_message();
}

ffi::Error error_of(Status status) {
  const std::string message = message_of(status);
  switch (status) {
    case Status::kInvalidArgument:
    case Status::kNullPointer:
    case Status::kMisalignedPointer:
    case Status::kWorkspaceTooSmall:
    case Status::kNotSupported: return ffi::Error::InvalidArgument(message);
    default: return ffi::Error::Internal(message);
  }
}

ffi::DataType ffi_type(DType dtype) {
  switch (dtype) {
    case DType::kF16: return ffi::DataType::F16;
    case DType::kBF16: return ffi::DataType::BF16;
    case DType::kF32: break;
  }
  return ffi::DataType::F32;
}

const char* type_name(ffi::DataType type) {
  switch (type) {
    case ffi::DataType::F32: return "float32";
    case ffi::DataType::F16: return "float16";
    case ffi::DataType::BF16: return "bfloat16";
    case ffi::DataType::U8: return "uint8";
    default: return "another type";
  }
}

struct Buffer {
  const char* name = nullptr;
  void* data = nullptr;
  std::size_t bytes = 0;
  ffi::DataType type = ffi::DataType::INVALID;
};

/// The buffers of one call of `pass` of the loss whose params are P, checked against the params
/// (dtype and size of each), and the params with the scalar operands' values when they are given.
template <typename P>
struct Call {
  P params;
  std::vector<Buffer> buffers;  // the inputs, then saved / grad_loss / outputs
  Buffer workspace;
  std::vector<Buffer> scalars;  // empty when the scalars are in the params

  void* operator()(std::string_view name) const {
    for (const Buffer& b : buffers) {
      if (name == b.name) return b.data;
    }
    return nullptr;
  }
  const Buffer* find(std::string_view name) const {
    for (const Buffer& b : buffers) {
      if (name == b.name) return &b;
    }
    return nullptr;
  }
};

template <typename B>
Buffer buffer_of(const char* name, const B& b) {
  return {name, b.untyped_data(), b.size_bytes(), b.element_type()};
}

/// Checks one buffer against its extent for the params (dense: rows * cols elements).
template <typename P>
ffi::Error check_buffer(const P& p, const Buffer& b, Role role) {
  std::size_t bytes = 0;
  ffi::DataType type = ffi::DataType::U8;
  if (role == Role::kSaved) {
    if (describe::detail::saved_size_of(p, &bytes) != Status::kSuccess) bytes = 0;
  } else {
    const describe::Extent e = describe::extent(describe::Params(p), b.name);
    const bool f32 =
        role == Role::kLoss || role == Role::kUpstreamGradient || role == Role::kScalarGradient;
    type = f32 ? ffi::DataType::F32 : ffi_type(e.dtype);
    bytes =
        static_cast<std::size_t>(e.rows * e.cols) * (f32 ? 4 : contrastive::dtype_size(e.dtype));
  }
  const bool enough = role == Role::kSaved ? b.bytes >= bytes : b.bytes == bytes;
  if (b.type != type || !enough) {
    return ffi::Error::InvalidArgument(
        std::string(describe::Described<P>::api) + ": " + b.name + ": " + std::to_string(b.bytes) +
        " bytes of " + type_name(b.type) + ", expected " + std::to_string(bytes) +
        (role == Role::kSaved ? " or more" : "") + " of " + type_name(type));
  }
  return ffi::Error::Success();
}

/// Decodes the params and the buffers of a call of `pass` (see the layout at the top).
template <typename P, Pass pass>
ffi::Error gather(ffi::RemainingArgs args, ffi::RemainingRets rets, Words words, Call<P>* call) {
  using D = describe::Described<P>;
  if (words.size() != kWords<P>) {
    return ffi::Error::InvalidArgument(std::string(D::api) +
                                       ": the params attribute does not match this build");
  }
  std::memcpy(static_cast<void*>(&call->params), words.begin(), sizeof(P));

  // Operands: the inputs, then (backward) saved and grad_loss, then the scalars when given.
  std::size_t arg = 0;
  for (const describe::Tensor& t : D::tensors) {
    const bool operand =
        t.role == Role::kInput ||
        (pass == Pass::kBackward && (t.role == Role::kSaved || t.role == Role::kUpstreamGradient));
    if (!operand) continue;
    auto b = args.get<ffi::AnyBuffer>(arg++);
    if (!b.has_value()) return b.error();
    call->buffers.push_back(buffer_of(t.name, *b));
  }
  if (kScalars < P >> 0 && arg + kScalars<P> == args.size()) {
    for (std::size_t i = 0; i < kScalars<P>; ++i) {
      auto b = args.get<ffi::AnyBuffer>(arg++);
      if (!b.has_value()) return b.error();
      call->scalars.push_back(buffer_of("scalar", *b));
      if (call->scalars.back().type != ffi::DataType::F32 ||
          call->scalars.back().bytes != sizeof(float)) {
        return ffi::Error::InvalidArgument(std::string(D::api) + ": the scalars must be float32[]");
      }
    }
  }
  if (arg != args.size()) {
    return ffi::Error::InvalidArgument(std::string(D::api) + ": " + std::to_string(args.size()) +
                                       " operands, expected " + std::to_string(arg));
  }

  // Results: forward the loss and saved, backward the gradients (the scalars' only with the
  // scalar operands); then the workspace.
  std::size_t ret = 0;
  for (const describe::Tensor& t : D::tensors) {
    const bool result = pass == Pass::kForward
                            ? (t.role == Role::kLoss || t.role == Role::kSaved)
                            : (t.role == Role::kGradient ||
                               (t.role == Role::kScalarGradient && !call->scalars.empty()));
    if (!result) continue;
    auto b = rets.get<ffi::AnyBuffer>(ret++);
    if (!b.has_value()) return b.error();
    call->buffers.push_back(buffer_of(t.name, **b));
  }
  auto ws = rets.get<ffi::AnyBuffer>(ret++);
  if (!ws.has_value()) return ws.error();
  call->workspace = buffer_of("workspace", **ws);
  if (ret != rets.size()) {
    return ffi::Error::InvalidArgument(std::string(D::api) + ": " + std::to_string(rets.size()) +
                                       " results, expected " + std::to_string(ret));
  }
  return ffi::Error::Success();
}

/// After the scalars' values are in the params: the library's check, then every buffer's.
template <typename P>
ffi::Error check_call(const Call<P>& call) {
  if (const Status status = describe::check(describe::Params(call.params));
      status != Status::kSuccess) {
    return error_of(status);
  }
  for (const Buffer& b : call.buffers) {
    for (const describe::Tensor& t : describe::Described<P>::tensors) {
      if (std::string_view(t.name) != b.name) continue;
      if (ffi::Error error = check_buffer(call.params, b, t.role); error.failure()) return error;
    }
  }
  return ffi::Error::Success();
}

/// The scalar operands' values (one per field, in order) into the params.
template <typename P>
void set_scalars(Call<P>* call, const float* values) {
  for (std::size_t i = 0; i < kScalars<P>; ++i) {
    call->params.*ScalarFields<P>::fields[i] = values[i];
  }
}

// ---- CUDA: the library on XLA's stream ----------------------------------------------------------

/// This thread's handle for `device` (a handle is used by one thread; created once per thread,
/// on the first call). Handles are never destroyed: a thread's handles would otherwise be released
/// at its exit, which for the main thread comes after the CUDA runtime has shut down.
Status handle_for(int device, const contrastive::Handle** out) {
  thread_local std::map<int, const contrastive::Handle*> handles;
  const contrastive::Handle*& handle = handles[device];
  if (handle == nullptr) {
    auto* created = new contrastive::Handle();
    if (const Status status = contrastive::Handle::create(created, device);
        status != Status::kSuccess) {
      delete created;
      handles.erase(device);
      return status;
    }
    handle = created;
  }
  *out = handle;
  return Status::kSuccess;
}

ffi::Error cuda_error(const char* what, cudaError_t error) {
  return ffi::Error::Internal(std::string(what) + ": " + cudaGetErrorString(error));
}

/// `device` current for the library while it lives (XLA may run the call with another current).
class CurrentDevice {
 public:
  explicit CurrentDevice(int device) {
    if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) {
      error_ = cudaSetDevice(device);
    } else {
      previous_ = -1;
    }
  }
  ~CurrentDevice() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

template <typename P, Pass pass>
ffi::Error cuda_call(cudaStream_t stream, std::int32_t device, ffi::RemainingArgs args,
                     ffi::RemainingRets rets, Words words) {
  Call<P> call;
  if (ffi::Error error = gather<P, pass>(args, rets, words, &call); error.failure()) return error;
  CurrentDevice current(device);
  if (current.error() != cudaSuccess) return cuda_error("cudaSetDevice", current.error());
  constexpr auto on_device = describe::device_scalars<P>();
  if (!call.scalars.empty() && on_device.count == kScalars<P>) {
    // Traced scalars (learnable) that the library reads on the stream: passed as they are.
    for (std::size_t i = 0; i < call.scalars.size(); ++i) {
      Buffer scalar = call.scalars[i];
      scalar.name = describe::Described<P>::tensors[on_device.index[i]].name;
      call.buffers.push_back(scalar);
    }
  } else if (!call.scalars.empty()) {  // a loss that takes host scalars only: read on the host
    std::array<float, kScalars<P> + 1> values{};
    for (std::size_t i = 0; i < call.scalars.size(); ++i) {
      if (cudaError_t e = cudaMemcpyAsync(&values[i], call.scalars[i].data, sizeof(float),
                                          cudaMemcpyDeviceToHost, stream);
          e != cudaSuccess) {
        return cuda_error("reading the scalars", e);
      }
    }
    if (cudaError_t e = cudaStreamSynchronize(stream); e != cudaSuccess) {
      return cuda_error("reading the scalars", e);
    }
    set_scalars(&call, values.data());
  }
  if (ffi::Error error = check_call(call); error.failure()) return error;
  const contrastive::Handle* handle = nullptr;
  if (const Status status = handle_for(device, &handle); status != Status::kSuccess) {
    return error_of(status);
  }
  const Status status =
      describe::detail::run(pass, *handle, call.params, call, call.workspace.data,
                            call.workspace.bytes, reinterpret_cast<contrastive::Stream>(stream));
  return status == Status::kSuccess ? ffi::Error::Success() : error_of(status);
}

// ---- CPU: the float64 reference -----------------------------------------------------------------

float from_half(std::uint16_t h) {
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa ? NAN : INFINITY;
  } else {
    value = std::ldexp(static_cast<float>(mantissa + 1024), exponent - 25);
  }
  return (h & 0x8000) ? -value : value;
}

std::uint16_t to_half(float f) {  // round to nearest even
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | (x > 0x7f800000u ? 0x7e00 : 0x7c00);
  if (x >= 0x477ff000u) return sign | 0x7c00;  // 65520 and above round to infinity
  if (x < 0x38800000u) {                       // below 2^-14: a subnormal half (or zero)
    float magnitude;
    std::memcpy(&magnitude, &x, sizeof(x));
    return sign | static_cast<std::uint16_t>(std::nearbyint(magnitude * 16777216.0f));
  }
  x += 0xc8000fffu + ((x >> 13) & 1u);  // rebias the exponent (-112), round the mantissa
  return sign | static_cast<std::uint16_t>(x >> 13);
}

float from_bfloat16(std::uint16_t h) {
  const std::uint32_t x = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &x, sizeof(f));
  return f;
}

std::uint16_t to_bfloat16(float f) {  // round to nearest even
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>(x >> 16);
}

std::vector<double> to_double(const Buffer& b) {
  const std::size_t count = b.bytes / ffi::ByteWidth(b.type);
  std::vector<double> values(count);
  for (std::size_t i = 0; i < count; ++i) {
    switch (b.type) {
      case ffi::DataType::F16: values[i] = from_half(static_cast<std::uint16_t*>(b.data)[i]); break;
      case ffi::DataType::BF16:
        values[i] = from_bfloat16(static_cast<std::uint16_t*>(b.data)[i]);
        break;
      default: values[i] = static_cast<float*>(b.data)[i]; break;
    }
  }
  return values;
}

void write(const Buffer& b, const std::vector<double>& values) {
  const std::size_t count = b.bytes / ffi::ByteWidth(b.type);
  for (std::size_t i = 0; i < count && i < values.size(); ++i) {
    const float value = static_cast<float>(values[i]);
    switch (b.type) {
      case ffi::DataType::F16: static_cast<std::uint16_t*>(b.data)[i] = to_half(value); break;
      case ffi::DataType::BF16: static_cast<std::uint16_t*>(b.data)[i] = to_bfloat16(value); break;
      default: static_cast<float*>(b.data)[i] = value; break;
    }
  }
}

template <typename P, Pass pass>
ffi::Error cpu_call(ffi::RemainingArgs args, ffi::RemainingRets rets, Words words) {
  using D = describe::Described<P>;
  Call<P> call;
  if (ffi::Error error = gather<P, pass>(args, rets, words, &call); error.failure()) return error;
  if (!call.scalars.empty()) {
    std::array<float, kScalars<P> + 1> values{};
    for (std::size_t i = 0; i < call.scalars.size(); ++i) {
      values[i] = *static_cast<const float*>(call.scalars[i].data);
    }
    set_scalars(&call, values.data());
  }
  if (ffi::Error error = check_call(call); error.failure()) return error;

  std::vector<std::vector<double>> inputs;
  std::vector<const double*> data;
  for (const describe::Tensor& t : D::tensors) {
    if (t.role == Role::kInput) inputs.push_back(to_double(*call.find(t.name)));
  }
  for (const auto& input : inputs) data.push_back(input.data());
  // The reference reads dense rows: XLA's buffers are dense and row-major.
  Status status = Status::kSuccess;
  if constexpr (pass == Pass::kForward) {
    std::vector<double> loss;
    status = Reference<P>::forward(call.params, data.data(), &loss);
    if (status != Status::kSuccess) return error_of(status);
    write(*call.find("loss"), loss);
    const Buffer& saved = *call.find("saved");  // backward recomputes: nothing to keep
    std::memset(saved.data, 0, saved.bytes);
  } else {
    const std::vector<double> grad_loss = to_double(*call.find("grad_loss"));
    Gradients gradients;
    status = Reference<P>::backward(call.params, data.data(), grad_loss.data(), &gradients);
    if (status != Status::kSuccess) return error_of(status);
    for (const Buffer& b : call.buffers) {
      if (std::string_view(b.name).rfind("grad_", 0) != 0 ||
          std::string_view(b.name) == "grad_loss")
        continue;
      const std::vector<double>* values = gradients.find(b.name);
      if (!values) {
        return ffi::Error::Internal(std::string(D::api) + ": the reference has no " + b.name);
      }
      write(b, *values);
    }
  }
  return ffi::Error::Success();
}

// ---- Handlers and the module --------------------------------------------------------------------

template <typename P, Pass pass>
XLA_FFI_Error* cuda_handler(XLA_FFI_CallFrame* frame) {
  static const auto* handler = ffi::Ffi::Bind()
                                   .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                   .Ctx<ffi::DeviceOrdinal>()
                                   .RemainingArgs()
                                   .RemainingRets()
                                   .Attr<Words>("params")
                                   .To(cuda_call<P, pass>)
                                   .release();
  return handler->Call(frame);
}

template <typename P, Pass pass>
XLA_FFI_Error* cpu_handler(XLA_FFI_CallFrame* frame) {
  static const auto* handler = ffi::Ffi::Bind()
                                   .RemainingArgs()
                                   .RemainingRets()
                                   .Attr<Words>("params")
                                   .To(cpu_call<P, pass>)
                                   .release();
  return handler->Call(frame);
}

template <typename Handler>
nb::capsule capsule(Handler* handler) {
  return nb::capsule(reinterpret_cast<void*>(handler));
}

/// targets["<api>_forward" | "<api>_backward"] = {"cpu": capsule, "CUDA": capsule}, and the
/// params_words overload of the loss.
template <typename P>
void def_loss(nb::module_& m, nb::dict& targets) {
  const std::string api = describe::Described<P>::api;
  nb::dict forward, backward;
  forward["cpu"] = capsule(cpu_handler<P, Pass::kForward>);
  forward["CUDA"] = capsule(cuda_handler<P, Pass::kForward>);
  backward["cpu"] = capsule(cpu_handler<P, Pass::kBackward>);
  backward["CUDA"] = capsule(cuda_handler<P, Pass::kBackward>);
  targets[nb::str((api + "_forward").c_str())] = forward;
  targets[nb::str((api + "_backward").c_str())] = backward;
  m.def("params_words", &params_words<P>, nb::arg("params"));
}

}  // namespace

NB_MODULE(_jax_ffi, m) {
  m.doc() = "XLA FFI handlers of every loss for contrastive.jax (see python/src/jax_ffi.cpp)";
  nb::module_::import_("contrastive._core");  // the params classes
  nb::dict targets;
  def_loss<contrastive::infonce::Params>(m, targets);
  def_loss<contrastive::mnr::PerAnchorParams>(m, targets);
  def_loss<contrastive::mnr::InBatchParams>(m, targets);
  def_loss<contrastive::repel::Params>(m, targets);
  def_loss<contrastive::siglip::Params>(m, targets);
  m.attr("targets") = targets;
}
