"""What contrastive.cupy and contrastive.jax share: each loss as an eager function over a
framework's arrays (forward and backward in one library call, or forward alone), built from the
loss's description (`_losses.py`) and the two things a framework supplies: how it takes an input
array, and how it allocates the outputs and runs a call (its `_run`)."""

import inspect
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from . import _losses


def per_term(reduction: str, shape: Tuple[int, ...]) -> Optional[Tuple[int, ...]]:
    """The shape of the unreduced loss with reduction="none"; None for mean and sum."""
    return tuple(shape) if reduction == "none" else None


class FrontEnd:
    """The losses over one framework.

    take(call, name, x, dims) -> array: checks an input and returns what the library reads
    (a copy only where the library cannot read the rows in place);
    run(loss, params, inputs, per_term, with_grad, scalar_gradients): allocates and calls, where
    `loss` is a `_losses.Description` (its name and entry points) and `scalar_gradients` the
    number of its scalar gradients (the temperature's or scale's, then SigLIP's bias's);
    dtype_names: the framework's dtype names the library takes -> the library's ("f32", ...);
    supported: those dtypes in words, for the TypeError.
    """

    def __init__(self, take: Callable, run: Callable, dtype_names: Dict[str, str],
                 supported: str):
        self._input, self._run = take, run
        self._dtype_names, self._supported = dtype_names, supported

    def _dtype_name(self, call: str, **inputs) -> str:
        """The library's name for the inputs' dtype: every input has the first one's (nothing is
        cast), and it is one the library takes."""
        names = list(inputs)
        first = inputs[names[0]]
        for name in names[1:]:
            if inputs[name].dtype != first.dtype:
                raise TypeError(f"{call}: inputs must all have one dtype, got {first.dtype} for "
                                f"{names[0]} and {inputs[name].dtype} for {name}")
        try:
            return self._dtype_names[np.dtype(first.dtype).name]
        except KeyError:
            raise TypeError(
                f"{call}: inputs must be {self._supported}, got {first.dtype}") from None

    def function(self, loss: _losses.Description) -> Callable:
        """The eager function of one loss: inputs positional, every option a keyword with the
        loss's default, and with_grad. Returns (loss, *input gradients, *scalar gradients), or
        the loss alone with with_grad=False."""
        names = [spec.name for spec in loss.inputs]
        keywords = {**{count.name: None for count in loss.counts}, **loss.defaults(),
                    "with_grad": True}

        def call(*arrays, **given):
            if len(arrays) != len(names):
                raise TypeError(f"{loss.name}() takes {len(names)} inputs ({', '.join(names)}), "
                                f"got {len(arrays)}")
            unknown = sorted(set(given) - set(keywords))
            if unknown:
                raise TypeError(f"{loss.name}() got an unexpected keyword argument {unknown[0]!r}")
            values = {**keywords, **given}
            arrays = tuple(self._input(loss.name, spec.name, x, spec.dims)
                           for spec, x in zip(loss.inputs, arrays))
            shapes = tuple(tuple(x.shape) for x in arrays)
            counts = loss.infer_counts(loss.name, shapes, values)
            options = {name: values[name] for name in loss.defaults()}
            dtype = self._dtype_name(loss.name, **dict(zip(names, arrays)))
            params = loss.params(shapes, *counts, dtype=dtype, **options)
            return self._run(loss, params, arrays,
                             per_term(values["reduction"], loss.per_term(shapes)),
                             bool(values["with_grad"]), len(loss.scalars))

        parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_ONLY) for name in names]
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                       for name, default in keywords.items()]
        call.__signature__ = inspect.Signature(parameters)
        call.__name__ = call.__qualname__ = loss.name
        gradients = ", ".join([f"grad_{name}" for name in names]
                              + [f"grad_{scalar.name}" for scalar in loss.scalars])
        call.__doc__ = (f"{loss.summary}\n\nReturns (loss, {gradients}), or the loss alone with "
                        f"with_grad=False.")
        return call
