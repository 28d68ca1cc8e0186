"""The inputs every implementation gets: structured like embeddings, not independent noise.

Each tower's rows are noise plus a shared direction (real embeddings are anisotropic), positives
and keys lean towards their anchor and hard negatives less so, and Repel's negatives towards their
anchor by as much as makes about half the terms cross the margin. With independent random rows
the softmax is nearly flat and symmetric in rows and columns, so a check could not tell CLIP's
loss from one-direction InfoNCE (their gradients differ by 0.1 %) and Repel would have almost no
active term; on these inputs they differ by tens of percent. Timings do not depend on the values.

Written over a `randn(shape)` function (NumPy's or torch's), so the CPU tests use the same code.
"""

from __future__ import annotations

import math
from typing import Callable, List

from . import plan

SHARED = 0.5  # weight of a tower's shared direction in each row (times a per-row normal)
POSITIVE = 0.5  # weight of the anchor in its positive (key)
HARD = 0.3  # weight of the anchor in each of its hard negatives
# Repel's negatives are z + c u: their cosine with u is about c / sqrt(1 + c^2) = 0.3, the margin.
REPEL_CORRELATION = 0.3145


def structured_inputs(case: plan.Case, randn: Callable) -> List:
    """The case's inputs (plan.input_names order), unrounded, rows of about unit norm."""
    batch, dim = case.batch, case.dim
    scale = 1.0 / math.sqrt(dim)

    def noise(shape):
        return randn(shape) * scale

    def rows(shape, direction):
        return noise(shape) + SHARED * randn(tuple(shape[:-1]) + (1,)) * direction

    if case.loss == "repel":
        anchors = noise((batch, dim))
        negatives = noise((batch, case.negatives, dim)) + REPEL_CORRELATION * anchors[:, None, :]
        return [anchors, negatives]
    anchor_direction, candidate_direction = noise((dim,)), noise((dim,))
    anchors = rows((batch, dim), anchor_direction)
    positives = POSITIVE * anchors + rows((batch, dim), candidate_direction)
    if case.loss in ("infonce", "clip", "siglip"):
        return [anchors, positives]
    if case.loss == "mnr_in_batch":
        return [anchors, positives] + [HARD * anchors + rows((batch, dim), candidate_direction)
                                       for _ in range(case.hard_negatives)]
    if case.loss == "mnr_per_anchor":
        negatives = (HARD * anchors[:, None, :]
                     + rows((batch, case.negatives, dim), candidate_direction))
        return [anchors, positives, negatives]
    raise ValueError(f"unknown loss {case.loss!r}")
