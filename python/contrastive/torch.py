"""PyTorch front end: the losses as ``torch.library`` custom operators with autograd, and modules.

Each loss is two custom operators in the ``contrastive`` namespace: ``<loss>_forward`` returns the
loss and the small ``saved`` buffer (per-row log-sum-exp, inverse norms, ...) and
``<loss>_backward`` turns ``saved`` and the upstream gradient into the input gradients. They are
joined by ``register_autograd`` and have ``register_fake`` shape functions, so the losses work in
eager mode, under ``torch.compile`` (opaque operators with known output shapes: no graph break)
and with a learnable temperature or scale.

Functions: ``infonce``, ``mnr_per_anchor``, ``mnr_in_batch``, ``repel``. Modules: ``InfoNCELoss``,
``MultipleNegativesRankingLoss`` (sentence-transformers' in-batch layout), ``PerAnchorMNRLoss``,
``RepelLoss``.

Conventions:

- Inputs are CUDA tensors on one device, all of one dtype: float32, float16 or bfloat16. The
  input gradients come back in that dtype; the loss is float32 (the library accumulates in
  float32). Other dtypes, and inputs of different dtypes, raise TypeError. Nothing is cast.
  ``allow_tf32`` matters only for float32 inputs; ``logits_dtype`` ("f32", the default, or "bf16"
  with bfloat16 inputs) is the precision of the logits tile of InfoNCE and in-batch MNR.
- An input is passed as it is when the library can read it in place (a contiguous last dimension,
  evenly spaced rows: row-sliced views qualify); otherwise it is copied with ``.contiguous()``.
- Outputs, ``saved`` and the workspace are allocated by PyTorch (its caching allocator, on the
  current stream): the library allocates nothing. Kernels run on PyTorch's current CUDA stream.
- ``temperature`` / ``scale`` is a Python float or a one-element tensor (e.g. an ``nn.Parameter``),
  which then receives its gradient. The library takes it as a host float, so a tensor's value is
  read on the host in forward and again in backward: for a CUDA tensor each read waits for the
  device (a synchronization) and cannot be captured in a CUDA graph. Pass a float when it is fixed.
"""

import contextlib
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import _core, _options, handle_for

__all__ = ["infonce", "mnr_per_anchor", "mnr_in_batch", "repel", "InfoNCELoss",
           "MultipleNegativesRankingLoss", "PerAnchorMNRLoss", "RepelLoss"]

Scalar = Union[float, Tensor]

# The library's dtype names for the tensor dtypes it takes.
_DTYPE_NAMES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
# `saved` is handed out as float32 words: its contents are fp32 statistics, and where
# torch.compile or opcheck compare an eager run with a compiled one a float output compares
# within a tolerance.
_SAVED_DTYPE = torch.float32
_SAVED_WORD_BYTES = 4
# Stands in for a temperature or scale given as a tensor where only sizes are needed (the size
# queries of the fake implementations): no size depends on it, and any valid value will do.
_SIZE_QUERY_SCALAR = 1.0


# ---- Helpers ---------------------------------------------------------------------------------


def _dtype_name(call: str, x: Tensor) -> str:
    try:
        return _DTYPE_NAMES[x.dtype]
    except KeyError:
        raise TypeError(f"{call}: inputs must be float32, float16 or bfloat16, "
                        f"got {x.dtype}") from None


def _require_one_dtype(call: str, **tensors: Tensor) -> None:
    """Every input of a call has the dtype of the first (nothing is cast)."""
    names = list(tensors)
    first = tensors[names[0]]
    for name in names[1:]:
        if tensors[name].dtype != first.dtype:
            raise TypeError(f"{call}: inputs must all have one dtype, got {first.dtype} for "
                            f"{names[0]} and {tensors[name].dtype} for {name}")


def _require_dims(call: str, **tensors: Tuple[Tensor, int]) -> None:
    for name, (x, dims) in tensors.items():
        if x.dim() != dims:
            raise ValueError(f"{call}: {name} must be {dims}-D, got shape {tuple(x.shape)}")


def _scalar_argument(call: str, name: str, value: Scalar) -> Tuple[float, Optional[Tensor]]:
    """A temperature or scale as the operators take it: (float, None) or (stand-in, tensor)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{call}: {name} must be a float or a one-element tensor, got a "
                             f"tensor of shape {tuple(value.shape)}")
        return _SIZE_QUERY_SCALAR, value
    return float(value), None


def _host_value(value: float, tensor: Optional[Tensor]) -> float:
    """The temperature or scale as the library takes it, a host float. Reading a CUDA tensor
    waits for the device (a synchronization)."""
    return value if tensor is None else float(tensor.item())


def _scalar_gradient(grad: Tensor, like: Tensor) -> Tensor:
    """The library's (1,) float32 gradient in the shape, dtype and device of its tensor."""
    return grad.reshape(like.shape).to(device=like.device, dtype=like.dtype)


def _readable_in_place(x: Tensor) -> bool:
    """True when the binding accepts x as it is: a contiguous last dimension and one row stride,
    no smaller than a row (for 3-D (batch, per_anchor, dim): stride(0) == shape(1) * row stride)."""
    dim = x.shape[-1]
    if dim > 1 and x.stride(-1) != 1:
        return False
    if x.dim() == 3:
        row_stride = x.stride(1) if x.shape[1] > 1 else dim
        if x.shape[0] > 1 and x.stride(0) != x.shape[1] * row_stride:
            return False
    else:
        row_stride = x.stride(0) if x.shape[0] > 1 else dim
    return row_stride >= dim


def _for_binding(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """Detached views for the binding, which reads memory, not the graph (Tensor.__dlpack__
    refuses a tensor that requires grad, and inside an operator the inputs still do)."""
    return tuple(x.detach() for x in tensors)


def _rows(x: Tensor) -> Tensor:
    return x if _readable_in_place(x) else x.contiguous()


def _reduced(loss: Tensor, reduction: str) -> Tensor:
    """The library's (1,) loss as the 0-d tensor a loss returns; per-row losses as they are."""
    return loss if reduction == "none" else loss.reshape(())


def _loss_shape(reduction: str, *per_row: int) -> Tuple[int, ...]:
    return tuple(per_row) if reduction == "none" else (1,)


def _saved_words(nbytes: int) -> int:
    return max(1, -(-nbytes // _SAVED_WORD_BYTES))


def _new_saved(nbytes: int, device: torch.device) -> Tensor:
    # Zeroed so that bytes the library may leave unwritten (padding) are not garbage: an operator's
    # outputs must be a function of its inputs (torch.compile and opcheck compare them).
    return torch.zeros(_saved_words(nbytes), dtype=_SAVED_DTYPE, device=device)


def _new_workspace(nbytes: int, device: torch.device) -> Tensor:
    # Scratch for one call. Freeing it as soon as the (asynchronous) call is enqueued is safe: the
    # caching allocator hands the block only to later work on the same stream.
    return torch.empty(max(nbytes, 1), dtype=torch.uint8, device=device)


def _fake_saved(like: Tensor, sizes: Sequence, nbytes) -> Tensor:
    """`saved` under fake tensors. `nbytes()` asks the library, which needs concrete sizes; with
    symbolic sizes (dynamic shapes) the length is a fresh symbol that the real call fixes."""
    if all(isinstance(size, int) for size in sizes):
        return like.new_empty(_saved_words(nbytes()), dtype=_SAVED_DTYPE)
    return like.new_empty(torch.library.get_ctx().new_dynamic_size(), dtype=_SAVED_DTYPE)


def _gradient_buffer(like: Tensor, needed: bool) -> Tensor:
    """A dense gradient for `like`, or an empty placeholder (operators return only tensors)."""
    return like.new_empty(like.shape if needed else (0,))


def _scalar_gradient_buffer(like: Tensor, needed: bool) -> Tensor:
    return like.new_empty((1,) if needed else (0,), dtype=torch.float32)


@contextlib.contextmanager
def _launch(call: str, *tensors: Tensor) -> Iterator[Tuple["_core.Handle", int]]:
    """The library handle and PyTorch's current stream for the tensors' device, made current."""
    device = tensors[0].device
    for x in tensors:
        if x.device.type != "cuda":
            raise ValueError(f"{call}: inputs must be on a CUDA device, got {x.device}")
        if x.device != device:
            raise ValueError(f"{call}: inputs must be on one device, got {device} and {x.device}")
    with torch.cuda.device(device):  # the library checks that the handle's device is current
        yield handle_for(device.index), torch.cuda.current_stream(device).cuda_stream


# ---- InfoNCE ---------------------------------------------------------------------------------


def _infonce_params(q, k, temperature, similarity, symmetric, reduction, positive_offset, eps,
                    allow_tf32, tile_rows, tile_cols, logits_dtype):
    _require_dims("infonce", q=(q, 2), k=(k, 2))
    _require_one_dtype("infonce", q=q, k=k)
    return _options.infonce_params(
        q.shape[0], k.shape[0], q.shape[1], temperature=temperature, similarity=similarity,
        symmetric=symmetric, reduction=reduction, positive_offset=positive_offset, eps=eps,
        allow_tf32=allow_tf32, tile_rows=tile_rows, tile_cols=tile_cols,
        dtype=_dtype_name("infonce", q), logits_dtype=logits_dtype)


@torch.library.custom_op("contrastive::infonce_forward", mutates_args=())
def _infonce_forward(q: Tensor, k: Tensor, temperature: float,
                     temperature_tensor: Optional[Tensor], similarity: str, symmetric: bool,
                     reduction: str, positive_offset: int, eps: float, allow_tf32: bool,
                     tile_rows: int, tile_cols: int, logits_dtype: str) -> Tuple[Tensor, Tensor]:
    p = _infonce_params(q, k, _host_value(temperature, temperature_tensor), similarity, symmetric,
                        reduction, positive_offset, eps, allow_tf32, tile_rows, tile_cols,
                        logits_dtype)
    q, k = _for_binding(q, k)
    with _launch("infonce", q, k) as (handle, stream):
        loss = q.new_empty(_loss_shape(reduction, q.shape[0]), dtype=torch.float32)
        saved = _new_saved(_core.infonce_saved_size(p), q.device)
        workspace = _new_workspace(_core.infonce_workspace_size(p), q.device)
        _core.infonce_forward(handle, p, q, k, loss, saved, workspace, stream)
    return loss, saved


@_infonce_forward.register_fake
def _(q, k, temperature, temperature_tensor, similarity, symmetric, reduction, positive_offset,
      eps, allow_tf32, tile_rows, tile_cols, logits_dtype):
    loss = q.new_empty(_loss_shape(reduction, q.shape[0]), dtype=torch.float32)
    saved = _fake_saved(q, (*q.shape, k.shape[0]), lambda: _core.infonce_saved_size(
        _infonce_params(q, k, temperature, similarity, symmetric, reduction, positive_offset, eps,
                        allow_tf32, tile_rows, tile_cols, logits_dtype)))
    return loss, saved


@torch.library.custom_op("contrastive::infonce_backward", mutates_args=())
def _infonce_backward(q: Tensor, k: Tensor, saved: Tensor, grad_loss: Tensor, temperature: float,
                      temperature_tensor: Optional[Tensor], similarity: str, symmetric: bool,
                      reduction: str, positive_offset: int, eps: float, allow_tf32: bool,
                      tile_rows: int, tile_cols: int, logits_dtype: str, need_q: bool,
                      need_k: bool, need_temperature: bool) -> Tuple[Tensor, Tensor, Tensor]:
    p = _infonce_params(q, k, _host_value(temperature, temperature_tensor), similarity, symmetric,
                        reduction, positive_offset, eps, allow_tf32, tile_rows, tile_cols,
                        logits_dtype)
    q, k, saved, grad_loss = _for_binding(q, k, saved, grad_loss.contiguous())
    with _launch("infonce", q, k, saved, grad_loss) as (handle, stream):
        grad_q, grad_k = _gradient_buffer(q, need_q), _gradient_buffer(k, need_k)
        grad_temperature = _scalar_gradient_buffer(q, need_temperature)
        workspace = _new_workspace(_core.infonce_workspace_size(p), q.device)
        _core.infonce_backward(handle, p, q, k, saved, grad_loss,
                               grad_q if need_q else None, grad_k if need_k else None,
                               grad_temperature if need_temperature else None, workspace, stream)
    return grad_q, grad_k, grad_temperature


@_infonce_backward.register_fake
def _(q, k, saved, grad_loss, temperature, temperature_tensor, similarity, symmetric, reduction,
      positive_offset, eps, allow_tf32, tile_rows, tile_cols, logits_dtype, need_q, need_k,
      need_temperature):
    return (_gradient_buffer(q, need_q), _gradient_buffer(k, need_k),
            _scalar_gradient_buffer(q, need_temperature))


def _infonce_setup_context(ctx, inputs, output):
    q, k, temperature, temperature_tensor, *options = inputs
    _, saved = output
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(q, k, saved, temperature_tensor)
    ctx.temperature, ctx.options = temperature, options


def _infonce_autograd(ctx, grad_loss, _grad_saved):
    q, k, saved, temperature_tensor = ctx.saved_tensors
    need_q, need_k, _, need_temperature = ctx.needs_input_grad[:4]
    grad_q, grad_k, grad_temperature = _infonce_backward(
        q, k, saved, grad_loss, ctx.temperature, temperature_tensor, *ctx.options, need_q, need_k,
        need_temperature)
    return (grad_q if need_q else None, grad_k if need_k else None, None,
            _scalar_gradient(grad_temperature, temperature_tensor) if need_temperature else None,
            *(None for _ in ctx.options))


_infonce_forward.register_autograd(_infonce_autograd, setup_context=_infonce_setup_context)


def infonce(q: Tensor, k: Tensor, *, temperature: Scalar = 0.1, similarity: str = "cosine",
            symmetric: bool = False, reduction: str = "mean", positive_offset: int = 0,
            eps: float = 1e-12, allow_tf32: bool = False, tile_rows: int = 0,
            tile_cols: int = 0, logits_dtype: str = "f32") -> Tensor:
    """InfoNCE of queries q (B, D) against keys k (M, D), M >= B; row i's positive is key
    i + positive_offset. symmetric=True adds the column direction over the positives (CLIP).

    q and k are float32, float16 or bfloat16, both of one dtype; their gradients have it too.
    logits_dtype="bf16" keeps the logits tile in bfloat16 ("f32", the default, in float32).

    Returns a 0-d float32 loss, or (B,) per-row losses with reduction="none". temperature may be
    a tensor that receives its gradient (read on the host: see the module's notes).
    """
    _require_dims("infonce", q=(q, 2), k=(k, 2))
    value, tensor = _scalar_argument("infonce", "temperature", temperature)
    loss, _ = _infonce_forward(_rows(q), _rows(k), value, tensor, str(similarity),
                               bool(symmetric), str(reduction), int(positive_offset), float(eps),
                               bool(allow_tf32), int(tile_rows), int(tile_cols),
                               str(logits_dtype))
    return _reduced(loss, reduction)


# ---- MNR, per-anchor negatives -----------------------------------------------------------------


def _per_anchor_params(anchors, positives, negatives, scale, similarity, reduction, eps):
    _require_dims("mnr_per_anchor", anchors=(anchors, 2), positives=(positives, 2),
                  negatives=(negatives, 3))
    _require_one_dtype("mnr_per_anchor", anchors=anchors, positives=positives,
                       negatives=negatives)
    return _options.per_anchor_params(
        anchors.shape[0], negatives.shape[1], anchors.shape[1], scale=scale,
        similarity=similarity, reduction=reduction, eps=eps,
        dtype=_dtype_name("mnr_per_anchor", anchors))


@torch.library.custom_op("contrastive::mnr_per_anchor_forward", mutates_args=())
def _per_anchor_forward(anchors: Tensor, positives: Tensor, negatives: Tensor, scale: float,
                        scale_tensor: Optional[Tensor], similarity: str, reduction: str,
                        eps: float) -> Tuple[Tensor, Tensor]:
    p = _per_anchor_params(anchors, positives, negatives, _host_value(scale, scale_tensor),
                           similarity, reduction, eps)
    anchors, positives, negatives = _for_binding(anchors, positives, negatives)
    with _launch("mnr_per_anchor", anchors, positives, negatives) as (handle, stream):
        loss = anchors.new_empty(_loss_shape(reduction, anchors.shape[0]), dtype=torch.float32)
        saved = _new_saved(_core.mnr_per_anchor_saved_size(p), anchors.device)
        workspace = _new_workspace(_core.mnr_per_anchor_workspace_size(p), anchors.device)
        _core.mnr_per_anchor_forward(handle, p, anchors, positives, negatives, loss, saved,
                                     workspace, stream)
    return loss, saved


@_per_anchor_forward.register_fake
def _(anchors, positives, negatives, scale, scale_tensor, similarity, reduction, eps):
    loss = anchors.new_empty(_loss_shape(reduction, anchors.shape[0]), dtype=torch.float32)
    saved = _fake_saved(anchors, (*anchors.shape, *negatives.shape),
                        lambda: _core.mnr_per_anchor_saved_size(_per_anchor_params(
                            anchors, positives, negatives, scale, similarity, reduction, eps)))
    return loss, saved


@torch.library.custom_op("contrastive::mnr_per_anchor_backward", mutates_args=())
def _per_anchor_backward(anchors: Tensor, positives: Tensor, negatives: Tensor, saved: Tensor,
                         grad_loss: Tensor, scale: float, scale_tensor: Optional[Tensor],
                         similarity: str, reduction: str, eps: float, need_anchors: bool,
                         need_positives: bool, need_negatives: bool,
                         need_scale: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    p = _per_anchor_params(anchors, positives, negatives, _host_value(scale, scale_tensor),
                           similarity, reduction, eps)
    anchors, positives, negatives, saved, grad_loss = _for_binding(
        anchors, positives, negatives, saved, grad_loss.contiguous())
    with _launch("mnr_per_anchor", anchors, positives, negatives, saved,
                 grad_loss) as (handle, stream):
        grad_anchors = _gradient_buffer(anchors, need_anchors)
        grad_positives = _gradient_buffer(positives, need_positives)
        grad_negatives = _gradient_buffer(negatives, need_negatives)
        grad_scale = _scalar_gradient_buffer(anchors, need_scale)
        workspace = _new_workspace(_core.mnr_per_anchor_workspace_size(p), anchors.device)
        _core.mnr_per_anchor_backward(
            handle, p, anchors, positives, negatives, saved, grad_loss,
            grad_anchors if need_anchors else None, grad_positives if need_positives else None,
            grad_negatives if need_negatives else None, grad_scale if need_scale else None,
            workspace, stream)
    return grad_anchors, grad_positives, grad_negatives, grad_scale


@_per_anchor_backward.register_fake
def _(anchors, positives, negatives, saved, grad_loss, scale, scale_tensor, similarity, reduction,
      eps, need_anchors, need_positives, need_negatives, need_scale):
    return (_gradient_buffer(anchors, need_anchors), _gradient_buffer(positives, need_positives),
            _gradient_buffer(negatives, need_negatives),
            _scalar_gradient_buffer(anchors, need_scale))


def _per_anchor_setup_context(ctx, inputs, output):
    anchors, positives, negatives, scale, scale_tensor, *options = inputs
    _, saved = output
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(anchors, positives, negatives, saved, scale_tensor)
    ctx.scale, ctx.options = scale, options


def _per_anchor_autograd(ctx, grad_loss, _grad_saved):
    anchors, positives, negatives, saved, scale_tensor = ctx.saved_tensors
    need_anchors, need_positives, need_negatives, _, need_scale = ctx.needs_input_grad[:5]
    grads = _per_anchor_backward(anchors, positives, negatives, saved, grad_loss, ctx.scale,
                                 scale_tensor, *ctx.options, need_anchors, need_positives,
                                 need_negatives, need_scale)
    grad_anchors, grad_positives, grad_negatives, grad_scale = grads
    return (grad_anchors if need_anchors else None, grad_positives if need_positives else None,
            grad_negatives if need_negatives else None, None,
            _scalar_gradient(grad_scale, scale_tensor) if need_scale else None,
            *(None for _ in ctx.options))


_per_anchor_forward.register_autograd(_per_anchor_autograd,
                                      setup_context=_per_anchor_setup_context)


def mnr_per_anchor(anchors: Tensor, positives: Tensor, negatives: Tensor, *, scale: Scalar = 1.0,
                   similarity: str = "dot", reduction: str = "mean",
                   eps: float = 1e-12) -> Tensor:
    """MNR with per-anchor negatives (the seed notebook's mnr_loss, batched): anchors (B, D),
    positives (B, D), negatives (B, n, D); row b ranks its positive against its own n negatives.
    The inputs are float32, float16 or bfloat16, all of one dtype; their gradients have it too.

    Returns a 0-d float32 loss, or (B,) per-row losses with reduction="none".
    """
    _require_dims("mnr_per_anchor", anchors=(anchors, 2), positives=(positives, 2),
                  negatives=(negatives, 3))
    value, tensor = _scalar_argument("mnr_per_anchor", "scale", scale)
    loss, _ = _per_anchor_forward(_rows(anchors), _rows(positives), _rows(negatives), value,
                                  tensor, str(similarity), str(reduction), float(eps))
    return _reduced(loss, reduction)


# ---- MNR, in-batch with shared hard negatives --------------------------------------------------


def _in_batch_params(anchors, candidates, hard_negatives, scale, similarity, symmetric, reduction,
                     eps, allow_tf32, tile_rows, tile_cols, logits_dtype):
    _require_dims("mnr_in_batch", anchors=(anchors, 2), candidates=(candidates, 2))
    _require_one_dtype("mnr_in_batch", anchors=anchors, candidates=candidates)
    return _options.in_batch_params(
        anchors.shape[0], hard_negatives, anchors.shape[1], scale=scale, similarity=similarity,
        symmetric=symmetric, reduction=reduction, eps=eps, allow_tf32=allow_tf32,
        tile_rows=tile_rows, tile_cols=tile_cols, dtype=_dtype_name("mnr_in_batch", anchors),
        logits_dtype=logits_dtype)


@torch.library.custom_op("contrastive::mnr_in_batch_forward", mutates_args=())
def _in_batch_forward(anchors: Tensor, candidates: Tensor, hard_negatives: int, scale: float,
                      scale_tensor: Optional[Tensor], similarity: str, symmetric: bool,
                      reduction: str, eps: float, allow_tf32: bool, tile_rows: int,
                      tile_cols: int, logits_dtype: str) -> Tuple[Tensor, Tensor]:
    p = _in_batch_params(anchors, candidates, hard_negatives, _host_value(scale, scale_tensor),
                         similarity, symmetric, reduction, eps, allow_tf32, tile_rows, tile_cols,
                         logits_dtype)
    anchors, candidates = _for_binding(anchors, candidates)
    with _launch("mnr_in_batch", anchors, candidates) as (handle, stream):
        loss = anchors.new_empty(_loss_shape(reduction, anchors.shape[0]), dtype=torch.float32)
        saved = _new_saved(_core.mnr_in_batch_saved_size(p), anchors.device)
        workspace = _new_workspace(_core.mnr_in_batch_workspace_size(p), anchors.device)
        _core.mnr_in_batch_forward(handle, p, anchors, candidates, loss, saved, workspace, stream)
    return loss, saved


@_in_batch_forward.register_fake
def _(anchors, candidates, hard_negatives, scale, scale_tensor, similarity, symmetric, reduction,
      eps, allow_tf32, tile_rows, tile_cols, logits_dtype):
    loss = anchors.new_empty(_loss_shape(reduction, anchors.shape[0]), dtype=torch.float32)
    saved = _fake_saved(anchors, (*anchors.shape, candidates.shape[0]),
                        lambda: _core.mnr_in_batch_saved_size(_in_batch_params(
                            anchors, candidates, hard_negatives, scale, similarity, symmetric,
                            reduction, eps, allow_tf32, tile_rows, tile_cols, logits_dtype)))
    return loss, saved


@torch.library.custom_op("contrastive::mnr_in_batch_backward", mutates_args=())
def _in_batch_backward(anchors: Tensor, candidates: Tensor, saved: Tensor, grad_loss: Tensor,
                       hard_negatives: int, scale: float, scale_tensor: Optional[Tensor],
                       similarity: str, symmetric: bool, reduction: str, eps: float,
                       allow_tf32: bool, tile_rows: int, tile_cols: int, logits_dtype: str,
                       need_anchors: bool, need_candidates: bool,
                       need_scale: bool) -> Tuple[Tensor, Tensor, Tensor]:
    p = _in_batch_params(anchors, candidates, hard_negatives, _host_value(scale, scale_tensor),
                         similarity, symmetric, reduction, eps, allow_tf32, tile_rows, tile_cols,
                         logits_dtype)
    anchors, candidates, saved, grad_loss = _for_binding(anchors, candidates, saved,
                                                         grad_loss.contiguous())
    with _launch("mnr_in_batch", anchors, candidates, saved, grad_loss) as (handle, stream):
        grad_anchors = _gradient_buffer(anchors, need_anchors)
        grad_candidates = _gradient_buffer(candidates, need_candidates)
        grad_scale = _scalar_gradient_buffer(anchors, need_scale)
        workspace = _new_workspace(_core.mnr_in_batch_workspace_size(p), anchors.device)
        _core.mnr_in_batch_backward(
            handle, p, anchors, candidates, saved, grad_loss,
            grad_anchors if need_anchors else None, grad_candidates if need_candidates else None,
            grad_scale if need_scale else None, workspace, stream)
    return grad_anchors, grad_candidates, grad_scale


@_in_batch_backward.register_fake
def _(anchors, candidates, saved, grad_loss, hard_negatives, scale, scale_tensor, similarity,
      symmetric, reduction, eps, allow_tf32, tile_rows, tile_cols, logits_dtype, need_anchors,
      need_candidates, need_scale):
    return (_gradient_buffer(anchors, need_anchors),
            _gradient_buffer(candidates, need_candidates),
            _scalar_gradient_buffer(anchors, need_scale))


def _in_batch_setup_context(ctx, inputs, output):
    anchors, candidates, hard_negatives, scale, scale_tensor, *options = inputs
    _, saved = output
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(anchors, candidates, saved, scale_tensor)
    ctx.hard_negatives, ctx.scale, ctx.options = hard_negatives, scale, options


def _in_batch_autograd(ctx, grad_loss, _grad_saved):
    anchors, candidates, saved, scale_tensor = ctx.saved_tensors
    need_anchors, need_candidates, _, _, need_scale = ctx.needs_input_grad[:5]
    grad_anchors, grad_candidates, grad_scale = _in_batch_backward(
        anchors, candidates, saved, grad_loss, ctx.hard_negatives, ctx.scale, scale_tensor,
        *ctx.options, need_anchors, need_candidates, need_scale)
    return (grad_anchors if need_anchors else None,
            grad_candidates if need_candidates else None, None, None,
            _scalar_gradient(grad_scale, scale_tensor) if need_scale else None,
            *(None for _ in ctx.options))


_in_batch_forward.register_autograd(_in_batch_autograd, setup_context=_in_batch_setup_context)


def _hard_negative_blocks(anchors: Tensor, candidates: Tensor) -> int:
    """K for candidates [P; N_1; ...; N_K] of (1 + K) B rows."""
    batch, rows = anchors.shape[0], candidates.shape[0]
    if batch < 1 or rows < batch or rows % batch != 0:
        raise ValueError(f"mnr_in_batch: candidates must have (1 + K) * B rows for B = {batch} "
                         f"anchors, got {rows}")
    return rows // batch - 1


def mnr_in_batch(anchors: Tensor, candidates: Tensor, *, hard_negatives: Optional[int] = None,
                 scale: Scalar = 20.0, similarity: str = "cosine", symmetric: bool = False,
                 reduction: str = "mean", eps: float = 1e-12, allow_tf32: bool = False,
                 tile_rows: int = 0, tile_cols: int = 0, logits_dtype: str = "f32") -> Tensor:
    """In-batch MNR (sentence-transformers' MultipleNegativesRankingLoss): anchors (B, D) against
    candidates [P; N_1; ...; N_K] ((1 + K) B, D); anchor i's positive is candidate i and every
    candidate is a negative of the other anchors. K is inferred from the shapes when not given.
    symmetric=True adds the column direction over the positives
    (MultipleNegativesSymmetricRankingLoss).

    anchors and candidates are float32, float16 or bfloat16, both of one dtype; their gradients
    have it too. logits_dtype="bf16" keeps the logits tile in bfloat16 ("f32", the default, in
    float32).

    Returns a 0-d float32 loss, or (B,) per-row losses with reduction="none".
    """
    _require_dims("mnr_in_batch", anchors=(anchors, 2), candidates=(candidates, 2))
    if hard_negatives is None:
        hard_negatives = _hard_negative_blocks(anchors, candidates)
    value, tensor = _scalar_argument("mnr_in_batch", "scale", scale)
    loss, _ = _in_batch_forward(_rows(anchors), _rows(candidates), int(hard_negatives), value,
                                tensor, str(similarity), bool(symmetric), str(reduction),
                                float(eps), bool(allow_tf32), int(tile_rows), int(tile_cols),
                                str(logits_dtype))
    return _reduced(loss, reduction)


# ---- Repel ---------------------------------------------------------------------------------------


def _repel_params(anchors, negatives, margin, reduction, mean_over_active, eps):
    _require_dims("repel", anchors=(anchors, 2), negatives=(negatives, 3))
    _require_one_dtype("repel", anchors=anchors, negatives=negatives)
    return _options.repel_params(
        anchors.shape[0], negatives.shape[1], anchors.shape[1], margin=margin,
        reduction=reduction, mean_over_active=mean_over_active, eps=eps,
        dtype=_dtype_name("repel", anchors))


@torch.library.custom_op("contrastive::repel_forward", mutates_args=())
def _repel_forward(anchors: Tensor, negatives: Tensor, margin: float, reduction: str,
                   mean_over_active: bool, eps: float) -> Tuple[Tensor, Tensor]:
    p = _repel_params(anchors, negatives, margin, reduction, mean_over_active, eps)
    anchors, negatives = _for_binding(anchors, negatives)
    with _launch("repel", anchors, negatives) as (handle, stream):
        loss = anchors.new_empty(_loss_shape(reduction, *negatives.shape[:2]),
                                 dtype=torch.float32)
        saved = _new_saved(_core.repel_saved_size(p), anchors.device)
        workspace = _new_workspace(_core.repel_workspace_size(p), anchors.device)
        _core.repel_forward(handle, p, anchors, negatives, loss, saved, workspace, stream)
    return loss, saved


@_repel_forward.register_fake
def _(anchors, negatives, margin, reduction, mean_over_active, eps):
    loss = anchors.new_empty(_loss_shape(reduction, *negatives.shape[:2]), dtype=torch.float32)
    saved = _fake_saved(anchors, (*anchors.shape, *negatives.shape),
                        lambda: _core.repel_saved_size(_repel_params(
                            anchors, negatives, margin, reduction, mean_over_active, eps)))
    return loss, saved


@torch.library.custom_op("contrastive::repel_backward", mutates_args=())
def _repel_backward(anchors: Tensor, negatives: Tensor, saved: Tensor, grad_loss: Tensor,
                    margin: float, reduction: str, mean_over_active: bool, eps: float,
                    need_anchors: bool, need_negatives: bool) -> Tuple[Tensor, Tensor]:
    p = _repel_params(anchors, negatives, margin, reduction, mean_over_active, eps)
    anchors, negatives, saved, grad_loss = _for_binding(anchors, negatives, saved,
                                                        grad_loss.contiguous())
    with _launch("repel", anchors, negatives, saved, grad_loss) as (handle, stream):
        grad_anchors = _gradient_buffer(anchors, need_anchors)
        grad_negatives = _gradient_buffer(negatives, need_negatives)
        workspace = _new_workspace(_core.repel_workspace_size(p), anchors.device)
        _core.repel_backward(handle, p, anchors, negatives, saved, grad_loss,
                             grad_anchors if need_anchors else None,
                             grad_negatives if need_negatives else None, workspace, stream)
    return grad_anchors, grad_negatives


@_repel_backward.register_fake
def _(anchors, negatives, saved, grad_loss, margin, reduction, mean_over_active, eps, need_anchors,
      need_negatives):
    return _gradient_buffer(anchors, need_anchors), _gradient_buffer(negatives, need_negatives)


def _repel_setup_context(ctx, inputs, output):
    anchors, negatives, *options = inputs
    _, saved = output
    ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(anchors, negatives, saved)
    ctx.options = options


def _repel_autograd(ctx, grad_loss, _grad_saved):
    anchors, negatives, saved = ctx.saved_tensors
    need_anchors, need_negatives = ctx.needs_input_grad[:2]
    grad_anchors, grad_negatives = _repel_backward(anchors, negatives, saved, grad_loss,
                                                   *ctx.options, need_anchors, need_negatives)
    return (grad_anchors if need_anchors else None, grad_negatives if need_negatives else None,
            *(None for _ in ctx.options))


_repel_forward.register_autograd(_repel_autograd, setup_context=_repel_setup_context)


def repel(anchors: Tensor, negatives: Tensor, *, margin: float = 0.3, reduction: str = "mean",
          mean_over_active: bool = False, eps: float = 1e-12) -> Tensor:
    """Repel (the seed notebook's repel_loss): anchors (B, D), negatives (B, N, D), the mean of
    max(cos(anchor_b, negative_bn) - margin, 0); with mean_over_active the mean over the terms
    above the margin (0 when none is). The inputs are float32, float16 or bfloat16, both of one
    dtype; their gradients have it too.

    Returns a 0-d float32 loss, or the (B, N) terms with reduction="none". The margin is a float
    (the library has no gradient for it).
    """
    _require_dims("repel", anchors=(anchors, 2), negatives=(negatives, 3))
    loss, _ = _repel_forward(_rows(anchors), _rows(negatives), float(margin), str(reduction),
                             bool(mean_over_active), float(eps))
    return _reduced(loss, reduction)


# ---- Modules -------------------------------------------------------------------------------------


def _describe(value: Scalar) -> str:
    return "<tensor>" if isinstance(value, Tensor) else repr(value)


def _as_parameter(value: Scalar) -> nn.Parameter:
    if isinstance(value, nn.Parameter):
        return value
    return nn.Parameter(torch.as_tensor(value, dtype=torch.float32).detach().clone())


class InfoNCELoss(nn.Module):
    """InfoNCE of queries against keys (CLIP's loss with symmetric=True): loss(q, k) with
    q (B, D), k (M, D), M >= B, row i's positive being k[i + positive_offset].

    temperature: a float, or a one-element tensor (an nn.Parameter is registered) that receives
    its gradient; learnable_temperature=True makes it an nn.Parameter initialised to the value.
    A learnable CLIP logit scale s is temperature = 1 / s.exp() through the function `infonce`.
    """

    def __init__(self, temperature: Scalar = 0.1, symmetric: bool = False, *,
                 similarity: str = "cosine", reduction: str = "mean", positive_offset: int = 0,
                 learnable_temperature: bool = False, eps: float = 1e-12,
                 allow_tf32: bool = False, tile_rows: int = 0, tile_cols: int = 0,
                 logits_dtype: str = "f32"):
        super().__init__()
        self.temperature = _as_parameter(temperature) if learnable_temperature else temperature
        self.symmetric, self.similarity, self.reduction = symmetric, similarity, reduction
        self.positive_offset, self.eps, self.allow_tf32 = positive_offset, eps, allow_tf32
        self.tile_rows, self.tile_cols, self.logits_dtype = tile_rows, tile_cols, logits_dtype

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return infonce(q, k, temperature=self.temperature, similarity=self.similarity,
                       symmetric=self.symmetric, reduction=self.reduction,
                       positive_offset=self.positive_offset, eps=self.eps,
                       allow_tf32=self.allow_tf32, tile_rows=self.tile_rows,
                       tile_cols=self.tile_cols, logits_dtype=self.logits_dtype)

    def extra_repr(self) -> str:
        return (f"temperature={_describe(self.temperature)}, symmetric={self.symmetric}, "
                f"similarity={self.similarity!r}, reduction={self.reduction!r}")


class MultipleNegativesRankingLoss(nn.Module):
    """sentence-transformers' MultipleNegativesRankingLoss on embeddings: loss(anchors, positives,
    *hard_negatives) with every argument (B, D). Each anchor ranks its positive against every
    positive and hard negative of the batch: candidates = torch.cat([positives, *hard_negatives])
    (that concatenation is PyTorch's allocation) then in-batch MNR. symmetric=True is
    MultipleNegativesSymmetricRankingLoss. scale may be a tensor that receives its gradient.
    """

    def __init__(self, scale: Scalar = 20.0, similarity: str = "cosine", *,
                 symmetric: bool = False, reduction: str = "mean", eps: float = 1e-12,
                 allow_tf32: bool = False, tile_rows: int = 0, tile_cols: int = 0,
                 logits_dtype: str = "f32"):
        super().__init__()
        self.scale, self.similarity, self.symmetric = scale, similarity, symmetric
        self.reduction, self.eps, self.allow_tf32 = reduction, eps, allow_tf32
        self.tile_rows, self.tile_cols, self.logits_dtype = tile_rows, tile_cols, logits_dtype

    def forward(self, anchors: Tensor, positives: Tensor, *hard_negatives: Tensor) -> Tensor:
        # Checked before torch.cat, which would promote mixed dtypes (a cast).
        for index, x in enumerate((positives, *hard_negatives)):
            if x.dtype != anchors.dtype:
                name = "positives" if index == 0 else f"hard_negatives[{index - 1}]"
                raise TypeError(f"MultipleNegativesRankingLoss: inputs must all have one dtype, "
                                f"got {anchors.dtype} for anchors and {x.dtype} for {name}")
        candidates = torch.cat([positives, *hard_negatives]) if hard_negatives else positives
        return mnr_in_batch(anchors, candidates, hard_negatives=len(hard_negatives),
                            scale=self.scale, similarity=self.similarity,
                            symmetric=self.symmetric, reduction=self.reduction, eps=self.eps,
                            allow_tf32=self.allow_tf32, tile_rows=self.tile_rows,
                            tile_cols=self.tile_cols, logits_dtype=self.logits_dtype)

    def extra_repr(self) -> str:
        return (f"scale={_describe(self.scale)}, similarity={self.similarity!r}, "
                f"symmetric={self.symmetric}, reduction={self.reduction!r}")


class PerAnchorMNRLoss(nn.Module):
    """MNR with per-anchor negatives (the seed notebook's mnr_loss, batched):
    loss(anchors (B, D), positives (B, D), negatives (B, n, D))."""

    def __init__(self, scale: Scalar = 1.0, similarity: str = "dot", *, reduction: str = "mean",
                 eps: float = 1e-12):
        super().__init__()
        self.scale, self.similarity, self.reduction, self.eps = scale, similarity, reduction, eps

    def forward(self, anchors: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        return mnr_per_anchor(anchors, positives, negatives, scale=self.scale,
                              similarity=self.similarity, reduction=self.reduction, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"scale={_describe(self.scale)}, similarity={self.similarity!r}, "
                f"reduction={self.reduction!r}")


class RepelLoss(nn.Module):
    """The seed notebook's repel_loss: loss(anchors (B, D), negatives (B, N, D)), the mean of
    max(cos - margin, 0) over the B N pairs (or over the active ones with mean_over_active)."""

    def __init__(self, margin: float = 0.3, *, reduction: str = "mean",
                 mean_over_active: bool = False, eps: float = 1e-12):
        super().__init__()
        self.margin, self.reduction = margin, reduction
        self.mean_over_active, self.eps = mean_over_active, eps

    def forward(self, anchors: Tensor, negatives: Tensor) -> Tensor:
        return repel(anchors, negatives, margin=self.margin, reduction=self.reduction,
                     mean_over_active=self.mean_over_active, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, reduction={self.reduction!r}, "
                f"mean_over_active={self.mean_over_active}")
