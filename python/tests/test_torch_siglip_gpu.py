"""contrastive.torch.siglip on a GPU: the library's SigLIP kernels through the custom operators,
against the float64 reference (the loss and the gradients of q, k, the scale and the bias, for
random upstream gradients) in float32 on the materialized and the tiled walk, both training
paths, 16-bit inputs, a learnable log scale and bias, torch.library.opcheck on CUDA tensors and
torch.compile.

Skipped without PyTorch, without a CUDA device PyTorch can see, or when the library finds no usable
GPU (the reason is in the skip message).
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import contrastive  # noqa: E402
from contrastive import reference  # noqa: E402


def _skip_reason():
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    if contrastive.gpu_available():
        return None
    try:
        contrastive.handle_for(0)
    except RuntimeError as error:
        return f"the library has no usable GPU: {error}"
    return "contrastive.gpu_available() is False"


_REASON = _skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

from contrastive import torch as ct  # noqa: E402

DEVICE = "cuda"
# float32 GPU results against the float64 reference (as test_torch_gpu.py).
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-4  # the absolute part scales with the largest entry
# 16-bit inputs: float32 accumulation from the rounded inputs, gradients rounded once; relative to
# the largest magnitude.
HALF_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_close(actual, expected, rtol, atol, what):
    expected = torch.as_tensor(np.asarray(expected, dtype=np.float64))
    actual = actual.detach().cpu().double().reshape(expected.shape)
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale,
                               msg=lambda message: f"{what}: {message}")


CASES = {
    "default": ((6, 8), (6, 8), {}, 10.0, -10.0),
    "offset_dot_sum": ((5, 8), (11, 8), dict(positive_offset=3, similarity="dot",
                                             reduction="sum"), 0.7, -0.3),
    "negatives_only_none": ((5, 8), (9, 8), dict(negatives_only=True, reduction="none"), 2.0,
                            1.0),
    "log_scale": ((6, 12), (8, 12), dict(log_scale=True, positive_offset=1), math.log(10.0),
                  -10.0),
    "tiled": ((33, 24), (40, 24), dict(tile_rows=8, tile_cols=16, positive_offset=5), 5.0, -3.0),
    "tiled_none": ((17, 16), (17, 16), dict(tile_rows=4, tile_cols=8, reduction="none"), 3.0,
                   -1.0),
    "one_row": ((1, 4), (3, 4), dict(positive_offset=2), 4.0, 0.5),
}
GPU_ONLY_OPTIONS = ("tile_rows", "tile_cols", "allow_tf32", "logits_dtype")


def check_against_reference(q, k, options, scale, bias, fused=True, tolerance=None):
    leaves = [q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()]
    scalars = [torch.tensor(scale, device=DEVICE, requires_grad=True),
               torch.tensor(bias, device=DEVICE, requires_grad=True)]
    loss = ct.siglip(*leaves, scale=scalars[0], bias=scalars[1], fused_backward=fused, **options)
    assert loss.dtype == torch.float32 and loss.device.type == "cuda"
    upstream = torch.rand(loss.shape, dtype=torch.float64) + 0.5
    expected = reference.siglip(
        q.cpu().double().numpy(), k.cpu().double().numpy(), scale=scale, bias=bias,
        grad_loss=upstream.numpy().reshape(-1),
        **{key: value for key, value in options.items() if key not in GPU_ONLY_OPTIONS})
    loss_tol = (LOSS_RTOL, LOSS_ATOL) if tolerance is None else (tolerance, tolerance)
    grad_tol = (GRAD_RTOL, GRAD_ATOL) if tolerance is None else (tolerance, tolerance)
    assert_close(loss, np.asarray(expected["loss"]).reshape(loss.shape), *loss_tol, "loss")
    grads = torch.autograd.grad(loss, leaves + scalars, upstream.float().to(DEVICE))
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
    q, k = torch.randn(*q_shape, device=DEVICE), torch.randn(*k_shape, device=DEVICE)
    check_against_reference(q, k, options, scale, bias, fused)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_16_bit_inputs(dtype):
    q = torch.randn(6, 16, device=DEVICE).to(dtype)
    k = torch.randn(9, 16, device=DEVICE).to(dtype)
    check_against_reference(q, k, dict(positive_offset=3), 5.0, -2.0,
                            tolerance=HALF_TOLERANCE[dtype])


def test_the_gpu_and_the_cpu_agree():
    q, k = torch.randn(12, 32), torch.randn(20, 32)
    module = ct.SigLIPLoss(math.log(10.0), -10.0, log_scale=True, positive_offset=4)
    cpu, gpu = module(q, k), module(q.to(DEVICE), k.to(DEVICE))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


def test_a_learnable_module_trains():
    module = ct.SigLIPLoss(math.log(10.0), -10.0, log_scale=True, learnable=True).to(DEVICE)
    q = torch.randn(8, 16, device=DEVICE, requires_grad=True)
    k = torch.randn(8, 16, device=DEVICE)
    module(q, k).backward()
    expected = reference.siglip(q.detach().cpu().double().numpy(), k.cpu().double().numpy(),
                                scale=math.log(10.0), log_scale=True, bias=-10.0)
    assert_close(module.scale.grad, expected["grad_scale"], GRAD_RTOL, GRAD_ATOL, "scale grad")
    assert_close(module.bias.grad, expected["grad_bias"], GRAD_RTOL, GRAD_ATOL, "bias grad")


def test_opcheck_on_cuda_tensors():
    ops = torch.ops.contrastive
    q = torch.randn(5, 8, device=DEVICE).requires_grad_()
    k = torch.randn(7, 8, device=DEVICE).requires_grad_()
    s = torch.tensor(1.5, device=DEVICE, requires_grad=True)
    b = torch.tensor(-2.0, device=DEVICE, requires_grad=True)
    options = (True, False, "cosine", "mean", 2, 1e-12, False, 0, 0, "f32", 0.0)
    loss, saved = ops.siglip_forward(q.detach(), k.detach(), 1.5, None, -2.0, None, *options)
    cases = {
        "forward": (ops.siglip_forward.default, (q, k, 1.0, s, 1.0, b, *options)),
        "backward": (ops.siglip_backward.default,
                     (q.detach(), k.detach(), saved, torch.ones_like(loss), 1.5, None, -2.0, None,
                      *options, True, True, True, True)),
        "forward_backward": (ops.siglip_forward_backward.default,
                             (q, k, 1.0, s, 1.0, b, *options, True, True, True, True)),
    }
    for name, (op, args) in cases.items():
        try:
            torch.library.opcheck(op, args)
        except Exception as error:
            raise AssertionError(f"opcheck failed for siglip {name}: {error}") from error


def test_compile_fullgraph():
    torch._dynamo.reset()

    def step(q, k, s, b):
        return ct.siglip(q, k, scale=s, bias=b, log_scale=True, positive_offset=1)

    compiled = torch.compile(step, fullgraph=True)
    inputs = [torch.randn(6, 8, device=DEVICE), torch.randn(7, 8, device=DEVICE),
              torch.tensor(1.0, device=DEVICE), torch.tensor(-2.0, device=DEVICE)]
    results = []
    for f in (step, compiled):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        loss = f(*leaves)
        results.append((loss.detach(), torch.autograd.grad(loss, leaves)))
    (eager, eager_grads), (loss, grads) = results
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=1e-6)
    for grad, eager_grad in zip(grads, eager_grads):
        torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)
