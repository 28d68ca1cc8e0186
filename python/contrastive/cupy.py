"""CuPy front end: each loss on CuPy arrays, eagerly, through contrastive._core's DLPack calls.

    loss, grad_q, grad_k, grad_temperature = contrastive.cupy.infonce(q, k, temperature=0.1)
    loss = contrastive.cupy.infonce(q, k, with_grad=False)
    loss, grad_q, grad_k, grad_scale, grad_bias = contrastive.cupy.siglip(q, k, scale=10.0,
                                                                          bias=-10.0)

Each function runs forward and backward in one library call (the training step; the gradients are
for an upstream gradient of 1), or forward alone with with_grad=False. The loss is 0-d for mean and
sum, per row (per term for Repel) with reduction="none"; a temperature's or scale's gradient (and
SigLIP's bias's, after the scale's) is 0-d.

Outputs, `saved` and the workspace are allocated with CuPy (its memory pool) on the inputs' device,
and the kernels run on CuPy's current stream there (cupy.cuda.get_current_stream()),
asynchronously like any CuPy operation. Releasing the temporaries right after the call is safe:
CuPy's pool reuses a block only for later work on the same stream.

Inputs are float32 or float16, all inputs of a call of one dtype; the input gradients come back in
that dtype, the loss and a temperature's or scale's gradient are float32. CuPy has no bfloat16
dtype, so the library's bfloat16 path is not reachable from CuPy (use PyTorch or JAX for it).
Other dtypes, and inputs of different dtypes, raise TypeError; nothing is cast. allow_tf32 matters
only for float32 inputs; logits_dtype ("f32", the default, or "bf16" with bfloat16 inputs, so
not from CuPy) is the precision of the logits tile of InfoNCE, in-batch MNR and SigLIP. An input
whose rows the library cannot read in place (last dimension not contiguous, rows not evenly
spaced) is copied with cupy.ascontiguousarray; row-sliced views are passed as they are.
"""

from typing import Optional, Tuple

import cupy

from . import _eager, _losses, handle_for

__all__ = ["infonce", "mnr_per_anchor", "mnr_in_batch", "repel", "siglip"]

# The library's dtype names for the CuPy dtypes it takes (CuPy has no bfloat16).
_DTYPE_NAMES = {"float32": "f32", "float16": "f16"}
_SUPPORTED = "float32 or float16 (CuPy has no bfloat16)"


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


def _run(loss: _losses.Description, params, inputs: Tuple[cupy.ndarray, ...],
         per_term: Optional[Tuple[int, ...]], with_grad: bool, scalar_gradients: int):
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
        scalar = [cupy.empty((1,), dtype=cupy.float32) for _ in range(scalar_gradients)]
        loss.forward_backward(handle, params, *inputs, values, saved, None, *grads, *scalar,
                              workspace, stream)
    return (values if per_term else values.reshape(()), *grads,
            *(gradient.reshape(()) for gradient in scalar))


_FRONT_END = _eager.FrontEnd(_input, _run, _DTYPE_NAMES, _SUPPORTED)
infonce = _FRONT_END.function(_losses.INFONCE)
mnr_per_anchor = _FRONT_END.function(_losses.MNR_PER_ANCHOR)
mnr_in_batch = _FRONT_END.function(_losses.MNR_IN_BATCH)
repel = _FRONT_END.function(_losses.REPEL)
siglip = _FRONT_END.function(_losses.SIGLIP)
