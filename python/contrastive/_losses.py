"""One description per loss: what every Python front end is built from.

A `Description` names a loss's inputs (and how many dimensions each has), the integer it infers
from their shapes (in-batch MNR's number of hard-negative blocks), its differentiable scalars (a
temperature or a scale first, then any other, such as SigLIP's bias; or none), its other options
with their defaults, how the library's params are built from the inputs' shapes, the shape of the
unreduced loss, and the loss's entry points in `contrastive._core`. `contrastive.torch` turns a
description into three custom operators with fake implementations and autograd;
`contrastive.cupy` turns it into an eager function (`_eager.py`) and `contrastive.jax` into XLA
custom calls. A new loss is one more description here (and its entry points in `_core`), not new
code in each front end.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Tuple

from contrastive import _core, _options

Shape = Sequence[int]


class Input(NamedTuple):
    """An input array: its name, its number of dimensions, and whether its first dimension is the
    batch B (the first input's rows). Every input's last dimension is D."""
    name: str
    dims: int
    batch_rows: bool = True


class Option(NamedTuple):
    """A keyword option: its name, its Python type (float, int, bool or str) and its default."""
    name: str
    type: type
    default: object


class Count(NamedTuple):
    """An integer the shapes imply and a caller may also give: infer(call, shapes) -> int, raising
    ValueError when the shapes allow none."""
    name: str
    infer: Callable[[str, Sequence[Shape]], int]


class Description(NamedTuple):
    """One loss, as every front end needs it."""
    name: str
    summary: str
    inputs: Tuple[Input, ...]
    counts: Tuple[Count, ...]
    # The scalars whose gradients the library computes, in the order of its scalar gradients:
    # the temperature or logit scale first, then any other (SigLIP's bias); () for none.
    scalars: Tuple[Option, ...]
    options: Tuple[Option, ...]
    # params(shapes, *counts, dtype=..., <scalars>=..., **options) -> the library's params object
    params: Callable
    # per_term(shapes) -> the loss's shape with reduction="none"
    per_term: Callable[[Sequence[Shape]], Tuple[int, ...]]
    check: Callable
    workspace_size: Callable
    saved_size: Callable
    forward: Callable
    backward: Callable
    forward_backward: Callable
    # Whether the library takes the scalars as device arrays too (keywords of the entry points
    # named as the scalars: a learnable temperature read on the device, without a host read).
    device_scalars: bool = False

    @property
    def scalar(self) -> Optional[Option]:
        """The temperature or logit scale (the first scalar), or None."""
        return self.scalars[0] if self.scalars else None

    def check_shapes(self, call: str, shapes: Sequence[Shape], counts: Sequence[int] = ()) -> None:
        """One D across the inputs, one B across the inputs that have B rows, and the shape the
        counts imply (before anything is allocated; the binding checks the same on real arrays)."""
        first = self.inputs[0].name
        for spec, shape in zip(self.inputs[1:], shapes[1:]):
            if shape[-1] != shapes[0][-1]:
                raise ValueError(f"{call}: {first} and {spec.name} must have one D (last "
                                 f"dimension), got {shapes[0][-1]} and {shape[-1]}")
            if spec.batch_rows and shape[0] != shapes[0][0]:
                raise ValueError(f"{call}: {first} and {spec.name} must have one B (first "
                                 f"dimension), got {shapes[0][0]} and {shape[0]}")
        for count, value in zip(self.counts, counts):
            if count.infer(call, shapes) != value:
                raise ValueError(f"{call}: {count.name}={value} does not match the shapes "
                                 f"{[tuple(shape) for shape in shapes]}")

    def infer_counts(self, call: str, shapes: Sequence[Shape], given: dict) -> Tuple[int, ...]:
        """Each count: the caller's value (checked against the shapes) or the one inferred."""
        counts = tuple(count.infer(call, shapes) if given.get(count.name) is None
                       else int(given[count.name]) for count in self.counts)
        self.check_shapes(call, shapes, counts)
        return counts

    def defaults(self) -> dict:
        """The keyword options and their defaults, the scalars first."""
        return {option.name: option.default for option in (*self.scalars, *self.options)}

    def validate(self, **values) -> None:
        """The library's own check of option values (a temperature > 0, a finite margin ...) on a
        one-row problem: what a module constructor runs, so that a bad value fails where it is
        given, with the library's message."""
        options = {**self.defaults(), **values}
        one_row = [(1,) * spec.dims for spec in self.inputs]
        counts = tuple(0 for _ in self.counts)
        self.check(self.params(one_row, *counts, dtype="f32", **options))


def _in_batch_blocks(call: str, shapes: Sequence[Shape]) -> int:
    """K for candidates [P; N_1; ...; N_K] of (1 + K) B rows."""
    batch, rows = shapes[0][0], shapes[1][0]
    if batch < 1 or rows < batch or rows % batch != 0:
        raise ValueError(f"{call}: candidates must have (1 + K) * B rows for B = {batch} "
                         f"anchors, got {rows}")
    return rows // batch - 1


_REDUCTION = Option("reduction", str, "mean")
_EPS = Option("eps", float, 1e-12)
_LOGITS_OPTIONS = (Option("allow_tf32", bool, False), Option("tile_rows", int, 0),
                   Option("tile_cols", int, 0), Option("logits_dtype", str, "f32"))
# The logit scale as a log (log_scale: the scalar holds theta, s = exp(theta), as CLIP trains its
# logit_scale) and its clamp (max_scale > 0: s = min(s, max_scale), no gradient where it clamps).
_MAX_SCALE = Option("max_scale", float, 0.0)
_SCALE_OPTIONS = (Option("log_scale", bool, False), _MAX_SCALE)

INFONCE = Description(
    name="infonce",
    summary="InfoNCE of queries q (B, D) against keys k (M, D), M >= B; row i's positive is key "
            "i + positive_offset. symmetric=True adds the column direction over the positives "
            "(CLIP's loss).",
    inputs=(Input("q", 2), Input("k", 2, batch_rows=False)),
    counts=(),
    scalars=(Option("temperature", float, 0.1),),
    options=(Option("similarity", str, "cosine"), Option("symmetric", bool, False), _REDUCTION,
             Option("positive_offset", int, 0), _EPS, *_LOGITS_OPTIONS, *_SCALE_OPTIONS),
    params=lambda shapes, **o: _options.infonce_params(shapes[0][0], shapes[1][0], shapes[0][1],
                                                       **o),
    per_term=lambda shapes: (shapes[0][0],),
    check=_core.infonce_check,
    workspace_size=_core.infonce_workspace_size,
    saved_size=_core.infonce_saved_size,
    forward=_core.infonce_forward,
    backward=_core.infonce_backward,
    forward_backward=_core.infonce_forward_backward,
    device_scalars=True)

MNR_PER_ANCHOR = Description(
    name="mnr_per_anchor",
    summary="MNR with per-anchor negatives: anchors (B, D), positives (B, D), negatives "
            "(B, n, D); row b ranks its positive against its own n negatives.",
    inputs=(Input("anchors", 2), Input("positives", 2), Input("negatives", 3)),
    counts=(),
    scalars=(Option("scale", float, 1.0),),
    options=(Option("similarity", str, "dot"), _REDUCTION, _EPS),
    params=lambda shapes, **o: _options.per_anchor_params(shapes[0][0], shapes[2][1],
                                                          shapes[0][1], **o),
    per_term=lambda shapes: (shapes[0][0],),
    check=_core.mnr_per_anchor_check,
    workspace_size=_core.mnr_per_anchor_workspace_size,
    saved_size=_core.mnr_per_anchor_saved_size,
    forward=_core.mnr_per_anchor_forward,
    backward=_core.mnr_per_anchor_backward,
    forward_backward=_core.mnr_per_anchor_forward_backward,
    device_scalars=True)

MNR_IN_BATCH = Description(
    name="mnr_in_batch",
    summary="In-batch MNR (sentence-transformers' MultipleNegativesRankingLoss): anchors (B, D) "
            "against candidates [P; N_1; ...; N_K] ((1 + K) B, D); anchor i's positive is "
            "candidate i and every candidate is a negative of the other anchors. K is inferred "
            "from the shapes when not given. symmetric=True adds the column direction over the "
            "positives (MultipleNegativesSymmetricRankingLoss).",
    inputs=(Input("anchors", 2), Input("candidates", 2, batch_rows=False)),
    counts=(Count("hard_negatives", _in_batch_blocks),),
    scalars=(Option("scale", float, 20.0),),
    options=(Option("similarity", str, "cosine"), Option("symmetric", bool, False), _REDUCTION,
             _EPS, *_LOGITS_OPTIONS, *_SCALE_OPTIONS),
    params=lambda shapes, hard_negatives, **o: _options.in_batch_params(
        shapes[0][0], hard_negatives, shapes[0][1], **o),
    per_term=lambda shapes: (shapes[0][0],),
    check=_core.mnr_in_batch_check,
    workspace_size=_core.mnr_in_batch_workspace_size,
    saved_size=_core.mnr_in_batch_saved_size,
    forward=_core.mnr_in_batch_forward,
    backward=_core.mnr_in_batch_backward,
    forward_backward=_core.mnr_in_batch_forward_backward,
    device_scalars=True)

REPEL = Description(
    name="repel",
    summary="Repel: anchors (B, D), negatives (B, N, D); the mean of "
            "max(cos(anchor_b, negative_bn) - margin, 0), or with mean_over_active the mean over "
            "the terms above the margin (0 when none is). The margin has no gradient.",
    inputs=(Input("anchors", 2), Input("negatives", 3)),
    counts=(),
    scalars=(),
    options=(Option("margin", float, 0.3), _REDUCTION, Option("mean_over_active", bool, False),
             _EPS),
    params=lambda shapes, **o: _options.repel_params(shapes[0][0], shapes[1][1], shapes[0][1],
                                                     **o),
    per_term=lambda shapes: (shapes[1][0], shapes[1][1]),
    check=_core.repel_check,
    workspace_size=_core.repel_workspace_size,
    saved_size=_core.repel_saved_size,
    forward=_core.repel_forward,
    backward=_core.repel_backward,
    forward_backward=_core.repel_forward_backward)

SIGLIP = Description(
    name="siglip",
    summary="SigLIP's pairwise sigmoid loss of queries q (B, D) against keys k (M, D), M >= B "
            "(M >= 1 with negatives_only): logits l_ij = t sim(q_i, k_j) + b with t the scale "
            "(scale holds log t with log_scale=True) and b the bias, label +1 for the positive "
            "key i + positive_offset and -1 elsewhere (every label -1 with negatives_only), row "
            "loss sum_j softplus(-label_ij l_ij); mean over the B rows (the paper's loss), sum, "
            "or per row with reduction=\"none\".",
    inputs=(Input("q", 2), Input("k", 2, batch_rows=False)),
    counts=(),
    scalars=(Option("scale", float, 10.0), Option("bias", float, -10.0)),
    options=(Option("log_scale", bool, False), Option("negatives_only", bool, False),
             Option("similarity", str, "cosine"), _REDUCTION, Option("positive_offset", int, 0),
             _EPS, *_LOGITS_OPTIONS, _MAX_SCALE),
    params=lambda shapes, **o: _options.siglip_params(shapes[0][0], shapes[1][0], shapes[0][1],
                                                      **o),
    per_term=lambda shapes: (shapes[0][0],),
    check=_core.siglip_check,
    workspace_size=_core.siglip_workspace_size,
    saved_size=_core.siglip_saved_size,
    forward=_core.siglip_forward,
    backward=_core.siglip_backward,
    forward_backward=_core.siglip_forward_backward,
    device_scalars=True)

ALL = (INFONCE, MNR_PER_ANCHOR, MNR_IN_BATCH, REPEL, SIGLIP)
