"""`python -m contrastive.demo`: its three examples and the similarity heatmap.

Runs anywhere: without a GPU (or without PyTorch and CuPy) the demo shows the float64 reference
and says why the GPU path did not run; with one it also compares the GPU with the reference.
"""

import os
import pathlib
import subprocess
import sys

import pytest

import contrastive

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEMO_TIMEOUT_S = 300  # generous: the first import of PyTorch (when present) and the GPU path
ARGUMENT_ERROR = 2  # argparse's exit status for bad arguments


def run_python(*args: str, without_matplotlib: bool = False) -> subprocess.CompletedProcess:
    # The child imports the same package as this process, wherever that comes from.
    package_parent = str(pathlib.Path(contrastive.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    prefix = []
    if without_matplotlib:  # as if it were not installed: importing it raises ImportError
        prefix = ["-c", "import runpy, sys; sys.modules['matplotlib'] = None; "
                        "sys.argv[0] = 'demo'; runpy.run_module('contrastive.demo', "
                        "run_name='__main__')"]
    return subprocess.run([sys.executable, *prefix, *args], env=env, capture_output=True,
                          text=True, timeout=DEMO_TIMEOUT_S)


def run_demo(*args: str, without_matplotlib: bool = False) -> subprocess.CompletedProcess:
    if without_matplotlib:
        return run_python(*args, without_matplotlib=True)
    return run_python("-m", "contrastive.demo", *args)


def test_demo_prints_the_three_examples_and_writes_the_heatmap(tmp_path):
    pytest.importorskip("matplotlib", reason="the demo draws its heatmap with matplotlib")
    out = tmp_path / "s.png"
    result = run_demo("--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > len(PNG_SIGNATURE)
    assert "reference" in result.stdout
    assert "MNR Loss = 1.6965" in result.stdout
    assert "reference (float64) loss: 0.028713" in result.stdout  # InfoNCE
    assert "Repel Loss:" in result.stdout
    assert "MISMATCH" not in result.stdout
    if not contrastive.gpu_available():
        assert "GPU path did not run: no usable CUDA device" in result.stdout


def test_demo_without_matplotlib_skips_the_heatmap_and_succeeds(tmp_path):
    out = tmp_path / "s.png"
    result = run_demo("--out", str(out), without_matplotlib=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heatmap skipped: matplotlib is not installed" in result.stdout
    assert "MNR Loss = 1.6965" in result.stdout and "Repel Loss:" in result.stdout
    assert not out.exists()


def test_demo_rejects_unknown_arguments():
    result = run_demo("--no-such-option")
    assert result.returncode == ARGUMENT_ERROR
    assert "usage" in result.stderr


def test_the_sources_without_the_compiled_module_say_what_is_missing():
    """Importing python/contrastive itself (no _core there) names the fix, not a circular import."""
    sources = pathlib.Path(__file__).resolve().parent.parent
    if list((sources / "contrastive").glob("_core*")):
        pytest.skip("a compiled module sits beside the sources")
    env = dict(os.environ, PYTHONPATH=str(sources))
    result = subprocess.run([sys.executable, "-c", "import contrastive"], env=env, cwd=sources,
                            capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    assert result.returncode != 0
    assert "contrastive._core is missing" in result.stderr
    assert "pip install ." in result.stderr and "PYTHONPATH" in result.stderr
    assert "partially initialized" not in result.stderr
