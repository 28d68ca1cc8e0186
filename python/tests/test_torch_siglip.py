"""contrastive.torch.siglip and SigLIPLoss on CPU tensors: SigLIP's pairwise sigmoid loss against
the library's float64 reference (the loss, the gradients of q and k, of the scale (t, or log t with
log_scale) and of the bias, for random upstream gradients), on random and awkward shapes (one
row, more keys than rows with a positive offset, negatives only, one dimension, a zero row), in
one chunk and in many; both training paths; float16 and bfloat16 inputs; logits far from 0 (the
stable softplus and sigmoid); NaN kept; central differences; torch.library.opcheck;
torch.compile; bad inputs.

Skipped without PyTorch.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from contrastive import _torch_cpu, reference  # noqa: E402
from contrastive import torch as ct  # noqa: E402

# float32 CPU results against the float64 reference (as test_torch_cpu.py).
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5  # the absolute part scales with the largest entry
# 16-bit inputs: float32 math on the rounded inputs, gradients rounded once.
HALF_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
FD_STEP = 1e-2
FD_RTOL, FD_ATOL = 2e-2, 2e-3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_close(actual, expected, rtol, atol, what):
    expected = torch.as_tensor(np.asarray(expected, dtype=np.float64))
    actual = actual.detach().double().reshape(expected.shape)
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale, equal_nan=True,
                               msg=lambda message: f"{what}: {message}")


# name: (q shape, k shape, options, scale, bias)
CASES = {
    "default": ((6, 8), (6, 8), {}, 10.0, -10.0),
    "moderate_logits": ((7, 16), (7, 16), {}, 3.0, -1.0),
    "one_row": ((1, 4), (1, 4), {}, 5.0, -2.0),
    "one_row_many_keys": ((1, 5), (6, 5), dict(positive_offset=4), 4.0, 0.5),
    "offset_dot_sum": ((5, 8), (11, 8), dict(positive_offset=3, similarity="dot",
                                             reduction="sum"), 0.7, -0.3),
    "negatives_only": ((4, 8), (3, 8), dict(negatives_only=True), 6.0, -4.0),
    "negatives_only_none": ((5, 8), (9, 8), dict(negatives_only=True, reduction="none"), 2.0,
                            1.0),
    "log_scale": ((6, 12), (8, 12), dict(log_scale=True, positive_offset=1), math.log(10.0),
                  -10.0),
    "log_scale_dot_none": ((5, 4), (5, 4), dict(log_scale=True, similarity="dot",
                                                reduction="none"), -0.5, 0.25),
    "dim_one": ((3, 1), (4, 1), dict(positive_offset=1), 2.0, -1.0),
}


def _inputs(q_shape, k_shape, dtype=torch.float32, zero_row=False):
    q, k = torch.randn(*q_shape), torch.randn(*k_shape)
    if zero_row:  # the cosine clamp's branch
        q[0] = 0
    return q.to(dtype), k.to(dtype)


def check_against_reference(q, k, options, scale, bias, fused=True, tolerance=None):
    """The loss and the gradients of q, k, the scale and the bias (leaf tensors) for a random
    upstream gradient, against the float64 reference on the same (rounded) values."""
    leaves = [q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()]
    scalars = [torch.tensor(scale, requires_grad=True), torch.tensor(bias, requires_grad=True)]
    loss = ct.siglip(*leaves, scale=scalars[0], bias=scalars[1], fused_backward=fused, **options)
    assert loss.dtype == torch.float32
    assert loss.shape == ((q.shape[0],) if options.get("reduction") == "none" else ())
    upstream = torch.rand(loss.shape, dtype=torch.float64) + 0.5
    expected = reference.siglip(q.double().numpy(), k.double().numpy(), scale=scale, bias=bias,
                                grad_loss=upstream.numpy().reshape(-1), **options)
    loss_tol = (LOSS_RTOL, LOSS_ATOL) if tolerance is None else (tolerance, tolerance)
    grad_tol = (GRAD_RTOL, GRAD_ATOL) if tolerance is None else (tolerance, tolerance)
    assert_close(loss, np.asarray(expected["loss"]).reshape(loss.shape), *loss_tol, "loss")
    grads = torch.autograd.grad(loss, leaves + scalars, upstream.float())
    for grad, x, key in zip(grads, (q, k), ("grad_q", "grad_k")):
        assert grad.dtype == x.dtype and grad.shape == x.shape
        assert_close(grad, expected[key], *grad_tol, key)
    for grad, key in zip(grads[2:], ("grad_scale", "grad_bias")):
        assert grad.shape == () and grad.dtype == torch.float32
        assert_close(grad, expected[key], *grad_tol, key)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "recomputed"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_the_float64_reference(case, fused):
    q_shape, k_shape, options, scale, bias = case
    check_against_reference(*_inputs(q_shape, k_shape), options, scale, bias, fused)


@pytest.mark.parametrize("case", ["offset_dot_sum", "negatives_only_none", "log_scale"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "recomputed"])
def test_many_chunks_of_query_rows(case, fused, monkeypatch):
    """Chunks of one and two query rows: the positives of every chunk, the sums across chunks."""
    q_shape, k_shape, options, scale, bias = CASES[case]
    q, k = _inputs(q_shape, k_shape)
    for rows in (1, 2):
        monkeypatch.setattr(_torch_cpu, "CHUNK_ELEMENTS", rows * k_shape[0])
        assert _torch_cpu.chunk_rows(k_shape[0]) == rows
        check_against_reference(q, k, options, scale, bias, fused)


class _LargestTensor(TorchDispatchMode):
    """The largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(x, torch.Tensor):
                self.elements = max(self.elements, x.numel())
        return out


@pytest.mark.parametrize("entry", ["forward", "backward", "forward_backward"])
def test_memory_is_the_inputs_and_one_chunk(entry, monkeypatch):
    """No B x M tensor: with chunks of 2 query rows, nothing larger than an input or a chunk of
    logits is ever created (B = M = 64, D = 8: the logits would be 4096 elements)."""
    batch, keys, dim = 64, 64, 8
    monkeypatch.setattr(_torch_cpu, "CHUNK_ELEMENTS", 2 * keys)
    q, k = torch.randn(batch, dim), torch.randn(keys, dim)
    kernel = _torch_cpu.kernels_for("siglip")
    options = dict(log_scale=False, negatives_only=False, similarity="cosine", reduction="mean",
                   positive_offset=0, eps=1e-12)
    with _LargestTensor() as largest:
        if entry == "forward":
            kernel.forward((q, k), (), (3.0, -1.0), options)
        elif entry == "backward":
            kernel.backward((q, k), torch.empty(0), torch.ones(1), (), (3.0, -1.0), options)
        else:
            kernel.forward_backward((q, k), (), (3.0, -1.0), options)
    assert 0 < largest.elements <= max(batch * dim, keys * dim, 2 * keys) < batch * keys


def test_a_zero_row_takes_the_clamped_branch():
    check_against_reference(*_inputs((5, 8), (7, 8), zero_row=True), dict(positive_offset=2),
                            4.0, -1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_16_bit_inputs(dtype):
    q, k = _inputs((6, 16), (9, 16), dtype)
    check_against_reference(q, k, dict(positive_offset=3), 5.0, -2.0,
                            tolerance=HALF_TOLERANCE[dtype])


def test_large_logits_stay_finite_and_exact():
    """|l| up to about 200: softplus is l (or 0) to float32 precision, the sigmoids saturate
    without overflow; a confident positive and confident negatives give a loss near 0 and no
    NaN."""
    q = torch.eye(4, 8)
    k = torch.eye(4, 8)
    for scale, bias in ((100.0, -100.0), (200.0, 0.0), (1.0, 150.0), (1.0, -150.0)):
        check_against_reference(q, k, {}, scale, bias)
        check_against_reference(q, k, dict(similarity="dot"), scale, bias, fused=False)
    loss = ct.siglip(q, k, scale=100.0, bias=-50.0)
    assert math.isfinite(float(loss)) and float(loss) < 1e-15


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "recomputed"])
def test_nan_in_an_input_gives_a_nan_loss(fused):
    q, k = _inputs((4, 8), (4, 8))
    k[2, 3] = math.nan
    q.requires_grad_()
    loss = ct.siglip(q, k, similarity="dot", fused_backward=fused)
    assert math.isnan(float(loss.detach()))
    loss.backward()
    assert torch.isnan(q.grad).any()


# ---- Modules, training paths, learnable scalars -----------------------------------------------


def test_the_module_with_learnable_scale_and_bias():
    """SigLIP's setting: t' = log 10 and b = -10 learnable; one SGD step moves both."""
    module = ct.SigLIPLoss(scale=math.log(10.0), bias=-10.0, log_scale=True, learnable=True)
    assert sorted(name for name, _ in module.named_parameters()) == ["bias", "scale"]
    q, k = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
    module(q, k).backward()
    expected = reference.siglip(q.detach().double().numpy(), k.double().numpy(),
                                scale=math.log(10.0), log_scale=True, bias=-10.0)
    assert_close(module.scale.grad, expected["grad_scale"], GRAD_RTOL, GRAD_ATOL, "scale grad")
    assert_close(module.bias.grad, expected["grad_bias"], GRAD_RTOL, GRAD_ATOL, "bias grad")
    before = (float(module.scale), float(module.bias))
    torch.optim.SGD(module.parameters(), lr=1e-2).step()
    assert (float(module.scale), float(module.bias)) != before
    assert "log_scale=True" in repr(module)


def test_the_module_with_fixed_values():
    q, k = torch.randn(5, 8), torch.randn(7, 8)
    module = ct.SigLIPLoss(2.0, -1.0, similarity="dot", reduction="sum", positive_offset=2)
    assert list(module.parameters()) == []
    expected = reference.siglip(q.double().numpy(), k.double().numpy(), scale=2.0, bias=-1.0,
                                similarity="dot", reduction="sum", positive_offset=2)
    assert_close(module(q, k), expected["loss"][0], LOSS_RTOL, LOSS_ATOL, "loss")


def test_the_fused_path_scales_every_gradient():
    """Backward of the fused path multiplies the gradients kept from forward, the scale's and the
    bias's included, by the upstream gradient: the same as recomputing them."""
    q, k = torch.randn(5, 8), torch.randn(7, 8)
    results = []
    for fused in (True, False):
        leaves = [q.clone().requires_grad_(), k.clone().requires_grad_(),
                  torch.tensor(1.5, requires_grad=True), torch.tensor(-2.0, requires_grad=True)]
        loss = ct.siglip(*leaves[:2], scale=leaves[2], bias=leaves[3], log_scale=True,
                         positive_offset=1, fused_backward=fused)
        (-3.5 * loss).backward()
        results.append([leaf.grad for leaf in leaves])
    for fused_grad, recomputed in zip(*results):
        torch.testing.assert_close(fused_grad, recomputed, rtol=1e-5, atol=1e-6)


def test_only_the_needed_gradients():
    bias = torch.tensor(-1.0, requires_grad=True)  # only the bias learns
    ct.siglip(torch.randn(4, 8), torch.randn(4, 8), scale=3.0, bias=bias).backward()
    assert bias.grad is not None and bias.grad.shape == ()
    q, k = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    scale = torch.tensor(2.0, requires_grad=True)
    ct.siglip(q, k, scale=scale, bias=-1.0, fused_backward=False).backward()
    assert q.grad is not None and k.grad is None and scale.grad is not None
    loss, grad_q, grad_k, grad_scale, grad_bias = torch.ops.contrastive.siglip_forward_backward(
        q.detach(), k, 2.0, None, -1.0, None, False, False, "cosine", "mean", 0, 1e-12, False, 0,
        0, "f32", 0.0, True, False, False, True)
    assert grad_q.shape == (4, 8) and grad_k.numel() == 0 and grad_scale.numel() == 0
    assert grad_bias.shape == (1,)


def check_central_differences(f, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    grads = torch.autograd.grad(f(*leaves), leaves)
    directions = [torch.randn_like(t) for t in tensors]
    norm = torch.sqrt(sum((d * d).sum() for d in directions))
    directions = [d / norm for d in directions]
    with torch.no_grad():
        plus = f(*[t + FD_STEP * d for t, d in zip(tensors, directions)])
        minus = f(*[t - FD_STEP * d for t, d in zip(tensors, directions)])
    numeric = float((plus - minus) / (2 * FD_STEP))
    analytic = float(sum((g * d).sum() for g, d in zip(grads, directions)))
    assert abs(numeric - analytic) <= FD_ATOL + FD_RTOL * abs(analytic), (numeric, analytic)


def test_central_differences():
    check_central_differences(
        lambda q, k, s, b: ct.siglip(q, k, scale=s, bias=b, positive_offset=2),
        torch.randn(5, 8), torch.randn(8, 8), torch.tensor(3.0), torch.tensor(-1.0))
    check_central_differences(
        lambda q, k, s, b: ct.siglip(q, k, scale=s, bias=b, log_scale=True, similarity="dot",
                                     reduction="sum"),
        torch.randn(4, 6), torch.randn(4, 6), torch.tensor(0.2), torch.tensor(0.5))
    check_central_differences(
        lambda q, k, s, b: ct.siglip(q, k, scale=s, bias=b, negatives_only=True),
        torch.randn(3, 8), torch.randn(5, 8), torch.tensor(2.0), torch.tensor(-0.5))


# ---- The custom operators' registrations ------------------------------------------------------


def test_opcheck_every_operator():
    ops = torch.ops.contrastive
    q, k = torch.randn(5, 8).requires_grad_(), torch.randn(7, 8).requires_grad_()
    s, b = torch.tensor(1.5, requires_grad=True), torch.tensor(-2.0, requires_grad=True)
    options = (True, False, "cosine", "mean", 2, 1e-12, False, 0, 0, "f32", 100.0)
    none = (False, True, "dot", "none", 0, 1e-12, False, 0, 0, "f32", 0.0)
    loss, saved = ops.siglip_forward(q.detach(), k.detach(), 1.5, None, -2.0, None, *options)
    cases = {
        "forward": (ops.siglip_forward.default, (q, k, 1.0, s, 1.0, b, *options)),
        "forward_floats_none": (ops.siglip_forward.default, (q, k, 2.0, None, 0.5, None, *none)),
        "forward_bf16": (ops.siglip_forward.default,
                         (q.detach().bfloat16().requires_grad_(), k.detach().bfloat16(), 1.5,
                          None, -2.0, b, *options)),
        "backward": (ops.siglip_backward.default,
                     (q.detach(), k.detach(), saved, torch.ones_like(loss), 1.5, None, -2.0, None,
                      *options, True, True, True, True)),
        "backward_bias_only": (ops.siglip_backward.default,
                               (q.detach(), k.detach(), saved, torch.ones_like(loss), 1.5, None,
                                -2.0, None, *options, False, False, False, True)),
        "forward_backward": (ops.siglip_forward_backward.default,
                             (q, k, 1.0, s, 1.0, b, *options, True, True, True, True)),
        "forward_backward_f16_k_only": (ops.siglip_forward_backward.default,
                                        (q.detach().half(), k.detach().half().requires_grad_(),
                                         1.5, None, -2.0, None, *options, False, True, False,
                                         False)),
    }
    for name, (op, args) in cases.items():
        try:
            torch.library.opcheck(op, args)
        except Exception as error:
            raise AssertionError(f"opcheck failed for siglip {name}: {error}") from error


# ---- torch.compile ---------------------------------------------------------------------------


def _eager_and_compiled(fn, compiled, *tensors):
    results = []
    for f in (fn, compiled):
        leaves = [t.detach().clone().requires_grad_() for t in tensors]
        loss = f(*leaves)
        results.append((loss.detach(), torch.autograd.grad(loss, leaves)))
    (eager, eager_grads), (loss, grads) = results
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=1e-6)
    for grad, eager_grad in zip(grads, eager_grads):
        torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_compile_fullgraph():
    """Learnable scale and bias, the module and the per-row loss in one graph (aot_eager), then
    Inductor."""
    torch._dynamo.reset()
    module = ct.SigLIPLoss(2.0, -1.0, similarity="dot")

    def step(q, k, s, b):
        return (ct.siglip(q, k, scale=s, bias=b, log_scale=True, positive_offset=2)
                + module(q[:3], k) + ct.siglip(q, k, reduction="none").sum())

    inputs = (torch.randn(4, 8), torch.randn(6, 8), torch.tensor(1.0), torch.tensor(-2.0))
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    _eager_and_compiled(step, compiled, *inputs)
    _eager_and_compiled(step, compiled, *(t + 1 for t in inputs))
    torch._dynamo.reset()
    _eager_and_compiled(step, torch.compile(step, fullgraph=True), *inputs)


def test_compile_dynamic_shapes():
    torch._dynamo.reset()

    def step(q, k):
        return ct.siglip(q * 2, k, scale=5.0, bias=-3.0)

    compiled = torch.compile(step, fullgraph=True, dynamic=True, backend="aot_eager")
    for batch in (6, 10):
        _eager_and_compiled(step, compiled, torch.randn(batch, 8), torch.randn(batch + 3, 8))


# ---- Bad inputs -------------------------------------------------------------------------------


def test_bad_inputs_are_clear_errors():
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16, got torch.float64"):
        ct.siglip(q.double(), k.double())
    with pytest.raises(TypeError, match=r"^siglip: inputs must all have one dtype"):
        ct.siglip(q, k.half())
    with pytest.raises(ValueError, match=r"^siglip: q and k must have one D"):
        ct.siglip(q, torch.randn(4, 9))
    with pytest.raises(ValueError, match="2-D"):
        ct.siglip(q, torch.randn(4, 8, 1))
    with pytest.raises(ValueError, match=r"^siglip: scale must be finite and > 0, got -1$"):
        ct.siglip(q, k, scale=-1.0)
    with pytest.raises(ValueError, match=r"^siglip: scale must be finite and > 0, got 0$"):
        ct.siglip(q, k, scale=torch.tensor(0.0))
    with pytest.raises(ValueError,
                       match=r"^siglip: scale \(log of the scale with log_scale\) must "):
        ct.siglip(q, k, scale=100.0, log_scale=True)  # exp(100) overflows float32
    with pytest.raises(ValueError, match=r"^siglip: bias must be finite, got nan$"):
        ct.siglip(q, k, bias=math.nan)
    with pytest.raises(ValueError, match=r"^siglip: bias must be finite, got inf$"):
        ct.siglip(q, k, bias=torch.tensor(math.inf))
    with pytest.raises(ValueError, match="one-element"):
        ct.siglip(q, k, bias=torch.ones(2))
    with pytest.raises(ValueError, match=r"^siglip: num_keys \(M = 3\) must be >= batch "):
        ct.siglip(q, torch.randn(3, 8))  # fewer keys than rows, with positives
    with pytest.raises(ValueError, match=r"^siglip: positive_offset must be in \[0, M - B\]"):
        ct.siglip(q, torch.randn(6, 8), positive_offset=3)
    with pytest.raises(ValueError, match="^reduction must be one of"):
        ct.siglip(q, k, reduction="avg")
    with pytest.raises(ValueError, match="^similarity must be one of"):
        ct.siglip(q, k, similarity="l2")
    with pytest.raises(TypeError, match="unexpected keyword argument 'logit_bias'"):
        ct.siglip(q, k, logit_bias=1.0)
    with pytest.raises(TypeError, match=r"siglip: q must be a torch.Tensor"):
        ct.siglip(q.numpy(), k)
    with pytest.raises(ValueError, match=r"^siglip: scale must be finite and > 0"):
        ct.SigLIPLoss(scale=0.0)
    with pytest.raises(ValueError, match=r"^siglip: bias must be finite"):
        ct.SigLIPLoss(bias=math.inf, learnable=True)
    with pytest.raises(ValueError, match="^siglip_forward_backward: reduction must be 'mean' or "
                                         "'sum'"):
        torch.ops.contrastive.siglip_forward_backward(
            q, k, 1.0, None, 0.0, None, False, False, "cosine", "none", 0, 1e-12, False, 0, 0,
            "f32", 0.0, True, True, True, True)


def test_the_tiled_gpu_walk_recomputes_in_backward():
    """Which CUDA calls keep their gradients from forward: not those the library tiles (an
    explicit tile, or a materialized workspace over its 4 GiB budget). Fake CUDA tensors: sizes
    only, no GPU; scale and bias given as tensors take a stand-in value."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    siglip = ct._losses.SIGLIP
    defaults = siglip.defaults()
    with FakeTensorMode():
        small = [torch.empty(64, 32, device="cuda")] * 2
        large = [torch.empty(65536, 768, device="cuda")] * 2
        learnable = dict(defaults, scale=torch.empty((), device="cuda"),
                         bias=torch.empty((), device="cuda"))
        assert not ct._tiled(siglip, small, (), defaults)
        assert not ct._tiled(siglip, small, (), learnable)
        assert ct._tiled(siglip, small, (), dict(defaults, tile_rows=8))
        assert ct._tiled(siglip, large, (), defaults)
        assert ct._tiled(siglip, large, (), learnable)
