"""CuPy front end: each loss on CuPy arrays, eagerly, through contrastive._core's DLPack calls.

    loss, grad_q, grad_k, grad_temperature = contrastive.cupy.infonce(q, k, temperature=0.1)
    loss = contrastive.cupy.infonce(q, k, with_grad=False)

Each function runs forward and backward in one library call (the training step; the gradients are
for an upstream gradient of 1), or forward alone with with_grad=False. The loss is 0-d for mean and
sum, per row (per term for Repel) with reduction="none"; a temperature or scale gradient is 0-d.

Outputs, `saved` and the workspace are allocated with CuPy (its memory pool) on the inputs' device,
and the kernels run on CuPy's current stream there (cupy.cuda.get_current_stream()),
asynchronously like any CuPy operation. Releasing the temporaries right after the call is safe:
CuPy's pool reuses a block only for later work on the same stream.

Inputs are float32 or float16, all inputs of a call of one dtype; the input gradients come back in
that dtype, the loss and a temperature's or scale's gradient are float32. CuPy has no bfloat16
dtype, so the library's bfloat16 path is not reachable from CuPy (use PyTorch or JAX for it).
Other dtypes, and inputs of different dtypes, raise TypeError; nothing is cast. allow_tf32 matters
only for float32 inputs; logits_dtype ("f32", the default, or "bf16" with bfloat16 inputs, so
not from CuPy) is the precision of the logits tile of InfoNCE and in-batch MNR. An input whose rows the library cannot read in place
(last dimension not contiguous, rows not evenly spaced) is copied with cupy.ascontiguousarray;
row-sliced views are passed as they are.
"""

from typing import NamedTuple, Optional, Tuple

import cupy
import numpy as np

from . import _core, _options, handle_for

__all__ = ["infonce", "mnr_per_anchor", "mnr_in_batch", "repel"]

# The library's dtype names for the CuPy dtypes it takes (CuPy has no bfloat16).
_DTYPE_NAMES = {"float32": "f32", "float16": "f16"}
_SUPPORTED = "float32 or float16 (CuPy has no bfloat16)"


class _Loss(NamedTuple):
    """One loss's entry points in _core."""
    name: str
    workspace_size: object
    saved_size: object
    forward: object
    forward_backward: object


_INFONCE = _Loss("infonce", _core.infonce_workspace_size, _core.infonce_saved_size,
                 _core.infonce_forward, _core.infonce_forward_backward)
_PER_ANCHOR = _Loss("mnr_per_anchor", _core.mnr_per_anchor_workspace_size,
                    _core.mnr_per_anchor_saved_size, _core.mnr_per_anchor_forward,
                    _core.mnr_per_anchor_forward_backward)
_IN_BATCH = _Loss("mnr_in_batch", _core.mnr_in_batch_workspace_size,
                  _core.mnr_in_batch_saved_size, _core.mnr_in_batch_forward,
                  _core.mnr_in_batch_forward_backward)
_REPEL = _Loss("repel", _core.repel_workspace_size, _core.repel_saved_size, _core.repel_forward,
               _core.repel_forward_backward)


def _dtype_name(call: str, **inputs: cupy.ndarray) -> str:
    """The library's name for the inputs' dtype: every input has the first one's (nothing is
    cast), and it is one the library takes."""
    names = list(inputs)
    first = inputs[names[0]]
    for name in names[1:]:
        if inputs[name].dtype != first.dtype:
            raise TypeError(f"{call}: inputs must all have one dtype, got {first.dtype} for "
                            f"{names[0]} and {inputs[name].dtype} for {name}")
    try:
        return _DTYPE_NAMES[np.dtype(first.dtype).name]
    except KeyError:
        raise TypeError(f"{call}: inputs must be {_SUPPORTED}, got {first.dtype}") from None


def _readable_in_place(x: cupy.ndarray) -> bool:
    """True when the binding accepts x as it is: a contiguous last dimension and one row stride,
    no smaller than a row (for 3-D (batch, per_anchor, dim): stride(0) == shape(1) * row stride)."""
    strides = [stride // x.itemsize for stride in x.strides]  # CuPy strides are in bytes
    dim = x.shape[-1]
    if dim > 1 and strides[-1] != 1:
        return False
    if x.ndim == 3:
        row_stride = strides[1] if x.shape[1] > 1 else dim
        if x.shape[0] > 1 and strides[0] != x.shape[1] * row_stride:
            return False
    else:
        row_stride = strides[0] if x.shape[0] > 1 else dim
    return row_stride >= dim


def _input(call: str, name: str, x, dims: int) -> cupy.ndarray:
    if not isinstance(x, cupy.ndarray):
        raise TypeError(f"{call}: {name} must be a cupy.ndarray, got {type(x).__name__}")
    if x.ndim != dims:
        raise ValueError(f"{call}: {name} must be {dims}-D, got shape {x.shape}")
    return x if _readable_in_place(x) else cupy.ascontiguousarray(x)


def _per_term(reduction: str, *shape: int) -> Optional[Tuple[int, ...]]:
    """The shape of the unreduced loss with reduction="none"; None for mean and sum."""
    return tuple(shape) if reduction == "none" else None


def _run(loss: _Loss, params, inputs: Tuple[cupy.ndarray, ...],
         per_term: Optional[Tuple[int, ...]], with_grad: bool, scalar_gradient: bool):
    """Allocates the outputs and temporaries with CuPy and calls the library on CuPy's stream.
    The library writes a reduced loss as (1,): it is returned 0-d."""
    device = inputs[0].device.id
    for x in inputs:
        if x.device.id != device:
            raise ValueError(f"{loss.name}: inputs must be on one device, got devices {device} "
                             f"and {x.device.id}")
    with cupy.cuda.Device(device):  # the library checks that the handle's device is current
        handle = handle_for(device)
        stream = cupy.cuda.get_current_stream().ptr
        values = cupy.empty(per_term or (1,), dtype=cupy.float32)
        saved = cupy.empty(max(loss.saved_size(params), 1), dtype=cupy.uint8)
        workspace = cupy.empty(max(loss.workspace_size(params), 1), dtype=cupy.uint8)
        if not with_grad:
            loss.forward(handle, params, *inputs, values, saved, workspace, stream)
            return values if per_term else values.reshape(())
        grads = [cupy.empty(x.shape, dtype=x.dtype) for x in inputs]
        scalar = [cupy.empty((1,), dtype=cupy.float32)] if scalar_gradient else []
        loss.forward_backward(handle, params, *inputs, values, saved, None, *grads, *scalar,
                              workspace, stream)
    return (values if per_term else values.reshape(()), *grads,
            *(gradient.reshape(()) for gradient in scalar))


def infonce(q, k, *, temperature: float = 0.1, similarity: str = "cosine",
            symmetric: bool = False, reduction: str = "mean", positive_offset: int = 0,
            eps: float = 1e-12, allow_tf32: bool = False, tile_rows: int = 0, tile_cols: int = 0,
            logits_dtype: str = "f32", with_grad: bool = True):
    """InfoNCE of q (B, D) against k (M, D), M >= B; row i's positive is key i + positive_offset.

    Returns (loss, grad_q, grad_k, grad_temperature), or the loss alone with with_grad=False.
    """
    q, k = _input("infonce", "q", q, 2), _input("infonce", "k", k, 2)
    p = _options.infonce_params(
        q.shape[0], k.shape[0], q.shape[1], temperature=temperature, similarity=similarity,
        symmetric=symmetric, reduction=reduction, positive_offset=positive_offset, eps=eps,
        allow_tf32=allow_tf32, tile_rows=tile_rows, tile_cols=tile_cols,
        dtype=_dtype_name("infonce", q=q, k=k), logits_dtype=logits_dtype)
    return _run(_INFONCE, p, (q, k), _per_term(reduction, q.shape[0]), with_grad, True)


def mnr_per_anchor(anchors, positives, negatives, *, scale: float = 1.0,
                   similarity: str = "dot", reduction: str = "mean", eps: float = 1e-12,
                   with_grad: bool = True):
    """MNR with per-anchor negatives: anchors (B, D), positives (B, D), negatives (B, n, D).

    Returns (loss, grad_anchors, grad_positives, grad_negatives, grad_scale), or the loss alone.
    """
    call = "mnr_per_anchor"
    anchors = _input(call, "anchors", anchors, 2)
    positives = _input(call, "positives", positives, 2)
    negatives = _input(call, "negatives", negatives, 3)
    p = _options.per_anchor_params(
        anchors.shape[0], negatives.shape[1], anchors.shape[1], scale=scale,
        similarity=similarity, reduction=reduction, eps=eps,
        dtype=_dtype_name(call, anchors=anchors, positives=positives, negatives=negatives))
    return _run(_PER_ANCHOR, p, (anchors, positives, negatives),
                _per_term(reduction, anchors.shape[0]), with_grad, True)


def mnr_in_batch(anchors, candidates, *, hard_negatives: Optional[int] = None,
                 scale: float = 20.0, similarity: str = "cosine", symmetric: bool = False,
                 reduction: str = "mean", eps: float = 1e-12, allow_tf32: bool = False,
                 tile_rows: int = 0, tile_cols: int = 0, logits_dtype: str = "f32",
                 with_grad: bool = True):
    """In-batch MNR: anchors (B, D) against candidates [P; N_1; ...; N_K] ((1 + K) B, D); K is
    inferred from the shapes when not given.

    Returns (loss, grad_anchors, grad_candidates, grad_scale), or the loss alone.
    """
    call = "mnr_in_batch"
    anchors = _input(call, "anchors", anchors, 2)
    candidates = _input(call, "candidates", candidates, 2)
    if hard_negatives is None:
        batch, rows = anchors.shape[0], candidates.shape[0]
        if batch < 1 or rows < batch or rows % batch != 0:
            raise ValueError(f"{call}: candidates must have (1 + K) * B rows for B = {batch} "
                             f"anchors, got {rows}")
        hard_negatives = rows // batch - 1
    p = _options.in_batch_params(
        anchors.shape[0], hard_negatives, anchors.shape[1], scale=scale, similarity=similarity,
        symmetric=symmetric, reduction=reduction, eps=eps, allow_tf32=allow_tf32,
        tile_rows=tile_rows, tile_cols=tile_cols,
        dtype=_dtype_name(call, anchors=anchors, candidates=candidates), logits_dtype=logits_dtype)
    return _run(_IN_BATCH, p, (anchors, candidates), _per_term(reduction, anchors.shape[0]),
                with_grad, True)


def repel(anchors, negatives, *, margin: float = 0.3, reduction: str = "mean",
          mean_over_active: bool = False, eps: float = 1e-12, with_grad: bool = True):
    """Repel: anchors (B, D), negatives (B, N, D); mean of max(cos - margin, 0).

    Returns (loss, grad_anchors, grad_negatives), or the loss alone; the loss is (B, N) with
    reduction="none".
    """
    anchors = _input("repel", "anchors", anchors, 2)
    negatives = _input("repel", "negatives", negatives, 3)
    p = _options.repel_params(
        anchors.shape[0], negatives.shape[1], anchors.shape[1], margin=margin,
        reduction=reduction, mean_over_active=mean_over_active, eps=eps,
        dtype=_dtype_name("repel", anchors=anchors, negatives=negatives))
    return _run(_REPEL, p, (anchors, negatives), _per_term(reduction, *negatives.shape[:2]),
                with_grad, False)
