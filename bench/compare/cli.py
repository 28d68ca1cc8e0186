"""compare.py's command line and its top level: parse, then measure (compare.gpu, which imports
PyTorch), then write (compare.report). Parsing, --list and --from-json need no PyTorch."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from . import plan, report

# Exit statuses (also in --help).
EXIT_OK = 0  # results written; the library passed every check it ran
EXIT_LIBRARY_FAILED = 1  # results written, but the library failed a check or raised an error
EXIT_USAGE = 2  # bad arguments (argparse's own status)
EXIT_NO_GPU = 3  # no PyTorch, no CUDA device or no usable contrastive.torch: nothing written
EXIT_INTERRUPTED = 4  # SIGTERM or SIGINT while measuring: what was measured is written

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results"

DESCRIPTION = """\
Times forward + backward of each loss through PyTorch eager (the losses' textbook formulas),
torch.compile of the same functions, sentence-transformers' MultipleNegativesRankingLoss
(in-batch MNR) and contrastive.torch, at the same shapes and dtypes, on one CUDA device;
checks every implementation's loss and gradients against float64 before timing it; writes
<out>/<date>-<card>.md (tables, the performance targets met or missed), the raw .json beside it
and PNG plots (time and peak memory against B)."""

EPILOG = f"""\
losses: {", ".join(plan.LOSSES)} (or all)
dtypes: bf16, fp32 (f32 also accepted)

presets:
  full (default)  InfoNCE and CLIP at B in 1024, 4096, 16384, 32768 x D in 256, 768; in-batch
                  MNR at B in 4096, 16384 x K in 0, 1, 3, D 768; per-anchor MNR and Repel at
                  (B, N, D) in (4096, 64, 256), (16384, 64, 256); bf16 and fp32; {plan.FULL.warmup}
                  warm-up and up to {plan.FULL.repeats} timed runs per measurement
  --short         about a minute on an H100: bf16, InfoNCE at (1024, 256) and (4096, 768),
                  CLIP at (4096, 768) and (32768, 768), one shape for each other loss,
                  {plan.SHORT.warmup} warm-up and {plan.SHORT.repeats} timed rounds, torch.compile
                  once (InfoNCE at B = {plan.SHORT.compile_max_batch})
  --large         large batches: CLIP in bf16 at B in 16384, 32768, 65536, 131072 x D in 256,
                  768, where the baselines run out of memory (recorded) and contrastive tiles

exit status:
  {EXIT_OK}  results written; the library passed every check it ran
  {EXIT_LIBRARY_FAILED}  results written, but contrastive failed a correctness check or raised
  {EXIT_USAGE}  bad arguments
  {EXIT_NO_GPU}  no PyTorch, no CUDA device, or contrastive.torch unusable: nothing measured,
     nothing written (the message says which)
  {EXIT_INTERRUPTED}  SIGTERM or SIGINT while measuring: what was measured is written, the rest
     is marked not run (as is the rest after --time-budget, which exits 0 or 1)

Needs PyTorch, a CUDA device and the contrastive package (PYTHONPATH=build/release/python in a
build tree); sentence-transformers and matplotlib are optional. --help, --list and --from-json
need none of them."""


@dataclasses.dataclass(frozen=True)
class Config:
    preset: plan.Preset
    losses: Tuple[str, ...]
    dtypes: Tuple[str, ...]
    out: Path
    out_given: bool
    card: Optional[str]
    warmup: int
    repeats: int
    max_seconds: float
    compile_enabled: bool
    compile_max_batch: Optional[int]
    tile: int
    cpp_json: Optional[Tuple[Path, ...]]
    time_budget: Optional[float]
    seed: int
    list_only: bool
    from_json: Optional[Path]
    command: str

    def cases(self) -> List[plan.Case]:
        return plan.build_cases(self.preset, self.losses, self.dtypes, self.compile_enabled,
                                self.compile_max_batch)


def _choices(kind: str, names: Sequence[str], aliases=None):
    aliases = aliases or {name: name for name in names}

    def parse(text: str) -> Tuple[str, ...]:
        items = [item.strip().lower() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"no {kind} given")
        if items == ["all"]:
            return tuple(names)
        chosen = []
        for item in items:
            if item not in aliases:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {item!r} (choose from {', '.join(names)})")
            if aliases[item] not in chosen:
                chosen.append(aliases[item])
        return tuple(name for name in names if name in chosen)  # canonical order

    return parse


def _int_at_least(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    presets = parser.add_mutually_exclusive_group()
    presets.add_argument("--short", action="store_true",
                         help="the short preset (see below) instead of the full one")
    presets.add_argument("--large", action="store_true",
                         help="the large-batch preset (see below): CLIP in bf16 up to B = 131072")
    parser.add_argument("--losses", type=_choices("loss", plan.LOSSES), metavar="LIST",
                        help="comma-separated losses to run (default: all)")
    parser.add_argument("--dtypes", type=_choices("dtype", plan.DTYPES, plan.DTYPE_ALIASES),
                        metavar="LIST",
                        help="comma-separated dtypes (default: bf16,fp32; --short: bf16)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where the .md, .json and .png files go (default: bench/results)")
    parser.add_argument("--card", metavar="NAME",
                        help="the card's name in the report and file names "
                             "(default: torch.cuda.get_device_name())")
    parser.add_argument("--repeats", type=_int_at_least(3), metavar="N",
                        help=f"timed runs per measurement, at most (default {plan.FULL.repeats}, "
                             f"--short {plan.SHORT.repeats}); fewer (but at least "
                             f"{plan.MIN_RUNS}) when they would take over "
                             f"{plan.FULL.max_seconds:g} s ({plan.SHORT.max_seconds:g} s)")
    parser.add_argument("--warmup", type=_int_at_least(0), metavar="N",
                        help=f"untimed runs before timing (default {plan.FULL.warmup}, "
                             f"--short {plan.SHORT.warmup})")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave torch.compile out (its rows say skipped)")
    parser.add_argument("--compile-max-batch", type=_int_at_least(1), metavar="B",
                        help="torch.compile only at B <= this (default: every B; --short: "
                             f"{plan.SHORT.compile_max_batch})")
    parser.add_argument("--tile", type=_int_at_least(0), default=0, metavar="N",
                        help="also run contrastive with N x N logits tiles (tile_rows = "
                             "tile_cols = N) where the logits are larger than one tile "
                             "(InfoNCE, CLIP, in-batch MNR); 0, the default: no tiled rows")
    parser.add_argument("--cpp-json", type=_existing_file, metavar="FILE", action="append",
                        help="Google Benchmark JSON of contrastive_bench_infonce / _mnr / _repel "
                             "(--benchmark_out; repeat the flag for several files): their floors "
                             "go beside the matching rows, their copy-bandwidth shares decide the "
                             "bandwidth target; a truncated file gives what it holds")
    parser.add_argument("--time-budget", type=_positive_seconds, metavar="SECONDS",
                        help="start no new measurement after this many seconds; the rest is "
                             "reported as not run and the files are still written")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--list", action="store_true",
                        help="print the cases and implementations that would run, and exit")
    parser.add_argument("--from-json", type=_existing_file, metavar="FILE",
                        help="write the .md and plots again from a results .json of an earlier "
                             "run (no GPU needed; nothing is measured)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> Config:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    preset = plan.SHORT if args.short else (plan.LARGE if args.large else plan.FULL)
    return Config(
        preset=preset,
        losses=args.losses or plan.LOSSES,
        dtypes=args.dtypes or preset.dtypes,
        out=args.out if args.out is not None else DEFAULT_OUT,
        out_given=args.out is not None,
        card=args.card,
        warmup=preset.warmup if args.warmup is None else args.warmup,
        repeats=preset.repeats if args.repeats is None else args.repeats,
        max_seconds=preset.max_seconds,
        compile_enabled=not args.no_compile,
        compile_max_batch=args.compile_max_batch,
        tile=args.tile,
        cpp_json=tuple(args.cpp_json) if args.cpp_json else None,
        time_budget=args.time_budget,
        seed=args.seed,
        list_only=args.list,
        from_json=args.from_json,
        command=" ".join(shlex.quote(a) for a in ["bench/compare.py", *argv]),
    )


def describe_plan(config: Config) -> List[str]:
    lines = [f"preset {config.preset.name}: {len(config.cases())} cases, warm-up {config.warmup}, "
             f"up to {config.repeats} timed runs"]
    for case in config.cases():
        names = plan.implementations(case, config.tile)
        shown = [name if name != plan.COMPILE or case.compile else f"({name}: skipped)"
                 for name in names]
        lines.append(f"  {case.loss:15} {case.dtype:5} {case.label():22} {' '.join(shown)}")
    return lines


def _print_written(paths) -> None:
    print(f"compare: wrote {paths['markdown']}")
    print(f"compare: wrote {paths['json']}")
    for png in paths["plots"]:
        print(f"compare: wrote {png}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    config = parse_args(argv)
    if config.list_only:
        print("\n".join(describe_plan(config)))
        return EXIT_OK
    if config.from_json is not None:
        results = report.load_json(config.from_json)
        if config.out_given:  # new files there
            paths = report.write(results, config.out)
        else:  # the .md and plots again beside the .json, under its name
            stem = config.from_json.with_suffix("")
            paths = report.write(results, stem.parent, stem)
        _print_written(paths)
        return EXIT_OK

    try:
        from . import gpu  # PyTorch from here on
    except ImportError as error:
        print(f"compare: PyTorch cannot be imported ({error}): nothing measured, nothing "
              "written.", file=sys.stderr)
        return EXIT_NO_GPU
    problem = gpu.unavailable_reason()
    if problem:
        print(f"compare: {problem}: nothing measured, nothing written.", file=sys.stderr)
        return EXIT_NO_GPU
    results = gpu.run(config)
    # What was measured is written even when a timeout's SIGTERM arrives now (timeout(1) still
    # has SIGKILL); writing takes a second or two.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    paths = report.write(results, config.out)
    _print_written(paths)
    for line in report.summary_lines(results):
        print(f"compare: {line}")
    failures = report.library_failures(results)
    for failure in failures:
        print(f"compare: LIBRARY FAILURE: {failure}", file=sys.stderr)
    if failures:
        return EXIT_LIBRARY_FAILED
    return EXIT_INTERRUPTED if results["meta"].get("interrupted") else EXIT_OK
