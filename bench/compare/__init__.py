"""Helpers of bench/compare.py, the side-by-side benchmark of contrastive.torch against PyTorch.

Only `gpu` imports PyTorch (and only when measuring): `plan` (the cases), `cli` (arguments),
`formulas` (the float64 definitions and the correctness check), `cpp` (the C++ benchmark's
floors), `report` (the Markdown and JSON files, the targets) and `plots` (matplotlib) do not, so
that they are tested on machines without PyTorch or a GPU.
"""
