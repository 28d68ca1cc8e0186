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
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "contrastive/contrastive.hpp"
#include "contrastive/reference.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using contrastive::DType;
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

std::int64_t loss_count(Reduction reduction, std::int64_t per_output) {
  return reduction == Reduction::kNone ? per_output : 1;
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

std::size_t u(std::int64_t value) {
  return static_cast<std::size_t>(value);
}

// Reference calls read dense rows: the params' strides are reset to 0.
template <typename Params>
Params dense(Params p);

template <>
infonce::Params dense(infonce::Params p) {
  p.q_row_stride = p.k_row_stride = 0;
  return p;
}
template <>
mnr::PerAnchorParams dense(mnr::PerAnchorParams p) {
  p.anchor_row_stride = p.positive_row_stride = p.negative_row_stride = 0;
  return p;
}
template <>
mnr::InBatchParams dense(mnr::InBatchParams p) {
  p.anchor_row_stride = p.candidate_row_stride = 0;
  return p;
}
template <>
repel::Params dense(repel::Params p) {
  p.anchor_row_stride = p.negative_row_stride = 0;
  return p;
}

// ---- From Python arrays to the library's args, one function per loss
// ------------------------------

template <typename Params, typename Args>
struct Prepared {
  Params params;  // with the arrays' row strides
  Args args;      // args.saved is set only from a writable `saved` (forward, forward_backward)
  const void* saved = nullptr;  // `saved` as backward reads it
  void* workspace = nullptr;
  std::size_t bytes = 0;
};

/// `saved` in Prepared: forward and forward_backward write it (a writable array), backward only
/// reads it (a read-only array is accepted there).
template <typename P>
void keep_saved(P& c, void* data) {
  c.args.saved = data;
  c.saved = data;
}
template <typename P>
void keep_saved(P& c, const void* data) {
  c.saved = data;
}

template <typename Saved>
Prepared<infonce::Params, infonce::ForwardBackwardArgs> prepare_infonce(
    const char* call, infonce::Params p, const Input& q, const Input& k, const OptionalArray& loss,
    const Saved& saved, const OptionalInput& grad_loss, const OptionalArray& grad_q,
    const OptionalArray& grad_k, const OptionalArray& grad_temperature, const Array& workspace) {
  throw_if(infonce::check(p));
  Prepared<infonce::Params, infonce::ForwardBackwardArgs> c;
  const std::int64_t outputs = loss_count(p.reduction, p.batch);
  c.args.q = cuda_rows(call, "q", q, p.dtype, p.batch, p.dim, &p.q_row_stride);
  c.args.k = cuda_rows(call, "k", k, p.dtype, p.num_keys, p.dim, &p.k_row_stride);
  c.args.loss = static_cast<float*>(optional_dense(call, "loss", loss, DType::kF32, outputs));
  keep_saved(c, saved_buffer(call, saved, size_of(p, infonce::saved_size)));
  c.args.grad_loss =
      static_cast<const float*>(optional_dense(call, "grad_loss", grad_loss, DType::kF32, outputs));
  c.args.grad_q = optional_dense(call, "grad_q", grad_q, p.dtype, p.batch * p.dim);
  c.args.grad_k = optional_dense(call, "grad_k", grad_k, p.dtype, p.num_keys * p.dim);
  c.args.grad_temperature = static_cast<float*>(
      optional_dense(call, "grad_temperature", grad_temperature, DType::kF32, 1));
  c.workspace = cuda_bytes(call, "workspace", workspace, &c.bytes);
  c.params = p;
  return c;
}

template <typename Saved>
Prepared<mnr::PerAnchorParams, mnr::PerAnchorForwardBackwardArgs> prepare_per_anchor(
    const char* call, mnr::PerAnchorParams p, const Input& anchors, const Input& positives,
    const Input& negatives, const OptionalArray& loss, const Saved& saved,
    const OptionalInput& grad_loss, const OptionalArray& grad_anchors,
    const OptionalArray& grad_positives, const OptionalArray& grad_negatives,
    const OptionalArray& grad_scale, const Array& workspace) {
  throw_if(mnr::check(p));
  Prepared<mnr::PerAnchorParams, mnr::PerAnchorForwardBackwardArgs> c;
  const std::int64_t outputs = loss_count(p.reduction, p.batch);
  const std::int64_t negative_rows = p.batch * p.negatives;
  c.args.anchors =
      cuda_rows(call, "anchors", anchors, p.dtype, p.batch, p.dim, &p.anchor_row_stride);
  c.args.positives =
      cuda_rows(call, "positives", positives, p.dtype, p.batch, p.dim, &p.positive_row_stride);
  c.args.negatives = cuda_rows(call, "negatives", negatives, p.dtype, negative_rows, p.dim,
                               &p.negative_row_stride, p.negatives);
  c.args.loss = static_cast<float*>(optional_dense(call, "loss", loss, DType::kF32, outputs));
  const std::size_t saved_bytes = size_of(
      p, [](const mnr::PerAnchorParams& q, std::size_t* b) { return mnr::saved_size(q, b); });
  keep_saved(c, saved_buffer(call, saved, saved_bytes));
  c.args.grad_loss =
      static_cast<const float*>(optional_dense(call, "grad_loss", grad_loss, DType::kF32, outputs));
  c.args.grad_anchors =
      optional_dense(call, "grad_anchors", grad_anchors, p.dtype, p.batch * p.dim);
  c.args.grad_positives =
      optional_dense(call, "grad_positives", grad_positives, p.dtype, p.batch * p.dim);
  c.args.grad_negatives =
      optional_dense(call, "grad_negatives", grad_negatives, p.dtype, negative_rows * p.dim);
  c.args.grad_scale =
      static_cast<float*>(optional_dense(call, "grad_scale", grad_scale, DType::kF32, 1));
  c.workspace = cuda_bytes(call, "workspace", workspace, &c.bytes);
  c.params = p;
  return c;
}

template <typename Saved>
Prepared<mnr::InBatchParams, mnr::InBatchForwardBackwardArgs> prepare_in_batch(
    const char* call, mnr::InBatchParams p, const Input& anchors, const Input& candidates,
    const OptionalArray& loss, const Saved& saved, const OptionalInput& grad_loss,
    const OptionalArray& grad_anchors, const OptionalArray& grad_candidates,
    const OptionalArray& grad_scale, const Array& workspace) {
  throw_if(mnr::check(p));
  Prepared<mnr::InBatchParams, mnr::InBatchForwardBackwardArgs> c;
  const std::int64_t outputs = loss_count(p.reduction, p.batch);
  const std::int64_t candidate_rows = (1 + p.hard_negatives) * p.batch;
  c.args.anchors =
      cuda_rows(call, "anchors", anchors, p.dtype, p.batch, p.dim, &p.anchor_row_stride);
  c.args.candidates = cuda_rows(call, "candidates", candidates, p.dtype, candidate_rows, p.dim,
                                &p.candidate_row_stride);
  c.args.loss = static_cast<float*>(optional_dense(call, "loss", loss, DType::kF32, outputs));
  const std::size_t saved_bytes =
      size_of(p, [](const mnr::InBatchParams& q, std::size_t* b) { return mnr::saved_size(q, b); });
  keep_saved(c, saved_buffer(call, saved, saved_bytes));
  c.args.grad_loss =
      static_cast<const float*>(optional_dense(call, "grad_loss", grad_loss, DType::kF32, outputs));
  c.args.grad_anchors =
      optional_dense(call, "grad_anchors", grad_anchors, p.dtype, p.batch * p.dim);
  c.args.grad_candidates =
      optional_dense(call, "grad_candidates", grad_candidates, p.dtype, candidate_rows * p.dim);
  c.args.grad_scale =
      static_cast<float*>(optional_dense(call, "grad_scale", grad_scale, DType::kF32, 1));
  c.workspace = cuda_bytes(call, "workspace", workspace, &c.bytes);
  c.params = p;
  return c;
}

template <typename Saved>
Prepared<repel::Params, repel::ForwardBackwardArgs> prepare_repel(
    const char* call, repel::Params p, const Input& anchors, const Input& negatives,
    const OptionalArray& loss, const Saved& saved, const OptionalInput& grad_loss,
    const OptionalArray& grad_anchors, const OptionalArray& grad_negatives,
    const Array& workspace) {
  throw_if(repel::check(p));
  Prepared<repel::Params, repel::ForwardBackwardArgs> c;
  const std::int64_t terms = p.batch * p.negatives;
  const std::int64_t outputs = loss_count(p.reduction, terms);
  c.args.anchors =
      cuda_rows(call, "anchors", anchors, p.dtype, p.batch, p.dim, &p.anchor_row_stride);
  c.args.negatives = cuda_rows(call, "negatives", negatives, p.dtype, terms, p.dim,
                               &p.negative_row_stride, p.negatives);
  c.args.loss = static_cast<float*>(optional_dense(call, "loss", loss, DType::kF32, outputs));
  keep_saved(c, saved_buffer(call, saved, size_of(p, repel::saved_size)));
  c.args.grad_loss =
      static_cast<const float*>(optional_dense(call, "grad_loss", grad_loss, DType::kF32, outputs));
  c.args.grad_anchors =
      optional_dense(call, "grad_anchors", grad_anchors, p.dtype, p.batch * p.dim);
  c.args.grad_negatives =
      optional_dense(call, "grad_negatives", grad_negatives, p.dtype, terms * p.dim);
  c.workspace = cuda_bytes(call, "workspace", workspace, &c.bytes);
  c.params = p;
  return c;
}

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

  // ---- Params
  // ------------------------------------------------------------------------------------
  nb::class_<infonce::Params>(m, "InfoNCEParams")
      .def(nb::init<>())
      .def_rw("batch", &infonce::Params::batch)
      .def_rw("num_keys", &infonce::Params::num_keys)
      .def_rw("dim", &infonce::Params::dim)
      .def_rw("positive_offset", &infonce::Params::positive_offset)
      .def_rw("q_row_stride", &infonce::Params::q_row_stride)
      .def_rw("k_row_stride", &infonce::Params::k_row_stride)
      .def_rw("dtype", &infonce::Params::dtype)
      .def_rw("similarity", &infonce::Params::similarity)
      .def_rw("reduction", &infonce::Params::reduction)
      .def_rw("temperature", &infonce::Params::temperature)
      .def_rw("eps", &infonce::Params::eps)
      .def_rw("symmetric", &infonce::Params::symmetric)
      .def_rw("allow_tf32", &infonce::Params::allow_tf32)
      .def_rw("logits_dtype", &infonce::Params::logits_dtype)
      .def_rw("tiling", &infonce::Params::tiling)
      .def_rw("workspace_budget", &infonce::Params::workspace_budget)
      .def_rw("tile_cache_bytes", &infonce::Params::tile_cache_bytes)
      .def_rw("tile_rows", &infonce::Params::tile_rows)
      .def_rw("tile_cols", &infonce::Params::tile_cols);
  nb::class_<mnr::PerAnchorParams>(m, "PerAnchorParams")
      .def(nb::init<>())
      .def_rw("batch", &mnr::PerAnchorParams::batch)
      .def_rw("negatives", &mnr::PerAnchorParams::negatives)
      .def_rw("dim", &mnr::PerAnchorParams::dim)
      .def_rw("anchor_row_stride", &mnr::PerAnchorParams::anchor_row_stride)
      .def_rw("positive_row_stride", &mnr::PerAnchorParams::positive_row_stride)
      .def_rw("negative_row_stride", &mnr::PerAnchorParams::negative_row_stride)
      .def_rw("dtype", &mnr::PerAnchorParams::dtype)
      .def_rw("similarity", &mnr::PerAnchorParams::similarity)
      .def_rw("reduction", &mnr::PerAnchorParams::reduction)
      .def_rw("scale", &mnr::PerAnchorParams::scale)
      .def_rw("eps", &mnr::PerAnchorParams::eps);
  nb::class_<mnr::InBatchParams>(m, "InBatchParams")
      .def(nb::init<>())
      .def_rw("batch", &mnr::InBatchParams::batch)
      .def_rw("hard_negatives", &mnr::InBatchParams::hard_negatives)
      .def_rw("dim", &mnr::InBatchParams::dim)
      .def_rw("anchor_row_stride", &mnr::InBatchParams::anchor_row_stride)
      .def_rw("candidate_row_stride", &mnr::InBatchParams::candidate_row_stride)
      .def_rw("dtype", &mnr::InBatchParams::dtype)
      .def_rw("similarity", &mnr::InBatchParams::similarity)
      .def_rw("reduction", &mnr::InBatchParams::reduction)
      .def_rw("scale", &mnr::InBatchParams::scale)
      .def_rw("eps", &mnr::InBatchParams::eps)
      .def_rw("symmetric", &mnr::InBatchParams::symmetric)
      .def_rw("allow_tf32", &mnr::InBatchParams::allow_tf32)
      .def_rw("logits_dtype", &mnr::InBatchParams::logits_dtype)
      .def_rw("tiling", &mnr::InBatchParams::tiling)
      .def_rw("workspace_budget", &mnr::InBatchParams::workspace_budget)
      .def_rw("tile_cache_bytes", &mnr::InBatchParams::tile_cache_bytes)
      .def_rw("tile_rows", &mnr::InBatchParams::tile_rows)
      .def_rw("tile_cols", &mnr::InBatchParams::tile_cols);
  nb::class_<repel::Params>(m, "RepelParams")
      .def(nb::init<>())
      .def_rw("batch", &repel::Params::batch)
      .def_rw("negatives", &repel::Params::negatives)
      .def_rw("dim", &repel::Params::dim)
      .def_rw("anchor_row_stride", &repel::Params::anchor_row_stride)
      .def_rw("negative_row_stride", &repel::Params::negative_row_stride)
      .def_rw("dtype", &repel::Params::dtype)
      .def_rw("reduction", &repel::Params::reduction)
      .def_rw("margin", &repel::Params::margin)
      .def_rw("eps", &repel::Params::eps)
      .def_rw("mean_over_active", &repel::Params::mean_over_active);

  // ---- Size queries
  // ------------------------------------------------------------------------------
  m.def("infonce_check", [](const infonce::Params& p) { throw_if(infonce::check(p)); });
  m.def("infonce_workspace_size",
        [](const infonce::Params& p) { return size_of(p, infonce::workspace_size); });
  m.def("infonce_saved_size",
        [](const infonce::Params& p) { return size_of(p, infonce::saved_size); });
  m.def("mnr_per_anchor_check", [](const mnr::PerAnchorParams& p) { throw_if(mnr::check(p)); });
  m.def("mnr_per_anchor_workspace_size", [](const mnr::PerAnchorParams& p) {
    return size_of(
        p, [](const mnr::PerAnchorParams& q, std::size_t* b) { return mnr::workspace_size(q, b); });
  });
  m.def("mnr_per_anchor_saved_size", [](const mnr::PerAnchorParams& p) {
    return size_of(
        p, [](const mnr::PerAnchorParams& q, std::size_t* b) { return mnr::saved_size(q, b); });
  });
  m.def("mnr_in_batch_check", [](const mnr::InBatchParams& p) { throw_if(mnr::check(p)); });
  m.def("mnr_in_batch_workspace_size", [](const mnr::InBatchParams& p) {
    return size_of(
        p, [](const mnr::InBatchParams& q, std::size_t* b) { return mnr::workspace_size(q, b); });
  });
  m.def("mnr_in_batch_saved_size", [](const mnr::InBatchParams& p) {
    return size_of(
        p, [](const mnr::InBatchParams& q, std::size_t* b) { return mnr::saved_size(q, b); });
  });
  m.def("repel_check", [](const repel::Params& p) { throw_if(repel::check(p)); });
  m.def("repel_workspace_size",
        [](const repel::Params& p) { return size_of(p, repel::workspace_size); });
  m.def("repel_saved_size", [](const repel::Params& p) { return size_of(p, repel::saved_size); });

  // ---- GPU calls: one prepare function per loss turns the arrays into the library's args --------
  // Each checks the params first, so a bad value gets the library's own message before any array
  // is judged against it.
  m.def(
      "infonce_forward",
      [](const contrastive::Handle& h, const infonce::Params& p, const Input& q, const Input& k,
         const Array& loss, const Array& saved, const Array& workspace, std::uintptr_t stream) {
        const auto c =
            prepare_infonce("infonce.forward", p, q, k, loss, saved, {}, {}, {}, {}, workspace);
        run([&] {
          return infonce::forward(h, c.params, {c.args.q, c.args.k, c.args.loss, c.args.saved},
                                  c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "q"_a, "k"_a, "loss"_a, "saved"_a, "workspace"_a, "stream"_a = 0);
  m.def(
      "infonce_backward",
      [](const contrastive::Handle& h, const infonce::Params& p, const Input& q, const Input& k,
         const Input& saved, const OptionalInput& grad_loss, const OptionalArray& grad_q,
         const OptionalArray& grad_k, const OptionalArray& grad_temperature, const Array& workspace,
         std::uintptr_t stream) {
        const auto c = prepare_infonce("infonce.backward", p, q, k, {}, saved, grad_loss, grad_q,
                                       grad_k, grad_temperature, workspace);
        run([&] {
          return infonce::backward(h, c.params,
                                   {c.args.q, c.args.k, c.saved, c.args.grad_loss, c.args.grad_q,
                                    c.args.grad_k, c.args.grad_temperature},
                                   c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "q"_a, "k"_a, "saved"_a, "grad_loss"_a.none(), "grad_q"_a.none(),
      "grad_k"_a.none(), "grad_temperature"_a.none(), "workspace"_a, "stream"_a = 0);
  m.def(
      "infonce_forward_backward",
      [](const contrastive::Handle& h, const infonce::Params& p, const Input& q, const Input& k,
         const Array& loss, const Array& saved, const OptionalInput& grad_loss,
         const OptionalArray& grad_q, const OptionalArray& grad_k,
         const OptionalArray& grad_temperature, const Array& workspace, std::uintptr_t stream) {
        const auto c = prepare_infonce("infonce.forward_backward", p, q, k, loss, saved, grad_loss,
                                       grad_q, grad_k, grad_temperature, workspace);
        run([&] {
          return infonce::forward_backward(h, c.params, c.args, c.workspace, c.bytes,
                                           to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "q"_a, "k"_a, "loss"_a, "saved"_a, "grad_loss"_a.none(),
      "grad_q"_a.none(), "grad_k"_a.none(), "grad_temperature"_a.none(), "workspace"_a,
      "stream"_a = 0);

  m.def(
      "mnr_per_anchor_forward",
      [](const contrastive::Handle& h, const mnr::PerAnchorParams& p, const Input& anchors,
         const Input& positives, const Input& negatives, const Array& loss, const Array& saved,
         const Array& workspace, std::uintptr_t stream) {
        const auto c = prepare_per_anchor("mnr_per_anchor.forward", p, anchors, positives,
                                          negatives, loss, saved, {}, {}, {}, {}, {}, workspace);
        run([&] {
          return mnr::forward(
              h, c.params,
              {c.args.anchors, c.args.positives, c.args.negatives, c.args.loss, c.args.saved},
              c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "positives"_a, "negatives"_a, "loss"_a, "saved"_a,
      "workspace"_a, "stream"_a = 0);
  m.def(
      "mnr_per_anchor_backward",
      [](const contrastive::Handle& h, const mnr::PerAnchorParams& p, const Input& anchors,
         const Input& positives, const Input& negatives, const Input& saved,
         const OptionalInput& grad_loss, const OptionalArray& grad_anchors,
         const OptionalArray& grad_positives, const OptionalArray& grad_negatives,
         const OptionalArray& grad_scale, const Array& workspace, std::uintptr_t stream) {
        const auto c = prepare_per_anchor("mnr_per_anchor.backward", p, anchors, positives,
                                          negatives, {}, saved, grad_loss, grad_anchors,
                                          grad_positives, grad_negatives, grad_scale, workspace);
        run([&] {
          return mnr::backward(h, c.params,
                               {c.args.anchors, c.args.positives, c.args.negatives, c.saved,
                                c.args.grad_loss, c.args.grad_anchors, c.args.grad_positives,
                                c.args.grad_negatives, c.args.grad_scale},
                               c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "positives"_a, "negatives"_a, "saved"_a,
      "grad_loss"_a.none(), "grad_anchors"_a.none(), "grad_positives"_a.none(),
      "grad_negatives"_a.none(), "grad_scale"_a.none(), "workspace"_a, "stream"_a = 0);
  m.def(
      "mnr_per_anchor_forward_backward",
      [](const contrastive::Handle& h, const mnr::PerAnchorParams& p, const Input& anchors,
         const Input& positives, const Input& negatives, const Array& loss, const Array& saved,
         const OptionalInput& grad_loss, const OptionalArray& grad_anchors,
         const OptionalArray& grad_positives, const OptionalArray& grad_negatives,
         const OptionalArray& grad_scale, const Array& workspace, std::uintptr_t stream) {
        const auto c = prepare_per_anchor("mnr_per_anchor.forward_backward", p, anchors, positives,
                                          negatives, loss, saved, grad_loss, grad_anchors,
                                          grad_positives, grad_negatives, grad_scale, workspace);
        run([&] {
          return mnr::forward_backward(h, c.params, c.args, c.workspace, c.bytes,
                                       to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "positives"_a, "negatives"_a, "loss"_a, "saved"_a,
      "grad_loss"_a.none(), "grad_anchors"_a.none(), "grad_positives"_a.none(),
      "grad_negatives"_a.none(), "grad_scale"_a.none(), "workspace"_a, "stream"_a = 0);

  m.def(
      "mnr_in_batch_forward",
      [](const contrastive::Handle& h, const mnr::InBatchParams& p, const Input& anchors,
         const Input& candidates, const Array& loss, const Array& saved, const Array& workspace,
         std::uintptr_t stream) {
        const auto c = prepare_in_batch("mnr_in_batch.forward", p, anchors, candidates, loss, saved,
                                        {}, {}, {}, {}, workspace);
        run([&] {
          return mnr::forward(h, c.params,
                              {c.args.anchors, c.args.candidates, c.args.loss, c.args.saved},
                              c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "candidates"_a, "loss"_a, "saved"_a, "workspace"_a,
      "stream"_a = 0);
  m.def(
      "mnr_in_batch_backward",
      [](const contrastive::Handle& h, const mnr::InBatchParams& p, const Input& anchors,
         const Input& candidates, const Input& saved, const OptionalInput& grad_loss,
         const OptionalArray& grad_anchors, const OptionalArray& grad_candidates,
         const OptionalArray& grad_scale, const Array& workspace, std::uintptr_t stream) {
        const auto c =
            prepare_in_batch("mnr_in_batch.backward", p, anchors, candidates, {}, saved, grad_loss,
                             grad_anchors, grad_candidates, grad_scale, workspace);
        run([&] {
          return mnr::backward(h, c.params,
                               {c.args.anchors, c.args.candidates, c.saved, c.args.grad_loss,
                                c.args.grad_anchors, c.args.grad_candidates, c.args.grad_scale},
                               c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "candidates"_a, "saved"_a, "grad_loss"_a.none(),
      "grad_anchors"_a.none(), "grad_candidates"_a.none(), "grad_scale"_a.none(), "workspace"_a,
      "stream"_a = 0);
  m.def(
      "mnr_in_batch_forward_backward",
      [](const contrastive::Handle& h, const mnr::InBatchParams& p, const Input& anchors,
         const Input& candidates, const Array& loss, const Array& saved,
         const OptionalInput& grad_loss, const OptionalArray& grad_anchors,
         const OptionalArray& grad_candidates, const OptionalArray& grad_scale,
         const Array& workspace, std::uintptr_t stream) {
        const auto c =
            prepare_in_batch("mnr_in_batch.forward_backward", p, anchors, candidates, loss, saved,
                             grad_loss, grad_anchors, grad_candidates, grad_scale, workspace);
        run([&] {
          return mnr::forward_backward(h, c.params, c.args, c.workspace, c.bytes,
                                       to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "candidates"_a, "loss"_a, "saved"_a,
      "grad_loss"_a.none(), "grad_anchors"_a.none(), "grad_candidates"_a.none(),
      "grad_scale"_a.none(), "workspace"_a, "stream"_a = 0);

  m.def(
      "repel_forward",
      [](const contrastive::Handle& h, const repel::Params& p, const Input& anchors,
         const Input& negatives, const Array& loss, const Array& saved, const Array& workspace,
         std::uintptr_t stream) {
        const auto c = prepare_repel("repel.forward", p, anchors, negatives, loss, saved, {}, {},
                                     {}, workspace);
        run([&] {
          return repel::forward(h, c.params,
                                {c.args.anchors, c.args.negatives, c.args.loss, c.args.saved},
                                c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "negatives"_a, "loss"_a, "saved"_a, "workspace"_a,
      "stream"_a = 0);
  m.def(
      "repel_backward",
      [](const contrastive::Handle& h, const repel::Params& p, const Input& anchors,
         const Input& negatives, const Input& saved, const OptionalInput& grad_loss,
         const OptionalArray& grad_anchors, const OptionalArray& grad_negatives,
         const Array& workspace, std::uintptr_t stream) {
        const auto c = prepare_repel("repel.backward", p, anchors, negatives, {}, saved, grad_loss,
                                     grad_anchors, grad_negatives, workspace);
        run([&] {
          return repel::backward(h, c.params,
                                 {c.args.anchors, c.args.negatives, c.saved, c.args.grad_loss,
                                  c.args.grad_anchors, c.args.grad_negatives},
                                 c.workspace, c.bytes, to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "negatives"_a, "saved"_a, "grad_loss"_a.none(),
      "grad_anchors"_a.none(), "grad_negatives"_a.none(), "workspace"_a, "stream"_a = 0);
  m.def(
      "repel_forward_backward",
      [](const contrastive::Handle& h, const repel::Params& p, const Input& anchors,
         const Input& negatives, const Array& loss, const Array& saved,
         const OptionalInput& grad_loss, const OptionalArray& grad_anchors,
         const OptionalArray& grad_negatives, const Array& workspace, std::uintptr_t stream) {
        const auto c = prepare_repel("repel.forward_backward", p, anchors, negatives, loss, saved,
                                     grad_loss, grad_anchors, grad_negatives, workspace);
        run([&] {
          return repel::forward_backward(h, c.params, c.args, c.workspace, c.bytes,
                                         to_stream(stream));
        });
      },
      "handle"_a, "params"_a, "anchors"_a, "negatives"_a, "loss"_a, "saved"_a, "grad_loss"_a.none(),
      "grad_anchors"_a.none(), "grad_negatives"_a.none(), "workspace"_a, "stream"_a = 0);

  // ---- Float64 references on NumPy arrays
  // ----------------------------------------------------------
  m.def(
      "reference_infonce",
      [](const infonce::Params& params, const HostMatrix& q, const HostMatrix& k,
         const std::optional<HostMatrix>& grad_loss) {
        constexpr const char* kCall = "reference.infonce";
        const infonce::Params p = dense(params);
        const double* qd = host_rows(kCall, "q", q, p.batch, p.dim);
        const double* kd = host_rows(kCall, "k", k, p.num_keys, p.dim);
        const double* gd = host_grad_loss(kCall, grad_loss, loss_count(p.reduction, p.batch));
        contrastive::reference::InfoNCEForward f;
        contrastive::reference::InfoNCEBackward g;
        throw_if(contrastive::reference::infonce_forward(p, qd, kd, &f));
        throw_if(contrastive::reference::infonce_backward(p, qd, kd, gd, &g));
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
      },
      "params"_a, "q"_a, "k"_a, "grad_loss"_a.none() = nb::none());
  m.def(
      "reference_mnr_per_anchor",
      [](const mnr::PerAnchorParams& params, const HostMatrix& anchors, const HostMatrix& positives,
         const HostMatrix& negatives, const std::optional<HostMatrix>& grad_loss) {
        constexpr const char* kCall = "reference.mnr_per_anchor";
        const mnr::PerAnchorParams p = dense(params);
        const double* ad = host_rows(kCall, "anchors", anchors, p.batch, p.dim);
        const double* pd = host_rows(kCall, "positives", positives, p.batch, p.dim);
        const double* nd = host_rows(kCall, "negatives", negatives, p.batch * p.negatives, p.dim);
        const double* gd = host_grad_loss(kCall, grad_loss, loss_count(p.reduction, p.batch));
        contrastive::reference::MnrPerAnchorForward f;
        contrastive::reference::MnrPerAnchorBackward g;
        throw_if(contrastive::reference::mnr_per_anchor_forward(p, ad, pd, nd, &f));
        throw_if(contrastive::reference::mnr_per_anchor_backward(p, ad, pd, nd, gd, &g));
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
      },
      "params"_a, "anchors"_a, "positives"_a, "negatives"_a, "grad_loss"_a.none() = nb::none());
  m.def(
      "reference_mnr_in_batch",
      [](const mnr::InBatchParams& params, const HostMatrix& anchors, const HostMatrix& candidates,
         const std::optional<HostMatrix>& grad_loss) {
        constexpr const char* kCall = "reference.mnr_in_batch";
        const mnr::InBatchParams p = dense(params);
        const std::int64_t m_rows = (1 + p.hard_negatives) * p.batch;
        const double* ad = host_rows(kCall, "anchors", anchors, p.batch, p.dim);
        const double* cd = host_rows(kCall, "candidates", candidates, m_rows, p.dim);
        const double* gd = host_grad_loss(kCall, grad_loss, loss_count(p.reduction, p.batch));
        contrastive::reference::InfoNCEForward f;
        contrastive::reference::MnrInBatchBackward g;
        throw_if(contrastive::reference::mnr_in_batch_forward(p, ad, cd, &f));
        throw_if(contrastive::reference::mnr_in_batch_backward(p, ad, cd, gd, &g));
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
      },
      "params"_a, "anchors"_a, "candidates"_a, "grad_loss"_a.none() = nb::none());
  m.def(
      "reference_repel",
      [](const repel::Params& params, const HostMatrix& anchors, const HostMatrix& negatives,
         const std::optional<HostMatrix>& grad_loss) {
        constexpr const char* kCall = "reference.repel";
        const repel::Params p = dense(params);
        const double* ad = host_rows(kCall, "anchors", anchors, p.batch, p.dim);
        const double* nd = host_rows(kCall, "negatives", negatives, p.batch * p.negatives, p.dim);
        const double* gd =
            host_grad_loss(kCall, grad_loss, loss_count(p.reduction, p.batch * p.negatives));
        contrastive::reference::RepelForward f;
        contrastive::reference::RepelBackward g;
        throw_if(contrastive::reference::repel_forward(p, ad, nd, &f));
        throw_if(contrastive::reference::repel_backward(p, ad, nd, gd, &g));
        nb::dict out;
        out["loss"] = numpy_array(f.loss, {f.loss.size()});
        out["similarities"] = numpy_array(f.similarities, {u(p.batch), u(p.negatives)});
        out["active_terms"] = f.active_terms;
        out["grad_anchors"] = numpy_array(g.grad_anchors, {u(p.batch), u(p.dim)});
        out["grad_negatives"] = numpy_array(g.grad_negatives, {u(p.batch * p.negatives), u(p.dim)});
        return out;
      },
      "params"_a, "anchors"_a, "negatives"_a, "grad_loss"_a.none() = nb::none());
}
