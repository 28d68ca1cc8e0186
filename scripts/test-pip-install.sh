#!/usr/bin/env bash
# test-pip-install.sh SOURCE_DIR WORK_DIR [PYTHON]
# Installs the package from the source tree with pip into a fresh virtual environment, then runs
# the Python tests against the installed copy, from outside the source tree. The environment sees
# the system site-packages (numpy, pytest, scikit-build-core, nanobind), so nothing is downloaded:
# the same command works offline.
set -euo pipefail
source_dir=$(cd "$1" && pwd)
work_dir=$2
python=${3:-python3}

rm -rf "$work_dir"
mkdir -p "$work_dir"
"$python" -m venv --system-site-packages "$work_dir/venv"
"$work_dir/venv/bin/python" -m pip install --quiet --no-build-isolation --no-deps "$source_dir"
cd "$work_dir"
installed=$("$work_dir/venv/bin/python" -c \
  "import contrastive, os; print(os.path.dirname(contrastive.__file__))")
case "$installed" in
  "$work_dir"/venv/*) echo "testing the installed package in $installed" ;;
  *) echo "expected the installed package, imported $installed" >&2; exit 1 ;;
esac
# Through the runner CTest uses: with CONTRASTIVE_PYTEST_RESULTS set, the counts reach ctest's
# output.
MPLBACKEND=Agg CONTRASTIVE_PYTEST_NAME="pip-installed package (python/tests)" \
  "$work_dir/venv/bin/python" "$source_dir/python/tests/run_pytest.py" "$source_dir/python/tests"
