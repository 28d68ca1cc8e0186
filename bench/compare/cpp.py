"""The floors measured by the C++ benchmarks, read from their Google Benchmark JSON output.

contrastive_bench_infonce and contrastive_bench_mnr time the library beside a cuBLAS-only floor
(counters median_ms, floor_ms, ratio_to_floor); contrastive_bench_mnr's per-anchor cases and
contrastive_bench_repel beside a device-to-device copy of the same bytes (median_ms, copy_ms,
bandwidth_fraction_of_copy). Run names look like
`infonce/forward_backward/bf16/B:4096/D:768/manual_time` or
`mnr/in_batch/forward_backward/f32/B:4096/K:1/D:768/manual_time`; only forward_backward runs
match compare.py's rows (it times forward + backward).
"""

from __future__ import annotations

import json
import statistics
from typing import Dict, Optional, Tuple

from . import plan

# The C++ benchmark families whose forward_backward runs correspond to compare.py's losses.
_FAMILIES = {
    ("infonce", "forward_backward"): "infonce",
    ("mnr", "in_batch", "forward_backward"): "mnr_in_batch",
    ("mnr", "per_anchor", "forward_backward"): "mnr_per_anchor",
    ("repel", "forward_backward"): "repel",
}
_CPP_DTYPES = {"f32": "fp32", "bf16": "bf16", "f16": "f16"}
# Name parts that are Google Benchmark's own, not shape arguments.
_RUN_OPTIONS = {"min_time", "min_warmup_time", "repeats", "iterations", "threads"}
_TIMERS = {"manual_time", "real_time", "process_time"}


def parse_name(name: str) -> Optional[Tuple[str, str, Tuple[Tuple[str, int], ...]]]:
    """(loss, dtype, ((arg, value), ...)) for a forward_backward run compare.py measures too, or
    None."""
    family, args = [], []
    for part in name.split("/"):
        if ":" in part:
            key, _, value = part.partition(":")
            if key in _RUN_OPTIONS:
                continue
            try:
                args.append((key, int(value)))
            except ValueError:
                return None
        elif part not in _TIMERS:
            family.append(part)
    if len(family) < 2 or family[-1] not in _CPP_DTYPES:
        return None
    loss = _FAMILIES.get(tuple(family[:-1]))
    if loss is None:
        return None
    return loss, _CPP_DTYPES[family[-1]], tuple(args)


def _key(loss: str, dtype: str, shape) -> Tuple:
    return (loss, dtype, tuple(sorted(dict(shape).items())))


def load_floors(path) -> Dict[Tuple, Dict]:
    """Floors by (loss, dtype, sorted shape items), from a Google Benchmark JSON file. Each is
    {"kind", "floor_ms", "cpp_median_ms", "cpp_ratio", "name", "source"}; repetitions of one run
    are summarized by their medians; runs that failed or are aggregates are left out."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    grouped: Dict[Tuple, list] = {}
    for run in data.get("benchmarks", []):
        if run.get("error_occurred") or run.get("run_type", "iteration") != "iteration":
            continue
        parsed = parse_name(str(run.get("name", "")))
        if parsed is None:
            continue
        loss, dtype, args = parsed
        if "floor_ms" in run:
            kind, floor, ratio = "cuBLAS GEMMs", run["floor_ms"], run.get("ratio_to_floor")
        elif "copy_ms" in run:
            kind, floor = "device copy", run["copy_ms"]
            fraction = run.get("bandwidth_fraction_of_copy")
            ratio = 1.0 / fraction if fraction else None  # library time / copy time
        else:
            continue
        grouped.setdefault(_key(loss, dtype, args), []).append(
            (kind, float(floor), run.get("median_ms"), ratio, run["name"]))
    floors = {}
    for key, runs in grouped.items():
        medians = [r[2] for r in runs if r[2] is not None]
        ratios = [r[3] for r in runs if r[3] is not None]
        floors[key] = {
            "kind": runs[0][0],
            "floor_ms": statistics.median(r[1] for r in runs),
            "cpp_median_ms": statistics.median(medians) if medians else None,
            "cpp_ratio": statistics.median(ratios) if ratios else None,
            "name": runs[0][4],
            "source": str(path),
        }
    return floors


def floor_for(floors: Dict[Tuple, Dict], case: plan.Case) -> Optional[Dict]:
    """The C++ floor of a case (CLIP's symmetric loss has no C++ counterpart)."""
    return floors.get(_key(case.loss, case.dtype, case.shape().items()))
