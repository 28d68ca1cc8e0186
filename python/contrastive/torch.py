"""PyTorch front end: the losses as ``torch.library`` custom operators with autograd, and modules.

Each loss is three custom operators in the ``contrastive`` namespace: ``<loss>_forward`` returns
the loss and the small ``saved`` buffer (per-row log-sum-exp, inverse norms, ...),
``<loss>_backward`` turns ``saved`` and the upstream gradient into the input gradients, and
``<loss>_forward_backward`` returns the loss and the gradients for an upstream gradient of 1 in
one library call. They have ``register_fake`` shape functions and CPU kernels, and autograd joins
forward to backward and forward_backward to a backward that only scales its gradients, so the
losses work in eager mode, under ``torch.compile`` (opaque operators with known output shapes: no
graph break), with ``torch.library.opcheck`` and with a learnable temperature or scale (and
SigLIP's learnable bias).

Functions: ``infonce``, ``mnr_per_anchor``, ``mnr_in_batch``, ``repel``, ``siglip``. Modules:
``InfoNCELoss``, ``MultipleNegativesRankingLoss`` (sentence-transformers' in-batch layout),
``PerAnchorMNRLoss``, ``RepelLoss``, ``SigLIPLoss``.

Conventions:

- Inputs are tensors on one device, a CUDA device (the library's kernels) or the CPU (the same
  losses in PyTorch operations, ``_torch_cpu.py``), all of one dtype: float32, float16 or
  bfloat16. The input gradients come back in that dtype; the loss is float32 (the library
  accumulates in float32, and the CPU kernels compute in float32). Other dtypes, and inputs of
  different dtypes, raise TypeError. Nothing is cast. ``allow_tf32``, ``logits_dtype``,
  ``tile_rows`` and ``tile_cols`` steer the GPU path and are checked but not used on the CPU.
- Training step: when an input (or the temperature or scale) requires grad and the loss is
  reduced ("mean" or "sum"), forward runs forward_backward and keeps the gradients; backward
  multiplies them by the upstream gradient (three GEMMs per step instead of four). Per-term
  losses (reduction="none"), the GPU's tiled walk over the logits and ``fused_backward=False``
  recompute the gradients in backward from ``saved`` instead, holding nothing but ``saved``
  between the two.
- An input is passed as it is when the library can read it in place (a contiguous last dimension,
  evenly spaced rows: row-sliced views qualify); otherwise it is copied with ``.contiguous()``.
- Outputs, ``saved`` and the workspace are allocated by PyTorch (its caching allocator, on the
  current stream): the library allocates nothing. Kernels run on PyTorch's current CUDA stream.
- ``temperature`` / ``scale`` (and SigLIP's ``bias``) is a Python float or a one-element tensor
  (e.g. an ``nn.Parameter``), which then receives its gradient. The library takes it as a host
  float, so a tensor's value is read on the host in forward and again in backward: for a CUDA
  tensor each read waits for the device (a synchronization) and cannot be captured in a CUDA
  graph. Pass a float when it is fixed.
"""

import contextlib
import inspect
from typing import Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import _core, _losses, _torch_cpu, handle_for

__all__ = ["infonce", "mnr_per_anchor", "mnr_in_batch", "repel", "siglip", "InfoNCELoss",
           "MultipleNegativesRankingLoss", "PerAnchorMNRLoss", "RepelLoss", "SigLIPLoss"]

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
    """The temperature or scale as a host float: a CPU tensor's value (no wait), or a CUDA
    tensor's, which waits for the device (only for a loss whose library call takes host scalars
    only: none today)."""
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
        if x.device != device:
            raise ValueError(f"{call}: inputs must be on one device, got {device} and {x.device}")
    with torch.cuda.device(device):  # the library checks that the handle's device is current
        yield handle_for(device.index), torch.cuda.current_stream(device).cuda_stream


# ---- The operators, built from each loss's description ------------------------------------------
#
# Each loss is three custom operators. Their arguments, in order:
#   <loss>_forward(*inputs, *counts, *[scalar, scalar_tensor], *options) -> (loss, saved)
#   <loss>_backward(*inputs, saved, grad_loss, *counts, *[scalar, scalar_tensor], *options,
#                   *need_<input>, *need_<scalar>) -> (*grad_<input>, *grad_<scalar>)
#   <loss>_forward_backward(*inputs, *counts, *[scalar, scalar_tensor], *options, *need_<input>,
#                           *need_<scalar>) -> (loss, *grad_<input>, *grad_<scalar>)
# where each [scalar, scalar_tensor] is one differentiable scalar (the temperature or scale, then
# any other, such as SigLIP's bias) as a float and, when it is a tensor, the tensor itself (its
# value is then read in the call; the float is a stand-in for size queries).
# forward_backward's gradients are those of an upstream gradient of 1. CUDA tensors run the
# library; CPU tensors run the CPU kernels of _torch_cpu.py, registered for the CPU dispatch key
# (and reached from the default implementation too, for CPU inputs with a CUDA temperature).


def _op_signature(loss: _losses.Description, kind: str) -> inspect.Signature:
    """The operator's Python signature, from which torch.library infers its schema; kind is
    "forward", "backward" or "forward_backward"."""
    def parameter(name, annotation):
        return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 annotation=annotation)

    parameters = [parameter(spec.name, Tensor) for spec in loss.inputs]
    if kind == "backward":
        parameters += [parameter("saved", Tensor), parameter("grad_loss", Tensor)]
    parameters += [parameter(count.name, int) for count in loss.counts]
    for scalar in loss.scalars:
        parameters += [parameter(scalar.name, float),
                       parameter(f"{scalar.name}_tensor", Optional[Tensor])]
    parameters += [parameter(option.name, option.type) for option in loss.options]
    if kind == "forward":
        return inspect.Signature(parameters, return_annotation=Tuple[Tensor, Tensor])
    differentiable = [spec.name for spec in loss.inputs] + [scalar.name
                                                            for scalar in loss.scalars]
    parameters += [parameter(f"need_{name}", bool) for name in differentiable]
    outputs = len(differentiable) + (1 if kind == "forward_backward" else 0)
    return inspect.Signature(parameters, return_annotation=Tuple[(Tensor,) * outputs])


class _Arguments(NamedTuple):
    """An operator's arguments split by role (see the table above)."""
    inputs: Tuple[Tensor, ...]
    counts: Tuple[int, ...]
    scalars: Tuple[float, ...]  # each scalar's value, or its stand-in when a tensor is given
    scalar_tensors: Tuple[Optional[Tensor], ...]
    options: Tuple
    needs: Tuple[bool, ...] = ()

    @staticmethod
    def split(loss: _losses.Description, args: Sequence, backward: bool = False):
        """(arguments, saved, grad_loss) of an operator call; saved and grad_loss are None for
        forward."""
        args = list(args)
        inputs = tuple(args[:len(loss.inputs)])
        del args[:len(loss.inputs)]
        saved = grad_loss = None
        if backward:
            saved, grad_loss = args[0], args[1]
            del args[:2]
        counts = tuple(args[:len(loss.counts)])
        del args[:len(loss.counts)]
        pairs = 2 * len(loss.scalars)
        scalars, scalar_tensors = tuple(args[0:pairs:2]), tuple(args[1:pairs:2])
        del args[:pairs]
        options = tuple(args[:len(loss.options)])
        needs = tuple(args[len(loss.options):])
        return (_Arguments(inputs, counts, scalars, scalar_tensors, options, needs), saved,
                grad_loss)

    def host_values(self) -> Tuple[float, ...]:
        """Each scalar's value as the library takes it (a tensor's is read on the host)."""
        return tuple(_host_value(value, tensor)
                     for value, tensor in zip(self.scalars, self.scalar_tensors))

    def cuda_values(self, loss: _losses.Description) -> Tuple[Tuple[float, ...], dict]:
        """The scalars of a CUDA call: (the params' values, the binding's device scalars). A CUDA
        tensor goes to the library as it is, read on the stream (no host read, so a learnable
        temperature costs no synchronization and a CUDA graph can capture the call); its
        stand-in fills the params. A float, or a CPU tensor (read without waiting for the
        device), is a host value. (A loss whose scalars the library took only on the host would
        read a CUDA tensor there: every loss with a scalar takes it on the device now.)"""
        values, device = [], {}
        for spec, value, tensor in zip(loss.scalars, self.scalars, self.scalar_tensors):
            if tensor is not None and tensor.device.type == "cuda" and loss.device_scalars:
                values.append(value)
                device[spec.name] = tensor.detach().reshape(1).to(torch.float32).contiguous()
            else:
                values.append(_host_value(value, tensor))
        return tuple(values), device


def _checked_shapes(loss: _losses.Description, a: _Arguments) -> Tuple:
    """The inputs' dimensions, dtype and shapes agree; the shapes."""
    _require_dims(loss.name, **{spec.name: (x, spec.dims) for spec, x in zip(loss.inputs,
                                                                              a.inputs)})
    _require_one_dtype(loss.name, **{spec.name: x for spec, x in zip(loss.inputs, a.inputs)})
    shapes = tuple(tuple(x.shape) for x in a.inputs)
    if all(isinstance(size, int) for shape in shapes for size in shape):
        loss.check_shapes(loss.name, shapes, a.counts)
    else:  # symbolic sizes (dynamic shapes): one D, without guards on the counts
        loss.check_shapes(loss.name, shapes)
    return shapes


def _params(loss: _losses.Description, a: _Arguments, scalars: Sequence[float]):
    """The library's params for an operator call, the scalars' values given."""
    shapes = _checked_shapes(loss, a)
    options = dict(zip((option.name for option in loss.options), a.options))
    options.update(zip((scalar.name for scalar in loss.scalars), scalars))
    return loss.params(shapes, *a.counts, dtype=_dtype_name(loss.name, a.inputs[0]), **options)


def _reduction(loss: _losses.Description, a: _Arguments) -> str:
    return a.options[[option.name for option in loss.options].index("reduction")]


def _loss_buffer(loss: _losses.Description, a: _Arguments) -> Tensor:
    shape = loss.per_term([x.shape for x in a.inputs]) if _reduction(loss, a) == "none" else (1,)
    return a.inputs[0].new_empty(shape, dtype=torch.float32)


def _device_of(call: str, inputs: Sequence[Tensor]) -> torch.device:
    """The one device of a call's inputs: a CPU or a CUDA device."""
    device = inputs[0].device
    for x in inputs[1:]:
        if x.device != device:
            raise ValueError(f"{call}: inputs must be on one device, got {device} and {x.device}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{call}: inputs must be CPU or CUDA tensors, got {device}")
    return device


def _cpu_kernels(loss: _losses.Description):
    kernels = _torch_cpu.kernels_for(loss.name)
    if kernels is None:
        raise ValueError(f"{loss.name}: no CPU implementation; inputs must be on a CUDA device")
    return kernels


def _cpu_call(loss: _losses.Description, a: _Arguments):
    """The checks of a CPU call (the library's own, on its params) and what the kernel takes:
    (kernels, counts, scalar values, options as a dict)."""
    values = a.host_values()
    loss.check(_params(loss, a, values))
    options = dict(zip((option.name for option in loss.options), a.options))
    return _cpu_kernels(loss), a.counts, values, options


def _cpu_gradients(loss: _losses.Description, a: _Arguments, grads, grad_scalars) -> Tuple:
    """A CPU kernel's float32 gradients as the operator returns them: each needed one dense in
    its input's dtype, the others empty placeholders; each scalar's (1,) float32."""
    out = [grad.to(x.dtype).reshape(x.shape).contiguous() if need else _gradient_buffer(x, False)
           for x, grad, need in zip(a.inputs, grads, a.needs)]
    for grad, need in zip(grad_scalars, a.needs[len(a.inputs):]):
        out.append(grad.reshape(1).float() if need
                   else _scalar_gradient_buffer(a.inputs[0], False))
    return tuple(out)


def _gradient_buffers(loss: _losses.Description, inputs: Sequence[Tensor],
                      needs: Sequence[bool]) -> list:
    """The operator's gradient outputs: each input's, then each scalar's (empty when not
    needed)."""
    grads = [_gradient_buffer(x, need) for x, need in zip(inputs, needs)]
    grads += [_scalar_gradient_buffer(inputs[0], need) for need in needs[len(inputs):]]
    return grads


def _scaled(grad: Tensor, upstream: Tensor) -> Tensor:
    """A gradient computed for an upstream gradient of 1, for `upstream` (0-d float32): one
    product in float32, rounded once to the gradient's dtype."""
    upstream = upstream.to(grad.device)
    if grad.dtype == torch.float32:
        return grad * upstream
    return (grad.float() * upstream).to(grad.dtype)


def _require_reduced(loss: _losses.Description, a: _Arguments) -> None:
    """forward_backward's gradients are scaled by one upstream value: a reduced loss only."""
    if _reduction(loss, a) == "none":
        raise ValueError(f"{loss.name}_forward_backward: reduction must be 'mean' or 'sum' (the "
                         f"gradients of per-term losses depend on every upstream value; use "
                         f"{loss.name}_forward and {loss.name}_backward)")


def _define_operators(loss: _losses.Description):
    """<loss>_forward, <loss>_backward and <loss>_forward_backward with their CPU kernels and
    fake implementations; forward and forward_backward each joined to their gradients by
    autograd."""
    def forward(*args):
        a, _, _ = _Arguments.split(loss, args)
        if _device_of(loss.name, a.inputs).type == "cpu":
            return forward_cpu(*args)
        values, scalars = a.cuda_values(loss)
        p = _params(loss, a, values)
        inputs = _for_binding(*a.inputs)
        with _launch(loss.name, *inputs) as (handle, stream):
            values = _loss_buffer(loss, a)
            saved = _new_saved(loss.saved_size(p), inputs[0].device)
            workspace = _new_workspace(loss.workspace_size(p), inputs[0].device)
            loss.forward(handle, p, *inputs, values, saved, workspace, stream, **scalars)
        return values, saved

    def forward_cpu(*args):
        a, _, _ = _Arguments.split(loss, args)
        _device_of(loss.name, a.inputs)
        kernels, counts, values, options = _cpu_call(loss, a)
        with torch.no_grad():
            value, saved = kernels.forward(a.inputs, counts, values, options)
        return value.reshape(_loss_buffer(loss, a).shape), saved

    def forward_fake(*args):
        a, _, _ = _Arguments.split(loss, args)
        shapes = _checked_shapes(loss, a)
        if a.inputs[0].device.type == "cpu":
            options = dict(zip((option.name for option in loss.options), a.options))
            length = _cpu_kernels(loss).saved_length(shapes, a.counts, options)
            return _loss_buffer(loss, a), a.inputs[0].new_empty(length, dtype=_SAVED_DTYPE)
        sizes = (*(size for shape in shapes for size in shape), *a.counts)
        saved = _fake_saved(a.inputs[0], sizes, lambda: loss.saved_size(_params(loss, a,
                                                                                 a.scalars)))
        return _loss_buffer(loss, a), saved

    def backward(*args):
        a, saved, grad_loss = _Arguments.split(loss, args, backward=True)
        if _device_of(loss.name, a.inputs).type == "cpu":
            return backward_cpu(*args)
        values, scalars = a.cuda_values(loss)
        p = _params(loss, a, values)
        *inputs, saved, grad_loss = _for_binding(*a.inputs, saved, grad_loss.contiguous())
        with _launch(loss.name, *inputs, saved, grad_loss) as (handle, stream):
            grads = _gradient_buffers(loss, inputs, a.needs)
            workspace = _new_workspace(loss.workspace_size(p), inputs[0].device)
            loss.backward(handle, p, *inputs, saved, grad_loss,
                          *(grad if need else None for grad, need in zip(grads, a.needs)),
                          workspace, stream, **scalars)
        return tuple(grads)

    def backward_cpu(*args):
        a, saved, grad_loss = _Arguments.split(loss, args, backward=True)
        _device_of(loss.name, [*a.inputs, saved, grad_loss])
        kernels, counts, values, options = _cpu_call(loss, a)
        with torch.no_grad():
            grads, grad_scalars = kernels.backward(a.inputs, saved, grad_loss, counts, values,
                                                   options)
        return _cpu_gradients(loss, a, grads, grad_scalars)

    def backward_fake(*args):
        a, _, _ = _Arguments.split(loss, args, backward=True)
        _checked_shapes(loss, a)
        return tuple(_gradient_buffers(loss, a.inputs, a.needs))

    def forward_backward(*args):
        a, _, _ = _Arguments.split(loss, args)
        _require_reduced(loss, a)
        if _device_of(loss.name, a.inputs).type == "cpu":
            return forward_backward_cpu(*args)
        values, scalars = a.cuda_values(loss)
        p = _params(loss, a, values)
        inputs = _for_binding(*a.inputs)
        with _launch(loss.name, *inputs) as (handle, stream):
            values = _loss_buffer(loss, a)
            saved = _new_saved(loss.saved_size(p), inputs[0].device)
            grads = _gradient_buffers(loss, inputs, a.needs)
            workspace = _new_workspace(loss.workspace_size(p), inputs[0].device)
            if any(a.needs):  # gradients for an upstream gradient of 1 (grad_loss None)
                loss.forward_backward(handle, p, *inputs, values, saved, None,
                                      *(grad if need else None
                                        for grad, need in zip(grads, a.needs)),
                                      workspace, stream, **scalars)
            else:
                loss.forward(handle, p, *inputs, values, saved, workspace, stream, **scalars)
        return (values, *grads)

    def forward_backward_cpu(*args):
        a, _, _ = _Arguments.split(loss, args)
        _require_reduced(loss, a)
        _device_of(loss.name, a.inputs)
        kernels, counts, values, options = _cpu_call(loss, a)
        with torch.no_grad():
            value, _, grads, grad_scalars = kernels.forward_backward(a.inputs, counts, values,
                                                                     options)
        return (value.reshape(_loss_buffer(loss, a).shape),
                *_cpu_gradients(loss, a, grads, grad_scalars))

    def forward_backward_fake(*args):
        a, _, _ = _Arguments.split(loss, args)
        _require_reduced(loss, a)
        _checked_shapes(loss, a)
        return (_loss_buffer(loss, a), *_gradient_buffers(loss, a.inputs, a.needs))

    def setup_context(ctx, inputs, output):
        a, _, _ = _Arguments.split(loss, inputs)
        _, saved = output
        ctx.mark_non_differentiable(saved)
        ctx.save_for_backward(*a.inputs, saved, *a.scalar_tensors)
        ctx.counts, ctx.scalars, ctx.options = a.counts, a.scalars, a.options

    def autograd(ctx, grad_loss, _grad_saved):
        count = len(loss.inputs)
        inputs, saved = ctx.saved_tensors[:count], ctx.saved_tensors[count]
        scalar_tensors = ctx.saved_tensors[count + 1:]
        needs = list(ctx.needs_input_grad[:count])
        scalar_args = []
        for index, (value, tensor) in enumerate(zip(ctx.scalars, scalar_tensors)):
            scalar_args += [value, tensor]
            needs.append(ctx.needs_input_grad[count + len(ctx.counts) + 2 * index + 1])
        grads = backward_op(*inputs, saved, grad_loss, *ctx.counts, *scalar_args, *ctx.options,
                            *needs)
        result = [grad if need else None for grad, need in zip(grads[:count], needs)]
        result += [None] * len(ctx.counts)
        for grad, need, tensor in zip(grads[count:], needs[count:], scalar_tensors):
            result += [None, _scalar_gradient(grad, tensor) if need else None]
        return (*result, *(None for _ in ctx.options))

    # forward_backward's gradients were computed for an upstream gradient of 1; a reduced loss's
    # gradients are linear in its upstream gradient, so backward only scales them.
    def setup_context_fused(ctx, inputs, output):
        a, _, _ = _Arguments.split(loss, inputs)
        grads = output[1:]
        ctx.mark_non_differentiable(*grads)
        ctx.save_for_backward(*grads, *a.scalar_tensors)
        ctx.needs, ctx.counts, ctx.options = a.needs, a.counts, a.options

    def autograd_fused(ctx, grad_loss, *_grad_grads):
        count = len(loss.inputs)
        outputs = count + len(loss.scalars)
        grads, scalar_tensors = ctx.saved_tensors[:outputs], ctx.saved_tensors[outputs:]
        upstream = grad_loss.reshape(()).float()
        result = [_scaled(grad, upstream) if need else None
                  for grad, need in zip(grads[:count], ctx.needs)]
        result += [None] * len(ctx.counts)
        for grad, need, tensor in zip(grads[count:], ctx.needs[count:], scalar_tensors):
            result += [None, _scalar_gradient(_scaled(grad, upstream), tensor) if need else None]
        return (*result, *(None for _ in ctx.options), *(None for _ in ctx.needs))

    for function, name, kind in ((forward, "forward", "forward"),
                                 (backward, "backward", "backward"),
                                 (forward_backward, "forward_backward", "forward_backward")):
        function.__name__ = f"{loss.name}_{name}"
        function.__signature__ = _op_signature(loss, kind)
    forward_op = torch.library.custom_op(f"contrastive::{loss.name}_forward", forward,
                                         mutates_args=())
    backward_op = torch.library.custom_op(f"contrastive::{loss.name}_backward", backward,
                                          mutates_args=())
    fused_op = torch.library.custom_op(f"contrastive::{loss.name}_forward_backward",
                                       forward_backward, mutates_args=())
    if _torch_cpu.kernels_for(loss.name) is not None:
        forward_op.register_kernel("cpu", forward_cpu)
        backward_op.register_kernel("cpu", backward_cpu)
        fused_op.register_kernel("cpu", forward_backward_cpu)
    forward_op.register_fake(forward_fake)
    backward_op.register_fake(backward_fake)
    fused_op.register_fake(forward_backward_fake)
    forward_op.register_autograd(autograd, setup_context=setup_context)
    fused_op.register_autograd(autograd_fused, setup_context=setup_context_fused)
    return forward_op, fused_op


def _require_tensors(call: str, names: Sequence[str], inputs: Sequence) -> None:
    for name, x in zip(names, inputs):
        if not isinstance(x, Tensor):
            kind = type(x).__module__ + "." + type(x).__qualname__
            raise TypeError(f"{call}: {name} must be a torch.Tensor, got {kind}"
                            + (" (for NumPy arrays, contrastive.reference computes the float64 "
                               "reference)" if kind == "numpy.ndarray" else ""))


def _tiled(loss: _losses.Description, inputs: Sequence[Tensor], counts: Sequence[int],
           values: dict) -> bool:
    """True when the library walks this CUDA call's logits in tiles (an explicit tile, or a
    materialized workspace over the budget): there the gradients are recomputed in backward
    rather than held from forward. False where it cannot tell (symbolic sizes, a value the op
    will reject)."""
    if inputs[0].device.type != "cuda":
        return False
    shapes = tuple(tuple(x.shape) for x in inputs)
    if not all(isinstance(size, int) for shape in shapes for size in shape):
        return False
    options = {name: values[name] for name in loss.defaults()}
    for scalar in loss.scalars:
        if isinstance(options[scalar.name], Tensor):
            options[scalar.name] = _SIZE_QUERY_SCALAR
    try:
        p = loss.params(shapes, *counts, dtype=_dtype_name(loss.name, inputs[0]), **options)
        if not hasattr(p, "tiling"):
            return False
        if getattr(p, "tile_rows", 0) or getattr(p, "tile_cols", 0):
            return True
        automatic = loss.workspace_size(p)
    except (TypeError, ValueError):
        return False
    p.tiling = _core.Tiling.materialized
    try:
        return automatic < loss.workspace_size(p)
    except ValueError:  # the materialized workspace's size overflows: tiled
        return True


def _define_function(loss: _losses.Description):
    """The public function: inputs positional, every option a keyword with the loss's default,
    and fused_backward."""
    operator, fused_operator = _define_operators(loss)
    names = [spec.name for spec in loss.inputs]
    keywords = {**{count.name: None for count in loss.counts}, **loss.defaults(),
                "fused_backward": True}

    def function(*inputs: Tensor, **given) -> Tensor:
        if len(inputs) != len(names):
            raise TypeError(f"{loss.name}() takes {len(names)} inputs ({', '.join(names)}), got "
                            f"{len(inputs)}")
        for key in given:
            if key not in keywords:
                raise TypeError(f"{loss.name}() got an unexpected keyword argument {key!r}")
        values = {**keywords, **given}
        _require_tensors(loss.name, names, inputs)
        _require_dims(loss.name, **{spec.name: (x, spec.dims) for spec, x in zip(loss.inputs,
                                                                                  inputs)})
        shapes = tuple(tuple(x.shape) for x in inputs)
        counts = loss.infer_counts(loss.name, shapes, values)
        scalar_args = []
        for scalar in loss.scalars:
            scalar_args += _scalar_argument(loss.name, scalar.name, values[scalar.name])
        options = tuple(option.type(values[option.name]) for option in loss.options)
        rows = tuple(_rows(x) for x in inputs)
        reduction = str(values["reduction"])
        if values["fused_backward"] and reduction != "none" and torch.is_grad_enabled():
            needs = [x.requires_grad for x in rows]
            needs += [tensor is not None and tensor.requires_grad
                      for tensor in scalar_args[1::2]]
            if any(needs) and not _tiled(loss, rows, counts, values):
                value, *_ = fused_operator(*rows, *counts, *scalar_args, *options, *needs)
                return _reduced(value, reduction)
        value, _ = operator(*rows, *counts, *scalar_args, *options)
        return _reduced(value, reduction)

    parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY, annotation=Tensor)
                  for name in names]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                   for name, default in keywords.items()]
    function.__signature__ = inspect.Signature(parameters, return_annotation=Tensor)
    function.__name__ = function.__qualname__ = loss.name
    function.__module__ = __name__
    names_of_scalars = " and ".join(scalar.name for scalar in loss.scalars)
    scalar_note = ((f" {names_of_scalars} is a float, or a one-element tensor that receives its "
                    f"gradient." if len(loss.scalars) == 1 else
                    f" {names_of_scalars} are each a float, or a one-element tensor that receives "
                    f"its gradient.") if loss.scalars else "")
    function.__doc__ = (
        f"{loss.summary}\n\nThe inputs are CPU or CUDA tensors on one device, of one dtype, "
        f"float32, float16 or bfloat16; their gradients have it too.{scalar_note} Returns a 0-d "
        f"float32 loss, or the per-term losses with reduction=\"none\". When an input requires "
        f"grad and the loss is reduced, forward computes the gradients too and backward only "
        f"scales them (fused_backward=False recomputes them in backward instead).")
    return function


infonce = _define_function(_losses.INFONCE)
mnr_per_anchor = _define_function(_losses.MNR_PER_ANCHOR)
mnr_in_batch = _define_function(_losses.MNR_IN_BATCH)
repel = _define_function(_losses.REPEL)
siglip = _define_function(_losses.SIGLIP)


# ---- Modules -------------------------------------------------------------------------------------


def _describe(value: Scalar) -> str:
    return "<tensor>" if isinstance(value, Tensor) else repr(value)


def _validate(loss: _losses.Description, **values) -> None:
    """The library's check of the values a module is given, at construction (a tensor's value is
    read once): a bad temperature, scale or margin fails here, not at the first batch."""
    for name, value in list(values.items()):
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f"{loss.name}: {name} must be a float or a one-element tensor, "
                                 f"got a tensor of shape {tuple(value.shape)}")
            if value.is_meta:  # no value to read: checked when the loss runs
                del values[name]
            else:
                values[name] = float(value.detach().reshape(()))
    loss.validate(**values)


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
                 logits_dtype: str = "f32", fused_backward: bool = True):
        super().__init__()
        self.fused_backward = fused_backward
        _validate(_losses.INFONCE, temperature=temperature, similarity=similarity,
                  reduction=reduction, eps=eps)
        self.temperature = _as_parameter(temperature) if learnable_temperature else temperature
        self.symmetric, self.similarity, self.reduction = symmetric, similarity, reduction
        self.positive_offset, self.eps, self.allow_tf32 = positive_offset, eps, allow_tf32
        self.tile_rows, self.tile_cols, self.logits_dtype = tile_rows, tile_cols, logits_dtype

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return infonce(q, k, temperature=self.temperature, similarity=self.similarity,
                       symmetric=self.symmetric, reduction=self.reduction,
                       positive_offset=self.positive_offset, eps=self.eps,
                       allow_tf32=self.allow_tf32, tile_rows=self.tile_rows,
                       tile_cols=self.tile_cols, logits_dtype=self.logits_dtype,
                       fused_backward=self.fused_backward)

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
                 logits_dtype: str = "f32", fused_backward: bool = True):
        super().__init__()
        self.fused_backward = fused_backward
        _validate(_losses.MNR_IN_BATCH, scale=scale, similarity=similarity, reduction=reduction,
                  eps=eps)
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
                            tile_cols=self.tile_cols, logits_dtype=self.logits_dtype,
                            fused_backward=self.fused_backward)

    def extra_repr(self) -> str:
        return (f"scale={_describe(self.scale)}, similarity={self.similarity!r}, "
                f"symmetric={self.symmetric}, reduction={self.reduction!r}")


class PerAnchorMNRLoss(nn.Module):
    """MNR with per-anchor negatives (each anchor's softmax over its positive and its own n
    negatives):
    loss(anchors (B, D), positives (B, D), negatives (B, n, D))."""

    def __init__(self, scale: Scalar = 1.0, similarity: str = "dot", *, reduction: str = "mean",
                 eps: float = 1e-12, fused_backward: bool = True):
        super().__init__()
        self.fused_backward = fused_backward
        _validate(_losses.MNR_PER_ANCHOR, scale=scale, similarity=similarity,
                  reduction=reduction, eps=eps)
        self.scale, self.similarity, self.reduction, self.eps = scale, similarity, reduction, eps

    def forward(self, anchors: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        return mnr_per_anchor(anchors, positives, negatives, scale=self.scale,
                              similarity=self.similarity, reduction=self.reduction, eps=self.eps,
                              fused_backward=self.fused_backward)

    def extra_repr(self) -> str:
        return (f"scale={_describe(self.scale)}, similarity={self.similarity!r}, "
                f"reduction={self.reduction!r}")


class RepelLoss(nn.Module):
    """Repel: loss(anchors (B, D), negatives (B, N, D)), the mean of
    max(cos - margin, 0) over the B N pairs (or over the active ones with mean_over_active)."""

    def __init__(self, margin: float = 0.3, *, reduction: str = "mean",
                 mean_over_active: bool = False, eps: float = 1e-12,
                 fused_backward: bool = True):
        super().__init__()
        self.fused_backward = fused_backward
        _validate(_losses.REPEL, margin=margin, reduction=reduction,
                  mean_over_active=mean_over_active, eps=eps)
        self.margin, self.reduction = margin, reduction
        self.mean_over_active, self.eps = mean_over_active, eps

    def forward(self, anchors: Tensor, negatives: Tensor) -> Tensor:
        return repel(anchors, negatives, margin=self.margin, reduction=self.reduction,
                     mean_over_active=self.mean_over_active, eps=self.eps,
                     fused_backward=self.fused_backward)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, reduction={self.reduction!r}, "
                f"mean_over_active={self.mean_over_active}")


class SigLIPLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss: loss(q, k) with q (B, D), k (M, D), M >= B, logits
    t sim(q_i, k_j) + b, label +1 for k[i + positive_offset] and -1 for every other key (every key
    with negatives_only=True, e.g. another process's keys), the sum of softplus(-label * logit)
    over each row, averaged over the B rows.

    scale is t, or log t with log_scale=True (its gradient is then the log scale's); bias is b.
    Each is a float or a one-element tensor (an nn.Parameter is registered) that receives its
    gradient; learnable=True makes both nn.Parameters initialised to the values, as SigLIP trains
    them (log_scale=True, scale=math.log(10), bias=-10).
    """

    def __init__(self, scale: Scalar = 10.0, bias: Scalar = -10.0, *, log_scale: bool = False,
                 learnable: bool = False, negatives_only: bool = False,
                 similarity: str = "cosine", reduction: str = "mean", positive_offset: int = 0,
                 eps: float = 1e-12, allow_tf32: bool = False, tile_rows: int = 0,
                 tile_cols: int = 0, logits_dtype: str = "f32", fused_backward: bool = True):
        super().__init__()
        self.fused_backward = fused_backward
        _validate(_losses.SIGLIP, scale=scale, bias=bias, log_scale=log_scale,
                  negatives_only=negatives_only, similarity=similarity, reduction=reduction,
                  eps=eps)
        self.scale = _as_parameter(scale) if learnable else scale
        self.bias = _as_parameter(bias) if learnable else bias
        self.log_scale, self.negatives_only = log_scale, negatives_only
        self.similarity, self.reduction = similarity, reduction
        self.positive_offset, self.eps, self.allow_tf32 = positive_offset, eps, allow_tf32
        self.tile_rows, self.tile_cols, self.logits_dtype = tile_rows, tile_cols, logits_dtype

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        return siglip(q, k, scale=self.scale, bias=self.bias, log_scale=self.log_scale,
                      negatives_only=self.negatives_only, similarity=self.similarity,
                      reduction=self.reduction, positive_offset=self.positive_offset,
                      eps=self.eps, allow_tf32=self.allow_tf32, tile_rows=self.tile_rows,
                      tile_cols=self.tile_cols, logits_dtype=self.logits_dtype,
                      fused_backward=self.fused_backward)

    def extra_repr(self) -> str:
        return (f"scale={_describe(self.scale)}, bias={_describe(self.bias)}, "
                f"log_scale={self.log_scale}, negatives_only={self.negatives_only}, "
                f"similarity={self.similarity!r}, reduction={self.reduction!r}")


def __getattr__(name: str):
    """contrastive.torch.distributed: the losses over several processes
    (contrastive.torch_distributed, docs/distributed.md), loaded on first use."""
    if name == "distributed":
        from contrastive import torch_distributed
        return torch_distributed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
