"""JAX front end (eager): each loss on JAX arrays through contrastive._core's DLPack calls.

    loss, grad_q, grad_k, grad_temperature = contrastive.jax.infonce(q, k, temperature=0.1)
    loss = contrastive.jax.infonce(q, k, with_grad=False)

Same functions and results as contrastive.cupy: forward and backward in one library call (for an
upstream gradient of 1), or forward alone with with_grad=False; a 0-d loss for mean and sum.

How a call works, and why it is synchronous. JAX arrays are immutable, JAX allocates their memory
and does not hand out the CUDA stream its computations run on (its streams are created
non-blocking, so they do not order with the legacy default stream either). So:

1. the inputs are made ready (block_until_ready): the computations producing them have finished;
2. the outputs, `saved` and the workspace are allocated with JAX (jnp.empty, which JAX fills with
   zeros) and made ready too, so that fill cannot land after the library's writes;
3. the library reads the inputs and writes the outputs through DLPack, whose export shares the
   buffer (no copy), on the legacy default stream (0) of the arrays' device, with that device's
   primary context made current for the CUDA runtime (the library checks the handle's device is
   current, and JAX does not make it current);
4. the host waits for the device (cuCtxSynchronize) before returning, so JAX computations that
   read the outputs later, on JAX's own streams, see the finished values, and the temporaries
   can be released.

Writing into JAX-owned buffers is sound only because nothing else refers to these freshly
allocated arrays before they are returned. The CUDA driver calls of steps 3 and 4 go through
ctypes (libcuda.so.1, Linux). This is the eager path: inside jax.jit the arrays are tracers,
with no device buffer to hand over, and a call fails; a jit-compatible path would be an XLA FFI
custom call.

Inputs are on one CUDA device, all inputs of a call of one dtype: float32, float16 or bfloat16
(jnp.bfloat16). The input gradients come back in that dtype; the loss and a temperature's or
scale's gradient are float32. Other dtypes, and inputs of different dtypes, raise TypeError;
nothing is cast. allow_tf32 matters only for float32 inputs; logits_dtype ("f32", the default, or
"bf16" with bfloat16 inputs) is the precision of the logits tile of InfoNCE and in-batch MNR.
"""

import contextlib
import ctypes
import functools
from typing import Iterator, Optional, Tuple

import jax
import jax.numpy as jnp

from . import _eager, _losses, handle_for

__all__ = ["infonce", "mnr_per_anchor", "mnr_in_batch", "repel"]

# The library's dtype names for the JAX dtypes it takes (bfloat16 is jnp.bfloat16).
_DTYPE_NAMES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_SUPPORTED = "float32, float16 or bfloat16"
_LEGACY_DEFAULT_STREAM = 0  # cudaStream_t 0: the legacy default stream of the current context
_CUDA_SUCCESS = 0


# ---- The CUDA driver calls JAX does not expose --------------------------------------------------


class _Driver:
    """A device's primary context made current, and a wait for it: libcuda through ctypes."""

    _LIBRARY = "libcuda.so.1"

    def __init__(self):
        try:
            self._cuda = ctypes.CDLL(self._LIBRARY)
        except OSError as error:
            raise RuntimeError(f"contrastive.jax needs the CUDA driver ({self._LIBRARY}): "
                               f"{error}") from None
        pointer, integer = ctypes.c_void_p, ctypes.c_int
        self._declare("cuInit", ctypes.c_uint)
        self._declare("cuDeviceGet", ctypes.POINTER(integer), integer)
        self._declare("cuDevicePrimaryCtxRetain", ctypes.POINTER(pointer), integer)
        self._declare("cuDevicePrimaryCtxRelease_v2", integer)
        self._declare("cuCtxPushCurrent_v2", pointer)
        self._declare("cuCtxPopCurrent_v2", ctypes.POINTER(pointer))
        self._declare("cuCtxSynchronize")
        self._declare("cuGetErrorName", integer, ctypes.POINTER(ctypes.c_char_p))
        self._check("cuInit", self._cuda.cuInit(0))

    def _declare(self, name: str, *argtypes) -> None:
        function = getattr(self._cuda, name)
        function.argtypes, function.restype = list(argtypes), ctypes.c_int

    def _check(self, call: str, result: int) -> None:
        if result != _CUDA_SUCCESS:
            name = ctypes.c_char_p()
            known = self._cuda.cuGetErrorName(result, ctypes.byref(name)) == _CUDA_SUCCESS
            label = name.value.decode() if known and name.value else f"error {result}"
            raise RuntimeError(f"CUDA driver: {call} failed with {label}")

    @contextlib.contextmanager
    def current(self, ordinal: int) -> Iterator[None]:
        """Device `ordinal`'s primary context (the one JAX and the CUDA runtime share), current."""
        device, context = ctypes.c_int(), ctypes.c_void_p()
        self._check("cuDeviceGet", self._cuda.cuDeviceGet(ctypes.byref(device), ordinal))
        self._check("cuDevicePrimaryCtxRetain",
                    self._cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device))
        try:
            self._check("cuCtxPushCurrent", self._cuda.cuCtxPushCurrent_v2(context))
            try:
                yield
            finally:
                self._cuda.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
        finally:
            self._cuda.cuDevicePrimaryCtxRelease_v2(device)

    def synchronize(self) -> None:
        """Waits for all work of the current context (ours on stream 0 included)."""
        self._check("cuCtxSynchronize", self._cuda.cuCtxSynchronize())


@functools.lru_cache(maxsize=None)
def _driver() -> _Driver:
    return _Driver()


# ---- Arrays ------------------------------------------------------------------------------------


def _input(call: str, name: str, x, dims: int) -> jax.Array:
    # JAX arrays are dense and row-major as DLPack exports them: nothing to make contiguous.
    if not isinstance(x, jax.Array):
        raise TypeError(f"{call}: {name} must be a jax.Array, got {type(x).__name__}")
    if x.ndim != dims:
        raise ValueError(f"{call}: {name} must be {dims}-D, got shape {x.shape}")
    return x


def _device_of(call: str, inputs: Tuple[jax.Array, ...]) -> jax.Device:
    devices = {device for x in inputs for device in x.devices()}
    if len(devices) != 1:
        raise ValueError(f"{call}: inputs must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    if device.platform not in ("gpu", "cuda"):
        raise ValueError(f"{call}: inputs must be on a CUDA device, got {device} (the library "
                         f"computes on the GPU; contrastive.reference gives the float64 "
                         f"reference on the CPU from NumPy arrays)")
    return device


def _cuda_ordinal(device: jax.Device) -> int:
    """The CUDA runtime's number for a JAX device (its local hardware id; id when absent)."""
    ordinal = getattr(device, "local_hardware_id", None)
    return device.id if ordinal is None else ordinal


def _run(loss: _losses.Description, params, inputs: Tuple[jax.Array, ...],
         per_term: Optional[Tuple[int, ...]], with_grad: bool, scalar_gradient: bool):
    """Steps 1-4 of the module's notes. The reduced loss, (1,) for the library, is returned 0-d."""
    device = _device_of(loss.name, inputs)

    def empty(shape, dtype):
        return jnp.empty(shape, dtype=dtype, device=device)

    values = empty(per_term or (1,), jnp.float32)
    saved = empty((max(loss.saved_size(params), 1),), jnp.uint8)
    workspace = empty((max(loss.workspace_size(params), 1),), jnp.uint8)
    grads = [empty(x.shape, x.dtype) for x in inputs] if with_grad else []
    scalar = [empty((1,), jnp.float32)] if with_grad and scalar_gradient else []
    jax.block_until_ready((inputs, values, saved, workspace, grads, scalar))  # steps 1 and 2

    ordinal = _cuda_ordinal(device)
    driver = _driver()
    with driver.current(ordinal):
        handle = handle_for(ordinal)
        if with_grad:
            loss.forward_backward(handle, params, *inputs, values, saved, None, *grads, *scalar,
                                  workspace, _LEGACY_DEFAULT_STREAM)
        else:
            loss.forward(handle, params, *inputs, values, saved, workspace,
                         _LEGACY_DEFAULT_STREAM)
        driver.synchronize()  # step 4

    result = values if per_term else values.reshape(())
    if not with_grad:
        return result
    return (result, *grads, *(gradient.reshape(()) for gradient in scalar))


# ---- The losses ----------------------------------------------------------------------------------

_FRONT_END = _eager.FrontEnd(_input, _run, _DTYPE_NAMES, _SUPPORTED)
infonce = _FRONT_END.function(_losses.INFONCE)
mnr_per_anchor = _FRONT_END.function(_losses.MNR_PER_ANCHOR)
mnr_in_batch = _FRONT_END.function(_losses.MNR_IN_BATCH)
repel = _FRONT_END.function(_losses.REPEL)
