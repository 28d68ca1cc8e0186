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


def _ids(name: str, ids):
    """Integer ids as C-contiguous int64 (None stays None); TypeError for a non-integer dtype."""
    if ids is None:
        return None
    ids = np.asarray(ids)
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must hold integers (int32 or int64), got dtype {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one id per row), got shape {ids.shape}")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _uses_ids(query_ids, key_ids, multi_positive, exclude_self, false_negative_margin) -> bool:
    """Whether the call takes the ids reference; query_ids and key_ids come together."""
    if (query_ids is None) != (key_ids is None):
        missing = "key_ids" if key_ids is None else "query_ids"
        raise ValueError(f"{missing} must be given with "
                         f"{'query_ids' if missing == 'key_ids' else 'key_ids'}")
    return (query_ids is not None or bool(multi_positive) or bool(exclude_self)
            or false_negative_margin is not None)


def _with_ids(out: dict) -> dict:
    out["kept"] = out["kept"].astype(bool)
    return out


def infonce(q, k, *, temperature=0.1, similarity="cosine", symmetric=False, reduction="mean",
            positive_offset=0, eps=1e-12, grad_loss=None, query_ids=None, key_ids=None,
            multi_positive=False, exclude_self=False, false_negative_margin=None) -> dict:
    """InfoNCE of q (B, D) against k (M, D): loss, row_lse, col_lse, logits, grad_q, grad_k,
    grad_temperature, grad_logits.

    Ids (docs/ids.md): integer query_ids (B) and key_ids (M) mask the keys other than the positive
    that share the query's id; multi_positive makes every kept key with the query's id a positive
    (SupCon's L_out; the mean runs over the rows that have one); exclude_self drops key
    i + positive_offset from row i (q and k one set); false_negative_margin m drops the keys with
    sim_ij > sim_i,pos - m. With any of them the result adds positive_rows (the rows that have a
    positive) and kept (B, M) bool, and row_lse runs over the kept keys."""
    q, k = _matrix("q", q), _matrix("k", k)
    query_ids, key_ids = _ids("query_ids", query_ids), _ids("key_ids", key_ids)
    params = _options.infonce_params(q.shape[0], k.shape[0], q.shape[1], temperature=temperature,
                                      similarity=similarity, symmetric=symmetric,
                                      reduction=reduction, positive_offset=positive_offset, eps=eps)
    if not _uses_ids(query_ids, key_ids, multi_positive, exclude_self, false_negative_margin):
        return _core.reference_infonce(params, q, k, _upstream(grad_loss))
    return _with_ids(_core.reference_infonce_ids(
        params, q, k, query_ids, key_ids, bool(multi_positive), bool(exclude_self),
        None if false_negative_margin is None else float(false_negative_margin),
        _upstream(grad_loss)))


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
                 symmetric=False, reduction="mean", eps=1e-12, grad_loss=None, query_ids=None,
                 key_ids=None, multi_positive=False, exclude_self=False,
                 false_negative_margin=None) -> dict:
    """In-batch MNR of anchors (B, D) against candidates [P; N_1; ...; N_K] ((1 + K) B, D); K is
    inferred from the candidates when not given. Ids as infonce(): query_ids (B) of the anchors,
    key_ids ((1 + K) B) of the candidates."""
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
    query_ids, key_ids = _ids("query_ids", query_ids), _ids("key_ids", key_ids)
    if not _uses_ids(query_ids, key_ids, multi_positive, exclude_self, false_negative_margin):
        return _core.reference_mnr_in_batch(params, anchors, candidates, _upstream(grad_loss))
    return _with_ids(_core.reference_mnr_in_batch_ids(
        params, anchors, candidates, query_ids, key_ids, bool(multi_positive), bool(exclude_self),
        None if false_negative_margin is None else float(false_negative_margin),
        _upstream(grad_loss)))


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
