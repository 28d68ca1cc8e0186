"""The float64 definitions every implementation is checked against, and the check itself.

The formulas (loss and the analytic gradient of every input) are written once over a small array
interface, `ops`: NumpyOps runs them on NumPy arrays (the CPU tests hold them to
contrastive.reference), TorchOps on float64 tensors on the GPU (compare.py's checks, on the inputs
already rounded to the measured dtype). Neither module is imported here: TorchOps is handed the
torch module by its caller.

The check decides whether an implementation computes this loss (a wrong formula, a dropped term,
a wrong scale), not how precise it is (the library's precision is what its GPU tests check): the
loss within a relative tolerance, each gradient within a tolerance relative to its largest entry.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

from . import plan

# A term of Repel whose cosine lies this close to the margin may be active in one implementation
# and not in another (the rounding of the dtype decides), and its gradient with it: check inputs
# have none (see repel_ambiguous).
REPEL_AMBIGUITY = {"bf16": 2e-2, "fp32": 1e-4}


class NumpyOps:
    """The array interface of the formulas over NumPy (float64 unless told otherwise)."""

    def __init__(self, numpy_module, dtype=None):
        self.np = numpy_module
        self.dtype = numpy_module.float64 if dtype is None else dtype

    def asarray(self, x):
        return self.np.asarray(x, dtype=self.dtype)

    def sum(self, x, axis=None, keepdims=False):
        return self.np.sum(x, axis=axis, keepdims=keepdims)

    def amax(self, x, axis=None, keepdims=False):
        return self.np.max(x, axis=axis, keepdims=keepdims)

    def exp(self, x):
        return self.np.exp(x)

    def log(self, x):
        return self.np.log(x)

    def sqrt(self, x):
        return self.np.sqrt(x)

    def abs(self, x):
        return self.np.abs(x)

    def clamp_min(self, x, value):
        return self.np.maximum(x, value)

    def where(self, condition, a, b):
        return self.np.where(condition, a, b)

    def like(self, condition, x):
        """A boolean array as numbers of x's dtype."""
        return condition.astype(x.dtype)

    def einsum(self, spec, *operands):
        return self.np.einsum(spec, *operands)

    def arange(self, n, like):
        return self.np.arange(n)

    def concatenate(self, arrays, axis=0):
        return self.np.concatenate(arrays, axis=axis)

    def split_rows(self, x, rows):
        return [x[i * rows:(i + 1) * rows] for i in range(x.shape[0] // rows)]

    def scalar(self, x) -> float:
        return float(x)


class TorchOps:
    """The same interface over torch tensors (the caller passes the torch module)."""

    def __init__(self, torch_module):
        self.torch = torch_module

    def asarray(self, x):
        return x.detach().to(self.torch.float64)

    def sum(self, x, axis=None, keepdims=False):
        return x.sum() if axis is None else x.sum(dim=axis, keepdim=keepdims)

    def amax(self, x, axis=None, keepdims=False):
        return x.max() if axis is None else x.amax(dim=axis, keepdim=keepdims)

    def exp(self, x):
        return x.exp()

    def log(self, x):
        return x.log()

    def sqrt(self, x):
        return x.sqrt()

    def abs(self, x):
        return x.abs()

    def clamp_min(self, x, value):
        return x.clamp_min(value)

    def where(self, condition, a, b):
        return self.torch.where(condition, a, b)

    def like(self, condition, x):
        return condition.to(x.dtype)

    def einsum(self, spec, *operands):
        return self.torch.einsum(spec, *operands)

    def arange(self, n, like):
        return self.torch.arange(n, device=like.device)

    def concatenate(self, arrays, axis=0):
        return self.torch.cat(list(arrays), dim=axis)

    def split_rows(self, x, rows):
        return list(x.split(rows, dim=0))

    def scalar(self, x) -> float:
        return float(x.detach().item()) if hasattr(x, "detach") else float(x)


# ---- The definitions ---------------------------------------------------------------------------


def _normalize(ops, x):
    """x / max(|x|, eps) along the last axis, and max(|x|, eps)."""
    norm = ops.clamp_min(ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True)), plan.EPS)
    return x / norm, norm


def _normalize_backward(ops, x_hat, norm, grad_hat):
    """The gradient of x from that of x_hat = x / max(|x|, eps): the projection off x_hat over
    |x|, or grad_hat / eps where |x| <= eps (where x_hat does not depend on x's direction)."""
    projected = grad_hat - x_hat * ops.sum(x_hat * grad_hat, axis=-1, keepdims=True)
    return ops.where(norm > plan.EPS, projected / norm, grad_hat / plan.EPS)


def _logsumexp(ops, s, axis):
    top = ops.amax(s, axis=axis, keepdims=True)
    return top + ops.log(ops.sum(ops.exp(s - top), axis=axis, keepdims=True))


def _logits_loss(ops, q, k, scale, symmetric):
    """Cosine logits S = scale q^ k^T of q (B, D) against k (M, D), row i's positive being
    column i; the mean row loss (with symmetric, the mean of row and column losses over the
    positive block). Returns the loss and the gradients of q and k."""
    batch = q.shape[0]
    q_hat, q_norm = _normalize(ops, q)
    k_hat, k_norm = _normalize(ops, k)
    s = scale * (q_hat @ k_hat.T)  # (B, M)
    rows = ops.arange(batch, s)
    positives = s[rows, rows]
    row_lse = _logsumexp(ops, s, axis=1)  # (B, 1)
    grad_s = ops.exp(s - row_lse)  # softmax over each row
    grad_s[rows, rows] -= 1.0
    row_losses = row_lse[:, 0] - positives
    if symmetric:
        col_lse = _logsumexp(ops, s[:, :batch], axis=0)  # (1, B): over the queries
        col_grad = ops.exp(s[:, :batch] - col_lse)
        col_grad[rows, rows] -= 1.0
        losses = (row_losses + (col_lse[0] - positives)) / 2
        grad_s = grad_s / 2
        grad_s[:, :batch] += col_grad / 2
    else:
        losses = row_losses
    grad_s = grad_s * (scale / batch)  # dLoss/d(q^ k^T)
    grad_q = _normalize_backward(ops, q_hat, q_norm, grad_s @ k_hat)
    grad_k = _normalize_backward(ops, k_hat, k_norm, grad_s.T @ q_hat)
    return ops.sum(losses) / batch, grad_q, grad_k


def _per_anchor(ops, anchors, positives, negatives, scale):
    """Dot-product logits of each anchor against [its positive; its N negatives]."""
    batch = anchors.shape[0]
    candidates = ops.concatenate([positives[:, None, :], negatives], axis=1)  # (B, 1 + N, D)
    s = scale * ops.einsum("bd,bjd->bj", anchors, candidates)
    lse = _logsumexp(ops, s, axis=1)
    loss = ops.sum(lse[:, 0] - s[:, 0]) / batch
    grad_s = ops.exp(s - lse)
    grad_s[:, 0] -= 1.0
    grad_s = grad_s * (scale / batch)
    grad_anchors = ops.einsum("bj,bjd->bd", grad_s, candidates)
    grad_candidates = grad_s[:, :, None] * anchors[:, None, :]
    return loss, grad_anchors, grad_candidates[:, 0], grad_candidates[:, 1:]


def _repel_similarities(ops, anchors, negatives):
    anchors_hat, anchor_norms = _normalize(ops, anchors)
    negatives_hat, negative_norms = _normalize(ops, negatives)
    s = ops.einsum("bd,bnd->bn", anchors_hat, negatives_hat)
    return s, anchors_hat, anchor_norms, negatives_hat, negative_norms


def _repel(ops, anchors, negatives, margin):
    terms = negatives.shape[0] * negatives.shape[1]
    s, a_hat, a_norm, n_hat, n_norm = _repel_similarities(ops, anchors, negatives)
    loss = ops.sum(ops.clamp_min(s - margin, 0.0)) / terms
    grad_s = ops.like(s - margin > 0, s) / terms  # relu's gradient: 1 above the margin
    grad_anchors = _normalize_backward(ops, a_hat, a_norm,
                                       ops.einsum("bn,bnd->bd", grad_s, n_hat))
    grad_negatives = _normalize_backward(ops, n_hat, n_norm,
                                         grad_s[:, :, None] * a_hat[:, None, :])
    return loss, grad_anchors, grad_negatives


def _siglip(ops, q, k, scale, bias):
    """Cosine logits l = scale q^ k^T + bias of q (B, D) against k (B, D), label +1 on the
    diagonal and -1 elsewhere: sum of softplus(-z l) over every pair / B, and the gradients of q
    and k (dL/dl = (sigmoid(l) - y) / B)."""
    batch = q.shape[0]
    q_hat, q_norm = _normalize(ops, q)
    k_hat, k_norm = _normalize(ops, k)
    logits = scale * (q_hat @ k_hat.T) + bias
    rows = ops.arange(batch, logits)
    signed = logits * 1.0  # z l: the diagonal flipped
    signed[rows, rows] = -signed[rows, rows]
    # softplus(x) = max(x, 0) + log(1 + exp(-|x|)), without overflow at any |x|
    loss = ops.sum(ops.clamp_min(signed, 0.0) + ops.log(1.0 + ops.exp(-ops.abs(signed)))) / batch
    grad_l = 1.0 / (1.0 + ops.exp(-logits))  # sigmoid(l)
    grad_l[rows, rows] -= 1.0
    grad_l = grad_l * (scale / batch)  # dLoss/d(q^ k^T)
    grad_q = _normalize_backward(ops, q_hat, q_norm, grad_l @ k_hat)
    grad_k = _normalize_backward(ops, k_hat, k_norm, grad_l.T @ q_hat)
    return loss, grad_q, grad_k


def reference(ops, loss: str, inputs: Sequence) -> Tuple[float, List]:
    """The loss (a float) and the gradient of every input (in the order of plan.input_names) of
    `loss` at the settings in plan, computed with ops (float64 inputs)."""
    x = [ops.asarray(value) for value in inputs]
    if loss in ("infonce", "clip"):
        value, grad_q, grad_k = _logits_loss(ops, x[0], x[1], 1.0 / plan.TEMPERATURE,
                                             symmetric=loss == "clip")
        return ops.scalar(value), [grad_q, grad_k]
    if loss == "mnr_in_batch":
        candidates = ops.concatenate(x[1:], axis=0)
        value, grad_anchors, grad_candidates = _logits_loss(ops, x[0], candidates,
                                                            plan.IN_BATCH_SCALE, symmetric=False)
        return ops.scalar(value), [grad_anchors] + ops.split_rows(grad_candidates, x[0].shape[0])
    if loss == "mnr_per_anchor":
        value, *grads = _per_anchor(ops, x[0], x[1], x[2], plan.PER_ANCHOR_SCALE)
        return ops.scalar(value), grads
    if loss == "repel":
        value, *grads = _repel(ops, x[0], x[1], plan.MARGIN)
        return ops.scalar(value), grads
    if loss == "siglip":
        value, *grads = _siglip(ops, x[0], x[1], plan.SIGLIP_SCALE, plan.SIGLIP_BIAS)
        return ops.scalar(value), grads
    raise ValueError(f"unknown loss {loss!r}")


def repel_ambiguous(ops, anchors, negatives, dtype: str):
    """(B, N) mask of the Repel terms whose cosine (in float64 from the given, rounded, inputs)
    lies within REPEL_AMBIGUITY[dtype] of the margin. compare.py negates those negatives in its
    check inputs (exact in any dtype): the cosine becomes -s, far below the margin."""
    s = _repel_similarities(ops, ops.asarray(anchors), ops.asarray(negatives))[0]
    return ops.abs(s - plan.MARGIN) < REPEL_AMBIGUITY[dtype]


# ---- The check ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Tolerance:
    loss_rtol: float
    loss_atol: float
    grad: float  # the largest gradient error allowed, relative to the gradient's largest entry


# float32: everything accumulates in float32 (no TF32). bfloat16: the inputs are exact, but the
# baselines keep normalized rows, logits, probabilities and gradients in bfloat16 (8 bits): eager
# bf16 runs without autocast and with PyTorch's default reduced-precision reductions in bf16
# GEMMs. What that costs at these settings on compare's inputs, measured with PyTorch's bfloat16
# eager on the CPU at the --short shapes: losses within 1.5 %, gradients within 2.9e-2 of their
# largest entry (a third of the bound). A wrong formula errs by more on these inputs (a
# temperature off by 20 %: 16 % in the gradients; one direction of CLIP's loss missing: over
# 30 %; see inputs.py).
TOLERANCES = {
    "fp32": Tolerance(loss_rtol=1e-4, loss_atol=1e-6, grad=2e-3),
    "bf16": Tolerance(loss_rtol=5e-2, loss_atol=1e-3, grad=1e-1),
}

# The library in bfloat16 is held to its own bound, about that of the project's 16-bit tolerance
# rule (twice a naive same-precision implementation's error): it accumulates in float32 and
# stores in bfloat16 only the normalized rows the GEMMs read, the logits' gradient G the backward
# GEMMs read and the gradients it returns. Each is one rounding of 2^-9 relative, so a gradient
# entry errs by a few times 2^-9 of the largest one; 1.5e-2 (about 8 x 2^-9) passes that and fails
# a tenfold regression, which the baselines' 0.1 would let through. The loss is a float32 sum of
# float32 row losses over logits from bf16-rounded normalized rows: 2e-3 relative.
LIBRARY_TOLERANCES = {
    "fp32": TOLERANCES["fp32"],
    "bf16": Tolerance(loss_rtol=2e-3, loss_atol=1e-4, grad=1.5e-2),
}


def tolerance_for(implementation: str, dtype: str) -> Tolerance:
    """The check's tolerance: the library's own in bf16, the baselines' otherwise."""
    table = LIBRARY_TOLERANCES if implementation in plan.LIBRARY_VARIANTS else TOLERANCES
    return table[dtype]


def _count(x) -> int:
    """Elements of a NumPy array (size is a number) or a tensor (size is a method)."""
    return x.numel() if callable(x.size) else int(x.size)


def error_stats(ops, actual, expected) -> Tuple[float, float]:
    """(largest |actual - expected|, largest |expected|), computed where the arrays live; NaN in
    actual gives a NaN error, a shape mismatch an infinite one."""
    actual = ops.asarray(actual)
    if tuple(actual.shape) != tuple(expected.shape):
        return math.inf, 0.0
    if _count(expected) == 0:
        return 0.0, 0.0
    return (ops.scalar(ops.amax(ops.abs(actual - expected))),
            ops.scalar(ops.amax(ops.abs(expected))))


def judge(dtype: str, loss: float, expected_loss: float,
          gradients: Sequence[Tuple[str, float, float]],
          tolerance: Optional[Tolerance] = None) -> Dict:
    """The check's verdict from the loss and, per input, (name, largest error, largest reference
    entry), within `tolerance` (default: the baselines' for the dtype). NaN anywhere fails."""
    tolerance = TOLERANCES[dtype] if tolerance is None else tolerance
    loss_error = abs(loss - expected_loss)
    loss_bound = tolerance.loss_atol + tolerance.loss_rtol * abs(expected_loss)
    failures = []
    if not loss_error <= loss_bound:
        failures.append(f"loss {loss:.6g} vs {expected_loss:.6g} (error {loss_error:.3g} > "
                        f"{loss_bound:.3g})")
    grads = {}
    for name, error, scale in gradients:
        bound = tolerance.grad * scale
        grads[name] = {"error": error, "scale": scale, "relative": error / scale if scale else (
            0.0 if error == 0 else math.inf)}
        if not error <= bound:
            failures.append(f"grad {name}: error {error:.3g} > {tolerance.grad:g} x largest "
                            f"{scale:.3g}")
    return {
        "passed": not failures,
        "loss": loss,
        "expected_loss": expected_loss,
        "loss_error": loss_error,
        "loss_bound": loss_bound,
        "grads": grads,
        "grad_tolerance": tolerance.grad,
        "loss_rtol": tolerance.loss_rtol,
        "message": "; ".join(failures) if failures else "ok",
    }


def check(ops, dtype: str, loss: str, inputs: Sequence, actual_loss, actual_grads,
          tolerance: Optional[Tolerance] = None) -> Dict:
    """An implementation's loss and gradients against the float64 reference on its inputs
    (tolerance: see judge; tolerance_for picks the implementation's)."""
    expected_loss, expected_grads = reference(ops, loss, inputs)
    names = plan.input_names_for(loss, len(inputs))
    stats = []
    for name, grad, expected in zip(names, actual_grads, expected_grads):
        stats.append((name, *error_stats(ops, grad, expected)))
    return judge(dtype, ops.scalar(actual_loss), expected_loss, stats, tolerance)
