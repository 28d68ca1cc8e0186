"""Bad input through Python: ValueError / TypeError with the library's (or the binding's) own
message, RuntimeError without a GPU, nothing crashing the interpreter. Runs without a GPU: arrays
that present themselves as CUDA arrays (conftest.FakeCudaArray) and an empty handle reach every
check; each call stops at its first failing check, before any memory is touched."""

import numpy as np
import pytest

import contrastive
from contrastive import _core, _options, reference


@pytest.fixture
def empty():
    return _core.Handle.empty()


def infonce_call(cuda, handle, params, q=None, k=None, loss=None, saved=None, workspace=None):
    q = cuda((params.batch, params.dim)) if q is None else q
    k = cuda((params.num_keys, params.dim)) if k is None else k
    loss = cuda((1,)) if loss is None else loss
    saved = cuda((4096,), np.uint8) if saved is None else saved
    if workspace is None:
        workspace = cuda((_core.infonce_workspace_size(params),), np.uint8)
    return _core.infonce_forward(handle, params, q, k, loss, saved, workspace, 0)


# ---- No GPU --------------------------------------------------------------------------------------

def test_no_gpu_is_a_clear_runtime_error():
    if contrastive.gpu_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(RuntimeError, match="^no usable CUDA device"):
        _core.Handle()
    with pytest.raises(RuntimeError, match="^no usable CUDA device"):
        contrastive.handle_for(0)


def test_valid_arguments_stop_at_the_empty_handle(cuda, empty):
    with pytest.raises(RuntimeError, match="^handle is empty"):
        infonce_call(cuda, empty, _options.infonce_params(4, 6, 8))


# ---- The library's own checks --------------------------------------------------------------------

@pytest.mark.parametrize("change,message", [
    (dict(temperature=-1.0), "infonce: temperature must be finite and > 0, got -1"),
    (dict(temperature=0.0), "infonce: temperature must be finite and > 0, got 0"),
    (dict(temperature=float("nan")), "infonce: temperature must be finite and > 0, got nan"),
    (dict(positive_offset=3),
     r"infonce: positive_offset must be in \[0, M - B\] = \[0, 2\], got 3"),
])
def test_infonce_bad_values(cuda, empty, change, message):
    params = _options.infonce_params(4, 6, 8, **change)
    with pytest.raises(ValueError, match=f"^{message}$"):
        _core.infonce_check(params)
    with pytest.raises(ValueError, match=f"^{message}$"):
        infonce_call(cuda, empty, params)


def test_sizes_are_checked_by_the_library():
    with pytest.raises(ValueError,
                       match=r"^infonce: num_keys \(M = 2\) must be >= batch \(B = 4\)$"):
        _core.infonce_workspace_size(_options.infonce_params(4, 2, 8))
    with pytest.raises(ValueError,
                       match=r"^mnr \(per-anchor\): negatives \(n\) must be >= 1, got 0$"):
        _core.mnr_per_anchor_saved_size(_options.per_anchor_params(4, 0, 8))
    with pytest.raises(ValueError,
                       match=r"^mnr \(in-batch\): hard_negatives \(K\) must be >= 0, got -1$"):
        _core.mnr_in_batch_check(_options.in_batch_params(4, -1, 8))
    with pytest.raises(ValueError, match="^repel: margin must be finite, got nan$"):
        _core.repel_check(_options.repel_params(4, 3, 8, margin=float("nan")))


def test_every_dtype_passes_the_check():
    for dtype in ("f32", "f16", "bf16"):
        _core.infonce_check(_options.infonce_params(4, 4, 8, dtype=dtype))
        _core.repel_check(_options.repel_params(4, 2, 8, dtype=dtype))


def test_unsupported_logits_dtype_is_a_type_error():
    with pytest.raises(TypeError, match=r"^infonce: logits_dtype must be f32 or bf16, got f16$"):
        _core.infonce_check(_options.infonce_params(4, 4, 8, logits_dtype="f16"))
    with pytest.raises(TypeError, match=r"^mnr \(in-batch\): logits_dtype must be f32 or bf16"):
        _core.mnr_in_batch_check(_options.in_batch_params(4, 1, 8, logits_dtype="f16"))


def test_unknown_option_names():
    with pytest.raises(ValueError, match="reduction must be one of"):
        _options.infonce_params(4, 4, 8, reduction="avg")
    with pytest.raises(ValueError, match="similarity must be one of"):
        _options.per_anchor_params(4, 2, 8, similarity="l2")


# ---- The binding's checks of each array ----------------------------------------------------------

def test_wrong_device(cuda, empty):
    params = _options.infonce_params(4, 4, 8)
    with pytest.raises(ValueError, match="^infonce.forward: q must be on a CUDA device, got cpu$"):
        infonce_call(cuda, empty, params, q=np.zeros((4, 8), np.float32))


def test_wrong_dtype(cuda, empty):
    params = _options.infonce_params(4, 4, 8)
    with pytest.raises(TypeError, match=r"^infonce.forward: k must be float32, got float64$"):
        infonce_call(cuda, empty, params, k=cuda((4, 8), np.float64))


def test_wrong_shape(cuda, empty):
    params = _options.infonce_params(4, 4, 8)
    with pytest.raises(ValueError,
                       match=r"^infonce.forward: q must have shape \(4, 8\), got \(4, 7\)$"):
        infonce_call(cuda, empty, params, q=cuda((4, 7)))
    with pytest.raises(ValueError,
                       match=r"^infonce.forward: loss must hold 1 values, got shape \(4,\)$"):
        infonce_call(cuda, empty, params, loss=cuda((4,)))


def test_non_contiguous_last_dimension(cuda, empty):
    params = _options.infonce_params(4, 4, 8)
    transposed = np.zeros((8, 4), np.float32).T
    with pytest.raises(ValueError,
                       match="^infonce.forward: q must be contiguous along its last dimension$"):
        infonce_call(cuda, empty, params, q=cuda(transposed))


def test_row_sliced_views_are_accepted(cuda, empty):
    """Rows with a stride (a slice of a wider matrix) cross without a copy: the call reaches the
    handle check, past every array check."""
    params = _options.infonce_params(4, 4, 8)
    wide = np.zeros((4, 16), np.float32)[:, :8]
    with pytest.raises(RuntimeError, match="^handle is empty"):
        infonce_call(cuda, empty, params, q=cuda(wide))


def test_saved_too_small(cuda, empty):
    params = _options.infonce_params(4, 4, 8)
    with pytest.raises(ValueError,
                       match=r"^infonce.forward: saved has 8 bytes, saved_size\(\) asks for \d+$"):
        infonce_call(cuda, empty, params, saved=cuda((8,), np.uint8))


def test_workspace_too_small_is_the_librarys_message(cuda, empty):
    params = _options.infonce_params(4, 4, 8)
    needed = _core.infonce_workspace_size(params)
    with pytest.raises(ValueError,
                       match=rf"^infonce::forward: workspace of {needed - 1} bytes is too small"):
        infonce_call(cuda, empty, params, workspace=cuda((needed - 1,), np.uint8))


def test_per_anchor_negatives_in_either_shape(cuda, empty):
    params = _options.per_anchor_params(3, 2, 4)
    workspace = cuda((_core.mnr_per_anchor_workspace_size(params),), np.uint8)
    common = dict(anchors=cuda((3, 4)), positives=cuda((3, 4)), loss=cuda((1,)),
                  saved=cuda((_core.mnr_per_anchor_saved_size(params),), np.uint8),
                  workspace=workspace)
    for negatives in (cuda((3, 2, 4)), cuda((6, 4))):
        with pytest.raises(RuntimeError, match="^handle is empty"):
            _core.mnr_per_anchor_forward(empty, params, negatives=negatives, **common)
    with pytest.raises(ValueError,
                       match=r"must have shape \(6, 4\) or \(3, 2, 4\), got \(2, 3, 4\)"):
        _core.mnr_per_anchor_forward(empty, params, negatives=cuda((2, 3, 4)), **common)


def test_gradients_all_skipped(cuda, empty):
    params = _options.repel_params(2, 3, 4)
    workspace = cuda((_core.repel_workspace_size(params),), np.uint8)
    with pytest.raises(ValueError,
                       match="grad_anchors and grad_negatives are both null: nothing to compute"):
        saved = cuda((_core.repel_saved_size(params),), np.uint8)
        _core.repel_backward(empty, params, cuda((2, 4)), cuda((2, 3, 4)), saved, None, None, None,
                             workspace, 0)


def test_no_crash_on_garbage_arguments(empty):
    with pytest.raises(TypeError):
        _core.infonce_forward(empty, _options.infonce_params(2, 2, 2), "q", None, 1, 2, 3)
    with pytest.raises(TypeError):
        _core.infonce_check(None)


# ---- 16-bit inputs and the logits tile's dtype ---------------------------------------------------

def test_logits_dtype_names():
    assert _options.infonce_params(4, 4, 8).logits_dtype == _core.DType.f32
    for name in ("bf16", "bfloat16"):
        assert _options.infonce_params(4, 4, 8, logits_dtype=name).logits_dtype == _core.DType.bf16
        assert _options.in_batch_params(4, 1, 8, logits_dtype=name).logits_dtype == _core.DType.bf16
    with pytest.raises(ValueError, match=r"^logits_dtype must be one of \[.*\], got 'fp8'$"):
        _options.infonce_params(4, 4, 8, logits_dtype="fp8")
    with pytest.raises(ValueError, match="^logits_dtype must be one of"):
        _options.in_batch_params(4, 1, 8, logits_dtype=None)
    _core.infonce_check(_options.infonce_params(4, 4, 8, dtype="bf16", logits_dtype="bf16"))
    _core.mnr_in_batch_check(_options.in_batch_params(4, 1, 8, dtype="bf16", logits_dtype="bf16"))
    with pytest.raises(TypeError, match=r"^mnr \(in-batch\): a bf16 logits tile needs bf16 inputs"):
        _core.mnr_in_batch_check(
            _options.in_batch_params(4, 1, 8, dtype="f16", logits_dtype="bf16"))


def half(cuda, shape, dtype):
    """A fake CUDA array of float16 or bfloat16 (float16 memory relabelled bfloat16 for DLPack)."""
    array = cuda(shape, np.float16)
    if dtype == "bf16":
        array._managed.dl_tensor.dtype.code = 4  # kDLBfloat
    return array


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_arrays_pass_the_bindings_checks(cuda, empty, dtype):
    """Inputs and gradients in the params' dtype, the loss and the temperature's gradient float32:
    the call reaches the handle check. Anything else is a TypeError naming the array."""
    params = _options.infonce_params(4, 6, 8, dtype=dtype,
                                     logits_dtype=dtype if dtype == "bf16" else "f32")
    label = {"f16": "float16", "bf16": "bfloat16"}[dtype]
    other = "bf16" if dtype == "f16" else "f16"

    def call(**change):
        args = dict(q=half(cuda, (4, 8), dtype), k=half(cuda, (6, 8), dtype), loss=cuda((1,)),
                    saved=cuda((_core.infonce_saved_size(params),), np.uint8), grad_loss=None,
                    grad_q=half(cuda, (4, 8), dtype), grad_k=half(cuda, (6, 8), dtype),
                    grad_temperature=cuda((1,)),
                    workspace=cuda((_core.infonce_workspace_size(params),), np.uint8))
        args.update(change)
        return _core.infonce_forward_backward(empty, params, stream=0, **args)

    with pytest.raises(RuntimeError, match="^handle is empty"):
        call()
    with pytest.raises(TypeError, match=rf"^infonce.forward_backward: k must be {label}, "
                                        rf"got float32$"):
        call(k=cuda((6, 8)))
    with pytest.raises(TypeError, match=rf"^infonce.forward_backward: q must be {label}, "):
        call(q=half(cuda, (4, 8), other))
    with pytest.raises(TypeError, match=rf"^infonce.forward_backward: grad_k must be {label}, "):
        call(grad_k=cuda((6, 8)))
    with pytest.raises(TypeError, match="^infonce.forward_backward: loss must be float32, "):
        call(loss=half(cuda, (1,), dtype))


def read_only(shape, dtype=np.float32):
    array = np.zeros(shape, dtype)
    array.setflags(write=False)
    return array


def test_read_only_arrays_are_accepted_where_the_library_only_reads(cuda, empty):
    """A read-only DLPack export (here a read-only NumPy array, on the host) passes the binding's
    type check for the inputs, `saved` in backward and grad_loss, and so meets the device check;
    an output that must be written rejects it."""
    params = _options.repel_params(2, 3, 4)
    workspace = cuda((_core.repel_workspace_size(params),), np.uint8)
    saved_bytes = _core.repel_saved_size(params)

    def backward(**change):
        args = dict(anchors=cuda((2, 4)), negatives=cuda((2, 3, 4)),
                    saved=cuda((saved_bytes,), np.uint8), grad_loss=cuda((1,)),
                    grad_anchors=cuda((2, 4)), grad_negatives=cuda((2, 3, 4)), workspace=workspace)
        args.update(change)
        return _core.repel_backward(empty, params, stream=0, **args)

    read_only_inputs = dict(anchors=read_only((2, 4)), negatives=read_only((2, 3, 4)),
                            saved=read_only((saved_bytes,), np.uint8), grad_loss=read_only((1,)))
    for name, array in read_only_inputs.items():
        with pytest.raises(ValueError, match=f"^repel.backward: {name} must be on a CUDA device"):
            backward(**{name: array})
    with pytest.raises(TypeError, match="incompatible function arguments"):
        backward(grad_anchors=read_only((2, 4)))
    forward = dict(anchors=cuda((2, 4)), negatives=cuda((2, 3, 4)), loss=cuda((1,)),
                   saved=cuda((saved_bytes,), np.uint8), workspace=workspace)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _core.repel_forward(empty, params, stream=0,
                            **dict(forward, saved=read_only((saved_bytes,), np.uint8)))
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _core.repel_forward(empty, params, stream=0, **dict(forward, loss=read_only((1,))))


def test_torch_mixed_dtypes_are_a_type_error_before_any_device_check():
    torch = pytest.importorskip("torch")
    from contrastive import torch as ct
    f16, bf16 = torch.zeros(4, 8, dtype=torch.float16), torch.zeros(4, 8, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"^infonce: inputs must all have one dtype, got "
                                        r"torch\.float16 for q and torch\.bfloat16 for k$"):
        ct.infonce(f16, bf16)
    with pytest.raises(TypeError, match=r"^MultipleNegativesRankingLoss: .* hard_negatives\[0\]$"):
        ct.MultipleNegativesRankingLoss()(f16, f16, bf16)


def test_jax_mixed_dtypes_are_a_type_error_before_any_device_check():
    jnp = pytest.importorskip("jax.numpy")
    from contrastive import jax as cj
    f16, bf16 = jnp.zeros((4, 8), jnp.float16), jnp.zeros((4, 8), jnp.bfloat16)
    with pytest.raises(TypeError, match="^mnr_in_batch: inputs must all have one dtype, got "
                                        "float16 for anchors and bfloat16 for candidates$"):
        cj.mnr_in_batch(f16, bf16)
    with pytest.raises(TypeError, match=r"^repel: inputs must be float32, float16 or bfloat16, "
                                        r"got int32$"):
        cj.repel(jnp.zeros((2, 4), jnp.int32), jnp.zeros((2, 3, 4), jnp.int32))


def test_tiling_options():
    """The walk over the logits: names checked here, sizes by the library."""
    p = _options.infonce_params(4096, 4096, 64, tiling="tiled", tile_cache_bytes=1 << 20)
    assert p.tiling == _core.Tiling.tiled and p.tile_cache_bytes == 1 << 20
    assert _options.infonce_params(4, 4, 8).workspace_budget == 4 << 30
    materialized = _core.infonce_workspace_size(
        _options.infonce_params(4096, 4096, 64, tiling="materialized"))
    tiled = _core.infonce_workspace_size(p)
    automatic = _core.infonce_workspace_size(
        _options.infonce_params(4096, 4096, 64, workspace_budget=materialized - 1,
                                tile_cache_bytes=1 << 20))
    assert tiled < materialized and automatic == tiled
    q = _options.in_batch_params(1024, 3, 64, tiling="tiled", tile_cache_bytes=1 << 20)
    assert _core.mnr_in_batch_workspace_size(q) < _core.mnr_in_batch_workspace_size(
        _options.in_batch_params(1024, 3, 64, tiling="materialized"))
    with pytest.raises(ValueError, match="^tiling must be one of"):
        _options.infonce_params(4, 4, 8, tiling="blocked")
    with pytest.raises(ValueError, match="^workspace_budget must be >= 0"):
        _options.infonce_params(4, 4, 8, workspace_budget=-1)


@pytest.mark.parametrize("make,message", [
    (lambda ct: ct.InfoNCELoss(temperature=-1.0),
     "^infonce: temperature must be finite and > 0, got -1$"),
    (lambda ct: ct.InfoNCELoss(similarity="l2"), "^similarity must be one of"),
    (lambda ct: ct.MultipleNegativesRankingLoss(scale=0.0),
     r"^mnr \(in-batch\): scale must be finite and > 0, got 0$"),
    (lambda ct: ct.PerAnchorMNRLoss(scale=float("inf")),
     r"^mnr \(per-anchor\): scale must be finite and > 0, got inf$"),
    (lambda ct: ct.RepelLoss(margin=float("nan")), "^repel: margin must be finite, got nan$"),
    (lambda ct: ct.RepelLoss(reduction="avg"), "^reduction must be one of"),
])
def test_torch_modules_check_their_values_when_constructed(make, message):
    pytest.importorskip("torch")
    from contrastive import torch as ct
    with pytest.raises(ValueError, match=message):
        make(ct)


def test_torch_learnable_values_are_checked_and_kept():
    torch = pytest.importorskip("torch")
    from contrastive import torch as ct
    with pytest.raises(ValueError, match="^infonce: temperature must be finite and > 0"):
        ct.InfoNCELoss(temperature=torch.tensor(-0.5), learnable_temperature=True)
    module = ct.InfoNCELoss(temperature=0.05, learnable_temperature=True)
    assert isinstance(module.temperature, torch.nn.Parameter)
    assert float(module.temperature.detach()) == pytest.approx(0.05)


def test_torch_inputs_of_the_wrong_kind_are_type_errors():
    torch = pytest.importorskip("torch")
    from contrastive import torch as ct
    with pytest.raises(TypeError, match=r"^infonce: q must be a torch\.Tensor, "
                                        r"got numpy\.ndarray \(for NumPy arrays, "
                                        r"contrastive\.reference"):
        ct.infonce(np.zeros((4, 8), np.float32), np.zeros((4, 8), np.float32))
    with pytest.raises(TypeError, match=r"^repel: negatives must be a torch\.Tensor, got "
                                        r"builtins\.list$"):
        ct.repel(torch.zeros(2, 4), [[0.0]])
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        ct.infonce(torch.zeros(4, 8), torch.zeros(4, 8), temprature=0.1)


def test_torch_cpu_tensors_are_computed_on_the_cpu():
    """CPU tensors run the CPU kernels (test_torch_cpu.py checks them against the reference)."""
    torch = pytest.importorskip("torch")
    from contrastive import torch as ct
    q, k = torch.eye(4, 8), torch.ones(4, 8)
    expected = reference.infonce(q.numpy(), k.numpy())["loss"][0]
    assert float(ct.infonce(q, k)) == pytest.approx(expected, rel=1e-6)


def test_torch_fake_implementations_check_shapes():
    """The fake (meta) implementations, which torch.compile traces, reject what the library
    would: one D across the inputs, one B where the rows are the batch."""
    torch = pytest.importorskip("torch")
    from torch._subclasses.fake_tensor import FakeTensorMode
    import contrastive.torch  # noqa: F401  (registers the operators)
    ops = torch.ops.contrastive
    options = ("cosine", False, "mean", 0, 1e-12, False, 0, 0, "f32", False, 0.0)
    with FakeTensorMode():
        q = torch.empty(4, 8, device="cuda")
        loss, saved = ops.infonce_forward(q, torch.empty(6, 8, device="cuda"), 0.1, None,
                                          *options)
        assert tuple(loss.shape) == (1,) and saved.dtype == torch.float32
        with pytest.raises(ValueError, match="^infonce: q and k must have one D"):
            ops.infonce_forward(q, torch.empty(6, 7, device="cuda"), 0.1, None, *options)
        with pytest.raises(ValueError, match="^repel: anchors and negatives must have one B"):
            ops.repel_forward(q, torch.empty(3, 2, 8, device="cuda"), 0.3, "mean", False, 1e-12)
        grads = ops.mnr_per_anchor_backward(
            q, q, torch.empty(4, 3, 8, device="cuda"), saved, loss, 1.0, None, "dot", "mean",
            1e-12, True, False, True, True)
        assert [tuple(g.shape) for g in grads] == [(4, 8), (0,), (4, 3, 8), (1,)]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_torch_functions_compile_into_one_graph_on_meta_tensors(dynamic):
    """Every function and a module traced by torch.compile(fullgraph=True) without a graph break,
    forward and backward, through the fake implementations (meta tensors: no GPU needed)."""
    torch = pytest.importorskip("torch")
    from contrastive import torch as ct
    module = ct.MultipleNegativesRankingLoss()
    cases = [(lambda q, k: ct.infonce(q, k, temperature=0.07, reduction="none"),
              [(4, 8), (6, 8)], (4,)),
             (lambda a, c: ct.mnr_in_batch(a, c, symmetric=True), [(4, 8), (12, 8)], ()),
             (lambda a, p, n: ct.mnr_per_anchor(a, p, n, scale=2.0), [(4, 8), (4, 8), (4, 3, 8)],
              ()),
             (lambda u, x: ct.repel(u, x, reduction="none"), [(2, 8), (2, 3, 8)], (2, 3)),
             (lambda a, p, n: module(a, p, n), [(4, 8), (4, 8), (4, 8)], ())]
    for function, shapes, loss_shape in cases:
        graphs = []

        def backend(graph_module, _example_inputs):
            graphs.append(graph_module)
            return graph_module.forward

        leaves = [torch.randn(*shape, device="meta", requires_grad=True) for shape in shapes]
        loss = torch.compile(function, fullgraph=True, backend=backend, dynamic=dynamic)(*leaves)
        assert tuple(loss.shape) == loss_shape and len(graphs) == 1
        loss.sum().backward()
        assert [tuple(leaf.grad.shape) for leaf in leaves] == [tuple(s) for s in shapes]


# ---- The descriptions the front ends are built from ----------------------------------------------

def _recording_front_end():
    """An eager front end over NumPy arrays whose `run` records what it would hand the library."""
    from contrastive import _eager
    calls = []

    def take(call, name, x, dims):
        if x.ndim != dims:
            raise ValueError(f"{call}: {name} must be {dims}-D, got shape {x.shape}")
        return x

    def run(loss, params, inputs, per_term, with_grad, scalar_gradient):
        calls.append(dict(loss=loss, params=params, inputs=inputs, per_term=per_term,
                          with_grad=with_grad, scalar_gradient=scalar_gradient))
        return calls[-1]

    return _eager.FrontEnd(take, run, {"float32": "f32", "float16": "f16"}, "float32 or float16")


def test_every_description_has_defaults_the_library_accepts():
    from contrastive import _losses
    assert [loss.name for loss in _losses.ALL] == ["infonce", "mnr_per_anchor", "mnr_in_batch",
                                                   "repel", "siglip"]
    for loss in _losses.ALL:
        loss.validate()  # the defaults pass the library's own check
        assert callable(loss.forward) and callable(loss.backward)
        assert callable(loss.forward_backward) and callable(loss.saved_size)


def test_eager_functions_build_the_librarys_params_from_the_shapes():
    from contrastive import _losses
    front_end = _recording_front_end()
    f32, f16 = np.float32, np.float16
    call = front_end.function(_losses.INFONCE)(np.zeros((4, 8), f32), np.zeros((6, 8), f32),
                                               temperature=0.5, reduction="none")
    p = call["params"]
    assert (p.batch, p.num_keys, p.dim, p.temperature) == (4, 6, 8, 0.5)
    assert call["per_term"] == (4,) and call["scalar_gradient"] and call["with_grad"]
    call = front_end.function(_losses.MNR_IN_BATCH)(np.zeros((4, 8), f16), np.zeros((12, 8), f16),
                                                    with_grad=False)
    p = call["params"]
    assert (p.batch, p.hard_negatives, p.dim, p.scale, p.dtype) == (4, 2, 8, 20.0, _core.DType.f16)
    assert call["per_term"] is None and not call["with_grad"]
    call = front_end.function(_losses.MNR_PER_ANCHOR)(
        np.zeros((4, 8), f32), np.zeros((4, 8), f32), np.zeros((4, 3, 8), f32))
    p = call["params"]
    assert (p.batch, p.negatives, p.dim, p.similarity) == (4, 3, 8, _core.Similarity.dot)
    call = front_end.function(_losses.REPEL)(np.zeros((2, 8), f32), np.zeros((2, 3, 8), f32),
                                             margin=-0.5, reduction="none")
    p = call["params"]
    assert (p.batch, p.negatives, p.dim, p.margin) == (2, 3, 8, -0.5)
    assert call["per_term"] == (2, 3) and not call["scalar_gradient"]


def test_siglip_has_two_scalars_in_every_front_end():
    """SigLIP's description: the scale then the bias, each with its gradient (the eager front end
    allocates two), M not tied to B."""
    from contrastive import _losses
    assert [scalar.name for scalar in _losses.SIGLIP.scalars] == ["scale", "bias"]
    assert _losses.SIGLIP.scalar.name == "scale" and _losses.REPEL.scalar is None
    front_end = _recording_front_end()
    f32 = np.float32
    call = front_end.function(_losses.SIGLIP)(np.zeros((4, 8), f32), np.zeros((7, 8), f32),
                                              scale=1.5, bias=-3.0, log_scale=True,
                                              positive_offset=2, reduction="none")
    p = call["params"]
    assert (p.batch, p.num_keys, p.dim, p.positive_offset) == (4, 7, 8, 2)
    assert (p.scale, p.bias, p.log_scale, p.negatives_only) == (1.5, -3.0, True, False)
    assert p.similarity == _core.Similarity.cosine
    assert call["per_term"] == (4,) and call["scalar_gradient"] == 2
    call = front_end.function(_losses.SIGLIP)(np.zeros((4, 8), f32), np.zeros((2, 8), f32),
                                              negatives_only=True)
    assert call["params"].negatives_only and call["params"].num_keys == 2
    assert "grad_scale, grad_bias" in front_end.function(_losses.SIGLIP).__doc__
    with pytest.raises(ValueError, match=r"^siglip: bias must be finite"):
        _losses.SIGLIP.validate(bias=float("nan"))


def test_eager_functions_check_shapes_and_keywords():
    from contrastive import _losses
    front_end = _recording_front_end()
    f32 = np.float32
    with pytest.raises(ValueError, match="^infonce: q and k must have one D"):
        front_end.function(_losses.INFONCE)(np.zeros((4, 8), f32), np.zeros((4, 7), f32))
    with pytest.raises(ValueError, match="^repel: anchors and negatives must have one B"):
        front_end.function(_losses.REPEL)(np.zeros((2, 8), f32), np.zeros((3, 3, 8), f32))
    with pytest.raises(ValueError, match=r"^mnr_in_batch: hard_negatives=1 does not match"):
        front_end.function(_losses.MNR_IN_BATCH)(np.zeros((4, 8), f32), np.zeros((12, 8), f32),
                                                 hard_negatives=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'scale'"):
        front_end.function(_losses.INFONCE)(np.zeros((4, 8), f32), np.zeros((4, 8), f32),
                                            scale=2.0)
    with pytest.raises(TypeError, match=r"takes 2 inputs \(anchors, negatives\), got 1"):
        front_end.function(_losses.REPEL)(np.zeros((2, 8), f32))
    with pytest.raises(TypeError, match="^infonce: inputs must be float32 or float16, got float64"):
        front_end.function(_losses.INFONCE)(np.zeros((4, 8)), np.zeros((4, 8)))
