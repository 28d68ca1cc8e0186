"""PNG plots of compare.py's results (matplotlib's Agg canvas: no display, no pyplot state).

One file per loss and dtype, <stem>-<loss>-<dtype>.png: forward+backward time against B and peak
memory against B, one line per implementation and shape variant (D, or K, or N and D), only
measured points (a missing point is explained in the Markdown table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import plan, report

COLORS = {plan.EAGER: "tab:blue", plan.EAGER_NO_CAT: "tab:cyan", plan.COMPILE: "tab:orange",
          plan.ST: "tab:green",
          plan.LIBRARY: "tab:red", plan.LIBRARY_TILED: "tab:purple", "floor": "black"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")


def _series(entries: List[Dict]):
    """{(implementation, variant): [(B, median_ms, peak_bytes)]} of the measured results, and the
    floors {variant: [(B, floor_ms)]}."""
    series: Dict = {}
    floors: Dict = {}
    for entry in entries:
        case = plan.Case.from_dict(entry["case"])
        for name, result in entry["results"].items():
            if result.get("status") == report.OK and result.get("median_ms") is not None:
                series.setdefault((name, case.variant()), []).append(
                    (case.batch, result["median_ms"], result.get("peak_bytes")))
        if entry.get("floor"):
            floors.setdefault(case.variant(), []).append((case.batch, entry["floor"]["floor_ms"]))
    return series, floors


def _plot(results: Dict, loss: str, dtype: str, entries: List[Dict], path: Path) -> bool:
    series, floors = _series(entries)
    if not series:
        return False
    variants = sorted({variant for _, variant in series} | set(floors))
    try:
        figure = Figure(figsize=(12, 5), layout="constrained")
    except TypeError:  # matplotlib < 3.5
        figure = Figure(figsize=(12, 5), constrained_layout=True)
    FigureCanvasAgg(figure)
    time_axes, memory_axes = figure.subplots(1, 2)
    for (name, variant), points in sorted(series.items(), key=lambda item: (
            plan.IMPLEMENTATIONS.index(item[0][0]), item[0][1])):
        points.sort()
        index = variants.index(variant) % len(LINESTYLES)
        style = dict(color=COLORS[name], linestyle=LINESTYLES[index], marker=MARKERS[index])
        label = f"{plan.IMPLEMENTATION_TITLES[name]} {variant}".strip()
        time_axes.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)
        memory = [(p[0], p[2] / report.MIB) for p in points if p[2] is not None]
        if memory:
            memory_axes.plot([p[0] for p in memory], [p[1] for p in memory], label=label,
                             **style)
    for variant, points in sorted(floors.items()):
        points.sort()
        index = variants.index(variant) % len(LINESTYLES)
        time_axes.plot([p[0] for p in points], [p[1] for p in points], color=COLORS["floor"],
                       linestyle=LINESTYLES[index], marker="x",
                       label=f"floor (C++ run) {variant}".strip())
    card = results["meta"].get("card", "?")
    for axes, what in ((time_axes, "forward+backward, median ms"),
                       (memory_axes, "peak memory of the call, MiB")):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("batch B")
        axes.set_ylabel(what)
        axes.grid(True, which="both", alpha=0.3)
        if axes.has_data():
            axes.legend(fontsize=7)
    figure.suptitle(f"{plan.LOSS_TITLES[loss]}, {dtype}, {card}", fontsize=10)
    figure.savefig(path, dpi=100)
    return True


def write_plots(results: Dict, stem: Path) -> List[Path]:
    """Writes the PNGs beside <stem> (report.plot_paths: one per loss and dtype with a measured
    number); returns their paths."""
    paths = []
    for (loss, dtype), (path, entries) in report.plot_paths(results, stem).items():
        if _plot(results, loss, dtype, entries, path):
            paths.append(path)
    return paths
