"""The float64 reference of every loss on NumPy arrays, through the library's own C++ reference.

Each function returns a dict of float64 NumPy arrays (and floats): the loss, the statistics the GPU
path saves, the logits or similarities, and the gradients of every input (for an upstream gradient
`grad_loss`, 1 when None). Inputs are converted to C-contiguous float64 first.
"""

from __future__ import annotations

import numpy as np

from contrastive import _core, _options


def _float64(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def _matrix(name: str, x) -> np.ndarray:
    x = _float64(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {x.shape}")
    return x


def _grouped(name: str, x) -> np.ndarray:
    x = _float64(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must be 3-D (batch, per_anchor, dim), got shape {x.shape}")
    return x


def _upstream(grad_loss):
    return None if grad_loss is None else _float64(np.atleast_1d(grad_loss))


def infonce(q, k, *, temperature=0.1, similarity="cosine", symmetric=False, reduction="mean",
            positive_offset=0, eps=1e-12, grad_loss=None) -> dict:
    """InfoNCE of q (B, D) against k (M, D): loss, row_lse, col_lse, logits, grad_q, grad_k,
    grad_temperature, grad_logits."""
    q, k = _matrix("q", q), _matrix("k", k)
    params = _options.infonce_params(q.shape[0], k.shape[0], q.shape[1], temperature=temperature,
                                      similarity=similarity, symmetric=symmetric,
                                      reduction=reduction, positive_offset=positive_offset, eps=eps)
    return _core.reference_infonce(params, q, k, _upstream(grad_loss))


def mnr_per_anchor(anchors, positives, negatives, *, scale=1.0, similarity="dot", reduction="mean",
                   eps=1e-12, grad_loss=None) -> dict:
    """MNR with per-anchor negatives (B, n, D): loss, row_lse, logits, grad_anchors,
    grad_positives, grad_negatives (B * n, D), grad_scale, grad_logits."""
    anchors, positives = _matrix("anchors", anchors), _matrix("positives", positives)
    negatives = _grouped("negatives", negatives)
    params = _options.per_anchor_params(anchors.shape[0], negatives.shape[1], anchors.shape[1],
                                        scale=scale, similarity=similarity, reduction=reduction,
                                        eps=eps)
    return _core.reference_mnr_per_anchor(params, anchors, positives, negatives,
                                          _upstream(grad_loss))


def mnr_in_batch(anchors, candidates, *, hard_negatives=None, scale=20.0, similarity="cosine",
                 symmetric=False, reduction="mean", eps=1e-12, grad_loss=None) -> dict:
    """In-batch MNR of anchors (B, D) against candidates [P; N_1; ...; N_K] ((1 + K) B, D); K is
    inferred from the candidates when not given."""
    anchors, candidates = _matrix("anchors", anchors), _matrix("candidates", candidates)
    batch = anchors.shape[0]
    if hard_negatives is None:
        if batch == 0 or candidates.shape[0] % batch != 0:
            raise ValueError(f"candidates must have (1 + K) * B rows for B = {batch}, "
                             f"got {candidates.shape[0]}")
        hard_negatives = candidates.shape[0] // batch - 1
    params = _options.in_batch_params(batch, hard_negatives, anchors.shape[1], scale=scale,
                                      similarity=similarity, symmetric=symmetric,
                                      reduction=reduction, eps=eps)
    return _core.reference_mnr_in_batch(params, anchors, candidates, _upstream(grad_loss))


def repel(anchors, negatives, *, margin=0.3, reduction="mean", mean_over_active=False, eps=1e-12,
          grad_loss=None) -> dict:
    """Repel of anchors (B, D) against their negatives (B, N, D): loss, similarities (B, N),
    active_terms, grad_anchors, grad_negatives (B * N, D)."""
    anchors, negatives = _matrix("anchors", anchors), _grouped("negatives", negatives)
    params = _options.repel_params(anchors.shape[0], negatives.shape[1], anchors.shape[1],
                                   margin=margin, reduction=reduction,
                                   mean_over_active=mean_over_active, eps=eps)
    return _core.reference_repel(params, anchors, negatives, _upstream(grad_loss))


def siglip(q, k, *, scale=10.0, log_scale=False, bias=-10.0, negatives_only=False,
           similarity="cosine", reduction="mean", positive_offset=0, eps=1e-12,
           grad_loss=None) -> dict:
    """SigLIP's pairwise sigmoid loss of q (B, D) against k (M, D): loss, logits (t sim + b),
    grad_q, grad_k, grad_scale (of t, or of log t with log_scale), grad_bias, grad_logits."""
    q, k = _matrix("q", q), _matrix("k", k)
    params = _options.siglip_params(q.shape[0], k.shape[0], q.shape[1], scale=scale,
                                     log_scale=log_scale, bias=bias,
                                     negatives_only=negatives_only, similarity=similarity,
                                     reduction=reduction, positive_offset=positive_offset, eps=eps)
    return _core.reference_siglip(params, q, k, _upstream(grad_loss))
