"""The parts of the first GPU run that can be tested without a GPU: gpu-check.sh's time plan
(bench/check_plan.py), the benchmark JSON reader (truncated files), the library's own check
tolerance and the tiled check shape, the measuring order, the targets' verdicts with and without
numbers (the copy-bandwidth target from the C++ JSON), and the floors only as same-process ratios.

Run: python3 -m pytest -q bench/tests
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

import check_plan  # noqa: E402
from compare import cli, cpp, formulas, plan, report  # noqa: E402


# ---- gpu-check.sh's time plan --------------------------------------------------------------------


@pytest.mark.parametrize("mode", check_plan.MODES)
@pytest.mark.parametrize("long", [False, True])
def test_the_minimums_fit_the_default_budget(mode, long):
    steps = check_plan.plan(mode, long)
    assert check_plan.problems(steps, check_plan.DEFAULT_BUDGET[long]) == []
    names = [s.name for s in steps]
    for needed in ("configure", "build", "build_tests", "bench_infonce", "bench_mnr",
                   "bench_repel", "bench_siglip", "compare", "tests", "demo"):
        assert needed in names
    assert set(names) <= set(check_plan.ALL_STEPS)


def test_bench_first_runs_the_numbers_before_the_tests_and_no_sanitizer():
    names = [s.name for s in check_plan.plan("bench-first")]
    assert names.index("build") < names.index("compare") < names.index("build_tests") \
        < names.index("tests")
    assert not {"memcheck", "racecheck", "initcheck", "synccheck"} & set(names)
    checks = [s.name for s in check_plan.plan("checks-first")]
    assert checks.index("build_tests") < checks.index("tests") < checks.index("memcheck") \
        < checks.index("build") < checks.index("bench_infonce")


@pytest.mark.parametrize("mode", check_plan.MODES)
def test_every_step_taking_its_whole_cap_leaves_the_numbers_their_minimums(mode):
    """The review's case: every earlier step (sanitizers included) runs to its timeout; the
    benchmarks and compare.py still get at least their minimums, compare.py included."""
    steps = check_plan.plan(mode)
    run = check_plan.simulate(steps, check_plan.DEFAULT_BUDGET[False])
    minimum = {s.name: s.minimum for s in steps}
    for name in ("bench_infonce", "bench_mnr", "bench_repel", "bench_siglip", "compare"):
        assert run[name]["timeout"] >= minimum[name], (name, run[name])
    for step in steps:
        if not step.optional:
            assert run[step.name]["status"] != "no time", step.name
    spent = sum(r["ran"] for r in run.values())
    assert spent <= check_plan.DEFAULT_BUDGET[False] - check_plan.SUMMARY_SECONDS


def test_optional_sanitizers_only_run_in_what_the_reserve_leaves():
    steps = check_plan.plan("checks-first")
    # A slow build and slow tests: the optional sanitizers are skipped, the numbers are not.
    run = check_plan.simulate(steps, 450, {"build_tests": 180, "tests": 120, "memcheck": 100})
    assert run["racecheck"]["status"] == "skipped"
    assert run["compare"]["status"] != "no time" and run["compare"]["timeout"] >= 45
    keep = check_plan.keeps(steps)
    assert keep["racecheck"] == keep["synccheck"]  # optional steps reserve nothing
    assert keep["compare"] == check_plan.SUMMARY_SECONDS


def test_a_fast_run_gives_each_step_its_cap():
    steps = check_plan.plan("bench-first")
    run = check_plan.simulate(steps, 450, {s.name: 1 for s in steps})
    assert all(r["status"] == "ran" and r["timeout"] == s.cap for s, r in
               zip(steps, run.values()))


def test_the_plan_as_shell_and_its_errors():
    done = subprocess.run([sys.executable, str(BENCH / "check_plan.py"), "bench-first", "450"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith('STEPS="configure build bench_infonce')
    # After compare: build_tests 30, tests 40, demo 5 and the summary's 5 seconds.
    assert "CAP_compare=90 MIN_compare=45 KEEP_compare=80 OPTIONAL_compare=0" in lines
    too_small = subprocess.run([sys.executable, str(BENCH / "check_plan.py"), "checks-first",
                                "100"], capture_output=True, text=True, timeout=60)
    assert too_small.returncode == 1 and "over the 100 s budget" in too_small.stderr
    bad = subprocess.run([sys.executable, str(BENCH / "check_plan.py"), "fast", "450"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert check_plan.step_timeout(100, 50, 120) == 70
    assert check_plan.step_timeout(100, 50, 54) == 0  # under 5 s: no time


# ---- Benchmark JSON: truncated files -------------------------------------------------------------

RUNS = [
    {"name": "repel/forward_backward/bf16/B:8192/N:127/D:768/iterations:1/manual_time",
     "run_type": "iteration", "median_ms": 2.0, "copy_ms": 1.7,
     "bandwidth_fraction_of_copy": 0.85, "bytes_moved": 3.2e9, "reference_rows": 8},
    {"name": "mnr/per_anchor/forward_backward/f32/B:8192/N:16/D:384/iterations:1/manual_time",
     "run_type": "iteration", "median_ms": 1.0, "copy_ms": 0.7,
     "bandwidth_fraction_of_copy": 0.7},
    {"name": "repel/forward/bf16/B:8192/N:1/D:384/iterations:1/manual_time",
     "run_type": "iteration", "median_ms": 0.05, "read_ms": 0.045,
     "bandwidth_fraction_of_copy": 0.9},
    {"name": "infonce/forward_backward/bf16/B:4096/D:768/iterations:1/manual_time",
     "run_type": "iteration", "median_ms": 1.2, "floor_ms": 0.8, "ratio_to_floor": 1.5},
]


def write_json(path, runs, cut=None):
    text = json.dumps({"context": {"gpu": "NVIDIA H200"}, "benchmarks": runs}, indent=2)
    path.write_text(text if cut is None else text[:cut])
    return path


def test_a_truncated_benchmark_file_keeps_its_complete_entries(tmp_path):
    full = write_json(tmp_path / "full.json", RUNS)
    text = full.read_text()
    cut = text.index('"name": "infonce/') - 10  # inside the fourth entry
    path = write_json(tmp_path / "cut.json", RUNS, cut)
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())
    entries, problem = cpp.read_benchmarks(path)
    assert [e["name"] for e in entries] == [r["name"] for r in RUNS[:3]]
    assert problem.startswith("truncated") and "3 complete entries" in problem
    loaded = cpp.load([path])
    assert len(loaded["runs"]) == 3 and loaded["sources"][0]["problem"] == problem
    floors = cpp.load_floors(path)  # never JSONDecodeError
    assert len(floors) == 2
    summary = cpp.summarize(path)
    assert summary[0].startswith("3 runs, 0 with errors; truncated")


@pytest.mark.parametrize("content", ["", '{"context": {"gpu": "x"}, "benchm', "not json at all",
                                     "[1, 2, 3]"])
def test_an_unreadable_benchmark_file_is_no_floor(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    entries, problem = cpp.read_benchmarks(path)
    assert entries == [] and problem
    assert cpp.load_floors(path) == {}
    assert cpp.load([path, tmp_path / "missing.json"])["sources"][1]["problem"].startswith(
        "unreadable")


def test_run_names_with_the_iteration_count():
    described = cpp.parse_run(RUNS[0]["name"])
    assert described == {"family": "repel", "operation": "forward_backward", "dtype": "bf16",
                         "shape": {"B": 8192, "N": 127, "D": 768}}
    assert cpp.parse_run("infonce_clip/forward_backward/tiled/bf16/B:32768/D:768/iterations:1/"
                         "manual_time")["family"] == "infonce_clip/tiled"
    assert cpp.parse_name(RUNS[3]["name"]) == ("infonce", "bf16", (("B", 4096), ("D", 768)))


def test_the_summarize_command(tmp_path):
    path = write_json(tmp_path / "b.json", RUNS + [
        {"name": "repel/forward/f32/B:1/N:1/D:1/iterations:1/manual_time",
         "run_type": "iteration", "error_occurred": True,
         "error_message": "reference check: loss term[0] = 1, reference 2"}])
    done = subprocess.run([sys.executable, "-m", "compare.cpp", "summarize", str(path)],
                          capture_output=True, text=True, cwd=BENCH, timeout=60)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == "5 runs, 1 with errors"
    assert "reference check" in done.stdout and "0.85 of the floor's bandwidth" in done.stdout


# ---- The library's check: its tolerance and the path it checks -----------------------------------


def test_the_library_is_held_to_its_own_bf16_tolerance():
    library = formulas.tolerance_for(plan.LIBRARY, "bf16")
    tiled = formulas.tolerance_for(plan.LIBRARY_TILED, "bf16")
    baseline = formulas.tolerance_for(plan.EAGER, "bf16")
    assert library == tiled and library.grad <= baseline.grad / 5
    assert formulas.tolerance_for(plan.LIBRARY, "fp32") == formulas.TOLERANCES["fp32"]
    # A tenfold regression of the library's expected bf16 error (a few 2^-9 of the largest
    # gradient entry) fails the library's check but would pass the baselines'.
    regressed = 10 * 4 * 2.0 ** -9
    grads = [("q", regressed, 1.0)]
    assert not formulas.judge("bf16", 1.0, 1.0, grads, library)["passed"]
    assert formulas.judge("bf16", 1.0, 1.0, grads)["passed"]
    assert formulas.judge("bf16", 1.0, 1.0, [("q", 4 * 2.0 ** -9, 1.0)], library)["passed"]
    verdict = formulas.judge("bf16", 1.0, 1.0, grads, library)
    assert verdict["grad_tolerance"] == library.grad


def test_the_check_runs_on_the_path_the_timed_shape_takes():
    small = plan.Case("infonce", "bf16", 4096, 768)
    assert not small.library_tiles() and small.check_tile() == 0
    tiled = plan.Case("clip", "bf16", 32768, 768)
    assert tiled.library_tiles()
    check = tiled.check_case()
    assert check.batch == 8192 and not check.library_tiles()
    assert tiled.check_tile() == 8192 // plan.CHECK_TILE_SPLIT  # forced tiles at the check
    assert plan.Case("clip", "bf16", 16384, 768).check_tile() == 0  # materialized when timed
    in_batch = plan.Case("mnr_in_batch", "bf16", 16384, 768, hard_negatives=3)
    assert in_batch.library_tiles() and in_batch.check_tile() == 1024
    assert plan.Case("repel", "bf16", 16384, 256, negatives=64).check_tile() == 0
    for case in cli.parse_args(["--large"]).cases():
        if case.batch >= 32768:
            assert case.check_tile() > 0, case


def test_the_library_is_measured_first():
    case = plan.Case("mnr_per_anchor", "bf16", 4096, 256, negatives=64)
    names = plan.implementations(case, 0)
    assert names == ["eager", "eager_no_cat", "compile", "contrastive"]
    assert plan.measurement_order(names) == ["contrastive", "eager", "eager_no_cat", "compile"]
    tiled = plan.implementations(plan.Case("infonce", "bf16", 4096, 768), 1024)
    assert plan.measurement_order(tiled)[:2] == ["contrastive", "contrastive_tiled"]


def test_the_short_set_can_evaluate_the_compile_target():
    cases = cli.parse_args(["--short"]).cases()
    compiled = [c for c in cases if c.compile]
    assert any(c.loss == "infonce" and c.batch >= 4096 for c in compiled)
    assert all(c.loss == "infonce" for c in compiled)  # compilations cost seconds each


# ---- Targets: every one evaluated or said why not ------------------------------------------------


def results_with(cpp_results=None, cases=()):
    meta = {"card": "H200", "date": "2026-12-03", "command": "bench/compare.py"}
    return {"schema": report.SCHEMA, "meta": meta, "cpp": cpp_results, "cases": list(cases)}


def test_the_copy_bandwidth_target_from_the_cpp_runs(tmp_path):
    path = write_json(tmp_path / "bench-repel.json", RUNS)
    verdicts = {v["id"]: v for v in report.evaluate_targets(results_with(cpp.load([path])))}
    bandwidth = verdicts["bandwidth_vs_copy"]
    # forward_backward runs only: 0.85 (Repel) and 0.7 (per-anchor MNR) against 80 %.
    assert bandwidth["status"] == report.MISSED and bandwidth["evaluated"] == 2
    assert bandwidth["worst"] == pytest.approx(0.7) and bandwidth["met"] == 1
    assert "mnr/per_anchor fp32 B=8192 N=16 D=384" in bandwidth["summary"]
    good = [dict(r, bandwidth_fraction_of_copy=0.9) for r in RUNS]
    path = write_json(tmp_path / "good.json", good)
    verdict = [v for v in report.evaluate_targets(results_with(cpp.load([path])))
               if v["id"] == "bandwidth_vs_copy"][0]
    assert verdict["status"] == report.MET


def test_targets_not_evaluated_say_why(tmp_path):
    verdicts = {v["id"]: v for v in report.evaluate_targets(results_with())}
    assert set(verdicts) == {t["id"] for t in report.TARGETS}
    assert all(v["status"] == report.NOT_EVALUATED and v["reason"] for v in verdicts.values())
    assert "no C++ benchmark JSON given" in verdicts["bandwidth_vs_copy"]["summary"]
    assert "measured no InfoNCE/CLIP case at B ≥ 4096" in verdicts["speed_vs_eager"]["summary"]
    cut = write_json(tmp_path / "cut.json", RUNS, 40)
    why = [v for v in report.evaluate_targets(results_with(cpp.load([cut])))
           if v["id"] == "bandwidth_vs_copy"][0]["summary"]
    assert "holds no measured forward_backward run" in why and "cut.json: truncated" in why
    # A baseline skipped at the target's shapes: the reason names it.
    case = plan.Case("infonce", "bf16", 4096, 768)
    entry = {"case": case.to_dict(), "results": {
        "eager": {"status": report.OK, "median_ms": 9.0, "peak_bytes": 10},
        "compile": {"status": report.SKIPPED, "reason": "compiled only at B ≤ 1024"},
        "contrastive": {"status": report.OK, "median_ms": 3.0, "peak_bytes": 1}}}
    verdicts = {v["id"]: v for v in report.evaluate_targets(results_with(None, [entry]))}
    assert verdicts["speed_vs_eager"]["status"] == report.MET
    assert "torch.compile skipped" in verdicts["speed_vs_compile"]["summary"]


def test_floor_ratios_are_only_the_cpp_processes_own():
    case = plan.Case("infonce", "bf16", 4096, 768)
    floor = {"kind": "cuBLAS GEMMs", "floor_ms": 0.8, "cpp_median_ms": 1.2, "cpp_ratio": 1.5,
             "name": "infonce/...", "source": "bench-infonce.json"}
    entry = {"case": case.to_dict(), "floor": floor, "results": {
        "contrastive": {"status": report.OK, "median_ms": 3.0, "p10_ms": 2.9, "p90_ms": 3.1,
                        "runs": 20, "peak_bytes": 1}}}
    text = report.render_markdown(results_with(None, [entry]))
    library_row = [line for line in text.splitlines() if "| contrastive |" in line][0]
    floor_row = [line for line in text.splitlines() if "floor (cuBLAS GEMMs" in line][0]
    assert "3.75×" not in library_row  # 3.0 ms here over 0.8 ms there: never reported
    assert "1.50×" in floor_row


# ---- With PyTorch (CPU): the baselines' cheaper forms compute the same loss ----------------------


@pytest.mark.parametrize("name,loss", [("eager_no_cat", "mnr_per_anchor"), ("eager", "infonce"),
                                       ("eager", "clip"), ("eager", "mnr_in_batch")])
def test_the_eager_forms_against_the_formulas(name, loss):
    torch = pytest.importorskip("torch")
    import numpy as np

    from compare import gpu  # imports torch

    function = gpu.EAGER_NO_CAT[loss] if name == "eager_no_cat" else gpu.EAGER[loss]
    generator = np.random.default_rng(5)
    shapes = {"mnr_per_anchor": [(6, 5), (6, 5), (6, 3, 5)], "infonce": [(6, 5), (6, 5)],
              "clip": [(6, 5), (6, 5)], "mnr_in_batch": [(6, 5), (6, 5), (6, 5)]}[loss]
    values = [generator.normal(size=shape) for shape in shapes]
    leaves = [torch.tensor(x, requires_grad=True) for x in values]  # float64, CPU
    value, grads = gpu.forward_backward(function, leaves)
    verdict = formulas.check(formulas.TorchOps(torch), "fp32", loss, [x.detach() for x in leaves],
                             value, grads)
    assert verdict["passed"] and verdict["loss_error"] < 1e-12, verdict["message"]


# ---- With PyTorch (CPU): compare's measuring loop, CUDA replaced by the host clock ---------------


class _FakeEvent:
    def __init__(self, enable_timing=True):
        self.at = None

    def record(self):
        import time

        self.at = time.perf_counter()

    def elapsed_time(self, end):
        return (end.at - self.at) * 1000.0


@pytest.fixture
def cpu_runner(monkeypatch):
    """compare.gpu on the CPU: events timed by the host clock, no device memory statistics, the
    library replaced by a recording stand-in (eager, so that its bf16 errors are PyTorch's)."""
    torch = pytest.importorskip("torch")
    import types

    from compare import gpu

    monkeypatch.setattr(gpu, "DEVICE", "cpu")
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "Event", _FakeEvent)
    monkeypatch.setattr(cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(cuda, "empty_cache", lambda *a, **k: None)
    monkeypatch.setattr(cuda, "mem_get_info", lambda *a, **k: (1 << 34, 1 << 35))
    monkeypatch.setattr(cuda, "memory_allocated", lambda *a, **k: 0)
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda *a, **k: 1 << 20)
    monkeypatch.setattr(cuda, "reset_peak_memory_stats", lambda *a, **k: None)
    monkeypatch.setattr(cuda, "current_device", lambda: 0)
    monkeypatch.setattr(cuda, "get_device_properties", lambda device: types.SimpleNamespace(
        L2_cache_size=1 << 20, major=9, minor=0, total_memory=1 << 35, name="Fake GPU"))
    monkeypatch.setattr(gpu, "gpu_state", lambda: None)
    calls = []

    def library_function(loss, tile=0):
        calls.append(("library", loss, tile))
        function = gpu.EAGER[loss]

        def library(*leaves):
            calls.append(("run", "contrastive", tile))
            return function(*leaves)
        return library

    monkeypatch.setattr(gpu, "library_function", library_function)
    return gpu, calls


def small_config(dtype, shapes, budget=None):
    config = cli.parse_args(["--short", "--no-compile", "--dtypes", dtype, "--warmup", "1",
                             "--repeats", "6"] + (["--time-budget", str(budget)] if budget else []))
    preset = plan.Preset("test", shapes, (dtype,), warmup=1, repeats=6, warmup_seconds=0.01,
                         max_seconds=0.2, compile_max_batch=None)
    import dataclasses
    return dataclasses.replace(config, preset=preset, losses=tuple(shapes))


def test_the_library_is_checked_first_and_timed_interleaved(cpu_runner):
    gpu, calls = cpu_runner
    config = small_config("fp32", {"mnr_per_anchor": [dict(batch=32, negatives=4, dim=16)]})
    runner = gpu.Runner(config)
    case = config.cases()[0]
    entry = runner.run_case(case)
    results = entry["results"]
    assert list(results) == ["eager", "eager_no_cat", "compile", "contrastive"]  # table order
    assert calls[0] == ("library", "mnr_per_anchor", 0)  # the library is set up first
    for name in ("eager", "eager_no_cat", "contrastive"):
        assert results[name]["status"] == report.OK, results[name]
        assert results[name]["runs"] >= plan.MIN_RUNS
        assert results[name]["interleaved_with"] == 2
        assert results[name]["check"]["passed"]
    assert results["compile"]["status"] == report.SKIPPED
    assert results["contrastive"]["check"]["grad_tolerance"] == \
        formulas.LIBRARY_TOLERANCES["fp32"].grad


def test_the_library_check_is_stricter_in_bf16(cpu_runner):
    """PyTorch's bf16 eager passes the baselines' bf16 tolerance and fails the library's: the
    library's check would catch an error of that size."""
    gpu, calls = cpu_runner
    config = small_config("bf16", {"infonce": [dict(batch=64, dim=32)]})
    entry = gpu.Runner(config).run_case(config.cases()[0])
    assert entry["results"]["eager"]["check"]["passed"]
    library = entry["results"]["contrastive"]
    assert library["status"] == report.CHECK_FAILED and "median_ms" not in library
    assert library["check"]["grad_tolerance"] == formulas.LIBRARY_TOLERANCES["bf16"].grad


def test_a_tiled_timed_shape_is_checked_with_tiles(cpu_runner, monkeypatch):
    gpu, calls = cpu_runner
    monkeypatch.setattr(plan, "LIBRARY_WORKSPACE_BUDGET", 64 * 64 * 4)  # B = M = 64 tiles
    monkeypatch.setattr(plan, "CHECK_ELEMENTS", 32 * 32)  # ... and is checked at B = 32
    config = small_config("fp32", {"infonce": [dict(batch=64, dim=16)]})
    case = config.cases()[0]
    assert case.library_tiles() and case.check_case().batch == 32 and case.check_tile() == 8
    entry = gpu.Runner(config).run_case(case)
    assert entry["check_tile"] == 8
    assert ("library", "infonce", 8) in calls  # the check's function, with tiles
    assert entry["results"]["contrastive"]["check"]["tile"] == 8
    assert entry["results"]["contrastive"]["status"] == report.OK


def test_a_spent_budget_is_reported_and_the_run_recorded(cpu_runner):
    gpu, calls = cpu_runner
    shapes = {"repel": [dict(batch=16, negatives=4, dim=8)],
              "infonce": [dict(batch=16, dim=8)]}
    config = small_config("fp32", shapes, budget=1e-9)
    results = gpu.run(config)
    statuses = {(e["case"]["loss"], name): r["status"] for e in results["cases"]
                for name, r in e["results"].items()}
    assert set(statuses.values()) == {report.NOT_RUN}
    assert results["cpp"] is None and "gpu_state" in results["meta"]
    assert "interleaved" in results["meta"]["timing"]


def test_the_report_says_where_and_how_the_library_was_checked():
    case = plan.Case("clip", "bf16", 32768, 768)
    check = {"passed": True, "message": "ok", "tile": case.check_tile(),
             "grads": {"q": {"error": 1e-3, "scale": 1.0, "relative": 1e-3}}}
    entry = {"case": case.to_dict(), "check_case": case.check_case().to_dict(),
             "check_tile": case.check_tile(), "results": {
                 "contrastive": {"status": report.OK, "median_ms": 30.0, "p10_ms": 29.0,
                                 "p90_ms": 31.0, "runs": 10, "peak_bytes": 1, "check": check}}}
    text = report.render_markdown(results_with(None, [entry]))
    assert "ok at B=8192, tiles 2048×2048 (grad err 1.0e-03)" in text
