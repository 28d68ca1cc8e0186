"""Keyword arguments to the compiled params objects: the defaults and names every layer shares."""

from __future__ import annotations

from contrastive import _core

_DTYPES = {"f32": _core.DType.f32, "float32": _core.DType.f32, "f16": _core.DType.f16,
           "float16": _core.DType.f16, "bf16": _core.DType.bf16, "bfloat16": _core.DType.bf16}
_REDUCTIONS = {"mean": _core.Reduction.mean, "sum": _core.Reduction.sum,
               "none": _core.Reduction.none}
_SIMILARITIES = {"cosine": _core.Similarity.cosine, "dot": _core.Similarity.dot}
_TILINGS = {"auto": _core.Tiling.auto, "materialized": _core.Tiling.materialized,
            "tiled": _core.Tiling.tiled}


def _choice(table: dict, name: str, value):
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}") from None


def _set_tiling(p, tiling, workspace_budget, tile_cache_bytes) -> None:
    """The walk over the logits: "auto" (materialized while its workspace fits workspace_budget
    bytes, the library's 4 GiB when None), "materialized" or "tiled" (tiles of tile_cache_bytes,
    0: the library's 32 MiB)."""
    p.tiling = _choice(_TILINGS, "tiling", tiling)
    if workspace_budget is not None:
        if int(workspace_budget) < 0:
            raise ValueError(f"workspace_budget must be >= 0, got {workspace_budget}")
        p.workspace_budget = int(workspace_budget)
    if int(tile_cache_bytes) < 0:
        raise ValueError(f"tile_cache_bytes must be >= 0, got {tile_cache_bytes}")
    p.tile_cache_bytes = int(tile_cache_bytes)


_ID_TYPES = {"none": _core.IdType.none, "int32": _core.IdType.int32,
             "int64": _core.IdType.int64}


def _set_ids(p, id_type, multi_positive, exclude_self, false_negative_margin) -> None:
    """The options of ids (docs/ids.md) into p.ids: id_type "int32" or "int64" (the element type of
    the id arrays the calls then require), or None / "none" for no ids; multi_positive (SupCon's
    L_out), exclude_self (key i + positive_offset leaves row i; with multi_positive) and
    false_negative_margin m (None: no threshold; else keys with sim_ij > sim_i,pos - m leave row
    i). The library checks the combination (infonce_check / mnr_in_batch_check)."""
    p.ids.type = _choice(_ID_TYPES, "id_type", "none" if id_type is None else id_type)
    p.ids.multi_positive = bool(multi_positive)
    p.ids.exclude_self = bool(exclude_self)
    p.ids.false_negative_threshold = false_negative_margin is not None
    if false_negative_margin is not None:
        try:
            p.ids.false_negative_margin = float(false_negative_margin)
        except (TypeError, ValueError):
            raise TypeError("false_negative_margin must be a float or None, got "
                            f"{false_negative_margin!r}") from None


def dtype_of(name) -> "_core.DType":
    """'f32' / 'float32', 'f16' / 'float16', 'bf16' / 'bfloat16' -> _core.DType."""
    return _choice(_DTYPES, "dtype", name)


def infonce_params(batch, num_keys, dim, *, temperature=0.1, similarity="cosine", symmetric=False,
                   reduction="mean", positive_offset=0, eps=1e-12, allow_tf32=False, tile_rows=0,
                   tile_cols=0, dtype="f32", logits_dtype="f32", tiling="auto",
                   workspace_budget=None, tile_cache_bytes=0, log_scale=False,
                   max_scale=0.0, id_type=None, multi_positive=False, exclude_self=False,
                   false_negative_margin=None) -> "_core.InfoNCEParams":
    p = _core.InfoNCEParams()
    p.batch, p.num_keys, p.dim = int(batch), int(num_keys), int(dim)
    p.temperature = float(temperature)
    p.log_scale, p.max_scale = bool(log_scale), float(max_scale)
    p.similarity = _choice(_SIMILARITIES, "similarity", similarity)
    p.symmetric = bool(symmetric)
    p.reduction = _choice(_REDUCTIONS, "reduction", reduction)
    p.positive_offset = int(positive_offset)
    p.eps = float(eps)
    p.allow_tf32 = bool(allow_tf32)
    p.tile_rows, p.tile_cols = int(tile_rows), int(tile_cols)
    p.dtype = dtype_of(dtype)
    p.logits_dtype = _choice(_DTYPES, "logits_dtype", logits_dtype)
    _set_tiling(p, tiling, workspace_budget, tile_cache_bytes)
    _set_ids(p, id_type, multi_positive, exclude_self, false_negative_margin)
    return p


def per_anchor_params(batch, negatives, dim, *, scale=1.0, similarity="dot", reduction="mean",
                      eps=1e-12, dtype="f32") -> "_core.PerAnchorParams":
    p = _core.PerAnchorParams()
    p.batch, p.negatives, p.dim = int(batch), int(negatives), int(dim)
    p.scale = float(scale)
    p.similarity = _choice(_SIMILARITIES, "similarity", similarity)
    p.reduction = _choice(_REDUCTIONS, "reduction", reduction)
    p.eps = float(eps)
    p.dtype = dtype_of(dtype)
    return p


def in_batch_params(batch, hard_negatives, dim, *, scale=20.0, similarity="cosine", symmetric=False,
                    reduction="mean", eps=1e-12, allow_tf32=False, tile_rows=0, tile_cols=0,
                    dtype="f32", logits_dtype="f32", tiling="auto", workspace_budget=None,
                    tile_cache_bytes=0, log_scale=False, max_scale=0.0, id_type=None,
                    multi_positive=False, exclude_self=False,
                    false_negative_margin=None) -> "_core.InBatchParams":
    p = _core.InBatchParams()
    p.batch, p.hard_negatives, p.dim = int(batch), int(hard_negatives), int(dim)
    p.scale = float(scale)
    p.log_scale, p.max_scale = bool(log_scale), float(max_scale)
    p.similarity = _choice(_SIMILARITIES, "similarity", similarity)
    p.symmetric = bool(symmetric)
    p.reduction = _choice(_REDUCTIONS, "reduction", reduction)
    p.eps = float(eps)
    p.allow_tf32 = bool(allow_tf32)
    p.tile_rows, p.tile_cols = int(tile_rows), int(tile_cols)
    p.dtype = dtype_of(dtype)
    p.logits_dtype = _choice(_DTYPES, "logits_dtype", logits_dtype)
    _set_tiling(p, tiling, workspace_budget, tile_cache_bytes)
    _set_ids(p, id_type, multi_positive, exclude_self, false_negative_margin)
    return p


def repel_params(batch, negatives, dim, *, margin=0.3, reduction="mean", mean_over_active=False,
                 eps=1e-12, dtype="f32") -> "_core.RepelParams":
    p = _core.RepelParams()
    p.batch, p.negatives, p.dim = int(batch), int(negatives), int(dim)
    p.margin = float(margin)
    p.reduction = _choice(_REDUCTIONS, "reduction", reduction)
    p.mean_over_active = bool(mean_over_active)
    p.eps = float(eps)
    p.dtype = dtype_of(dtype)
    return p


def siglip_params(batch, num_keys, dim, *, scale=10.0, log_scale=False, bias=-10.0,
                  negatives_only=False, similarity="cosine", reduction="mean", positive_offset=0,
                  eps=1e-12, allow_tf32=False, tile_rows=0, tile_cols=0, dtype="f32",
                  logits_dtype="f32", tiling="auto", workspace_budget=None,
                  tile_cache_bytes=0, max_scale=0.0) -> "_core.SigLIPParams":
    p = _core.SigLIPParams()
    p.batch, p.num_keys, p.dim = int(batch), int(num_keys), int(dim)
    p.scale, p.log_scale, p.bias = float(scale), bool(log_scale), float(bias)
    p.max_scale = float(max_scale)
    p.negatives_only = bool(negatives_only)
    p.similarity = _choice(_SIMILARITIES, "similarity", similarity)
    p.reduction = _choice(_REDUCTIONS, "reduction", reduction)
    p.positive_offset = int(positive_offset)
    p.eps = float(eps)
    p.allow_tf32 = bool(allow_tf32)
    p.tile_rows, p.tile_cols = int(tile_rows), int(tile_cols)
    p.dtype = dtype_of(dtype)
    p.logits_dtype = _choice(_DTYPES, "logits_dtype", logits_dtype)
    _set_tiling(p, tiling, workspace_budget, tile_cache_bytes)
    return p
