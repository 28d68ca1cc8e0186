"""`python -m contrastive.demo`: the seed notebook's three examples and the similarity heatmap.

Runs anywhere: without a GPU (or without PyTorch and CuPy) the demo shows the float64 reference
and says why the GPU path did not run; with one it also compares the GPU with the reference.
"""

import os
import pathlib
import subprocess
import sys

import pytest

import contrastive

pytest.importorskip("matplotlib", reason="the demo draws its heatmap with matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEMO_TIMEOUT_S = 300  # generous: the first import of PyTorch (when present) and the GPU path
ARGUMENT_ERROR = 2  # argparse's exit status for bad arguments


def run_demo(*args: str) -> subprocess.CompletedProcess:
    # The child imports the same package as this process, wherever that comes from.
    package_parent = str(pathlib.Path(contrastive.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "contrastive.demo", *args], env=env,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)


def test_demo_prints_the_three_examples_and_writes_the_heatmap(tmp_path):
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


def test_demo_rejects_unknown_arguments():
    result = run_demo("--no-such-option")
    assert result.returncode == ARGUMENT_ERROR
    assert "usage" in result.stderr
