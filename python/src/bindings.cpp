// contrastive._core: the C++ library for Python, through nanobind. Arrays of any DLPack framework
// (PyTorch, CuPy, JAX ...) cross without a copy; the caller allocates every output and passes its
// CUDA stream as an integer. The binding checks what only it can see (device, dtype, shape and
// strides of each array) and leaves everything else to the library, whose Status becomes a Python
// exception carrying the library's message. python/CORE_API.md describes the interface.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"
#include "host/describe/losses.hpp"
#include "host/plan/infonce_plan.hpp"
#include "host/plan/mnr_plan.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using contrastive::DType;
using contrastive::Pass;
using contrastive::Reduction;
using contrastive::Similarity;
using contrastive::Status;
using contrastive::Tiling;
// Arrays the library writes (outputs, the workspace, `saved` in forward) must be writable; arrays
// it only reads (the inputs, `saved` in backward, grad_loss) may be read-only DLPack exports.
using Array = nb::ndarray<>;
using OptionalArray = std::optional<Array>;
using Input = nb::ndarray<nb::ro>;
using OptionalInput = std::optional<Input>;
namespace infonce = contrastive::infonce;
namespace mnr = contrastive::mnr;
namespace repel = contrastive::repel;
namespace siglip = contrastive::siglip;
namespace describe = contrastive::describe;
using describe::Role;

// ---- Errors
// ----------------------------------------------------------------------------------------

std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* pattern, ...) {
  char text[512];
  va_list args;
  va_start(args, pattern);
  std::vsnprintf(text, sizeof(text), pattern, args);
  va_end(args);
  return text;
}

/// The library's status as the Python exception a caller expects, with the library's message.
void throw_if(Status status) {
  if (status == Status::kSuccess) return;
  const std::string message = contrastive::last_error_message();
  switch (status) {
    case Status::kInvalidArgument:
    case Status::kNullPointer:
    case Status::kMisalignedPointer:
    case Status::kWorkspaceTooSmall: throw nb::value_error(message.c_str());
    case Status::kNotSupported: throw nb::type_error(message.c_str());
    default:  // no device, invalid handle, wrong device, CUDA, cuBLAS, internal
      throw std::runtime_error(message);
  }
}

// ---- Arrays ------------------------------------------------------------------------------------

template <typename A>
const char* device_name(const A& a) {
  switch (a.device_type()) {
    case nb::device::cpu::value: return "cpu";
    case nb::device::cuda::value: return "cuda";
    case nb::device::cuda_host::value: return "cuda_host (pinned host memory)";
    case nb::device::cuda_managed::value: return "cuda_managed";
    default: return "a non-CUDA device";
  }
}

nb::dlpack::dtype dlpack_dtype(DType dtype) {
  switch (dtype) {
    case DType::kF16: return {static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float), 16, 1};
    case DType::kBF16: return {static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bfloat), 16, 1};
    case DType::kF32: break;
  }
  return nb::dtype<float>();
}

std::string dtype_label(nb::dlpack::dtype dtype) {
  const char* kind = "?";
  switch (static_cast<nb::dlpack::dtype_code>(dtype.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: kind = "bool"; break;
    default: break;
  }
  return format("%s%d", kind, static_cast<int>(dtype.bits));
}

template <typename A>
std::string shape_of(const A& a) {
  std::string text = "(";
  for (std::size_t i = 0; i < a.ndim(); ++i) {
    text += std::to_string(a.shape(i)) + (i + 1 < a.ndim() ? ", " : "");
  }
  return text + (a.ndim() == 1 ? ",)" : ")");
}

template <typename A>
void require_cuda(const char* call, const char* name, const A& a) {
  if (a.device_type() != nb::device::cuda::value) {
    throw nb::value_error(
        format("%s: %s must be on a CUDA device, got %s", call, name, device_name(a)).c_str());
  }
}

template <typename A>
void require_dtype(const char* call, const char* name, const A& a, DType dtype) {
  if (a.dtype() != dlpack_dtype(dtype)) {
    throw nb::type_error(format("%s: %s must be %s, got %s", call, name,
                                dtype_label(dlpack_dtype(dtype)).c_str(),
                                dtype_label(a.dtype()).c_str())
                             .c_str());
  }
}

template <typename A>
bool c_contiguous(const A& a) {
  std::int64_t expected = 1;
  for (std::size_t i = a.ndim(); i-- > 0;) {
    if (a.shape(i) != 1 && a.stride(i) != expected) return false;
    expected *= static_cast<std::int64_t>(a.shape(i));
  }
  return true;
}

/// A matrix input of `rows` rows of `dim` elements, 2-D (rows, dim) or, for per-anchor negatives,
/// 3-D (batch, per_row, dim) with rows = batch * per_row. Rows may be strided; the last dimension
/// must be contiguous. Returns the data pointer and writes the row stride in elements.
const void* cuda_rows(const char* call, const char* name, const Input& a, DType dtype,
                      std::int64_t rows, std::int64_t dim, std::int64_t* row_stride,
                      std::int64_t per_row = 0) {
  require_cuda(call, name, a);
  require_dtype(call, name, a, dtype);
  const std::size_t ndim = a.ndim();
  const bool matrix = ndim == 2 && static_cast<std::int64_t>(a.shape(0)) == rows &&
                      static_cast<std::int64_t>(a.shape(1)) == dim;
  const bool grouped = per_row > 0 && ndim == 3 &&
                       static_cast<std::int64_t>(a.shape(1)) == per_row &&
                       static_cast<std::int64_t>(a.shape(0)) * per_row == rows &&
                       static_cast<std::int64_t>(a.shape(2)) == dim;
  if (!matrix && !grouped) {
    const std::string expected =
        per_row > 0
            ? format("(%lld, %lld) or (%lld, %lld, %lld)", static_cast<long long>(rows),
                     static_cast<long long>(dim), static_cast<long long>(rows / per_row),
                     static_cast<long long>(per_row), static_cast<long long>(dim))
            : format("(%lld, %lld)", static_cast<long long>(rows), static_cast<long long>(dim));
    throw nb::value_error(format("%s: %s must have shape %s, got %s", call, name, expected.c_str(),
                                 shape_of(a).c_str())
                              .c_str());
  }
  if (dim > 1 && a.stride(ndim - 1) != 1) {
    throw nb::value_error(
        format("%s: %s must be contiguous along its last dimension", call, name).c_str());
  }
  std::int64_t stride = dim;
  if (grouped) {
    if (a.shape(1) > 1) stride = a.stride(1);
    if (a.shape(0) > 1 && a.stride(0) != stride * per_row) {
      throw nb::value_error(
          format("%s: %s must have evenly strided rows (stride(0) == shape(1) * stride(1))", call,
                 name)
              .c_str());
    }
  } else if (rows > 1) {
    stride = a.stride(0);
  }
  if (stride < dim) {
    throw nb::value_error(format("%s: %s has overlapping rows (row stride %lld < %lld)", call, name,
                                 static_cast<long long>(stride), static_cast<long long>(dim))
                              .c_str());
  }
  *row_stride = stride;
  return a.data();
}

/// A dense output or small input of exactly `elements` values (any shape), C-contiguous. The
/// pointer is const for a read-only array.
template <typename A>
auto cuda_dense(const char* call, const char* name, const A& a, DType dtype, std::int64_t elements)
    -> decltype(a.data()) {
  require_cuda(call, name, a);
  require_dtype(call, name, a, dtype);
  if (static_cast<std::int64_t>(a.size()) != elements) {
    throw nb::value_error(format("%s: %s must hold %lld values, got shape %s", call, name,
                                 static_cast<long long>(elements), shape_of(a).c_str())
                              .c_str());
  }
  if (!c_contiguous(a)) {
    throw nb::value_error(format("%s: %s must be contiguous", call, name).c_str());
  }
  return a.data();
}

template <typename A>
auto optional_dense(const char* call, const char* name, const std::optional<A>& a, DType dtype,
                    std::int64_t elements) -> decltype(a->data()) {
  return a ? cuda_dense(call, name, *a, dtype, elements) : nullptr;
}

/// `saved` or the workspace: a contiguous CUDA buffer of any dtype; returns its size in bytes.
template <typename A>
auto cuda_bytes(const char* call, const char* name, const A& a, std::size_t* bytes)
    -> decltype(a.data()) {
  require_cuda(call, name, a);
  if (!c_contiguous(a))
    throw nb::value_error(format("%s: %s must be contiguous", call, name).c_str());
  *bytes = a.nbytes();
  return a.data();
}

template <typename A>
auto saved_buffer(const char* call, const A& a, std::size_t needed) -> decltype(a.data()) {
  std::size_t bytes = 0;
  const auto data = cuda_bytes(call, "saved", a, &bytes);
  if (bytes < needed) {
    throw nb::value_error(
        format("%s: saved has %zu bytes, saved_size() asks for %zu", call, bytes, needed).c_str());
  }
  return data;
}

contrastive::Stream to_stream(std::uintptr_t stream) {
  return reinterpret_cast<contrastive::Stream>(stream);
}

// Runs a library call without holding the GIL: it only enqueues work (or fails fast).
template <typename Call>
void run(Call call) {
  Status status;
  {
    nb::gil_scoped_release release;
    status = call();
  }
  throw_if(status);
}

template <typename Params, typename Size>
std::size_t size_of(const Params& params, Size size) {
  std::size_t bytes = 0;
  throw_if(size(params, &bytes));
  return bytes;
}

// ---- NumPy results of the reference ------------------------------------------------------------

nb::ndarray<nb::numpy, double> numpy_array(std::vector<double> values,
                                           std::vector<std::size_t> shape) {
  auto* owned = new std::vector<double>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
  return nb::ndarray<nb::numpy, double>(owned->data(), shape.size(), shape.data(), owner);
}

using HostMatrix = nb::ndarray<const double, nb::device::cpu, nb::c_contig>;

const double* host_rows(const char* call, const char* name, const HostMatrix& a, std::int64_t rows,
                        std::int64_t dim) {
  if (static_cast<std::int64_t>(a.size()) != rows * dim) {
    throw nb::value_error(format("%s: %s must hold (%lld, %lld) values, got shape %s", call, name,
                                 static_cast<long long>(rows), static_cast<long long>(dim),
                                 shape_of(Array(a)).c_str())
                              .c_str());
  }
  return a.data();
}

const double* host_grad_loss(const char* call, const std::optional<HostMatrix>& grad_loss,
                             std::int64_t count) {
  if (!grad_loss) return nullptr;
  if (static_cast<std::int64_t>(grad_loss->size()) != count) {
    throw nb::value_error(format("%s: grad_loss must hold %lld values, got %zu", call,
                                 static_cast<long long>(count), grad_loss->size())
                              .c_str());
  }
  return grad_loss->data();
}

using HostIds = nb::ndarray<const std::int64_t, nb::device::cpu, nb::c_contig>;

/// The ids of `count` rows, or null without ids.
const std::int64_t* host_ids(const char* call, const char* name, const std::optional<HostIds>& ids,
                             std::int64_t count) {
  if (!ids) return nullptr;
  if (ids->ndim() != 1 || static_cast<std::int64_t>(ids->size()) != count) {
    throw nb::value_error(format("%s: %s must be 1-D with %lld ids, got shape %s", call, name,
                                 static_cast<long long>(count), shape_of(Array(*ids)).c_str())
                              .c_str());
  }
  return ids->data();
}

/// Ids options from the reference's keywords: int64 ids when given, none otherwise.
contrastive::ids::IdOptions id_options(bool with_ids, bool multi_positive, bool exclude_self,
                                       std::optional<float> false_negative_margin) {
  contrastive::ids::IdOptions o;
  o.type = with_ids ? contrastive::ids::IdType::kInt64 : contrastive::ids::IdType::kNone;
  o.multi_positive = multi_positive;
  o.exclude_self = exclude_self;
  o.false_negative_threshold = false_negative_margin.has_value();
  o.false_negative_margin = false_negative_margin.value_or(0.0f);
  return o;
}

std::size_t u(std::int64_t value) {
  return static_cast<std::size_t>(value);
}

// Reference calls read dense rows: the params' row strides are reset to 0.
template <typename P>
P dense(P p) {
  for (const describe::Tensor& tensor : describe::Described<P>::tensors) {
    if (std::int64_t* stride = describe::row_stride(p, tensor.name)) *stride = 0;
  }
  return p;
}

// ---- From Python arrays to the library's arguments, for every loss from its description --------

/// Names handed to nanobind live as long as the module: entry point names and call labels.
const char* kept(std::string text) {
  static std::deque<std::string> texts;
  return texts.emplace_back(std::move(text)).c_str();
}

/// The Python type of an argument of role R in a call of `pass`: inputs, grad_loss and (backward)
/// saved are only read, so read-only arrays are accepted there; gradients may be None to skip them.
template <Role R, Pass pass>
struct ArgumentOf {
  using type = OptionalArray;  // the gradients
};
template <Pass pass>
struct ArgumentOf<Role::kInput, pass> {
  using type = Input;
};
template <Pass pass>
struct ArgumentOf<Role::kLoss, pass> {
  using type = Array;
};
template <Pass pass>
struct ArgumentOf<Role::kSaved, pass> {
  using type = std::conditional_t<pass == Pass::kBackward, Input, Array>;
};
template <Pass pass>
struct ArgumentOf<Role::kUpstreamGradient, pass> {
  using type = OptionalInput;
};

/// The I-th tensor argument of a call of `pass` of the loss whose params are P (the device
/// scalars apart: they follow `stream` as keywords).
template <typename P, Pass pass, std::size_t I>
constexpr const describe::Tensor& argument_at() {
  return describe::Described<P>::tensors[describe::c_arguments<P>(pass).index[I]];
}
/// The S-th device scalar of the loss whose params are P.
template <typename P, std::size_t S>
constexpr const describe::Tensor& scalar_at() {
  return describe::Described<P>::tensors[describe::device_scalars<P>().index[S]];
}
template <std::size_t S>
using ScalarArgument = OptionalInput;
/// The J-th id array of the loss whose params are P.
template <typename P, std::size_t J>
constexpr const describe::Tensor& ids_at() {
  return describe::Described<P>::tensors[describe::id_arrays<P>().index[J]];
}
template <std::size_t J>
using IdsArgument = OptionalInput;
template <typename P, Pass pass, std::size_t I>
using Argument = typename ArgumentOf<argument_at<P, pass, I>().role, pass>::type;

template <typename A>
constexpr bool kOptional = false;
template <typename A>
constexpr bool kOptional<std::optional<A>> = true;

template <typename P, Pass pass, std::size_t I>
nb::arg keyword() {
  nb::arg arg(argument_at<P, pass, I>().name);
  if (kOptional<Argument<P, pass, I>>) arg.none();
  return arg;
}

/// The pointers of one call by tensor name, for describe::run (which takes every one as void*:
/// the library only reads the inputs, grad_loss and backward's saved).
struct Pointers {
  static constexpr std::size_t kMost = 16;
  const char* names[kMost] = {};
  void* pointers[kMost] = {};
  std::size_t count = 0;
  void add(const char* name, const void* pointer) {
    names[count] = name;
    pointers[count++] = const_cast<void*>(pointer);
  }
  void* operator()(std::string_view name) const {
    for (std::size_t i = 0; i < count; ++i) {
      if (name == names[i]) return pointers[i];
    }
    return nullptr;
  }
};

/// One tensor argument checked against its extent for `p` (an input's row stride goes into p).
template <typename P, typename A>
const void* checked(const char* call, P* p, const describe::Tensor& tensor, const A& a) {
  const describe::Extent e = describe::extent(*p, tensor.name);
  if constexpr (kOptional<A>) {  // grad_loss and the gradients
    return optional_dense(call, tensor.name, a, e.dtype, e.elements());
  } else {
    if (tensor.role == Role::kSaved) {
      return saved_buffer(call, a, size_of(*p, describe::saved_size));
    }
    if constexpr (std::is_same_v<A, Input>) {
      return cuda_rows(call, tensor.name, a, e.dtype, e.rows, e.cols,
                       describe::row_stride(*p, tensor.name), e.group);
    } else {
      return cuda_dense(call, tensor.name, a, e.dtype, e.elements());  // the loss
    }
  }
}

template <typename P, std::size_t S>
auto scalar_keyword() {
  return nb::arg(scalar_at<P, S>().name).none() = nb::none();
}
template <typename P, std::size_t J>
auto ids_keyword() {
  return nb::arg(ids_at<P, J>().name).none() = nb::none();
}

/// An id array (query_ids, key_ids, anchor_ids, candidate_ids), or null when None: with
/// params.ids.type int32 or int64, a contiguous CUDA array of that type and of the tensor's number
/// of elements. Given without an id type it is an error (the library would ignore it). None with
/// an id type is left to the library, which names the missing array.
template <typename P>
const void* checked_ids(const char* call, const P& p, const char* name, const OptionalInput& a) {
  if (!a) return nullptr;
  const std::size_t bytes = describe::id_bytes(p);
  if (bytes == 0) {
    throw nb::value_error(
        format("%s: %s is given but params.ids.type is none (set it to int32 or int64)", call, name)
            .c_str());
  }
  require_cuda(call, name, *a);
  const nb::dlpack::dtype expected =
      bytes == 8 ? nb::dtype<std::int64_t>() : nb::dtype<std::int32_t>();
  if (a->dtype() != expected) {
    throw nb::type_error(format("%s: %s must be %s (params.ids.type), got %s", call, name,
                                dtype_label(expected).c_str(), dtype_label(a->dtype()).c_str())
                             .c_str());
  }
  const std::int64_t elements = describe::extent(p, name).elements();
  if (static_cast<std::int64_t>(a->size()) != elements) {
    throw nb::value_error(format("%s: %s must hold %lld ids, got shape %s", call, name,
                                 static_cast<long long>(elements), shape_of(*a).c_str())
                              .c_str());
  }
  if (!c_contiguous(*a)) {
    throw nb::value_error(format("%s: %s must be contiguous", call, name).c_str());
  }
  return a->data();
}

/// <api>_forward, <api>_backward or <api>_forward_backward. The params are checked first, so a
/// bad value gets the library's own message before any array is judged against it; then each
/// array, in the order of the arguments; then the library checks the rest. The device scalars
/// (temperature=, scale=, bias=: float32 arrays of one value on the device, or None for the
/// params' value) and then the ids (query_ids=, key_ids= / anchor_ids=, candidate_ids=: int32 or
/// int64 arrays on the device per params.ids.type, or None without ids) come last, as keywords.
template <typename P, Pass pass, std::size_t... I, std::size_t... S, std::size_t... J>
void def_pass(nb::module_& m, const char* pass_name, std::index_sequence<I...>,
              std::index_sequence<S...>, std::index_sequence<J...>) {
  const std::string api = describe::Described<P>::api;
  const char* call = kept(api + "." + pass_name);
  m.def(
      kept(api + "_" + pass_name),
      [call](const contrastive::Handle& h, const P& params, const Argument<P, pass, I>&... arrays,
             const Array& workspace, std::uintptr_t stream, const ScalarArgument<S>&... scalars,
             const IdsArgument<J>&... ids) {
        static_assert(sizeof...(I) + sizeof...(S) + sizeof...(J) <= Pointers::kMost);
        P p = params;
        throw_if(describe::check(p));
        Pointers at;
        (at.add(argument_at<P, pass, I>().name,
                checked(call, &p, argument_at<P, pass, I>(), arrays)),
         ...);
        (at.add(scalar_at<P, S>().name,
                optional_dense(call, scalar_at<P, S>().name, scalars, DType::kF32, 1)),
         ...);
        (at.add(ids_at<P, J>().name, checked_ids(call, p, ids_at<P, J>().name, ids)), ...);
        std::size_t bytes = 0;
        void* ws = cuda_bytes(call, "workspace", workspace, &bytes);
        run([&] { return describe::detail::run(pass, h, p, at, ws, bytes, to_stream(stream)); });
      },
      "handle"_a, "params"_a, keyword<P, pass, I>()..., "workspace"_a, "stream"_a = 0,
      scalar_keyword<P, S>()..., ids_keyword<P, J>()...);
}

template <typename P, Pass pass>
void def_pass(nb::module_& m, const char* pass_name) {
  def_pass<P, pass>(m, pass_name, std::make_index_sequence<describe::c_arguments<P>(pass).count>(),
                    std::make_index_sequence<describe::device_scalars<P>().count>(),
                    std::make_index_sequence<describe::id_arrays<P>().count>());
}

/// Every entry point of one loss: <api>_check, the size queries and the three passes.
template <typename P>
void def_loss(nb::module_& m) {
  const std::string api = describe::Described<P>::api;
  m.def(kept(api + "_check"), [](const P& p) { throw_if(describe::check(p)); });
  m.def(kept(api + "_workspace_size"),
        [](const P& p) { return size_of(p, describe::workspace_size); });
  m.def(kept(api + "_saved_size"), [](const P& p) { return size_of(p, describe::saved_size); });
  def_pass<P, Pass::kForward>(m, "forward");
  def_pass<P, Pass::kBackward>(m, "backward");
  def_pass<P, Pass::kForwardBackward>(m, "forward_backward");
}

/// The I-th input of the loss whose params are P.
template <typename P, std::size_t I>
constexpr const describe::Tensor& input_at() {
  return describe::Described<P>::tensors[describe::inputs<P>().index[I]];
}
template <std::size_t I>
using HostInput = HostMatrix;

/// The float64 results of one loss's forward and backward on dense inputs (in the order of its
/// description) and grad_loss (null: 1).
template <typename P>
using Reference = nb::dict (*)(const P& p, const double* const* inputs, const double* grad_loss);

/// reference_<api>(params, inputs..., grad_loss=None): each input checked against its extent.
template <typename P, std::size_t... I>
void def_reference(nb::module_& m, Reference<P> compute, std::index_sequence<I...>) {
  const std::string api = describe::Described<P>::api;
  const char* call = kept("reference." + api);
  m.def(
      kept("reference_" + api),
      [call, compute](const P& params, const HostInput<I>&... arrays,
                      const std::optional<HostMatrix>& grad_loss) {
        const P p = dense(params);
        const auto rows = [&](const describe::Tensor& tensor, const HostMatrix& a) {
          const describe::Extent e = describe::extent(p, tensor.name);
          return host_rows(call, tensor.name, a, e.rows, e.cols);
        };
        const double* data[] = {rows(input_at<P, I>(), arrays)...};
        const double* gd =
            host_grad_loss(call, grad_loss, describe::extent(p, "grad_loss").elements());
        return compute(p, data, gd);
      },
      "params"_a, nb::arg(input_at<P, I>().name)..., "grad_loss"_a.none() = nb::none());
}

template <typename P>
void def_reference(nb::module_& m, Reference<P> compute) {
  def_reference<P>(m, compute, std::make_index_sequence<describe::inputs<P>().count>());
}

#define CONTRASTIVE_DEF_RW(field) .def_rw(#field, &Bound::field)

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "contrastive's C++ core: see python/CORE_API.md";

  nb::enum_<DType>(m, "DType")
      .value("f32", DType::kF32)
      .value("f16", DType::kF16)
      .value("bf16", DType::kBF16);
  nb::enum_<Reduction>(m, "Reduction")
      .value("mean", Reduction::kMean)
      .value("sum", Reduction::kSum)
      .value("none", Reduction::kNone);
  nb::enum_<Similarity>(m, "Similarity")
      .value("cosine", Similarity::kCosine)
      .value("dot", Similarity::kDot);
  nb::enum_<Tiling>(m, "Tiling")
      .value("auto", Tiling::kAuto)
      .value("materialized", Tiling::kMaterialized)
      .value("tiled", Tiling::kTiled);

  nb::class_<contrastive::Handle>(m, "Handle")
      .def(
          "__init__",
          [](contrastive::Handle* self, int device) {
            new (self) contrastive::Handle();
            Status status;
            {
              nb::gil_scoped_release release;
              status = contrastive::Handle::create(self, device);
            }
            throw_if(status);
          },
          "device"_a = contrastive::Handle::kCurrentDevice)
      .def_static(
          "empty", [] { return contrastive::Handle(); },
          "An empty handle, as C++'s default Handle: every call given it raises RuntimeError "
          "after checking its arguments (for tests that run without a GPU).")
      .def_prop_ro("valid", &contrastive::Handle::valid)
      .def_prop_ro("device", &contrastive::Handle::device)
      .def_prop_ro("compute_capability", &contrastive::Handle::compute_capability)
      .def_prop_ro("multiprocessor_count", &contrastive::Handle::multiprocessor_count);

  // ---- Params classes and each loss's entry points ------------------------------------------
  nb::enum_<contrastive::ids::IdType>(m, "IdType")
      .value("none", contrastive::ids::IdType::kNone)
      .value("int32", contrastive::ids::IdType::kInt32)
      .value("int64", contrastive::ids::IdType::kInt64);
  {
    using Bound = contrastive::ids::IdOptions;
    nb::class_<Bound>(m, "IdOptions")
        .def(nb::init<>())
        .def_rw("type", &Bound::type)
        .def_rw("multi_positive", &Bound::multi_positive)
        .def_rw("exclude_self", &Bound::exclude_self)
        .def_rw("false_negative_threshold", &Bound::false_negative_threshold)
        .def_rw("false_negative_margin", &Bound::false_negative_margin);
  }
  {
    using Bound = infonce::Params;
    nb::class_<Bound>(m, "InfoNCEParams")
        .def(nb::init<>()) CONTRASTIVE_INFONCE_FIELDS(CONTRASTIVE_DEF_RW)
        .def_rw("ids", &Bound::ids);
  }
  {
    using Bound = mnr::PerAnchorParams;
    nb::class_<Bound>(m, "PerAnchorParams")
        .def(nb::init<>()) CONTRASTIVE_MNR_PER_ANCHOR_FIELDS(CONTRASTIVE_DEF_RW);
  }
  {
    using Bound = mnr::InBatchParams;
    nb::class_<Bound>(m, "InBatchParams")
        .def(nb::init<>()) CONTRASTIVE_MNR_IN_BATCH_FIELDS(CONTRASTIVE_DEF_RW)
        .def_rw("ids", &Bound::ids);
  }
  {
    using Bound = repel::Params;
    nb::class_<Bound>(m, "RepelParams")
        .def(nb::init<>()) CONTRASTIVE_REPEL_FIELDS(CONTRASTIVE_DEF_RW);
  }
  def_loss<infonce::Params>(m);
  def_loss<mnr::PerAnchorParams>(m);
  def_loss<mnr::InBatchParams>(m);
  {
    using Bound = siglip::Params;
    nb::class_<Bound>(m, "SigLIPParams")
        .def(nb::init<>()) CONTRASTIVE_SIGLIP_FIELDS(CONTRASTIVE_DEF_RW);
  }
  def_loss<repel::Params>(m);
  def_loss<siglip::Params>(m);

  // ---- Float64 references on NumPy arrays ---------------------------------------------------
  def_reference<infonce::Params>(
      m, [](const infonce::Params& p, const double* const* in, const double* grad_loss) {
        namespace ref = contrastive::reference;
        ref::InfoNCEForward f;
        ref::InfoNCEBackward g;
        throw_if(ref::infonce_forward(p, in[0], in[1], &f));
        throw_if(ref::infonce_backward(p, in[0], in[1], grad_loss, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["row_lse"] = numpy_array(f.row_lse, {u(p.batch)});
        out["col_lse"] = numpy_array(f.col_lse, {f.col_lse.size()});
        out["logits"] = numpy_array(f.logits, {u(p.batch), u(p.num_keys)});
        out["grad_q"] = numpy_array(g.grad_q, {u(p.batch), u(p.dim)});
        out["grad_k"] = numpy_array(g.grad_k, {u(p.num_keys), u(p.dim)});
        out["grad_temperature"] = g.grad_temperature;
        out["grad_logits"] = numpy_array(g.grad_logits, {u(p.batch), u(p.num_keys)});
        return out;
      });
  // With ids (include/contrastive/ids.hpp): query and key ids, both or neither.
  m.def(
      "reference_infonce_ids",
      [](const infonce::Params& params, const HostMatrix& q, const HostMatrix& k,
         const std::optional<HostIds>& query_ids, const std::optional<HostIds>& key_ids,
         bool multi_positive, bool exclude_self, std::optional<float> false_negative_margin,
         const std::optional<HostMatrix>& grad_loss) {
        namespace ref = contrastive::reference;
        const char* call = "reference.infonce";
        const infonce::Params p = dense(params);
        throw_if(contrastive::infonce::detail::check_problem(p));
        const auto o =
            id_options(query_ids.has_value(), multi_positive, exclude_self, false_negative_margin);
        const double* qd = host_rows(call, "q", q, p.batch, p.dim);
        const double* kd = host_rows(call, "k", k, p.num_keys, p.dim);
        const std::int64_t* qi = host_ids(call, "query_ids", query_ids, p.batch);
        const std::int64_t* ki = host_ids(call, "key_ids", key_ids, p.num_keys);
        const double* gd =
            host_grad_loss(call, grad_loss, p.reduction == Reduction::kNone ? p.batch : 1);
        ref::IdsForward f;
        ref::InfoNCEBackward g;
        throw_if(ref::infonce_ids_forward(p, o, qd, kd, qi, ki, &f));
        throw_if(ref::infonce_ids_backward(p, o, qd, kd, qi, ki, gd, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["row_lse"] = numpy_array(f.row_lse, {u(p.batch)});
        out["col_lse"] = numpy_array(f.col_lse, {f.col_lse.size()});
        out["logits"] = numpy_array(f.logits, {u(p.batch), u(p.num_keys)});
        out["positive_rows"] = f.positive_rows;
        out["kept"] = numpy_array(std::vector<double>(f.kept.begin(), f.kept.end()),
                                  {u(p.batch), u(p.num_keys)});
        out["grad_q"] = numpy_array(g.grad_q, {u(p.batch), u(p.dim)});
        out["grad_k"] = numpy_array(g.grad_k, {u(p.num_keys), u(p.dim)});
        out["grad_temperature"] = g.grad_temperature;
        out["grad_logits"] = numpy_array(g.grad_logits, {u(p.batch), u(p.num_keys)});
        return out;
      },
      "params"_a, "q"_a, "k"_a, "query_ids"_a.none(), "key_ids"_a.none(), "multi_positive"_a,
      "exclude_self"_a, "false_negative_margin"_a.none(), "grad_loss"_a.none() = nb::none());
  m.def(
      "reference_mnr_in_batch_ids",
      [](const mnr::InBatchParams& params, const HostMatrix& anchors, const HostMatrix& candidates,
         const std::optional<HostIds>& query_ids, const std::optional<HostIds>& key_ids,
         bool multi_positive, bool exclude_self, std::optional<float> false_negative_margin,
         const std::optional<HostMatrix>& grad_loss) {
        namespace ref = contrastive::reference;
        const char* call = "reference.mnr_in_batch";
        const mnr::InBatchParams p = dense(params);
        throw_if(contrastive::mnr::detail::check_problem(p));
        const std::int64_t m_rows = (1 + p.hard_negatives) * p.batch;
        const auto o =
            id_options(query_ids.has_value(), multi_positive, exclude_self, false_negative_margin);
        const double* ad = host_rows(call, "anchors", anchors, p.batch, p.dim);
        const double* cd = host_rows(call, "candidates", candidates, m_rows, p.dim);
        const std::int64_t* qi = host_ids(call, "query_ids", query_ids, p.batch);
        const std::int64_t* ki = host_ids(call, "key_ids", key_ids, m_rows);
        const double* gd =
            host_grad_loss(call, grad_loss, p.reduction == Reduction::kNone ? p.batch : 1);
        ref::IdsForward f;
        ref::MnrInBatchBackward g;
        throw_if(ref::mnr_in_batch_ids_forward(p, o, ad, cd, qi, ki, &f));
        throw_if(ref::mnr_in_batch_ids_backward(p, o, ad, cd, qi, ki, gd, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["row_lse"] = numpy_array(f.row_lse, {u(p.batch)});
        out["col_lse"] = numpy_array(f.col_lse, {f.col_lse.size()});
        out["logits"] = numpy_array(f.logits, {u(p.batch), u(m_rows)});
        out["positive_rows"] = f.positive_rows;
        out["kept"] =
            numpy_array(std::vector<double>(f.kept.begin(), f.kept.end()), {u(p.batch), u(m_rows)});
        out["grad_anchors"] = numpy_array(g.grad_anchors, {u(p.batch), u(p.dim)});
        out["grad_candidates"] = numpy_array(g.grad_candidates, {u(m_rows), u(p.dim)});
        out["grad_scale"] = g.grad_scale;
        out["grad_logits"] = numpy_array(g.grad_logits, {u(p.batch), u(m_rows)});
        return out;
      },
      "params"_a, "anchors"_a, "candidates"_a, "query_ids"_a.none(), "key_ids"_a.none(),
      "multi_positive"_a, "exclude_self"_a, "false_negative_margin"_a.none(),
      "grad_loss"_a.none() = nb::none());
  def_reference<mnr::PerAnchorParams>(
      m, [](const mnr::PerAnchorParams& p, const double* const* in, const double* grad_loss) {
        namespace ref = contrastive::reference;
        ref::MnrPerAnchorForward f;
        ref::MnrPerAnchorBackward g;
        throw_if(ref::mnr_per_anchor_forward(p, in[0], in[1], in[2], &f));
        throw_if(ref::mnr_per_anchor_backward(p, in[0], in[1], in[2], grad_loss, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["row_lse"] = numpy_array(f.row_lse, {u(p.batch)});
        out["logits"] = numpy_array(f.logits, {u(p.batch), u(p.negatives + 1)});
        out["grad_anchors"] = numpy_array(g.grad_anchors, {u(p.batch), u(p.dim)});
        out["grad_positives"] = numpy_array(g.grad_positives, {u(p.batch), u(p.dim)});
        out["grad_negatives"] = numpy_array(g.grad_negatives, {u(p.batch * p.negatives), u(p.dim)});
        out["grad_scale"] = g.grad_scale;
        out["grad_logits"] = numpy_array(g.grad_logits, {u(p.batch), u(p.negatives + 1)});
        return out;
      });
  def_reference<mnr::InBatchParams>(
      m, [](const mnr::InBatchParams& p, const double* const* in, const double* grad_loss) {
        namespace ref = contrastive::reference;
        const std::int64_t m_rows = (1 + p.hard_negatives) * p.batch;
        ref::InfoNCEForward f;
        ref::MnrInBatchBackward g;
        throw_if(ref::mnr_in_batch_forward(p, in[0], in[1], &f));
        throw_if(ref::mnr_in_batch_backward(p, in[0], in[1], grad_loss, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["row_lse"] = numpy_array(f.row_lse, {u(p.batch)});
        out["col_lse"] = numpy_array(f.col_lse, {f.col_lse.size()});
        out["logits"] = numpy_array(f.logits, {u(p.batch), u(m_rows)});
        out["grad_anchors"] = numpy_array(g.grad_anchors, {u(p.batch), u(p.dim)});
        out["grad_candidates"] = numpy_array(g.grad_candidates, {u(m_rows), u(p.dim)});
        out["grad_scale"] = g.grad_scale;
        out["grad_logits"] = numpy_array(g.grad_logits, {u(p.batch), u(m_rows)});
        return out;
      });
  def_reference<repel::Params>(
      m, [](const repel::Params& p, const double* const* in, const double* grad_loss) {
        namespace ref = contrastive::reference;
        ref::RepelForward f;
        ref::RepelBackward g;
        throw_if(ref::repel_forward(p, in[0], in[1], &f));
        throw_if(ref::repel_backward(p, in[0], in[1], grad_loss, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["similarities"] = numpy_array(f.similarities, {u(p.batch), u(p.negatives)});
        out["active_terms"] = f.active_terms;
        out["grad_anchors"] = numpy_array(g.grad_anchors, {u(p.batch), u(p.dim)});
        out["grad_negatives"] = numpy_array(g.grad_negatives, {u(p.batch * p.negatives), u(p.dim)});
        return out;
      });
  def_reference<siglip::Params>(
      m, [](const siglip::Params& p, const double* const* in, const double* grad_loss) {
        namespace ref = contrastive::reference;
        ref::SigLIPForward f;
        ref::SigLIPBackward g;
        throw_if(ref::siglip_forward(p, in[0], in[1], &f));
        throw_if(ref::siglip_backward(p, in[0], in[1], grad_loss, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["logits"] = numpy_array(f.logits, {u(p.batch), u(p.num_keys)});
        out["grad_q"] = numpy_array(g.grad_q, {u(p.batch), u(p.dim)});
        out["grad_k"] = numpy_array(g.grad_k, {u(p.num_keys), u(p.dim)});
        out["grad_scale"] = g.grad_scale;
        out["grad_bias"] = g.grad_bias;
        out["grad_logits"] = numpy_array(g.grad_logits, {u(p.batch), u(p.num_keys)});
        return out;
      });
}
