"""contrastive: contrastive losses on the GPU (InfoNCE, MNR, Repel, SigLIP), forward and backward.

Layers: `contrastive.torch` (custom ops with autograd, nn.Module losses), `contrastive.cupy`
(eager calls through DLPack), `contrastive.jax` (XLA FFI custom calls for jax.jit and jax.grad, in
the compiled `contrastive._jax_ffi`), `contrastive.reference` (the float64 reference on NumPy
arrays). The compiled core is `contrastive._core` (python/CORE_API.md).
"""

from __future__ import annotations

import functools
import threading

import pathlib

try:
    from contrastive import _core
except ImportError as _error:
    _here = pathlib.Path(__file__).resolve().parent
    if list(_here.glob("_core*")):
        _problem = f"contrastive._core in {_here} does not load ({_error})"
    else:
        _problem = (f"the compiled module contrastive._core is missing: {_here} holds only the "
                    f"Python sources")
    raise ImportError(
        f"contrastive: {_problem}. Install the package with `pip install .` from the repository "
        f"root, or build it with `cmake --preset release && cmake --build build/release --target "
        f"contrastive_python` and put build/release/python on PYTHONPATH.") from None
from contrastive._core import (DType, Handle, InBatchParams, InfoNCEParams, PerAnchorParams,
                               Reduction, RepelParams, SigLIPParams, Similarity)

__version__ = "0.1.0"

__all__ = ["DType", "Handle", "InBatchParams", "InfoNCEParams", "PerAnchorParams", "Reduction",
           "RepelParams", "SigLIPParams", "Similarity", "gpu_available", "handle_for",
           "__version__"]

_handles = threading.local()


def handle_for(device: int) -> Handle:
    """The calling thread's handle for CUDA device `device` (created once; one handle per thread).

    Raises RuntimeError, with the library's reason, when no GPU is usable.
    """
    cache = getattr(_handles, "by_device", None)
    if cache is None:
        cache = _handles.by_device = {}
    handle = cache.get(device)
    if handle is None:
        handle = cache[device] = _core.Handle(device)
    return handle


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    """True when a handle can be created on the current device (never raises; asked once)."""
    try:
        _core.Handle(-1)
    except RuntimeError:
        return False
    return True
