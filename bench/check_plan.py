#!/usr/bin/env python3
"""The time plan of scripts/gpu-check.sh: its steps in order, each step's cap (the most it may
take) and minimum (the least it needs), for the two modes and the --long variant.

    python3 bench/check_plan.py MODE BUDGET [--long]     # MODE: bench-first | checks-first

prints shell assignments the script evaluates, one step a line, in run order:

    STEPS="configure build bench_infonce ..."
    CAP_build=240 MIN_build=60 KEEP_build=190 OPTIONAL_build=0

KEEP_<step> is what the step must leave for the steps after it: the sum of their minimums
(optional steps have none: they run only in what is left). The script gives a step
min(CAP, seconds left - KEEP) and SKIPs an optional step when that is under its MIN; so no step,
however long it runs, takes the time the benchmarks and compare.py need, and every step that
must run gets at least its minimum as long as the ones before it stay within their caps.
Exit status 1 (with the reason on stderr) when the minimums do not fit the budget.

simulate() replays the script's rule in Python, for the tests (bench/tests/test_check_plan.py).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Dict, List, Optional, Sequence

MODES = ("bench-first", "checks-first")
DEFAULT_BUDGET = {False: 450, True: 570}  # seconds; --long: True
SUMMARY_SECONDS = 5  # kept after the last step for the summary and the file size checks


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    cap: int  # seconds at most
    minimum: int  # seconds at least (an optional step: the least worth starting it with)
    optional: bool = False  # run only in what the later steps' minimums leave


# The benchmarks, one process per binary (a timeout loses that binary's JSON only), and compare.
_NUMBERS = (
    Step("bench_infonce", 45, 20),
    Step("bench_mnr", 45, 20),
    Step("bench_repel", 30, 15),
    Step("bench_siglip", 25, 10),
    Step("compare", 90, 45),
)
_NUMBERS_LONG = (
    Step("bench_infonce", 150, 30),
    Step("bench_mnr", 150, 30),
    Step("bench_repel", 100, 20),
    Step("bench_siglip", 100, 20),
    Step("compare", 240, 60),
)
# build: what the numbers need (benchmarks, Python module, demo); build_tests: the test binaries.
_CONFIGURE = Step("configure", 60, 20)
_BUILD_NUMBERS = Step("build", 180, 45)
_BUILD_TESTS = Step("build_tests", 180, 30)
# tests: the GPU test binaries (sharded), the API binaries, the Python GPU tests, the README
# examples; demo: the demo's GPU path.
_TESTS = (Step("tests", 120, 40), Step("demo", 20, 5))
_SANITIZERS = (
    Step("memcheck", 100, 30),
    Step("selftest", 20, 10),
    Step("racecheck", 40, 15, optional=True),
    Step("initcheck", 25, 15, optional=True),
    Step("synccheck", 20, 15, optional=True),
)
_SANITIZERS_LONG = (
    Step("memcheck", 150, 30),
    Step("selftest", 20, 10),
    Step("racecheck", 120, 15, optional=True),
    Step("initcheck", 90, 15, optional=True),
    Step("synccheck", 60, 15, optional=True),
)
# Every step name the script knows, in any mode (the ones a mode leaves out are reported SKIP).
ALL_STEPS = tuple(s.name for s in (_CONFIGURE, _BUILD_NUMBERS, _BUILD_TESTS) + _NUMBERS + _TESTS
                  + _SANITIZERS)


def plan(mode: str, long: bool = False) -> List[Step]:
    """The steps of a mode in run order. bench-first: build what the numbers need, the benchmarks
    and compare.py, then build the tests and run them and the demo, no sanitizers (a run that must
    bring numbers). checks-first: build the tests, run them, the demo and the sanitizers, then build
    and run the benchmarks and compare.py in their reserved time."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    numbers = _NUMBERS_LONG if long else _NUMBERS
    if mode == "bench-first":
        return [_CONFIGURE, _BUILD_NUMBERS, *numbers, _BUILD_TESTS, *_TESTS]
    sanitizers = _SANITIZERS_LONG if long else _SANITIZERS
    return [_CONFIGURE, _BUILD_TESTS, *_TESTS, *sanitizers, _BUILD_NUMBERS, *numbers]


def keeps(steps: Sequence[Step]) -> Dict[str, int]:
    """What each step leaves for the later ones: their minimums (optional ones: none), plus the
    summary's seconds."""
    out, later = {}, SUMMARY_SECONDS
    for step in reversed(steps):
        out[step.name] = later
        if not step.optional:
            later += step.minimum
    return out


def problems(steps: Sequence[Step], budget: int) -> List[str]:
    """Why the plan cannot work in `budget` seconds ([] when it can)."""
    needed = SUMMARY_SECONDS + sum(s.minimum for s in steps if not s.optional)
    found = []
    if needed > budget:
        found.append(f"the steps' minimums need {needed} s, over the {budget} s budget")
    for step in steps:
        if step.minimum > step.cap:
            found.append(f"{step.name}: minimum {step.minimum} s over its cap {step.cap} s")
    return found


def step_timeout(cap: float, keep: float, left: float) -> int:
    """The script's rule: min(cap, left - keep) in whole seconds, 0 when under 5 (no time)."""
    t = int(min(cap, left - keep))
    return t if t >= 5 else 0


def simulate(steps: Sequence[Step], budget: float,
             durations: Optional[Dict[str, float]] = None) -> Dict[str, Dict]:
    """Replays the script on `steps`: each step runs for durations[name] seconds (default: its
    whole timeout) cut to the timeout it is given. Returns, per step, {"timeout", "ran",
    "status"}: "ran", "timed out", "skipped" (optional, under its minimum) or "no time"."""
    durations = durations or {}
    keep = keeps(steps)
    left = float(budget)
    out = {}
    for step in steps:
        t = step_timeout(step.cap, keep[step.name], left)
        if t < (step.minimum if step.optional else 1):
            out[step.name] = {"timeout": t, "ran": 0.0,
                              "status": "skipped" if step.optional else "no time"}
            continue
        wanted = durations.get(step.name, float(t))
        ran = min(wanted, float(t))
        out[step.name] = {"timeout": t, "ran": ran,
                          "status": "timed out" if wanted >= t else "ran"}
        left -= ran
    return out


def shell(steps: Sequence[Step]) -> str:
    keep = keeps(steps)
    lines = [f'STEPS="{" ".join(s.name for s in steps)}"']
    for step in steps:
        lines.append(f"CAP_{step.name}={step.cap} MIN_{step.name}={step.minimum} "
                     f"KEEP_{step.name}={keep[step.name]} "
                     f"OPTIONAL_{step.name}={int(step.optional)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    long = "--long" in args
    args = [a for a in args if a != "--long"]
    if len(args) != 2 or args[0] not in MODES or not args[1].isdigit():
        print("usage: check_plan.py bench-first|checks-first BUDGET_SECONDS [--long]",
              file=sys.stderr)
        return 2
    steps = plan(args[0], long)
    found = problems(steps, int(args[1]))
    if found:
        print("check_plan: " + "; ".join(found), file=sys.stderr)
        return 1
    print(shell(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
