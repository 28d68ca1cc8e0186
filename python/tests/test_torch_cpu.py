"""contrastive.torch on CPU tensors: every loss against the library's float64 reference (values,
input gradients and the temperature's or scale's gradient, for random upstream gradients), on
random and awkward shapes, in one chunk and in many; both training paths (gradients computed in
forward and scaled in backward, or recomputed in backward); float16 and bfloat16 inputs; central
differences; torch.library.opcheck of every operator; torch.compile; bad inputs.

Skipped without PyTorch.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from contrastive import _torch_cpu, reference  # noqa: E402
from contrastive import torch as ct  # noqa: E402

# float32 CPU results against the float64 reference.
LOSS_RTOL, LOSS_ATOL = 1e-5, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5  # the absolute part scales with the gradient's largest entry
# 16-bit inputs: the CPU computes in float32 from the rounded inputs and rounds the gradients
# once, so the tolerances are one rounding of the dtype (relative to the largest magnitude).
HALF_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# Central differences in float32 along a unit direction.
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


# ---- Cases: (function, reference, input shapes, keyword options, scalar name, value) -----------
# The reference's gradient keys follow the inputs; per-anchor and Repel negatives come back as
# (B * n, D).

GRAD_KEYS = {"infonce": ("grad_q", "grad_k"), "mnr_in_batch": ("grad_anchors", "grad_candidates"),
             "mnr_per_anchor": ("grad_anchors", "grad_positives", "grad_negatives"),
             "repel": ("grad_anchors", "grad_negatives")}
SCALARS = {"infonce": "temperature", "mnr_in_batch": "scale", "mnr_per_anchor": "scale",
           "repel": None}

CASES = {
    "infonce_default": ("infonce", [(6, 8), (6, 8)], {}, 0.1),
    "infonce_symmetric_offset": ("infonce", [(5, 16), (9, 16)],
                                 dict(symmetric=True, positive_offset=3), 0.07),
    "infonce_dot_sum": ("infonce", [(7, 4), (10, 4)],
                        dict(similarity="dot", reduction="sum", positive_offset=1), 2.0),
    "infonce_symmetric_none": ("infonce", [(7, 32), (7, 32)],
                               dict(symmetric=True, reduction="none"), 0.5),
    "infonce_one_row": ("infonce", [(1, 3), (4, 3)], dict(positive_offset=2), 0.2),
    "infonce_dim_one": ("infonce", [(5, 1), (5, 1)], dict(symmetric=True), 0.3),
    "mnr_in_batch_pairs": ("mnr_in_batch", [(4, 8), (4, 8)], {}, 20.0),
    "mnr_in_batch_symmetric_blocks": ("mnr_in_batch", [(6, 16), (18, 16)],
                                      dict(symmetric=True), 20.0),
    "mnr_in_batch_dot_none": ("mnr_in_batch", [(5, 12), (10, 12)],
                              dict(similarity="dot", reduction="none"), 0.5),
    "mnr_per_anchor_dot": ("mnr_per_anchor", [(4, 8), (4, 8), (4, 3, 8)], {}, 1.0),
    "mnr_per_anchor_cosine_none": ("mnr_per_anchor", [(5, 33), (5, 33), (5, 7, 33)],
                                   dict(similarity="cosine", reduction="none"), 20.0),
    "mnr_per_anchor_one_negative_sum": ("mnr_per_anchor", [(3, 2), (3, 2), (3, 1, 2)],
                                        dict(similarity="cosine", reduction="sum"), 5.0),
    "repel_mean": ("repel", [(2, 4), (2, 3, 4)], {}, None),
    "repel_sum": ("repel", [(4, 16), (4, 5, 16)], dict(margin=0.1, reduction="sum"), None),
    "repel_none": ("repel", [(3, 8), (3, 4, 8)], dict(margin=0.0, reduction="none"), None),
    "repel_mean_over_active": ("repel", [(6, 8), (6, 3, 8)],
                               dict(margin=0.2, mean_over_active=True), None),
    "repel_nothing_active": ("repel", [(3, 8), (3, 2, 8)],
                             dict(margin=1.5, mean_over_active=True), None),
}


def _inputs(shapes, dtype=torch.float32, zero_row=False):
    tensors = [torch.randn(*shape) for shape in shapes]
    if zero_row:  # a zero row: the cosine clamp's branch, finite results
        tensors[0][0] = 0
    return [t.to(dtype) for t in tensors]


def _reference(name, tensors, options, scalar, grad_loss):
    arrays = [t.double().numpy() for t in tensors]
    keywords = dict(options)
    if SCALARS[name]:
        keywords[SCALARS[name]] = scalar
    return getattr(reference, name)(*arrays, grad_loss=grad_loss, **keywords)


def _ours(name, leaves, options, scalar_leaf, fused):
    keywords = dict(options, fused_backward=fused)
    if SCALARS[name]:
        keywords[SCALARS[name]] = scalar_leaf
    return getattr(ct, name)(*leaves, **keywords)


def check_against_reference(name, tensors, options, scalar, fused=True, tolerance=None):
    """The loss, the gradient of every input and of the scalar (a leaf tensor) for a random
    upstream gradient, against the float64 reference on the same (rounded) values."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    scalar_leaf = (torch.tensor(scalar, requires_grad=True) if SCALARS[name] else None)
    loss = _ours(name, leaves, options, scalar_leaf, fused)
    assert loss.dtype == torch.float32
    upstream = torch.rand(loss.shape, dtype=torch.float64) + 0.5
    expected = _reference(name, tensors, options, scalar, upstream.numpy().reshape(-1))
    loss_tol = (LOSS_RTOL, LOSS_ATOL) if tolerance is None else (tolerance, tolerance)
    grad_tol = (GRAD_RTOL, GRAD_ATOL) if tolerance is None else (tolerance, tolerance)
    assert_close(loss, np.asarray(expected["loss"]).reshape(loss.shape), *loss_tol, "loss")
    wanted = leaves + ([scalar_leaf] if scalar_leaf is not None else [])
    grads = torch.autograd.grad(loss, wanted, upstream.float())
    for index, key in enumerate(GRAD_KEYS[name]):
        assert grads[index].dtype == tensors[index].dtype
        assert grads[index].shape == tensors[index].shape
        assert_close(grads[index], np.asarray(expected[key]).reshape(tensors[index].shape),
                     *grad_tol, key)
    if scalar_leaf is not None:
        assert grads[-1].shape == () and grads[-1].dtype == torch.float32
        assert_close(grads[-1], expected[f"grad_{SCALARS[name]}"], *grad_tol,
                     f"grad_{SCALARS[name]}")


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "recomputed"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_the_float64_reference(case, fused):
    name, shapes, options, scalar = case
    check_against_reference(name, _inputs(shapes), options, scalar, fused)


@pytest.mark.parametrize("case", ["infonce_symmetric_offset", "infonce_dot_sum",
                                  "mnr_in_batch_symmetric_blocks", "mnr_in_batch_dot_none"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "recomputed"])
def test_many_chunks_of_query_rows(case, fused, monkeypatch):
    """Chunks of one and two query rows: the column statistics merge across chunks."""
    name, shapes, options, scalar = CASES[case]
    tensors = _inputs(shapes)
    for rows in (1, 2):
        monkeypatch.setattr(_torch_cpu, "CHUNK_ELEMENTS", rows * shapes[1][0])
        assert _torch_cpu.chunk_rows(shapes[1][0]) == rows
        check_against_reference(name, tensors, options, scalar, fused)


@pytest.mark.parametrize("case", ["infonce_symmetric_offset", "mnr_per_anchor_cosine_none",
                                  "repel_mean", "mnr_in_batch_symmetric_blocks"])
def test_a_zero_row_takes_the_clamped_branch(case):
    name, shapes, options, scalar = CASES[case]
    options = dict(options, similarity="cosine") if name != "repel" else options
    tensors = _inputs(shapes, zero_row=True)
    check_against_reference(name, tensors, options, scalar)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("case", ["infonce_symmetric_offset", "mnr_in_batch_symmetric_blocks",
                                  "mnr_per_anchor_cosine_none", "repel_sum"])
def test_16_bit_inputs(case, dtype):
    """A float32 loss and gradients in the inputs' dtype, within one rounding of the reference
    on the rounded inputs."""
    name, shapes, options, scalar = CASES[case]
    check_against_reference(name, _inputs(shapes, dtype), options, scalar,
                            tolerance=HALF_TOLERANCE[dtype])


@pytest.mark.parametrize("name", ["infonce", "mnr_in_batch", "mnr_per_anchor", "repel"])
def test_nan_in_an_input_gives_a_nan_loss(name):
    shapes = {"infonce": [(4, 8), (4, 8)], "mnr_in_batch": [(4, 8), (8, 8)],
              "mnr_per_anchor": [(4, 8), (4, 8), (4, 2, 8)], "repel": [(4, 8), (4, 2, 8)]}[name]
    tensors = _inputs(shapes)
    tensors[1].view(-1)[3] = math.nan
    assert math.isnan(float(getattr(ct, name)(*tensors)))


# ---- The two training paths -------------------------------------------------------------------


class _Calls(TorchDispatchMode):
    """The contrastive operators that run, by name."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith("contrastive."):
            self.names.append(name.split(".")[1])
        return func(*args, **(kwargs or {}))


def _operators_of_a_step(function, leaves):
    with _Calls() as calls:
        function(*leaves).backward()
    return calls.names


def test_a_training_step_computes_the_gradients_once():
    q, k = (torch.randn(6, 8, requires_grad=True) for _ in range(2))
    assert _operators_of_a_step(lambda q, k: ct.infonce(q, k), (q, k)) == [
        "infonce_forward_backward"]
    fused = q.grad.clone()
    q.grad = None
    assert _operators_of_a_step(lambda q, k: ct.infonce(q, k, fused_backward=False), (q, k)) == [
        "infonce_forward", "infonce_backward"]
    torch.testing.assert_close(q.grad, fused, rtol=1e-6, atol=1e-7)
    # Per-term losses: the gradients are not a multiple of one upstream value.
    u, x = torch.randn(3, 8, requires_grad=True), torch.randn(3, 4, 8)
    assert _operators_of_a_step(lambda u, x: ct.repel(u, x, reduction="none").sum(), (u, x)) == [
        "repel_forward", "repel_backward"]
    with torch.no_grad(), _Calls() as calls:
        ct.infonce(q, k)
    assert calls.names == ["infonce_forward"]
    module = ct.MultipleNegativesRankingLoss(fused_backward=False)
    a, p = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    assert _operators_of_a_step(module, (a, p)) == ["mnr_in_batch_forward",
                                                    "mnr_in_batch_backward"]


def test_the_fused_path_scales_by_the_upstream_gradient():
    """Backward of the fused path multiplies the gradients kept from forward by the upstream
    gradient, the temperature's included."""
    q, k = torch.randn(5, 8), torch.randn(5, 8)
    results = []
    for fused in (True, False):
        leaves = [q.clone().requires_grad_(), k.clone().requires_grad_(),
                  torch.tensor(0.2, requires_grad=True)]
        loss = ct.infonce(*leaves[:2], temperature=leaves[2], symmetric=True,
                          fused_backward=fused)
        (-3.5 * loss).backward()
        results.append([leaf.grad for leaf in leaves])
    for fused_grad, recomputed in zip(*results):
        torch.testing.assert_close(fused_grad, recomputed, rtol=1e-5, atol=1e-6)


def test_only_the_needed_gradients():
    q, k = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)  # a frozen key tower
    ct.infonce(q, k).backward()
    assert q.grad is not None and k.grad is None
    t = torch.tensor(0.3, requires_grad=True)  # only the temperature
    ct.infonce(torch.randn(6, 8), torch.randn(6, 8), temperature=t).backward()
    assert t.grad is not None and t.grad.shape == ()


def test_a_learnable_temperature_module_trains():
    module = ct.InfoNCELoss(temperature=0.1, symmetric=True, learnable_temperature=True)
    q, k = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
    module(q, k).backward()
    expected = reference.infonce(q.detach().double().numpy(), k.double().numpy(),
                                 temperature=0.1, symmetric=True)
    assert_close(module.temperature.grad, expected["grad_temperature"], GRAD_RTOL, GRAD_ATOL,
                 "temperature gradient")
    before = float(module.temperature.detach())
    torch.optim.SGD(module.parameters(), lr=1e-3).step()
    assert float(module.temperature.detach()) != before


def test_the_modules_on_the_cpu():
    a, p, n = torch.randn(5, 16), torch.randn(5, 16), torch.randn(5, 16)
    loss = ct.MultipleNegativesRankingLoss()(a, p, n)
    expected = reference.mnr_in_batch(a.double().numpy(), torch.cat([p, n]).double().numpy())
    assert_close(loss, expected["loss"][0], LOSS_RTOL, LOSS_ATOL, "MNR loss")
    anchor = torch.tensor([[0.37454012, 0.95071431, 0.73199394, 0.59865848]])
    positive = torch.tensor([[0.15601864, 0.15599452, 0.05808361, 0.86617615]])
    negatives = torch.tensor([[[0.60111501, 0.70807258, 0.02058449, 0.96990985],
                               [0.83244264, 0.21233911, 0.18182497, 0.18340451],
                               [0.30424224, 0.52475643, 0.43194502, 0.29122914]]])
    assert f"{float(ct.PerAnchorMNRLoss()(anchor, positive, negatives)):.4f}" == "1.6965"
    loss = ct.RepelLoss(margin=0.3)(torch.randn(2, 4), torch.randn(2, 3, 4))
    assert loss.shape == () and loss >= 0


# ---- Central differences ----------------------------------------------------------------------


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
        lambda q, k, t: ct.infonce(q, k, temperature=t, symmetric=True, positive_offset=1),
        torch.randn(5, 8), torch.randn(7, 8), torch.tensor(0.5))
    check_central_differences(
        lambda a, p, n, s: ct.mnr_per_anchor(a, p, n, scale=s, similarity="cosine"),
        torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3, 8), torch.tensor(2.0))
    check_central_differences(lambda a, c, s: ct.mnr_in_batch(a, c, scale=s, symmetric=True),
                              torch.randn(4, 8), torch.randn(8, 8), torch.tensor(3.0))
    # A margin below -1 keeps every term active: the loss is smooth along the whole step.
    check_central_differences(lambda a, n: ct.repel(a, n, margin=-1.5), torch.randn(3, 8),
                              torch.randn(3, 4, 8))


# ---- The custom operators' registrations ------------------------------------------------------


def _opcheck_cases():
    ops = torch.ops.contrastive
    q, k = torch.randn(6, 8).requires_grad_(), torch.randn(9, 8).requires_grad_()
    t = torch.tensor(0.5, requires_grad=True)
    infonce = ("cosine", True, "mean", 2, 1e-12, False, 0, 0, "f32", False, 0.0)
    yield "infonce_forward", ops.infonce_forward.default, (q, k, 1.0, t, *infonce)
    yield ("infonce_forward_none", ops.infonce_forward.default,
           (q, k, 0.2, None, "dot", False, "none", 0, 1e-12, False, 0, 0, "f32", False, 0.0))
    yield ("infonce_forward_backward_log_scale", ops.infonce_forward_backward.default,
           (q, k, 1.0, t, *infonce[:-2], True, 100.0, True, True, True))
    yield ("infonce_forward_bf16", ops.infonce_forward.default,
           (q.detach().bfloat16().requires_grad_(), k.detach().bfloat16(), 0.5, None, *infonce))
    loss, saved = ops.infonce_forward(q.detach(), k.detach(), 0.5, None, *infonce)
    yield ("infonce_backward", ops.infonce_backward.default,
           (q.detach(), k.detach(), saved, torch.ones_like(loss), 0.5, None, *infonce, True, True,
            True))
    yield ("infonce_backward_q_only", ops.infonce_backward.default,
           (q.detach(), k.detach(), saved, torch.ones_like(loss), 0.5, None, *infonce, True, False,
            False))
    yield ("infonce_forward_backward", ops.infonce_forward_backward.default,
           (q, k, 1.0, t, *infonce, True, True, True))
    yield ("infonce_forward_backward_k_only", ops.infonce_forward_backward.default,
           (q.detach(), k, 0.1, None, *infonce, False, True, False))

    a, p, n = (torch.randn(4, 8).requires_grad_(), torch.randn(4, 8).requires_grad_(),
               torch.randn(4, 3, 8).requires_grad_())
    s = torch.tensor(2.0, requires_grad=True)
    per_anchor = ("cosine", "mean", 1e-12)
    yield ("mnr_per_anchor_forward", ops.mnr_per_anchor_forward.default,
           (a, p, n, 1.0, s, *per_anchor))
    loss, saved = ops.mnr_per_anchor_forward(a.detach(), p.detach(), n.detach(), 2.0, None,
                                             *per_anchor)
    yield ("mnr_per_anchor_backward", ops.mnr_per_anchor_backward.default,
           (a.detach(), p.detach(), n.detach(), saved, torch.ones_like(loss), 2.0, None,
            *per_anchor, True, True, True, True))
    yield ("mnr_per_anchor_forward_backward", ops.mnr_per_anchor_forward_backward.default,
           (a, p, n, 1.0, s, *per_anchor, True, True, True, True))

    c = torch.randn(12, 8).requires_grad_()
    in_batch = ("cosine", True, "sum", 1e-12, False, 0, 0, "f32", False, 0.0)
    yield "mnr_in_batch_forward", ops.mnr_in_batch_forward.default, (a, c, 2, 1.0, s, *in_batch)
    loss, saved = ops.mnr_in_batch_forward(a.detach(), c.detach(), 2, 20.0, None, *in_batch)
    yield ("mnr_in_batch_backward", ops.mnr_in_batch_backward.default,
           (a.detach(), c.detach(), saved, torch.ones_like(loss), 2, 20.0, None, *in_batch, True,
            True, True))
    yield ("mnr_in_batch_forward_backward_f16", ops.mnr_in_batch_forward_backward.default,
           (a.detach().half().requires_grad_(), c.detach().half().requires_grad_(), 2, 20.0,
            None, *in_batch, True, True, False))

    u, x = torch.randn(2, 4).requires_grad_(), torch.randn(2, 3, 4).requires_grad_()
    repel = (0.3, "mean", True, 1e-12)
    yield "repel_forward", ops.repel_forward.default, (u, x, *repel)
    yield ("repel_forward_none", ops.repel_forward.default, (u, x, 0.0, "none", False, 1e-12))
    loss, saved = ops.repel_forward(u.detach(), x.detach(), *repel)
    yield ("repel_backward", ops.repel_backward.default,
           (u.detach(), x.detach(), saved, torch.ones_like(loss), *repel, True, True))
    yield ("repel_forward_backward", ops.repel_forward_backward.default,
           (u, x, -1.5, "sum", False, 1e-12, True, True))


def test_opcheck_every_operator():
    for name, op, args in _opcheck_cases():
        try:
            torch.library.opcheck(op, args)
        except Exception as error:  # name the operator and variant that failed
            raise AssertionError(f"opcheck failed for {name}: {error}") from error


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


def test_compile_fullgraph_every_loss():
    """Every loss, the temperature learnable, in one graph (aot_eager: the operators' fake
    implementations and autograd traced, the CPU kernels run)."""
    torch._dynamo.reset()
    mnr = ct.MultipleNegativesRankingLoss()
    repel = ct.RepelLoss()

    def step(q, k, t, a, p, n, u, x):
        return (ct.infonce(q, k, temperature=t, symmetric=True) + mnr(a, p, n)
                + ct.mnr_per_anchor(a, p, x[:, :3]) + repel(u, x)
                + ct.infonce(q, k, reduction="none").sum())

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    inputs = (torch.randn(6, 8), torch.randn(6, 8), torch.tensor(0.1), torch.randn(4, 8),
              torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 5, 8))
    _eager_and_compiled(step, compiled, *inputs)
    _eager_and_compiled(step, compiled, *(t + 1 for t in inputs))  # the same graph, new values


def test_compile_dynamic_shapes():
    torch._dynamo.reset()
    compiled = torch.compile(lambda q, k: ct.infonce(q, k, symmetric=True), fullgraph=True,
                             dynamic=True, backend="aot_eager")
    for batch in (6, 10):  # symbolic sizes: the CPU saved buffer's length is 2 B
        _eager_and_compiled(lambda q, k: ct.infonce(q, k, symmetric=True), compiled,
                            torch.randn(batch, 8), torch.randn(batch, 8))


def test_compile_with_inductor():
    """The default backend: Inductor generates the code around the operators."""
    torch._dynamo.reset()

    def step(a, c):
        return ct.mnr_in_batch(a * 2, c, symmetric=True)

    _eager_and_compiled(step, torch.compile(step, fullgraph=True), torch.randn(4, 8),
                        torch.randn(8, 8))


# ---- Bad inputs -------------------------------------------------------------------------------


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match="float32, float16 or bfloat16, got torch.float64"):
        ct.infonce(torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"^infonce: inputs must all have one dtype"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 8).half())
    with pytest.raises(ValueError, match=r"^infonce: temperature must be finite and > 0, got -1$"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 8), temperature=-1.0)
    with pytest.raises(ValueError, match=r"^mnr \(in-batch\): scale must be finite and > 0"):
        ct.mnr_in_batch(torch.randn(4, 8), torch.randn(4, 8), scale=torch.tensor(0.0))
    with pytest.raises(ValueError, match="one-element"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 8), temperature=torch.ones(2))
    with pytest.raises(ValueError, match="2-D"):
        ct.infonce(torch.randn(4, 8, 1), torch.randn(4, 8))
    with pytest.raises(ValueError, match="^infonce: q and k must have one D"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 9))
    with pytest.raises(ValueError, match="rows"):
        ct.mnr_in_batch(torch.randn(4, 8), torch.randn(10, 8))
    with pytest.raises(ValueError, match="3-D"):
        ct.repel(torch.randn(2, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="mean_over_active"):
        ct.repel(torch.randn(2, 4), torch.randn(2, 3, 4), reduction="sum", mean_over_active=True)
    with pytest.raises(ValueError, match="^reduction must be one of"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 8), reduction="avg")
    with pytest.raises(TypeError, match="^infonce: logits_dtype must be f32 or bf16, got f16$"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 8), logits_dtype="f16")
    with pytest.raises(TypeError, match="unexpected keyword argument 'fused'"):
        ct.infonce(torch.randn(4, 8), torch.randn(4, 8), fused=True)
    with pytest.raises(ValueError, match="^repel_forward_backward: reduction must be 'mean' or "
                                         "'sum'"):
        torch.ops.contrastive.repel_forward_backward(torch.randn(2, 4), torch.randn(2, 3, 4),
                                                     0.3, "none", False, 1e-12, True, True)


def test_the_tiled_gpu_walk_recomputes_in_backward():
    """Which CUDA calls keep their gradients from forward: not those the library tiles (an
    explicit tile, or a materialized workspace over its 4 GiB budget). Fake CUDA tensors: sizes
    only, no GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    defaults = {**ct._losses.INFONCE.defaults()}
    with FakeTensorMode():
        small = [torch.empty(64, 32, device="cuda")] * 2
        large = [torch.empty(65536, 768, device="cuda")] * 2
        assert not ct._tiled(ct._losses.INFONCE, small, (), defaults)
        assert ct._tiled(ct._losses.INFONCE, small, (), dict(defaults, tile_rows=8))
        assert ct._tiled(ct._losses.INFONCE, large, (), defaults)
        assert not ct._tiled(ct._losses.REPEL, [torch.empty(4, 8, device="cuda"),
                                                torch.empty(4, 3, 8, device="cuda")], (),
                             ct._losses.REPEL.defaults())
    assert not ct._tiled(ct._losses.INFONCE, [torch.empty(65536, 768, device="meta")] * 2, (),
                         defaults)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("max_scale", [0.0, 100.0, 5.0])
def test_a_log_parametrized_clamped_scale(fused, max_scale):
    # log_scale: the temperature (InfoNCE) or scale (in-batch MNR, SigLIP) holds theta, the logit
    # scale is exp(theta), clamped at max_scale (open_clip clamps at 100), and the scalar's
    # gradient is dLoss/dtheta: the same as autograd through exp and clamp in plain PyTorch.
    q, k = torch.randn(6, 8, dtype=torch.float64), torch.randn(9, 8, dtype=torch.float64)
    theta0 = math.log(20.0)
    s_ref = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    scale = s_ref.exp().clamp(max=max_scale) if max_scale > 0 else s_ref.exp()
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T * scale
    expected = F.cross_entropy(logits, torch.arange(6) + 2)
    expected.backward()
    theta = torch.tensor(theta0, requires_grad=True)
    q32, k32 = q.float(), k.float()
    loss = ct.infonce(q32, k32, temperature=theta, log_scale=True, max_scale=max_scale,
                      positive_offset=2, fused_backward=fused)
    loss.backward()
    assert_close(loss, expected.detach(), 1e-5, 1e-6, "log-scale loss")
    assert_close(theta.grad, s_ref.grad, 1e-4, 1e-6, "dLoss/dtheta")
    if 0 < max_scale < 20.0:
        assert float(theta.grad) == 0.0  # clamped: no gradient, as torch.clamp gives
    # SigLIP's clamp, through the same option.
    t = torch.tensor(math.log(200.0), requires_grad=True)
    siglip = ct.siglip(q32[:6], k32[:6], scale=t, log_scale=True, max_scale=100.0,
                       fused_backward=fused)
    siglip.backward()
    plain = ct.siglip(q32[:6], k32[:6], scale=100.0)
    assert_close(siglip, plain.detach(), 1e-6, 1e-7, "clamped SigLIP loss")
    assert float(t.grad) == 0.0
