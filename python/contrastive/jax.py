"""JAX front end: each loss as XLA FFI custom calls, under jax.jit and jax.grad, on GPU and CPU.

    loss = contrastive.jax.infonce(q, k, temperature=0.1)
    grads = jax.grad(lambda q, k: contrastive.jax.infonce(q, k, symmetric=True), (0, 1))(q, k)
    loss = contrastive.jax.siglip(q, k, scale=log_t, bias=b, log_scale=True)  # learnable t', b

Each function returns the loss (0-d for mean and sum, per row, or per term for Repel, with
reduction="none") and is differentiable: a `jax.custom_vjp` whose forward is one custom call
(`contrastive_<loss>_forward`: the loss and the small `saved` buffer backward reads) and whose
backward is another (`contrastive_<loss>_backward`: the input gradients, and the temperature's or
scale's, and SigLIP's bias's, when one of them is an array). The same code runs eagerly and inside
`jax.jit`; shapes, dtypes and option values are checked at trace time (ValueError / TypeError
naming the argument).

Where it runs. On a CUDA device the handlers call the library on the stream XLA gives them; XLA
allocates the outputs, `saved` and the workspace (sized at trace time by the library's host-side
size queries), the library allocates nothing and no call waits for the device. On the CPU the
handlers compute the same loss and gradients with the library's float64 reference (inputs
converted to float64, results rounded to the output dtypes): for tests, CI and small problems.
The handlers live in the compiled module contrastive._jax_ffi, built when JAX is installed at build
time.

The temperature or scale (and SigLIP's bias) is a Python float (fixed: it is part of the compiled
call) or a JAX array of one element, e.g. a learnable parameter, which then receives its gradient.
When one of a loss's scalars is an array, all of them are passed to the custom calls as float32
operands (a float as a constant). On a GPU the library reads them on XLA's stream, without a host
read or a wait. A float is
checked at trace time; an array's value is read as it is (a temperature or scale that is not
finite and > 0 gives NaN results).

Inputs are float32, float16 or bfloat16 (jnp.bfloat16), all inputs of a call of one dtype; their
gradients have that dtype, the loss and a temperature's or scale's gradient are float32. Other
dtypes, and inputs of different dtypes, raise TypeError; nothing is cast. allow_tf32 matters only
for float32 inputs on the GPU; logits_dtype ("f32", the default, or "bf16" with bfloat16 inputs) is
the precision of the GPU's logits tile of InfoNCE, in-batch MNR and SigLIP; tiles and tiling are
the GPU's choices and do not change the CPU's float64 results.

jax.vmap over a leading axis of every input runs one call per element, in sequence (ffi_call's
vmap_method="sequential"): each element is its own problem, with its own batch.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _eager, _losses

try:
    from . import _jax_ffi
except ImportError as _error:
    raise ImportError(
        f"contrastive.jax needs the compiled module contrastive._jax_ffi, which is built only when "
        f"JAX is installed at build time ({_error}): `pip install \"jax[cpu]\"` (or jax[cuda13]) "
        f"and rebuild the package.") from None

__all__ = [loss.name for loss in _losses.ALL]

# The library's dtype names for the JAX dtypes it takes (bfloat16 is jnp.bfloat16).
_DTYPE_NAMES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_SUPPORTED = "float32, float16 or bfloat16"
_TARGET_PREFIX = "contrastive_"
_PLATFORMS = {"cpu": "cpu", "CUDA": "CUDA"}  # _jax_ffi's handler kinds -> XLA platform names


def _register_targets() -> frozenset:
    """Every handler of _jax_ffi registered with XLA; returns the target names (without prefix)."""
    for name, handlers in _jax_ffi.targets.items():
        for kind, capsule in handlers.items():
            jax.ffi.register_ffi_target(_TARGET_PREFIX + name, capsule, platform=_PLATFORMS[kind])
    return frozenset(_jax_ffi.targets)


_TARGETS = _register_targets()


class _Call(NamedTuple):
    """What one loss call is compiled from (static, hashable): its targets, the params as the
    handlers read them, and the shapes of the loss and of XLA's `saved` and workspace buffers."""
    api: str
    words: bytes
    loss_shape: Tuple[int, ...]
    saved_bytes: int
    workspace_bytes: int


def _api(loss: _losses.Description) -> str:
    """The entry points' prefix: infonce for _core.infonce_forward."""
    return loss.forward.__name__[:-len("_forward")]


def _ffi(call: _Call, which: str, results, *operands):
    return jax.ffi.ffi_call(f"{_TARGET_PREFIX}{call.api}_{which}", results,
                            vmap_method="sequential")(
        *operands, params=np.frombuffer(call.words, dtype=np.int64))


def _forward(call: _Call, inputs, scalars):
    results = (jax.ShapeDtypeStruct(call.loss_shape, jnp.float32),
               jax.ShapeDtypeStruct((call.saved_bytes,), jnp.uint8),
               jax.ShapeDtypeStruct((call.workspace_bytes,), jnp.uint8))
    loss, saved, _ = _ffi(call, "forward", results, *inputs, *scalars)
    return loss, saved


# `scalars` is () when every scalar is in the params (Python floats), else one float32 0-d
# operand per scalar of the loss, in the order of its description.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _differentiable(call: _Call, inputs, scalars):
    return _forward(call, inputs, scalars)[0]


def _differentiable_forward(call: _Call, inputs, scalars):
    loss, saved = _forward(call, inputs, scalars)
    return loss, (inputs, scalars, saved)


def _differentiable_backward(call: _Call, residuals, grad_loss):
    inputs, scalars, saved = residuals
    results = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in inputs]
    results += [jax.ShapeDtypeStruct((), jnp.float32) for _ in scalars]
    results.append(jax.ShapeDtypeStruct((call.workspace_bytes,), jnp.uint8))
    grad_loss = jnp.asarray(grad_loss, jnp.float32).reshape(call.loss_shape)
    *grads, _ = _ffi(call, "backward", tuple(results), *inputs, saved, grad_loss, *scalars)
    return tuple(grads[:len(inputs)]), tuple(grads[len(inputs):])


_differentiable.defvjp(_differentiable_forward, _differentiable_backward)


# ---- Arguments -----------------------------------------------------------------------------------


def _input(call: str, name: str, x, dims: int):
    if isinstance(x, np.ndarray):  # taken as it is: JAX would turn float64 into float32
        if x.dtype.name not in _DTYPE_NAMES:
            raise TypeError(f"{call}: inputs must be {_SUPPORTED}, got {x.dtype}")
        x = jnp.asarray(x)
    if not isinstance(x, jax.Array):
        raise TypeError(f"{call}: {name} must be a jax.Array, got {type(x).__name__}")
    if x.ndim != dims:
        raise ValueError(f"{call}: {name} must be {dims}-D, got shape {tuple(x.shape)}")
    return x


def _dtype_name(call: str, names, arrays) -> str:
    first = arrays[0]
    for name, x in zip(names[1:], arrays[1:]):
        if x.dtype != first.dtype:
            raise TypeError(f"{call}: inputs must all have one dtype, got {first.dtype} for "
                            f"{names[0]} and {x.dtype} for {name}")
    try:
        return _DTYPE_NAMES[np.dtype(first.dtype).name]
    except KeyError:
        raise TypeError(f"{call}: inputs must be {_SUPPORTED}, got {first.dtype}") from None


def _scalar_operand(call: str, name: str, value):
    """A scalar (temperature, scale, bias) given as an array: a float32 0-d operand (its gradient
    flows back through the cast); None for a Python number, which goes into the params."""
    if isinstance(value, (bool, str)) or value is None:
        raise TypeError(f"{call}: {name} must be a float or a JAX array of one element, got "
                        f"{type(value).__name__}")
    if isinstance(value, (int, float, np.floating, np.integer)):
        return None
    if isinstance(value, np.ndarray):
        value = jnp.asarray(value)
    if not isinstance(value, jax.Array):
        raise TypeError(f"{call}: {name} must be a float or a JAX array of one element, got "
                        f"{type(value).__name__}")
    if value.size != 1:
        raise ValueError(f"{call}: {name} must be a float or a JAX array of one element, got "
                         f"shape {tuple(value.shape)}")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"{call}: {name} must be a floating-point array, got {value.dtype}")
    return value.astype(jnp.float32).reshape(())


# Stands in for a scalar given as an array where the params need a value at trace time: no size
# depends on it, and the handlers put the array's value in its place.
_STAND_IN = 1.0


def _function(loss: _losses.Description) -> Callable:
    """The JAX function of one loss: inputs positional, every option a keyword with the loss's
    default; returns the loss."""
    names = [spec.name for spec in loss.inputs]
    keywords = {**{count.name: None for count in loss.counts}, **loss.defaults()}
    api = _api(loss)

    def call(*arrays, **given):
        if len(arrays) != len(names):
            raise TypeError(f"{loss.name}() takes {len(names)} inputs ({', '.join(names)}), "
                            f"got {len(arrays)}")
        unknown = sorted(set(given) - set(keywords))
        if unknown:
            raise TypeError(f"{loss.name}() got an unexpected keyword argument {unknown[0]!r}")
        if f"{api}_forward" not in _TARGETS:
            raise NotImplementedError(f"{loss.name}: contrastive._jax_ffi has no handlers for "
                                      f"this loss")
        values = {**keywords, **given}
        arrays = tuple(_input(loss.name, spec.name, x, spec.dims)
                       for spec, x in zip(loss.inputs, arrays))
        shapes = tuple(tuple(x.shape) for x in arrays)
        counts = loss.infer_counts(loss.name, shapes, values)
        options = {name: values[name] for name in loss.defaults()}
        operands = [_scalar_operand(loss.name, scalar.name, options[scalar.name])
                    for scalar in loss.scalars]
        scalars = ()
        if any(operand is not None for operand in operands):
            # All of them as operands; a float keeps its value in the params too, so that the
            # library checks it while tracing.
            scalars = tuple(jnp.float32(options[scalar.name]) if operand is None else operand
                            for scalar, operand in zip(loss.scalars, operands))
            for scalar, operand in zip(loss.scalars, operands):
                if operand is not None:
                    options[scalar.name] = _STAND_IN
        dtype = _dtype_name(loss.name, names, arrays)
        params = loss.params(shapes, *counts, dtype=dtype, **options)
        loss.check(params)  # the library's own check, at trace time
        per_term = _eager.per_term(values["reduction"], loss.per_term(shapes))
        static = _Call(api, bytes(_jax_ffi.params_words(params)), per_term or (),
                       max(int(loss.saved_size(params)), 1),
                       max(int(loss.workspace_size(params)), 1))
        return _differentiable(static, arrays, scalars)

    parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY) for name in names]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                   for name, default in keywords.items()]
    call.__signature__ = inspect.Signature(parameters)
    call.__name__ = call.__qualname__ = loss.name
    scalar_note = "".join(f" {scalar.name} is a float, or a JAX array of one element that "
                          f"receives its gradient." for scalar in loss.scalars)
    call.__doc__ = (f"{loss.summary}\n\nReturns the float32 loss (0-d for mean and sum); "
                    f"differentiable with jax.grad, and usable inside jax.jit.{scalar_note}")
    return call


for _loss in _losses.ALL:
    globals()[_loss.name] = _function(_loss)
del _loss
