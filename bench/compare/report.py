"""compare.py's results: the raw JSON, the Markdown report with the performance targets, file
names.

The writer only formats what the results structure holds: measured times and memory (and the
C++ floors read from a file the run was given); where something was not measured, the row says
why (out of memory, check failed, not installed, skipped, not run).

Results structure (what the JSON holds):

    {"schema": SCHEMA,
     "meta": {"card": ..., "date": "YYYY-MM-DD", ...},          # the run: card, versions, method
     "cpp": {"runs": [...], "sources": [...]} or None,        # cpp.load of --cpp-json files
     "cases": [{"case": plan.Case.to_dict(),
                "check_case": plan.Case.to_dict(),             # where the float64 check ran
                "floor": cpp floor dict or None,
                "results": {implementation: {
                    "status": "ok" | "check failed" | "out of memory" | "not installed"
                              | "skipped" | "error" | "not run",
                    "reason": str,                              # when not ok
                    "median_ms", "p10_ms", "p90_ms", "runs",    # when ok
                    "peak_bytes",                               # when ok
                    "compile_s",                                # torch.compile, when compiled
                    "check": formulas.judge(...) dict}}}]}      # when it ran
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import plan

SCHEMA = "contrastive-compare/1"
OK, CHECK_FAILED, OOM, NOT_INSTALLED, SKIPPED, ERROR, NOT_RUN = (
    "ok", "check failed", "out of memory", "not installed", "skipped", "error", "not run")
MIB = 1024.0 * 1024.0


# ---- Targets --------------------------------------------------------------------------------

# The performance targets (docs/benchmarks.md), forward + backward: InfoNCE (and its symmetric
# CLIP form) at B >= 4096, large batches (CLIP, B >= 32768: the tiled path), and the per-anchor
# losses' share of the copy bandwidth (from the C++ benchmarks).
TARGETS = (
    {"id": "speed_vs_eager", "baseline": plan.EAGER, "metric": "speedup", "required": 2.0,
     "losses": ("infonce", "clip"), "min_batch": 4096,
     "text": "InfoNCE forward+backward at B ≥ 4096 at least 2× faster than PyTorch eager"},
    {"id": "speed_vs_compile", "baseline": plan.COMPILE, "metric": "speedup", "required": 1.2,
     "losses": ("infonce", "clip"), "min_batch": 4096,
     "text": "InfoNCE forward+backward at B ≥ 4096 at least 1.2× faster than torch.compile"},
    {"id": "memory_vs_eager", "baseline": plan.EAGER, "metric": "memory", "required": 0.25,
     "losses": ("infonce", "clip"), "min_batch": 4096,
     "text": "InfoNCE peak loss memory at B ≥ 4096 at most 1/4 of PyTorch eager's"},
    {"id": "large_memory_vs_eager", "baseline": plan.EAGER, "metric": "memory", "required": 0.01,
     "losses": ("clip",), "min_batch": 32768,
     "text": "Large batches (CLIP, B ≥ 32768): peak loss memory at most 1/100 of PyTorch eager's"},
    {"id": "large_speed_vs_compile", "baseline": plan.COMPILE, "metric": "speedup",
     "required": 1.0, "losses": ("clip",), "min_batch": 32768,
     "text": "Large batches (CLIP, B ≥ 32768): faster than torch.compile"},
    # From the C++ benchmarks (one process times the library and the copy side by side).
    {"id": "bandwidth_vs_copy", "baseline": None, "metric": "bandwidth", "required": 0.8,
     "families": ("repel", "mnr/per_anchor"), "operation": "forward_backward",
     "text": "Repel and per-anchor MNR forward+backward at ≥ 80 % of the device copy's bandwidth "
             "(C++ benchmark: the copy of the same bytes timed in the same process)"},
)
MET, MISSED, NOT_EVALUATED = "met", "missed", "not evaluated"


def _measured(result: Optional[Dict]) -> bool:
    return bool(result) and result.get("status") == OK and result.get("median_ms") is not None


def _target_value(target: Dict, library: Dict, baseline: Dict) -> Optional[float]:
    if target["metric"] == "speedup":
        return baseline["median_ms"] / library["median_ms"]
    if library.get("peak_bytes") is None or not baseline.get("peak_bytes"):
        return None
    return library["peak_bytes"] / baseline["peak_bytes"]


def _case_label(case: plan.Case) -> str:
    return f"{plan.SHORT_NAMES[case.loss]} {case.dtype} {case.label()}"


def evaluate_targets(results: Dict) -> List[Dict]:
    """One verdict per target and library variant measured at the target's shapes:
    {"id", "text", "variant", "status", "required", "worst", "worst_case", "evaluated", "met",
    "unmeasured": [labels where the library or the baseline has no number], "summary"}."""
    verdicts = []
    cases = [(plan.Case.from_dict(entry["case"]), entry["results"]) for entry in results["cases"]]
    for target in TARGETS:
        if target["metric"] == "bandwidth":
            verdicts.append(_bandwidth_verdict(target, results.get("cpp")))
            continue
        relevant = [(case, res) for case, res in cases
                    if case.loss in target["losses"] and case.batch >= target["min_batch"]]
        variants = [v for v in plan.LIBRARY_VARIANTS if any(v in res for _, res in relevant)]
        for variant in variants or [plan.LIBRARY]:
            values, unmeasured = [], []
            for case, res in relevant:
                if variant not in res:
                    continue
                library, baseline = res.get(variant), res.get(target["baseline"])
                if not _measured(library) or not _measured(baseline):
                    why = []
                    for name, result in ((variant, library), (target["baseline"], baseline)):
                        if not _measured(result):
                            status = (result or {}).get("status", "absent")
                            why.append(f"{plan.IMPLEMENTATION_TITLES[name]} {status}")
                    unmeasured.append(f"{_case_label(case)} ({', '.join(why)})")
                    continue
                value = _target_value(target, library, baseline)
                if value is None:
                    unmeasured.append(f"{_case_label(case)} (no memory figure)")
                else:
                    values.append((value, case))
            verdicts.append(_verdict(target, variant, values, unmeasured))
    return verdicts


def _bandwidth_verdict(target: Dict, cpp_results: Optional[Dict]) -> Dict:
    """The copy-bandwidth target over the C++ runs (compare's "cpp" entry: cpp.load's runs and
    sources), or NOT EVALUATED with the reason."""
    runs = (cpp_results or {}).get("runs", [])
    values, unmeasured = [], []
    for run in runs:
        if run.get("family") not in target["families"] or \
                run.get("operation") != target["operation"]:
            continue
        fraction = run.get("bandwidth_fraction_of_copy")
        label = f"{run['family']} {run['dtype']} " + " ".join(
            f"{key}={value}" for key, value in run.get("shape", {}).items())
        if isinstance(fraction, (int, float)) and fraction > 0:
            values.append((float(fraction), label))
        else:
            unmeasured.append(f"{label} (no bandwidth_fraction_of_copy)")
    verdict = {"id": target["id"], "text": target["text"], "variant": plan.LIBRARY,
               "required": target["required"], "evaluated": len(values),
               "unmeasured": unmeasured, "worst": None, "worst_case": None, "met": 0}
    if not values:
        if cpp_results is None or not cpp_results.get("sources"):
            why = "no C++ benchmark JSON given (--cpp-json)"
        else:
            problems = [f"{Path(s['path']).name}: {s['problem']}"
                        for s in cpp_results["sources"] if s.get("problem")]
            why = ("the C++ JSON holds no measured forward_backward run of Repel or per-anchor "
                   "MNR" + (f" ({'; '.join(problems)})" if problems else ""))
        verdict.update(status=NOT_EVALUATED, reason=why, summary=f"NOT EVALUATED: {why}")
        return verdict
    worst, worst_case = min(values, key=lambda v: v[0])
    met = sum(1 for value, _ in values if value >= target["required"])
    ok = worst >= target["required"]
    verdict.update(status=MET if ok else MISSED, worst=worst, worst_case=worst_case, met=met)
    verdict["summary"] = (f"{'MET' if ok else 'MISSED'}: worst {worst:.0%} of the copy's "
                          f"bandwidth at {worst_case} (required {target['required']:.0%}); met "
                          f"in {met} of {len(values)} runs")
    return verdict


def relevant_shapes_note(target: Dict) -> str:
    """What a run needs to evaluate a target it had no case for."""
    losses = "/".join(plan.SHORT_NAMES[loss] for loss in target.get("losses", ()))
    return f"this run measured no {losses} case at B ≥ {target.get('min_batch')}"


def _verdict(target: Dict, variant: str, values, unmeasured) -> Dict:
    required = target["required"]
    higher_is_better = target["metric"] == "speedup"
    verdict = {"id": target["id"], "text": target["text"], "variant": variant,
               "required": required, "evaluated": len(values), "unmeasured": unmeasured,
               "worst": None, "worst_case": None, "met": 0}
    if not values:
        verdict["status"] = NOT_EVALUATED
        why = (f"no case at B ≥ {target['min_batch']} where both "
               f"{plan.IMPLEMENTATION_TITLES[variant]} and "
               f"{plan.IMPLEMENTATION_TITLES[target['baseline']]} were measured")
        if unmeasured:
            why += f" ({'; '.join(unmeasured[:3])})"
        else:
            why += f": {relevant_shapes_note(target)}"
        verdict["reason"] = why
        verdict["summary"] = f"NOT EVALUATED: {why}"
        return verdict
    if higher_is_better:
        worst, worst_case = min(values, key=lambda v: v[0])
        met = sum(1 for value, _ in values if value >= required)
        ok = worst >= required
        margin = worst / required - 1.0
        amount = (f"worst {worst:.2f}× at {_case_label(worst_case)}, "
                  f"{abs(margin) * 100:.0f}% {'above' if ok else 'short of'} the {required:g}×")
    else:
        worst, worst_case = max(values, key=lambda v: v[0])
        met = sum(1 for value, _ in values if value <= required)
        ok = worst <= required
        amount = (f"worst {worst:.3f} of eager's at {_case_label(worst_case)}, "
                  + (f"{(1 - worst / required) * 100:.0f}% under the {required:g} allowed" if ok
                     else f"{worst / required:.2f}× the {required:g} allowed"))
    verdict.update(status=MET if ok else MISSED, worst=worst, worst_case=_case_label(worst_case),
                   met=met)
    verdict["summary"] = (f"{'MET' if ok else 'MISSED'}: {amount}; met in {met} of "
                          f"{len(values)} cases")
    return verdict


# ---- Formatting -------------------------------------------------------------------------------


def format_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_mib(value_bytes: Optional[float]) -> str:
    if value_bytes is None:
        return ""
    mib = value_bytes / MIB
    return f"{mib:.0f}" if mib >= 10 else f"{mib:.1f}"


def _ratio(numerator: Optional[float], denominator: Optional[float], suffix: str = "×") -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return ""
    return f"{numerator / denominator:.2f}{suffix}"


def _status_text(result: Dict) -> str:
    status = result.get("status", "absent")
    reason = result.get("reason")
    return f"{status}: {reason}" if reason else status


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _check_text(result: Dict, case: plan.Case, check_case: Optional[plan.Case]) -> str:
    check = result.get("check")
    if not check:
        return ""
    where = ""
    if check_case is not None and check_case.batch != case.batch:
        where = f" at B={check_case.batch}"
    if check.get("tile"):
        where += f", tiles {check['tile']}×{check['tile']}"
    if check.get("passed"):
        # float(): a non-finite value comes back from the JSON as a string
        worst = max((float(g["relative"]) for g in check.get("grads", {}).values()), default=0.0)
        return f"ok{where} (grad err {worst:.1e})"
    return f"FAILED{where}: {check.get('message', '')}"


def _row(case, check_case, name, result, baselines, floor) -> List[str]:
    title = plan.IMPLEMENTATION_TITLES[name]
    if name == plan.LIBRARY_TILED and result.get("tile"):
        title = f"contrastive, tiles {result['tile']}×{result['tile']}"
    notes = []
    if result.get("compile_s") is not None:
        notes.append(f"first call (compilation) {result['compile_s']:.1f} s")
    if result.get("detail"):
        notes.append(result["detail"])
    if _measured(result):
        time = (f"{format_ms(result['median_ms'])} ({format_ms(result['p10_ms'])}–"
                f"{format_ms(result['p90_ms'])}), {result['runs']} runs")
        median = result["median_ms"]
        speedups = [_ratio(baselines[b]["median_ms"], median) if _measured(baselines.get(b))
                    else "" for b in baselines["order"]]
        to_floor = ""  # a time from this process over a floor from another: not a ratio
        peak = format_mib(result.get("peak_bytes"))
        eager = baselines.get(plan.EAGER)
        peak_ratio = (_ratio(result.get("peak_bytes"), eager.get("peak_bytes"), "")
                      if _measured(eager) and result.get("peak_bytes") is not None else "")
    else:
        time = _status_text(result)
        speedups = ["" for _ in baselines["order"]]
        to_floor = peak = peak_ratio = ""
    return [case.dtype, case.label(), title, time, *speedups, to_floor, peak, peak_ratio,
            _check_text(result, case, check_case), "; ".join(notes)]


def _loss_table(loss: str, entries: List[Dict]) -> List[str]:
    order = [b for b in plan.BASELINES
             if any(b in entry["results"] for entry in entries)]
    headers = (["dtype", "shape", "implementation", "fwd+bwd ms: median (p10–p90)"]
               + [f"speedup vs {plan.IMPLEMENTATION_TITLES[b]}" for b in order]
               + ["C++: library ÷ floor, same process", "peak MiB", "peak ÷ eager's",
                  "check vs float64", "notes"])
    lines = [f"## {plan.LOSS_TITLES[loss]}", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for entry in entries:
        case = plan.Case.from_dict(entry["case"])
        check_case = (plan.Case.from_dict(entry["check_case"]) if entry.get("check_case")
                      else None)
        results = entry["results"]
        baselines = {b: results.get(b) for b in order}
        baselines["order"] = order
        floor = entry.get("floor")
        for name in plan.IMPLEMENTATIONS:
            if name in results:
                row = _row(case, check_case, name, results[name], baselines, floor)
                lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        if floor:
            cpp, ratio = "", ""
            if floor.get("cpp_median_ms") is not None and floor.get("cpp_ratio") is not None:
                cpp = (f"C++ benchmark of the library: {format_ms(floor['cpp_median_ms'])} ms, "
                       f"{floor['cpp_ratio']:.2f}× floor")
                ratio = f"{floor['cpp_ratio']:.2f}×"
            row = ([case.dtype, case.label(), f"floor ({floor['kind']}, C++ run)",
                    format_ms(floor["floor_ms"])] + ["" for _ in order]
                   + [ratio, "", "", "", cpp])
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    lines.append("")
    return lines


def _meta_lines(meta: Dict) -> List[str]:
    rows = [
        ("card", meta.get("card_detail") or meta.get("card")),
        ("software", meta.get("software")),
        ("commit", meta.get("commit")),
        ("command", f"`{meta['command']}`" if meta.get("command") else None),
        ("preset", meta.get("preset_detail") or meta.get("preset")),
        ("timing", meta.get("timing")),
        ("memory", meta.get("memory")),
        ("inputs", meta.get("inputs")),
        ("check", meta.get("check")),
        ("floor", meta.get("floor")),
        ("baselines", meta.get("baselines")),
        ("GPU state", meta.get("gpu_state")),
        ("run", meta.get("run")),
    ]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in rows if value]
    return lines


def render_markdown(results: Dict, plot_names: Sequence[str] = (),
                    plot_note: Optional[str] = None) -> str:
    meta = results["meta"]
    lines = [f"# contrastive vs PyTorch, forward + backward: {meta.get('card', '?')}, "
             f"{meta.get('date', '?')}", "",
             "Written by `bench/compare.py`. Every time and memory figure here was measured in "
             "this run on this card; the floor rows come from the C++ benchmark JSON named below "
             "(none when none was given), and their ratio is the C++ process's own (library and "
             "floor timed side by side there), never a time from here over a floor from there. "
             "Where an implementation has no number, its row says why.", ""]
    lines += _meta_lines(meta)
    stops = sorted({result.get("reason") or "?" for entry in results["cases"]
                    for result in entry["results"].values()
                    if result.get("status") == NOT_RUN})
    if stops:
        lines += ["", f"**Run stopped early: {'; '.join(stops)}.** The measurements after that "
                  "point are marked `not run`."]
    lines += ["", "## Targets (reported, not asserted)", ""]
    for verdict in evaluate_targets(results):
        variant = plan.IMPLEMENTATION_TITLES[verdict["variant"]]
        lines.append(f"- {verdict['text']} ({variant}): **{verdict['summary']}**.")
        if verdict["unmeasured"]:
            shown = "; ".join(verdict["unmeasured"][:6])
            more = len(verdict["unmeasured"]) - 6
            lines.append(f"  Not counted (no pair of numbers): {shown}"
                         + (f"; and {more} more" if more > 0 else "") + ".")
    lines += ["", "Speedup vs X = X's median time ÷ this row's (above 1: this row is faster). "
              "÷ floor = this row's median ÷ the floor's. peak ÷ eager's = this row's peak "
              "memory ÷ PyTorch eager's on the same case.", ""]
    by_loss: Dict[str, List[Dict]] = {}
    for entry in results["cases"]:
        by_loss.setdefault(entry["case"]["loss"], []).append(entry)
    for loss in plan.LOSSES:
        if loss in by_loss:
            lines += _loss_table(loss, by_loss[loss])
    if plot_names or plot_note:
        lines += ["## Plots", ""]
        if plot_note:
            lines += [plot_note, ""]
        lines += [f"![{name}]({name})" for name in plot_names]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def summary_lines(results: Dict) -> List[str]:
    """A few lines for stdout: counts and the targets."""
    counts: Dict[str, int] = {}
    for entry in results["cases"]:
        for result in entry["results"].values():
            counts[result.get("status", "?")] = counts.get(result.get("status", "?"), 0) + 1
    lines = [f"measurements: {len(results['cases'])} cases; "
             + ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))]
    compact = []
    for verdict in evaluate_targets(results):
        lines.append(f"target {verdict['id']} ({verdict['variant']}): {verdict['summary']}")
        name = verdict["id"] + ("" if verdict["variant"] == plan.LIBRARY else "/tiled")
        worst = verdict["worst"]
        compact.append(f"{name} {verdict['status'].upper()}"
                       + ("" if worst is None else f" {worst:.2f}"))
    lines.append("targets: " + "; ".join(compact))  # one line for scripts (gpu-check.sh)
    return lines


def library_failures(results: Dict) -> List[str]:
    """Cases where the library itself failed its check or raised (not out of memory)."""
    failures = []
    for entry in results["cases"]:
        case = plan.Case.from_dict(entry["case"])
        for name in plan.LIBRARY_VARIANTS:
            result = entry["results"].get(name)
            if result and result.get("status") in (CHECK_FAILED, ERROR):
                failures.append(f"{_case_label(case)} {name}: {_status_text(result)}"
                                + (f" ({result['check']['message']})"
                                   if result.get("check") and not result["check"]["passed"]
                                   else ""))
    return failures


# ---- Files ------------------------------------------------------------------------------------


def card_slug(card: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-")
    return slug or "unknown-card"


def output_stem(out_dir: Path, date: str, card: str) -> Path:
    """<out>/<date>-<card>, or with -2, -3 ... when files of that name exist (never overwrites)."""
    base = f"{date}-{card_slug(card)}"
    stem, number = out_dir / base, 1
    while any(stem.with_name(stem.name + suffix).exists() for suffix in (".md", ".json")):
        number += 1
        stem = out_dir / f"{base}-{number}"
    return stem


def _json_safe(value):
    """Non-finite floats as strings (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dump_json(results: Dict) -> str:
    return json.dumps(_json_safe(results), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def load_json(path) -> Dict:
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    if results.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a compare.py results file (schema "
                         f"{results.get('schema')!r}, expected {SCHEMA!r})")
    return results


def plot_paths(results: Dict, stem: Path) -> Dict:
    """{(loss, dtype): (<stem>-<loss>-<dtype>.png, its cases)} for each loss and dtype with at
    least one measured time: the plots that plots.write_plots draws."""
    groups: Dict = {}
    for entry in results["cases"]:
        groups.setdefault((entry["case"]["loss"], entry["case"]["dtype"]), []).append(entry)
    paths = {}
    for loss in plan.LOSSES:
        for dtype in plan.DTYPES:
            entries = groups.get((loss, dtype), [])
            if any(_measured(r) for entry in entries for r in entry["results"].values()):
                paths[(loss, dtype)] = (stem.with_name(f"{stem.name}-{loss}-{dtype}.png"),
                                        entries)
    return paths


def write(results: Dict, out_dir, stem: Optional[Path] = None) -> Dict[str, object]:
    """Writes <stem>.json, <stem>.md and the PNG plots, in that order (the most important file
    first); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = results["meta"]
    if stem is None:
        stem = output_stem(out_dir, meta.get("date", "undated"), meta.get("card", "unknown"))
    json_path = stem.with_name(stem.name + ".json")
    json_path.write_text(dump_json(results), encoding="utf-8")
    try:
        from . import plots
        plot_note, expected = None, [p for p, _ in plot_paths(results, stem).values()]
    except ImportError as error:  # matplotlib missing: the tables are complete without plots
        plots, plot_note, expected = None, f"Plots not drawn: {error}.", []
    md_path = stem.with_name(stem.name + ".md")
    md_path.write_text(render_markdown(results, [p.name for p in expected], plot_note),
                       encoding="utf-8")
    pngs = plots.write_plots(results, stem) if plots else []
    return {"json": json_path, "markdown": md_path, "plots": pngs}
