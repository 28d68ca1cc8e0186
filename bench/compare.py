#!/usr/bin/env python3
"""Side-by-side benchmark of contrastive.torch against PyTorch eager, torch.compile and
sentence-transformers: forward + backward time and peak memory of each loss at the same shapes and
dtypes on one CUDA device, every implementation checked against float64 first.

    PYTHONPATH=build/release/python python3 bench/compare.py --short
    PYTHONPATH=build/release/python python3 bench/compare.py --cpp-json bench-infonce.json

writes bench/results/<date>-<card>.md, .json and .png files. `--help` for the flags, the presets
and the exit statuses (3: no GPU, no PyTorch or no usable library, and nothing is written).
The pieces live in bench/compare/ (only compare/gpu.py imports PyTorch).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare.cli import main  # noqa: E402  (the package beside this file)

if __name__ == "__main__":
    sys.exit(main())
