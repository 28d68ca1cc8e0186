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
from typing import Dict, List, Optional, Tuple

from . import plan

# The C++ benchmark families whose forward_backward runs correspond to compare.py's losses.
_FAMILIES = {
    ("infonce", "forward_backward"): "infonce",
    ("mnr", "in_batch", "forward_backward"): "mnr_in_batch",
    ("mnr", "per_anchor", "forward_backward"): "mnr_per_anchor",
    ("repel", "forward_backward"): "repel",
    ("siglip", "forward_backward"): "siglip",
}
_CPP_DTYPES = {"f32": "fp32", "bf16": "bf16", "f16": "f16"}
# Name parts that are Google Benchmark's own, not shape arguments.
_RUN_OPTIONS = {"min_time", "min_warmup_time", "repeats", "iterations", "threads"}
_TIMERS = {"manual_time", "real_time", "process_time"}


def _split(name: str) -> Optional[Tuple[List[str], Dict[str, int], str]]:
    """A run name as its family parts (the dtype excluded), its shape arguments in order and its
    dtype ("fp32", "bf16", "f16"), Google Benchmark's own parts left out; None when an argument is
    not an integer or the name has no dtype part."""
    family, args = [], {}
    for part in name.split("/"):
        if ":" in part:
            key, _, value = part.partition(":")
            if key in _RUN_OPTIONS:
                continue
            try:
                args[key] = int(value)
            except ValueError:
                return None
        elif part not in _TIMERS:
            family.append(part)
    if len(family) < 2 or family[-1] not in _CPP_DTYPES:
        return None
    return family[:-1], args, _CPP_DTYPES[family[-1]]


def parse_name(name: str) -> Optional[Tuple[str, str, Tuple[Tuple[str, int], ...]]]:
    """(loss, dtype, ((arg, value), ...)) for a forward_backward run compare.py measures too, or
    None."""
    split = _split(name)
    if split is None:
        return None
    family, args, dtype = split
    loss = _FAMILIES.get(tuple(family))
    if loss is None:
        return None
    return loss, dtype, tuple(args.items())


def parse_run(name: str) -> Optional[Dict]:
    """Any run name of the C++ benchmarks as {"family", "operation", "dtype", "shape"}
    ("repel", "forward", "bf16", {"B": 8192, "N": 127, "D": 768}), or None when it has no
    dtype part. operation is None for families without one (infonce_clip has it before the
    path: "infonce_clip/forward_backward/tiled/bf16")."""
    split = _split(name)
    if split is None:
        return None
    family, args, dtype = split
    operations = [p for p in family if p in ("forward", "backward", "forward_backward")]
    return {"family": "/".join(p for p in family if p not in operations),
            "operation": operations[0] if operations else None,
            "dtype": dtype, "shape": args}


def read_benchmarks(path) -> Tuple[List[Dict], Optional[str]]:
    """The "benchmarks" entries of a Google Benchmark JSON file, and a problem or None. A file
    cut short (the process was killed while writing) gives every entry written before the cut and
    the problem "truncated"; a file that cannot be read or parsed at all gives [] and why."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as error:
        return [], f"unreadable ({error.strerror or error})"
    try:
        data = json.loads(text)
    except ValueError:
        pass
    else:
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks", []), list):
            return [], "not a Google Benchmark JSON file"
        return [run for run in data.get("benchmarks", []) if isinstance(run, dict)], None
    # Truncated: decode the complete entries of the "benchmarks" array one at a time.
    at = text.find('"benchmarks"')
    at = text.find("[", at) if at >= 0 else -1
    if at < 0:
        return [], "truncated before any benchmark entry (not valid JSON)"
    decoder, runs, at = json.JSONDecoder(), [], at + 1
    while True:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        if at >= len(text) or text[at] != "{":
            break
        try:
            run, at = decoder.raw_decode(text, at)
        except ValueError:
            break
        if isinstance(run, dict):
            runs.append(run)
    return runs, f"truncated (not valid JSON): {len(runs)} complete entries kept"


def _key(loss: str, dtype: str, shape) -> Tuple:
    return (loss, dtype, tuple(sorted(dict(shape).items())))


def _as_paths(paths) -> List:
    if paths is None:
        return []
    if isinstance(paths, (str, bytes)) or not isinstance(paths, (list, tuple)):
        return [paths]
    return list(paths)


def load(paths) -> Dict:
    """Everything compare.py takes from the C++ benchmark JSON files (one path or several):
    {"floors": as load_floors, "runs": [every measured forward_backward / forward run with its
    family, operation, dtype, shape and counters], "sources": [{"path", "entries", "problem"}]}.
    A file that cannot be read, or only in part (a killed run), is noted in its source entry and
    gives what it holds: never an exception."""
    grouped: Dict[Tuple, list] = {}
    runs, sources = [], []
    for path in _as_paths(paths):
        entries, problem = read_benchmarks(path)
        sources.append({"path": str(path), "entries": len(entries), "problem": problem})
        for run in entries:
            if run.get("error_occurred") or run.get("run_type", "iteration") != "iteration":
                continue
            name = str(run.get("name", ""))
            described = parse_run(name)
            if described is not None:
                counters = {key: run[key] for key in (
                    "median_ms", "floor_ms", "ratio_to_floor", "copy_ms", "read_ms",
                    "bandwidth_fraction_of_copy", "bytes_moved", "unfused_ms",
                    "ratio_to_unfused", "reference_rows") if isinstance(run.get(key), (int, float))}
                runs.append({"name": name, "source": str(path), **described, **counters})
            parsed = parse_name(name)
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
                (kind, float(floor), run.get("median_ms"), ratio, name, str(path)))
    floors = {}
    for key, entries in grouped.items():
        medians = [r[2] for r in entries if r[2] is not None]
        ratios = [r[3] for r in entries if r[3] is not None]
        floors[key] = {
            "kind": entries[0][0],
            "floor_ms": statistics.median(r[1] for r in entries),
            "cpp_median_ms": statistics.median(medians) if medians else None,
            "cpp_ratio": statistics.median(ratios) if ratios else None,
            "name": entries[0][4],
            "source": entries[0][5],
        }
    return {"floors": floors, "runs": runs, "sources": sources}


def load_floors(paths) -> Dict[Tuple, Dict]:
    """Floors by (loss, dtype, sorted shape items), from Google Benchmark JSON files (one path or
    several). Each is {"kind", "floor_ms", "cpp_median_ms", "cpp_ratio", "name", "source"}: the
    floor and the library as one C++ process measured them, side by side; repetitions of one run
    are summarized by their medians; runs that failed or are aggregates are left out, and so is a
    file that cannot be read (see load for why)."""
    return load(paths)["floors"]


def floor_for(floors: Dict[Tuple, Dict], case: plan.Case) -> Optional[Dict]:
    """The C++ floor of a case (CLIP's symmetric loss has no C++ counterpart)."""
    return floors.get(_key(case.loss, case.dtype, case.shape().items()))


# ---- The summary gpu-check.sh prints for each benchmark file ------------------------------------


def summarize(path, shown: int = 40) -> List[str]:
    """Line 1: "N runs, E with errors[, O out of memory][, truncated ...]"; then one line per
    error (at most 3) and per measured run (at most `shown`). Never raises."""
    entries, problem = read_benchmarks(path)
    entries = [r for r in entries if r.get("run_type", "iteration") == "iteration"]
    oom = [r for r in entries if r.get("error_occurred")
           and str(r.get("error_message", "")).startswith("out of memory")]
    errors = [r for r in entries if r.get("error_occurred") and r not in oom]
    first = f"{len(entries)} runs, {len(errors)} with errors"
    if oom:
        first += f", {len(oom)} out of memory"
    if problem:
        first += f"; {problem}"
    lines = [first]
    for run in errors[:3]:
        lines.append(f"    {str(run.get('name'))[:60]:60} ERROR "
                     f"{str(run.get('error_message', ''))[:70]}")
    if len(errors) > 3:
        lines.append(f"    ... {len(errors) - 3} more errors")
    good = [r for r in entries if not r.get("error_occurred")]
    for run in good[:shown]:
        extra = ""
        for key, label in (("ratio_to_floor", "x floor"),
                           ("bandwidth_fraction_of_copy", "of the floor's bandwidth")):
            if isinstance(run.get(key), (int, float)):
                extra += f"  {run[key]:.3g} {label}"
        median = run.get("median_ms", run.get("real_time"))
        median_text = f"{median:10.4g} ms" if isinstance(median, (int, float)) else " " * 13
        lines.append(f"    {str(run.get('name'))[:60]:60} {median_text}{extra}")
    if len(good) > shown:
        lines.append(f"    ... {len(good) - shown} more")
    return lines


def main(argv=None) -> int:
    """python3 -m compare.cpp summarize FILE (from bench/): summarize()'s lines."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "summarize":
        print("usage: python3 -m compare.cpp summarize FILE", file=sys.stderr)
        return 2
    print("\n".join(summarize(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
