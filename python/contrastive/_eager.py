"""What contrastive.cupy and contrastive.jax share: each loss as an eager function over a
framework's arrays (forward and backward in one library call, or forward alone), written once over
the two things a framework supplies: how it takes an input array, and how it allocates the outputs
and runs a call (its `_run`)."""

from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from . import _core, _options


class Loss(NamedTuple):
    """One loss's entry points in _core."""
    name: str
    workspace_size: object
    saved_size: object
    forward: object
    forward_backward: object


INFONCE = Loss("infonce", _core.infonce_workspace_size, _core.infonce_saved_size,
               _core.infonce_forward, _core.infonce_forward_backward)
PER_ANCHOR = Loss("mnr_per_anchor", _core.mnr_per_anchor_workspace_size,
                  _core.mnr_per_anchor_saved_size, _core.mnr_per_anchor_forward,
                  _core.mnr_per_anchor_forward_backward)
IN_BATCH = Loss("mnr_in_batch", _core.mnr_in_batch_workspace_size, _core.mnr_in_batch_saved_size,
                _core.mnr_in_batch_forward, _core.mnr_in_batch_forward_backward)
REPEL = Loss("repel", _core.repel_workspace_size, _core.repel_saved_size, _core.repel_forward,
             _core.repel_forward_backward)


def per_term(reduction: str, *shape: int) -> Optional[Tuple[int, ...]]:
    """The shape of the unreduced loss with reduction="none"; None for mean and sum."""
    return tuple(shape) if reduction == "none" else None


class FrontEnd:
    """The four losses over one framework.

    take(call, name, x, dims) -> array: checks an input and returns what the library reads
    (a copy only where the library cannot read the rows in place);
    run(loss, params, inputs, per_term, with_grad, scalar_gradient): allocates and calls;
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

    def infonce(self, q, k, *, temperature: float = 0.1, similarity: str = "cosine",
                symmetric: bool = False, reduction: str = "mean", positive_offset: int = 0,
                eps: float = 1e-12, allow_tf32: bool = False, tile_rows: int = 0,
                tile_cols: int = 0, logits_dtype: str = "f32", with_grad: bool = True):
        """InfoNCE of q (B, D) against k (M, D), M >= B; row i's positive is key
        i + positive_offset.

        Returns (loss, grad_q, grad_k, grad_temperature), or the loss alone with with_grad=False.
        """
        q, k = self._input("infonce", "q", q, 2), self._input("infonce", "k", k, 2)
        p = _options.infonce_params(
            q.shape[0], k.shape[0], q.shape[1], temperature=temperature, similarity=similarity,
            symmetric=symmetric, reduction=reduction, positive_offset=positive_offset, eps=eps,
            allow_tf32=allow_tf32, tile_rows=tile_rows, tile_cols=tile_cols,
            dtype=self._dtype_name("infonce", q=q, k=k), logits_dtype=logits_dtype)
        return self._run(INFONCE, p, (q, k), per_term(reduction, q.shape[0]), with_grad, True)

    def mnr_per_anchor(self, anchors, positives, negatives, *, scale: float = 1.0,
                       similarity: str = "dot", reduction: str = "mean", eps: float = 1e-12,
                       with_grad: bool = True):
        """MNR with per-anchor negatives: anchors (B, D), positives (B, D), negatives (B, n, D).

        Returns (loss, grad_anchors, grad_positives, grad_negatives, grad_scale), or the loss alone.
        """
        call = "mnr_per_anchor"
        anchors = self._input(call, "anchors", anchors, 2)
        positives = self._input(call, "positives", positives, 2)
        negatives = self._input(call, "negatives", negatives, 3)
        p = _options.per_anchor_params(
            anchors.shape[0], negatives.shape[1], anchors.shape[1], scale=scale,
            similarity=similarity, reduction=reduction, eps=eps,
            dtype=self._dtype_name(call, anchors=anchors, positives=positives, negatives=negatives))
        return self._run(PER_ANCHOR, p, (anchors, positives, negatives),
                         per_term(reduction, anchors.shape[0]), with_grad, True)

    def mnr_in_batch(self, anchors, candidates, *, hard_negatives: Optional[int] = None,
                     scale: float = 20.0, similarity: str = "cosine", symmetric: bool = False,
                     reduction: str = "mean", eps: float = 1e-12, allow_tf32: bool = False,
                     tile_rows: int = 0, tile_cols: int = 0, logits_dtype: str = "f32",
                     with_grad: bool = True):
        """In-batch MNR: anchors (B, D) against candidates [P; N_1; ...; N_K] ((1 + K) B, D); K is
        inferred from the shapes when not given.

        Returns (loss, grad_anchors, grad_candidates, grad_scale), or the loss alone.
        """
        call = "mnr_in_batch"
        anchors = self._input(call, "anchors", anchors, 2)
        candidates = self._input(call, "candidates", candidates, 2)
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
            dtype=self._dtype_name(call, anchors=anchors, candidates=candidates),
            logits_dtype=logits_dtype)
        return self._run(IN_BATCH, p, (anchors, candidates),
                         per_term(reduction, anchors.shape[0]), with_grad, True)

    def repel(self, anchors, negatives, *, margin: float = 0.3, reduction: str = "mean",
              mean_over_active: bool = False, eps: float = 1e-12, with_grad: bool = True):
        """Repel: anchors (B, D), negatives (B, N, D); mean of max(cos - margin, 0).

        Returns (loss, grad_anchors, grad_negatives), or the loss alone; the loss is (B, N) with
        reduction="none".
        """
        anchors = self._input("repel", "anchors", anchors, 2)
        negatives = self._input("repel", "negatives", negatives, 3)
        p = _options.repel_params(
            anchors.shape[0], negatives.shape[1], anchors.shape[1], margin=margin,
            reduction=reduction, mean_over_active=mean_over_active, eps=eps,
            dtype=self._dtype_name("repel", anchors=anchors, negatives=negatives))
        return self._run(REPEL, p, (anchors, negatives),
                         per_term(reduction, *negatives.shape[:2]), with_grad, False)
