"""bench/compare.py on a machine without a GPU (and without PyTorch): the arguments, the float64
formulas and the check (against contrastive.reference, and a wrong gradient failing it), the C++
floors, the results writer (Markdown, JSON, targets, rows without numbers), the plots, and
`compare.py --help` / the no-GPU exit without PyTorch. Where PyTorch is installed, the
eager formulations and the torch form of the formulas are checked too (on the CPU).

Run: PYTHONPATH=build/release/python python3 -m pytest -q bench/tests
"""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1]
SCRIPT = BENCH / "compare.py"
sys.path.insert(0, str(BENCH))

from compare import cli, cpp, formulas, inputs, plan, report  # noqa: E402

rng = np.random.default_rng(20261128)
NP = formulas.NumpyOps(np)


def run_script(*args, block_torch=True, cwd=None, env=None):
    """Runs compare.py in a fresh interpreter; with block_torch, `import torch` fails there
    whether or not PyTorch is installed (as on a machine without it)."""
    code = ("import runpy, sys\n"
            + ("sys.modules['torch'] = None\n" if block_torch else "")
            + f"sys.argv = ['compare.py', *{list(args)!r}]\n"
            + f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


# ---- Arguments -----------------------------------------------------------------------------------


def test_defaults_are_the_full_preset():
    config = cli.parse_args([])
    assert config.preset is plan.FULL
    assert config.losses == plan.LOSSES and config.dtypes == ("bf16", "fp32")
    assert (config.warmup, config.repeats) == (plan.FULL.warmup, plan.FULL.repeats)
    assert config.out == BENCH / "results" and not config.out_given
    assert config.compile_enabled and config.compile_max_batch is None and config.tile == 0
    assert config.cpp_json is None and config.time_budget is None and config.card is None
    cases = config.cases()
    # InfoNCE and CLIP 4 B x 2 D, in-batch MNR 2 B x 3 K, per-anchor and Repel 2 each; 2 dtypes.
    assert len(cases) == 2 * (8 + 8 + 6 + 2 + 2 + 3)
    assert all(case.compile for case in cases)
    infonce = {(c.batch, c.dim) for c in cases if c.loss == "infonce" and c.dtype == "fp32"}
    assert infonce == {(b, d) for b in (1024, 4096, 16384, 32768) for d in (256, 768)}
    in_batch = {(c.batch, c.hard_negatives, c.dim) for c in cases if c.loss == "mnr_in_batch"}
    assert in_batch == {(b, k, 768) for b in (4096, 16384) for k in (0, 1, 3)}
    repel = {(c.batch, c.negatives, c.dim) for c in cases if c.loss == "repel"}
    assert repel == {(4096, 64, 256), (16384, 64, 256)}


def test_large_preset():
    config = cli.parse_args(["--large"])
    assert config.preset is plan.LARGE and config.dtypes == ("bf16",)
    cases = config.cases()
    assert {c.loss for c in cases} == {"clip"}
    assert sorted({c.batch for c in cases}) == [16384, 32768, 65536, 131072]
    assert {c.dim for c in cases} == {256, 768} and all(c.compile for c in cases)
    # the float64 check runs on a smaller B
    assert max(c.check_case().batch for c in cases) < 16384
    with pytest.raises(SystemExit):
        cli.parse_args(["--large", "--short"])


def test_large_batch_targets():
    """At B >= 32768 (CLIP): memory at most 1/100 of eager's, faster than torch.compile; a
    baseline out of memory leaves the case unmeasured, not missed."""
    results = sample_results()
    case = plan.Case(loss="clip", dtype="bf16", batch=32768, dim=768)
    results["cases"].append({"case": case.to_dict(), "results": {
        plan.EAGER: {"status": report.OK, "median_ms": 400.0, "peak_bytes": 40e9},
        plan.COMPILE: {"status": report.OK, "median_ms": 150.0, "peak_bytes": 20e9},
        plan.LIBRARY: {"status": report.OK, "median_ms": 120.0, "peak_bytes": 0.3e9}}})
    big = plan.Case(loss="clip", dtype="bf16", batch=131072, dim=768)
    results["cases"].append({"case": big.to_dict(), "results": {
        plan.EAGER: {"status": report.OOM, "median_ms": None},
        plan.COMPILE: {"status": report.OOM, "median_ms": None},
        plan.LIBRARY: {"status": report.OK, "median_ms": 1900.0, "peak_bytes": 1.5e9}}})
    verdicts = {v["id"]: v for v in report.evaluate_targets(results)}
    memory = verdicts["large_memory_vs_eager"]  # 0.3 / 40 = 0.0075
    assert memory["status"] == report.MET and memory["evaluated"] == 1
    assert any("131072" in u for u in memory["unmeasured"])
    speed = verdicts["large_speed_vs_compile"]  # 150 / 120 = 1.25
    assert speed["status"] == report.MET and speed["worst"] == pytest.approx(1.25)


def test_short_preset():
    config = cli.parse_args(["--short"])
    assert config.preset is plan.SHORT and config.dtypes == ("bf16",)
    assert (config.warmup, config.repeats) == (plan.SHORT.warmup, plan.SHORT.repeats)
    cases = config.cases()
    assert [c.loss for c in cases] == ["infonce", "infonce", "clip", "clip", "mnr_in_batch",
                                       "mnr_per_anchor", "repel", "siglip"]
    # torch.compile once: InfoNCE at B = 4096, where its targets start.
    assert [(c.loss, c.batch) for c in cases if c.compile] == [("infonce", 4096)]
    # Flags override the preset.
    config = cli.parse_args(["--short", "--dtypes", "f32", "--repeats", "7", "--warmup", "0",
                             "--compile-max-batch", "4096", "--losses", "repel,infonce"])
    assert config.dtypes == ("fp32",) and config.repeats == 7 and config.warmup == 0
    assert config.losses == ("infonce", "repel")  # canonical order
    assert all(c.compile for c in config.cases())
    assert not any(c.compile for c in cli.parse_args(["--no-compile"]).cases())


def test_list_options(tmp_path):
    config = cli.parse_args(["--losses", "all", "--dtypes", "FP32,bfloat16,f32",
                             "--out", str(tmp_path), "--card", "H100 x", "--tile", "2048",
                             "--time-budget", "80", "--seed", "3"])
    assert config.losses == plan.LOSSES and config.dtypes == ("bf16", "fp32")
    assert config.out == tmp_path and config.out_given and config.card == "H100 x"
    assert config.tile == 2048 and config.time_budget == 80.0 and config.seed == 3
    assert config.command.startswith("bench/compare.py --losses all")


@pytest.mark.parametrize("args", [
    ["--losses", "softmax"], ["--losses", ""], ["--dtypes", "fp16"], ["--repeats", "2"],
    ["--repeats", "ten"], ["--warmup", "-1"], ["--tile", "-8"], ["--time-budget", "0"],
    ["--compile-max-batch", "0"], ["--cpp-json", "/no/such/file.json"], ["--from-json", "/no"],
    ["--unknown"],
])
def test_invalid_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(args)
    assert exit_info.value.code == cli.EXIT_USAGE == 2
    assert "error:" in capsys.readouterr().err


def test_implementations_per_case():
    case = plan.Case("infonce", "bf16", 4096, 768)
    assert plan.implementations(case, 0) == ["eager", "compile", "contrastive"]
    assert plan.implementations(case, 4096) == ["eager", "compile", "contrastive"]  # one tile
    assert plan.implementations(case, 1024)[-1] == "contrastive_tiled"
    in_batch = plan.Case("mnr_in_batch", "bf16", 4096, 768, hard_negatives=1)
    assert plan.implementations(in_batch, 0) == ["eager", "compile", "sentence_transformers",
                                                 "contrastive"]
    repel = plan.Case("repel", "bf16", 4096, 256, negatives=64)
    assert plan.implementations(repel, 1024) == ["eager", "compile", "contrastive"]


def test_check_shapes_fit_the_float64_budget():
    assert plan.Case("infonce", "fp32", 4096, 768).check_case().batch == 4096
    assert plan.Case("infonce", "fp32", 32768, 768).check_case().batch == 8192
    assert plan.Case("mnr_in_batch", "bf16", 16384, 768, hard_negatives=3).check_case().batch \
        == 4096
    assert plan.Case("repel", "bf16", 16384, 256, negatives=64).check_case().batch == 4096
    for case in cli.parse_args([]).cases():
        check = case.check_case()
        assert check.elements() <= plan.CHECK_ELEMENTS
        assert (check.dim, check.negatives, check.hard_negatives) == (
            case.dim, case.negatives, case.hard_negatives)


def test_list_prints_the_plan_without_torch():
    done = run_script("--list", "--short")
    assert done.returncode == 0, done.stderr
    assert "preset short: 8 cases" in done.stdout
    assert "(compile: skipped)" in done.stdout and "sentence_transformers" in done.stdout


# ---- Script behaviour without PyTorch ------------------------------------------------------------


def test_help_exits_0_without_torch():
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--short", "--losses", "--dtypes", "--out", "--card", "--repeats",
                 "--no-compile", "--cpp-json", "exit status"):
        assert flag in done.stdout


def test_without_torch_it_exits_3_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    done = run_script("--short", "--out", str(out))
    assert done.returncode == cli.EXIT_NO_GPU == 3
    assert "PyTorch cannot be imported" in done.stderr and "nothing written" in done.stderr
    assert not out.exists()


def test_the_helpers_do_not_import_torch():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from compare import cli, cpp, formulas, plan, report\n"
            "cli.parse_args(['--short'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n" % str(BENCH))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# ---- The float64 formulas and the check ----------------------------------------------------------


@pytest.fixture
def library_constants(monkeypatch):
    """The library takes its temperature and margin as float32: the same values here, so that
    the formulas and contrastive.reference compute the same thing to rounding."""
    monkeypatch.setattr(plan, "TEMPERATURE", float(np.float32(plan.TEMPERATURE)))
    monkeypatch.setattr(plan, "MARGIN", float(np.float32(plan.MARGIN)))


def random_inputs(loss, batch=5, dim=7, blocks=2, negatives=3):
    if loss in ("infonce", "clip", "siglip"):
        return [rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))]
    if loss == "mnr_in_batch":
        return [rng.normal(size=(batch, dim)) for _ in range(2 + blocks)]
    if loss == "mnr_per_anchor":
        return [rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim)),
                rng.normal(size=(batch, negatives, dim))]
    anchors = rng.normal(size=(batch, dim))
    return [anchors, rng.normal(size=(batch, negatives, dim)) + 0.3 * anchors[:, None, :]]


def library_reference(loss, values):
    """contrastive.reference's loss and gradients, in formulas.reference's order and shapes."""
    reference = pytest.importorskip("contrastive.reference")
    if loss in ("infonce", "clip"):
        r = reference.infonce(*values, temperature=plan.TEMPERATURE, symmetric=loss == "clip")
        return r["loss"][0], [r["grad_q"], r["grad_k"]]
    if loss == "mnr_in_batch":
        r = reference.mnr_in_batch(values[0], np.concatenate(values[1:]),
                                   scale=plan.IN_BATCH_SCALE)
        return r["loss"][0], [r["grad_anchors"], *np.split(r["grad_candidates"],
                                                           len(values) - 1)]
    if loss == "mnr_per_anchor":
        r = reference.mnr_per_anchor(*values, scale=plan.PER_ANCHOR_SCALE, similarity="dot")
        return r["loss"][0], [r["grad_anchors"], r["grad_positives"],
                              r["grad_negatives"].reshape(values[2].shape)]
    if loss == "siglip":
        r = reference.siglip(*values, scale=plan.SIGLIP_SCALE, bias=plan.SIGLIP_BIAS)
        return r["loss"][0], [r["grad_q"], r["grad_k"]]
    r = reference.repel(*values, margin=plan.MARGIN)
    assert 0 < r["active_terms"] < values[1].shape[0] * values[1].shape[1]  # both sides of relu
    return r["loss"][0], [r["grad_anchors"], r["grad_negatives"].reshape(values[1].shape)]


@pytest.mark.parametrize("loss", plan.LOSSES)
def test_formulas_match_the_library_reference(loss, library_constants):
    values = random_inputs(loss)
    value, grads = formulas.reference(NP, loss, values)
    expected_value, expected_grads = library_reference(loss, values)
    assert value == pytest.approx(expected_value, rel=1e-12, abs=1e-14)
    assert len(grads) == len(expected_grads) == len(plan.input_names_for(loss, len(values)))
    for grad, expected in zip(grads, expected_grads):
        assert grad.shape == expected.shape
        np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("loss", plan.LOSSES)
def test_the_check_passes_the_reference_and_a_float32_implementation(loss, library_constants):
    values = random_inputs(loss)
    value, grads = library_reference(loss, values)
    verdict = formulas.check(NP, "fp32", loss, values, value, grads)
    assert verdict["passed"], verdict["message"]
    assert verdict["loss_error"] < 1e-12
    # The same formulas evaluated in float32 (a float32 implementation's rounding) pass too.
    f32 = formulas.NumpyOps(np, np.float32)
    value32, grads32 = formulas.reference(f32, loss, [x.astype(np.float32) for x in values])
    verdict = formulas.check(NP, "fp32", loss, values, value32, grads32)
    assert verdict["passed"], verdict["message"]
    assert set(verdict["grads"]) == set(plan.input_names_for(loss, len(values)))


def drop_normalization_projection(loss, values):
    """A plausible bug: cosine gradients without the normalization's projection, dx = dx^ / |x|
    (here: the true gradient plus the part along x^ that the projection removes)."""
    value, grads = formulas.reference(NP, loss, values)
    wrong = []
    for x, g in zip(values, grads):
        x_hat = x / np.linalg.norm(x, axis=-1, keepdims=True)
        wrong.append(g + 0.5 * x_hat * np.abs(g).max())
    return value, wrong


@pytest.mark.parametrize("loss", plan.LOSSES)
def test_a_wrong_gradient_fails_the_check(loss, library_constants):
    values = random_inputs(loss)
    value, grads = library_reference(loss, values)
    # One gradient row off by 20 % of the gradient's largest entry: beyond even bf16's bound.
    for index in range(len(grads)):
        wrong = [g.copy() for g in grads]
        row = wrong[index].reshape(-1, wrong[index].shape[-1])
        row[1] += 0.2 * np.abs(grads[index]).max()
        for dtype in plan.DTYPES:
            verdict = formulas.check(NP, dtype, loss, values, value, wrong)
            assert not verdict["passed"]
            name = plan.input_names_for(loss, len(values))[index]
            assert f"grad {name}" in verdict["message"]
    # A systematic error in every gradient fails too.
    value, wrong = drop_normalization_projection(loss, values)
    assert not formulas.check(NP, "bf16", loss, values, value, wrong)["passed"]


def test_the_check_fails_a_wrong_loss_nan_and_a_wrong_shape(library_constants):
    values = random_inputs("clip")
    value, grads = library_reference("clip", values)
    loss_only = formulas.reference(NP, "infonce", values)  # the one-direction loss instead
    verdict = formulas.check(NP, "fp32", "clip", values, loss_only[0], grads)
    assert not verdict["passed"] and verdict["message"].startswith("loss")
    assert not formulas.check(NP, "fp32", "clip", values, value * (1 + 1e-3), grads)["passed"]
    assert not formulas.check(NP, "bf16", "clip", values, value * 1.1, grads)["passed"]
    nan = [g.copy() for g in grads]
    nan[0][0, 0] = np.nan
    assert not formulas.check(NP, "bf16", "clip", values, value, nan)["passed"]
    assert not formulas.check(NP, "bf16", "clip", values, math.nan, grads)["passed"]
    assert not formulas.check(NP, "bf16", "clip", values, value, [grads[0].T, grads[1]])["passed"]


def structured(case):
    """compare's inputs (inputs.structured_inputs) drawn with NumPy."""
    return inputs.structured_inputs(case, lambda shape: rng.standard_normal(shape))


@pytest.mark.parametrize("dtype", plan.DTYPES)
def test_on_compares_inputs_the_check_tells_near_formulas_apart(dtype, monkeypatch):
    """Formulas close to the right one fail even at bf16's tolerance: CLIP's loss without its
    column direction, a temperature or scale 20 % off, Repel without its margin."""
    q, k = structured(plan.Case("clip", dtype, 256, 64))
    clip = formulas.reference(NP, "clip", [q, k])
    assert formulas.check(NP, dtype, "clip", [q, k], *clip)["passed"]
    assert not formulas.check(NP, dtype, "clip", [q, k],
                              *formulas.reference(NP, "infonce", [q, k]))["passed"]
    case = plan.Case("mnr_in_batch", dtype, 128, 64, hard_negatives=1)
    values = structured(case)
    monkeypatch.setattr(plan, "IN_BATCH_SCALE", 24.0)
    off = formulas.reference(NP, "mnr_in_batch", values)
    monkeypatch.setattr(plan, "IN_BATCH_SCALE", 20.0)
    assert not formulas.check(NP, dtype, "mnr_in_batch", values, *off)["passed"]
    anchors, negatives = structured(plan.Case("repel", dtype, 128, 64, negatives=8))
    monkeypatch.setattr(plan, "MARGIN", 0.0)
    no_margin = formulas.reference(NP, "repel", [anchors, negatives])
    monkeypatch.setattr(plan, "MARGIN", 0.3)
    assert not formulas.check(NP, dtype, "repel", [anchors, negatives], *no_margin)["passed"]


def test_structured_inputs_shapes_and_repel_activity():
    for case in cli.parse_args(["--short"]).cases():
        small = plan.Case(case.loss, case.dtype, 64, 32, case.hard_negatives,
                          min(case.negatives, 8))
        values = structured(small)
        assert [v.shape for v in values] == plan.input_shapes(small)
        norms = np.linalg.norm(values[0], axis=-1)
        assert 0.5 < norms.mean() < 2.0  # rows of about unit norm
    anchors, negatives = structured(plan.Case("repel", "fp32", 512, 256, negatives=16))
    active = formulas.reference(NP, "repel", [anchors, negatives])[1][1].any(axis=-1).mean()
    assert 0.3 < active < 0.7  # about half the terms above the margin


def test_bf16_rounding_of_the_inputs_passes_at_bf16_tolerance(library_constants):
    """Gradients rounded to 8 bits (what bf16 storage costs) pass the bf16 bound and fail the
    float32 one."""
    values = random_inputs("infonce", batch=32, dim=16)
    value, grads = formulas.reference(NP, "infonce", values)

    def to_bf16(x):  # round to nearest with 8 significant bits
        mantissa, exponent = np.frexp(x)
        return np.ldexp(np.round(mantissa * 256) / 256, exponent)

    rounded = [to_bf16(g) for g in grads]
    assert formulas.check(NP, "bf16", "infonce", values, to_bf16(value), rounded)["passed"]
    assert not formulas.check(NP, "fp32", "infonce", values, value, rounded)["passed"]


def test_repel_check_inputs_have_no_term_at_the_margin():
    anchors = rng.normal(size=(64, 16))
    negatives = rng.normal(size=(64, 8, 16)) + 0.32 * anchors[:, None, :]
    mask = formulas.repel_ambiguous(NP, anchors, negatives, "bf16")
    assert mask.shape == (64, 8) and mask.any()
    negatives[mask] = -negatives[mask]  # what compare.gpu does to its check inputs
    assert not formulas.repel_ambiguous(NP, anchors, negatives, "bf16").any()


# ---- The C++ floors ------------------------------------------------------------------------------


CPP_JSON = {
    "context": {"host_name": "gpu"},
    "benchmarks": [
        {"name": "infonce/forward_backward/bf16/B:4096/D:768/manual_time", "run_type": "iteration",
         "median_ms": 1.2, "floor_ms": 0.8, "ratio_to_floor": 1.5},
        {"name": "infonce/forward/bf16/B:4096/D:768/manual_time", "run_type": "iteration",
         "median_ms": 0.5, "floor_ms": 0.3, "ratio_to_floor": 1.6},
        {"name": "infonce/forward_backward/f32/B:1024/D:256/manual_time",
         "run_type": "iteration", "median_ms": 0.3, "floor_ms": 0.2, "ratio_to_floor": 1.5},
        {"name": "infonce/forward_backward/f32/B:1024/D:256/manual_time_mean",
         "run_type": "aggregate", "median_ms": 9.0, "floor_ms": 9.0, "ratio_to_floor": 1.0},
        {"name": "infonce/forward_backward/f32/B:4096/D:256/manual_time",
         "run_type": "iteration", "error_occurred": True, "error_message": "no usable device"},
        {"name": "mnr/in_batch/forward_backward/bf16/B:4096/K:1/D:768/manual_time",
         "run_type": "iteration", "median_ms": 2.0, "floor_ms": 1.6, "ratio_to_floor": 1.25},
        {"name": "repel/forward_backward/bf16/B:4096/N:64/D:256/manual_time",
         "run_type": "iteration", "median_ms": 0.4, "copy_ms": 0.3,
         "bandwidth_fraction_of_copy": 0.75},
        {"name": "something/else/bf16/B:1/manual_time", "floor_ms": 1.0},
    ],
}


def test_cpp_floors_match_their_rows(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(CPP_JSON))
    floors = cpp.load_floors(path)
    assert len(floors) == 4  # forward only, aggregates, errors and unknown names left out
    floor = cpp.floor_for(floors, plan.Case("infonce", "bf16", 4096, 768))
    assert floor["floor_ms"] == 0.8 and floor["cpp_ratio"] == 1.5
    assert floor["kind"] == "cuBLAS GEMMs" and floor["source"] == str(path)
    assert cpp.floor_for(floors, plan.Case("infonce", "fp32", 1024, 256))["floor_ms"] == 0.2
    assert cpp.floor_for(floors, plan.Case("clip", "bf16", 4096, 768)) is None
    assert cpp.floor_for(floors, plan.Case("infonce", "fp32", 4096, 256)) is None
    in_batch = plan.Case("mnr_in_batch", "bf16", 4096, 768, hard_negatives=1)
    assert cpp.floor_for(floors, in_batch)["floor_ms"] == 1.6
    repel = cpp.floor_for(floors, plan.Case("repel", "bf16", 4096, 256, negatives=64))
    assert repel["kind"] == "device copy" and repel["floor_ms"] == 0.3
    assert repel["cpp_ratio"] == pytest.approx(1 / 0.75)
    assert cpp.parse_name("infonce/forward_backward/bf16/B:16384/D:768/min_time:0.050/"
                          "manual_time") == ("infonce", "bf16", (("B", 16384), ("D", 768)))


# ---- The results writer --------------------------------------------------------------------------


def ok(ms, peak_mib, **extra):
    result = {"status": report.OK, "median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.2,
              "runs": 50, "copies": 4, "peak_bytes": int(peak_mib * report.MIB),
              "check": {"passed": True, "message": "ok", "grads": {
                  "q": {"error": 1e-6, "scale": 1.0, "relative": 1e-6}}}}
    result.update(extra)
    return result


def entry(case, results, floor=None):
    return {"case": case.to_dict(), "check_case": case.check_case().to_dict(), "floor": floor,
            "results": results}


def sample_results():
    """A hand-made run: every status, and targets met, missed and not evaluated."""
    failed_check = {"passed": False, "message": "grad k: error 0.3 > 0.1 x largest 1", "grads": {}}
    cases = [
        entry(plan.Case("infonce", "bf16", 1024, 256),
              {"eager": ok(1.0, 40), "compile": ok(0.6, 30, compile_s=12.5),
               "contrastive": ok(0.3, 8)}),
        entry(plan.Case("infonce", "bf16", 4096, 768),
              {"eager": ok(9.0, 400), "compile": ok(5.0, 250, compile_s=14.0),
               "contrastive": ok(3.0, 80)},
              floor={"kind": "cuBLAS GEMMs", "floor_ms": 2.0, "cpp_median_ms": 2.6,
                     "cpp_ratio": 1.3, "name": "infonce/...", "source": "bench.json"}),
        entry(plan.Case("clip", "fp32", 32768, 768),
              {"eager": {"status": report.OOM, "reason": "during the timing"},
               "compile": {"status": report.SKIPPED, "reason": "compiled only at B ≤ 1024"},
               "contrastive": ok(120.0, 3000)}),
        entry(plan.Case("clip", "bf16", 16384, 256),
              {"eager": ok(60.0, 4000), "compile": ok(40.0, 2000, compile_s=20.0),
               "contrastive": ok(25.0, 1500)}),
        entry(plan.Case("mnr_in_batch", "bf16", 4096, 768, hard_negatives=1),
              {"eager": ok(12.0, 600), "compile": {"status": report.NOT_RUN,
                                                   "reason": "stopped by SIGTERM"},
               "sentence_transformers": {"status": report.NOT_INSTALLED,
                                         "reason": "import failed: No module named x"},
               "contrastive": {"status": report.CHECK_FAILED, "reason": "not timed",
                               "check": failed_check}}),
        entry(plan.Case("repel", "fp32", 16384, 256, negatives=64),
              {"eager": {"status": report.ERROR, "reason": "timing: RuntimeError: boom"},
               "compile": ok(3.0, 100, compile_s=9.0), "contrastive": ok(1.0, 30)}),
    ]
    meta = {"card": "NVIDIA H100 80GB HBM3", "date": "2026-11-28", "command": "bench/compare.py",
            "preset": "full", "timing": "CUDA events", "memory": "max_memory_allocated",
            "check": "float64", "floor": "from bench.json", "commit": "abc1234",
            "interrupted": None, "nan_example": math.nan}
    return {"schema": report.SCHEMA, "meta": meta, "cases": cases}


def test_targets_met_missed_and_by_how_much():
    verdicts = {v["id"]: v for v in report.evaluate_targets(sample_results())}
    eager = verdicts["speed_vs_eager"]
    # B >= 4096 InfoNCE/CLIP: 9/3 = 3.0 and 60/25 = 2.4; the B = 32768 eager OOM has no pair.
    assert eager["status"] == report.MET and eager["evaluated"] == 2 and eager["met"] == 2
    assert eager["worst"] == pytest.approx(2.4) and "CLIP bf16 B=16384 D=256" in eager["worst_case"]
    assert "20% above the 2×" in eager["summary"]
    assert any("PyTorch eager out of memory" in u for u in eager["unmeasured"])
    compiled = verdicts["speed_vs_compile"]  # 5/3 = 1.67, 40/25 = 1.6
    assert compiled["status"] == report.MET and compiled["worst"] == pytest.approx(1.6)
    memory = verdicts["memory_vs_eager"]  # 80/400 = 0.2 (met), 1500/4000 = 0.375 (missed)
    assert memory["status"] == report.MISSED and memory["met"] == 1
    assert memory["worst"] == pytest.approx(0.375)
    assert "1.50× the 0.25 allowed" in memory["summary"]


def test_targets_not_evaluated_without_numbers():
    results = sample_results()
    results["cases"] = results["cases"][:1] + results["cases"][4:]  # nothing at B >= 4096
    verdicts = report.evaluate_targets(results)
    assert {v["status"] for v in verdicts} == {report.NOT_EVALUATED}
    assert all(v["summary"].startswith("NOT EVALUATED") for v in verdicts)


def test_markdown_tables_and_rows_without_numbers():
    text = report.render_markdown(sample_results(), ["x-infonce-bf16.png"])
    assert text.startswith("# contrastive vs PyTorch, forward + backward: NVIDIA H100 80GB HBM3, "
                           "2026-11-28")
    for title in ("InfoNCE (cosine", "CLIP symmetric", "In-batch MNR", "Repel"):
        assert f"## {title}" in text
    assert "## Per-anchor MNR" not in text  # no case of it
    lines = text.splitlines()

    def row(*parts):
        found = [line for line in lines if all(p in line for p in parts)]
        assert len(found) == 1, (parts, found)
        return [cell.strip() for cell in found[0].strip("|").split("|")]

    library = row("| bf16 | B=4096 D=768 | contrastive |")
    assert library[3].startswith("3.00 (2.70–3.60), 50 runs")
    assert library[4:6] == ["3.00×", "1.67×"]  # speedup vs eager, vs torch.compile
    assert library[6] == ""  # never this process's time over the C++ process's floor
    assert library[7:9] == ["80", "0.20"]  # peak MiB, peak / eager's
    assert library[9].startswith("ok")
    floor = row("| bf16 | B=4096 D=768 | floor (cuBLAS GEMMs, C++ run) |")
    assert floor[3] == "2.00" and "1.30× floor" in floor[-1]
    assert floor[6] == "1.30×"  # the C++ process's own library / floor ratio
    compiled = row("| bf16 | B=1024 D=256 | torch.compile |")
    assert "first call (compilation) 12.5 s" in compiled[-1]
    # Rows without numbers are kept and say why.
    assert row("| fp32 | B=32768 D=768 | PyTorch eager |")[3] == "out of memory: during the timing"
    assert "skipped: compiled only at B ≤ 1024" in row("B=32768 D=768 | torch.compile")[3]
    assert row("B=32768 D=768 | contrastive |")[4] == ""  # no ratio against an OOM baseline
    assert "not installed" in row("| sentence-transformers |")[3]
    failed = row("B=4096 K=1 D=768 | contrastive |")
    assert failed[3].startswith("check failed") and "FAILED" in failed[-2]
    assert "error: timing: RuntimeError: boom" in row("B=16384 N=64 D=256 | PyTorch eager")[3]
    assert "not run: stopped by SIGTERM" in row("B=4096 K=1 D=768 | torch.compile")[3]
    assert "**Run stopped early: stopped by SIGTERM.**" in text
    # Targets: a line per target with met / missed.
    assert "at least 2× faster than PyTorch eager (contrastive): **MET: worst 2.40×" in text
    assert "at most 1/4 of PyTorch eager's (contrastive): **MISSED: worst 0.375" in text
    assert "![x-infonce-bf16.png](x-infonce-bf16.png)" in text


def test_json_round_trip_and_file_names(tmp_path):
    results = sample_results()
    paths = report.write(results, tmp_path)
    assert paths["json"].name == "2026-11-28-nvidia-h100-80gb-hbm3.json"
    assert paths["markdown"].name == "2026-11-28-nvidia-h100-80gb-hbm3.md"
    loaded = report.load_json(paths["json"])
    assert loaded["meta"]["nan_example"] == "nan"  # JSON has no NaN
    expected = copy.deepcopy(results)
    expected["meta"]["nan_example"] = "nan"
    assert loaded == expected
    assert report.render_markdown(loaded, [p.name for p in paths["plots"]]) == \
        paths["markdown"].read_text(encoding="utf-8")
    # A second run the same day gets new names: nothing is overwritten.
    again = report.write(results, tmp_path)
    assert again["markdown"].name == "2026-11-28-nvidia-h100-80gb-hbm3-2.md"
    assert report.card_slug("  ") == "unknown-card"
    with pytest.raises(ValueError):
        bad = tmp_path / "bad.json"
        bad.write_text('{"schema": "other"}')
        report.load_json(bad)


def test_library_failures_and_summary():
    results = sample_results()
    failures = report.library_failures(results)
    assert len(failures) == 1 and "in-batch MNR bf16 B=4096 K=1 D=768 contrastive" in failures[0]
    summary = report.summary_lines(results)
    assert summary[0].startswith("measurements: 6 cases;") and "2 out of memory" not in summary[0]
    assert any(line.startswith("target memory_vs_eager (contrastive): MISSED") for line in summary)
    assert summary[-1] == ("targets: speed_vs_eager MET 2.40; speed_vs_compile MET 1.60; "
                           "memory_vs_eager MISSED 0.38; large_memory_vs_eager NOT EVALUATED; "
                           "large_speed_vs_compile NOT EVALUATED; bandwidth_vs_copy NOT "
                           "EVALUATED")


def test_plots_are_png_files(tmp_path):
    pytest.importorskip("matplotlib")
    paths = report.write(sample_results(), tmp_path)
    names = sorted(p.name for p in paths["plots"])
    # One per loss and dtype with a measured number (in-batch MNR has one: eager).
    assert names == sorted(f"2026-11-28-nvidia-h100-80gb-hbm3-{n}.png" for n in (
        "infonce-bf16", "clip-fp32", "clip-bf16", "mnr_in_batch-bf16", "repel-fp32"))
    for path in paths["plots"]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_from_json_rewrites_the_report_without_torch(tmp_path):
    paths = report.write(sample_results(), tmp_path)
    paths["markdown"].unlink()
    done = run_script("--from-json", str(paths["json"]))
    assert done.returncode == 0, done.stderr
    assert paths["markdown"].read_text(encoding="utf-8").startswith("# contrastive vs PyTorch")
    assert not (tmp_path / "2026-11-28-nvidia-h100-80gb-hbm3-2.md").exists()


# ---- With PyTorch (CPU): the eager formulations against the formulas -----------------------------


@pytest.mark.parametrize("loss", plan.LOSSES)
def test_eager_formulations_and_torch_formulas(loss, library_constants):
    torch = pytest.importorskip("torch")
    from compare import gpu  # imports torch

    values = random_inputs(loss)
    leaves = [torch.tensor(x, requires_grad=True) for x in values]  # float64, CPU
    value, grads = gpu.forward_backward(gpu.EAGER[loss], leaves)
    torch_ops = formulas.TorchOps(torch)
    verdict = formulas.check(torch_ops, "fp32", loss, [x.detach() for x in leaves], value, grads)
    assert verdict["passed"] and verdict["loss_error"] < 1e-12, verdict["message"]
    expected_value, expected_grads = formulas.reference(NP, loss, values)
    torch_value, torch_grads = formulas.reference(torch_ops, loss, [torch.tensor(x) for x in
                                                                    values])
    assert torch_value == pytest.approx(expected_value, rel=1e-12)
    for got, expected in zip(torch_grads, expected_grads):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-14)
