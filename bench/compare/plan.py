"""What compare.py measures: the losses, their settings, the shapes of each preset, which
implementations run on which case, and the smaller shape a case's correctness check runs at."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

LOSSES = ("infonce", "clip", "mnr_in_batch", "mnr_per_anchor", "repel", "siglip")
DTYPES = ("bf16", "fp32")
DTYPE_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp32": "fp32", "f32": "fp32",
                 "float32": "fp32"}

# The settings every implementation runs with (the library's defaults, those of the C++ benchmarks
# and of sentence-transformers' defaults).
TEMPERATURE = 0.1  # InfoNCE and CLIP: cosine, logits = cos / temperature, mean over rows
IN_BATCH_SCALE = 20.0  # in-batch MNR: cosine, logits = 20 cos (MultipleNegativesRankingLoss)
PER_ANCHOR_SCALE = 1.0  # per-anchor MNR: dot product, scale 1 (the library's default)
MARGIN = 0.3  # Repel: mean of relu(cos - 0.3)
# SigLIP at open_clip's initialization: logits = 10 cos + (-10), mean over rows of the sum of
# softplus(-z logit) (z = +1 on the diagonal, -1 elsewhere).
SIGLIP_SCALE = 10.0
SIGLIP_BIAS = -10.0
EPS = 1e-12  # F.normalize's eps, the library's default
# The losses over a B x M logits matrix (the library's logits engine: materialized or tiled).
LOGITS_LOSSES = ("infonce", "clip", "mnr_in_batch", "siglip")

LOSS_TITLES = {
    "infonce": "InfoNCE (cosine, temperature 0.1, mean)",
    "clip": "CLIP symmetric InfoNCE (cosine, temperature 0.1, mean of both directions)",
    "mnr_in_batch": "In-batch MNR with K hard-negative blocks (cosine, scale 20)",
    "mnr_per_anchor": "Per-anchor MNR, N negatives per anchor (dot product, scale 1)",
    "repel": "Repel (mean of relu(cos - 0.3)), N negatives per anchor",
    "siglip": "SigLIP sigmoid loss (cosine, logits 10 cos - 10, sum over pairs / B)",
}
SHORT_NAMES = {"infonce": "InfoNCE", "clip": "CLIP", "mnr_in_batch": "in-batch MNR",
               "mnr_per_anchor": "per-anchor MNR", "repel": "Repel",
               "siglip": "SigLIP"}

# Implementations, in table order. The baselines are what every ratio refers to; per-anchor MNR
# has a second eager form that scores the positive and the negatives apart instead of copying them
# into one (B, 1 + N, D) tensor with torch.cat (the textbook form), so that eager is not charged for
# a copy the loss does not need.
EAGER, EAGER_NO_CAT, COMPILE, ST, LIBRARY, LIBRARY_TILED = (
    "eager", "eager_no_cat", "compile", "sentence_transformers", "contrastive",
    "contrastive_tiled")
IMPLEMENTATIONS = (EAGER, EAGER_NO_CAT, COMPILE, ST, LIBRARY, LIBRARY_TILED)
BASELINES = (EAGER, EAGER_NO_CAT, COMPILE, ST)
LIBRARY_VARIANTS = (LIBRARY, LIBRARY_TILED)
IMPLEMENTATION_TITLES = {
    EAGER: "PyTorch eager",
    EAGER_NO_CAT: "PyTorch eager, no cat",
    COMPILE: "torch.compile",
    ST: "sentence-transformers",
    LIBRARY: "contrastive",
    LIBRARY_TILED: "contrastive, tiled",
}

# Check shapes: the float64 reference (on the GPU, with the whole logits matrix or all B N D
# products in float64) runs at the case's shape when it has at most this many elements, else at
# the largest B / 2^j that fits (the other dimensions unchanged).
CHECK_ELEMENTS = 1 << 27

# The library's Tiling::kAuto: the materialized path while its workspace (the B x M fp32 logits
# and more) fits this budget (kDefaultWorkspaceBudget, 4 GiB), the tiled path beyond it.
LIBRARY_WORKSPACE_BUDGET = 4 << 30
LOGITS_TILE_BYTES = 4  # the fp32 logits tile
# Where the timed shape tiles but its check shape would not, the check forces tiles of
# (check B) / CHECK_TILE_SPLIT rows and columns: the same tiled walk (per-tile lse merge, logits
# recomputed in backward) as the timed call, at a shape the float64 reference can hold.
CHECK_TILE_SPLIT = 4


@dataclasses.dataclass(frozen=True)
class Case:
    """One loss at one shape and dtype. hard_negatives is K (in-batch MNR); negatives is N
    (per-anchor MNR, Repel); compile says whether torch.compile runs on it."""

    loss: str
    dtype: str
    batch: int
    dim: int
    hard_negatives: int = 0
    negatives: int = 0
    compile: bool = True

    @property
    def keys(self) -> int:
        """M, the columns of the logits (InfoNCE, CLIP, in-batch MNR)."""
        return (1 + self.hard_negatives) * self.batch

    def shape(self) -> Dict[str, int]:
        """The shape parameters, in the C++ benchmarks' names (B, K, N, D)."""
        if self.loss == "mnr_in_batch":
            return {"B": self.batch, "K": self.hard_negatives, "D": self.dim}
        if self.loss in ("mnr_per_anchor", "repel"):
            return {"B": self.batch, "N": self.negatives, "D": self.dim}
        return {"B": self.batch, "D": self.dim}

    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.shape().items())

    def variant(self) -> str:
        """The shape without B: one line of a time-vs-B plot."""
        return " ".join(f"{key}={value}" for key, value in self.shape().items() if key != "B")

    def key(self) -> Tuple:
        return (self.loss, self.dtype, tuple(self.shape().items()))

    def elements(self) -> int:
        """The size of the float64 reference's largest array."""
        if self.loss in ("mnr_per_anchor", "repel"):
            return self.batch * (self.negatives + 1) * self.dim
        return self.batch * self.keys

    def check_case(self, limit: Optional[int] = None) -> "Case":
        """The shape the float64 check runs at: B halved until the reference's largest array
        holds at most `limit` (default CHECK_ELEMENTS) elements."""
        limit = CHECK_ELEMENTS if limit is None else limit
        case = self
        while case.batch > 1 and case.elements() > limit:
            case = dataclasses.replace(case, batch=case.batch // 2)
        return case

    def library_tiles(self) -> bool:
        """Whether the library's default (Tiling::kAuto) takes the tiled path at this shape:
        a loss over logits whose materialized B x M fp32 logits alone reach the workspace
        budget (the rest of the workspace only adds to it)."""
        return (self.loss in LOGITS_LOSSES
                and self.batch * self.keys * LOGITS_TILE_BYTES >= LIBRARY_WORKSPACE_BUDGET)

    def check_tile(self) -> int:
        """The tile (rows = columns) the library's check runs with: 0 (its default) unless the
        timed shape tiles and the check shape would not; then (check B) / CHECK_TILE_SPLIT, so
        that the check exercises the path that is timed."""
        check = self.check_case()
        if not self.library_tiles() or check.library_tiles():
            return 0
        return max(1, check.batch // CHECK_TILE_SPLIT)

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: Dict) -> "Case":
        return Case(**data)


def _infonce_shapes(batches, dims):
    return [dict(batch=b, dim=d) for b in batches for d in dims]


FULL_SHAPES = {
    "infonce": _infonce_shapes((1024, 4096, 16384, 32768), (256, 768)),
    "clip": _infonce_shapes((1024, 4096, 16384, 32768), (256, 768)),
    "mnr_in_batch": [dict(batch=b, hard_negatives=k, dim=768) for b in (4096, 16384)
                     for k in (0, 1, 3)],
    "mnr_per_anchor": [dict(batch=b, negatives=64, dim=256) for b in (4096, 16384)],
    "repel": [dict(batch=b, negatives=64, dim=256) for b in (4096, 16384)],
    "siglip": _infonce_shapes((4096, 16384, 32768), (768,)),
}
SHORT_SHAPES = {
    "infonce": [dict(batch=1024, dim=256), dict(batch=4096, dim=768)],
    # B = 32768: the library tiles there, so the large-batch memory target is evaluated too.
    "clip": [dict(batch=4096, dim=768), dict(batch=32768, dim=768)],
    "mnr_in_batch": [dict(batch=4096, hard_negatives=1, dim=768)],
    "mnr_per_anchor": [dict(batch=4096, negatives=64, dim=256)],
    "repel": [dict(batch=4096, negatives=64, dim=256)],
    "siglip": [dict(batch=16384, dim=768)],
}


# Large batches (the tiled path): CLIP's symmetric loss in bf16 up to B = 131072, where the
# baselines run out of memory (recorded as such) and the library's kAuto tiles.
LARGE_SHAPES = {
    "clip": _infonce_shapes((16384, 32768, 65536, 131072), (256, 768)),
}


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    shapes: Dict[str, List[Dict[str, int]]]
    dtypes: Tuple[str, ...]
    warmup: int
    repeats: int
    warmup_seconds: float  # and warm-up rounds go on until this much time has passed
    max_seconds: float  # per implementation: fewer timed runs (at least MIN_RUNS) past this
    compile_max_batch: Optional[int]  # torch.compile only at B <= this (None: everywhere)
    compile_losses: Optional[Tuple[str, ...]] = None  # and only on these losses (None: all)
    compile_min_batch: Optional[int] = None  # and only at B >= this (None: from the smallest)


MIN_RUNS = 5
FULL = Preset("full", FULL_SHAPES, DTYPES, warmup=10, repeats=100, warmup_seconds=1.0,
              max_seconds=3.0,
              compile_max_batch=None)
# About a minute on an H100: one dtype, one shape per loss (two for InfoNCE), torch.compile once:
# InfoNCE at B = 4096, where its targets start (each compilation costs seconds).
SHORT = Preset("short", SHORT_SHAPES, ("bf16",), warmup=3, repeats=20, warmup_seconds=0.25,
               max_seconds=0.5, compile_max_batch=4096, compile_losses=("infonce",),
               compile_min_batch=4096)
LARGE = Preset("large", LARGE_SHAPES, ("bf16",), warmup=2, repeats=10, warmup_seconds=0.5,
               max_seconds=3.0,
               compile_max_batch=None)


def build_cases(preset: Preset, losses, dtypes, compile_enabled: bool = True,
                compile_max_batch: Optional[int] = None) -> List[Case]:
    """The cases in run order: loss, then dtype, then shape (ascending B)."""
    limit = preset.compile_max_batch if compile_max_batch is None else compile_max_batch
    compiled_losses = preset.compile_losses if compile_max_batch is None else None
    smallest = preset.compile_min_batch if compile_max_batch is None else None
    cases = []
    for loss in losses:
        for dtype in dtypes:
            shapes = preset.shapes.get(loss, [])  # a preset may leave a loss out
            for shape in sorted(shapes, key=lambda s: (s["batch"], sorted(s.items()))):
                compiled = (compile_enabled and (limit is None or shape["batch"] <= limit)
                            and (smallest is None or shape["batch"] >= smallest)
                            and (compiled_losses is None or loss in compiled_losses))
                cases.append(Case(loss=loss, dtype=dtype, compile=compiled, **shape))
    return cases


def tiled(case: Case, tile: int) -> bool:
    """Whether the tiled library variant runs: a logits loss whose B x M matrix is larger than
    one tile x tile tile (otherwise it is the default single tile again)."""
    return (tile > 0 and case.loss in LOGITS_LOSSES
            and case.batch * case.keys > tile * tile)


def implementations(case: Case, tile: int) -> List[str]:
    """The implementations measured on a case, in table order."""
    names = [EAGER]
    if case.loss == "mnr_per_anchor":
        names.append(EAGER_NO_CAT)
    names.append(COMPILE)
    if case.loss == "mnr_in_batch":
        names.append(ST)
    names.append(LIBRARY)
    if tiled(case, tile):
        names.append(LIBRARY_TILED)
    return names


def measurement_order(names: List[str]) -> List[str]:
    """The order implementations are set up, checked and first timed in: the library first, so
    that a time budget that runs out cuts the baselines' rows, not the library's."""
    return ([name for name in names if name in LIBRARY_VARIANTS]
            + [name for name in names if name not in LIBRARY_VARIANTS])


def input_names(case: Case) -> List[str]:
    """The leaves of a case, in the order every implementation takes them."""
    if case.loss in ("infonce", "clip", "siglip"):
        return ["q", "k"]
    if case.loss == "mnr_in_batch":
        return ["anchors", "positives"] + [f"negatives_{i + 1}" for i in
                                           range(case.hard_negatives)]
    if case.loss == "mnr_per_anchor":
        return ["anchors", "positives", "negatives"]
    return ["anchors", "negatives"]


def input_names_for(loss: str, count: int) -> List[str]:
    """input_names from the loss and the number of inputs (in-batch MNR: 2 + K)."""
    return input_names(Case(loss=loss, dtype="fp32", batch=1, dim=1,
                            hard_negatives=max(0, count - 2) if loss == "mnr_in_batch" else 0))


def input_shapes(case: Case) -> List[Tuple[int, ...]]:
    b, d = case.batch, case.dim
    if case.loss in ("infonce", "clip", "siglip"):
        return [(b, d), (b, d)]
    if case.loss == "mnr_in_batch":
        return [(b, d)] * (2 + case.hard_negatives)
    if case.loss == "mnr_per_anchor":
        return [(b, d), (b, d), (b, case.negatives, d)]
    return [(b, d), (b, case.negatives, d)]


def input_elements(case: Case) -> int:
    total = 0
    for shape in input_shapes(case):
        count = 1
        for size in shape:
            count *= size
        total += count
    return total


DTYPE_BYTES = {"bf16": 2, "fp32": 4}
