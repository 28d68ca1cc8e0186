#!/usr/bin/env bash
# stage-deps.sh [STAGE_DIR]   (default STAGE_DIR: .stage, relative to the repository root)
#
# Why: the CUDA machine that runs scripts/gpu-check.sh (docs/gpu-check.md) has no internet and
# may lack GoogleTest and Google Benchmark. This script runs on a machine with them (Debian 12,
# packages googletest and libbenchmark-dev) and copies both into STAGE_DIR, which is git-ignored
# and copied to the CUDA machine with the working tree:
#
#   STAGE_DIR/googletest/   copy of /usr/src/googletest (GoogleTest 1.12.1 sources); the build
#                           uses it through -DCONTRASTIVE_GTEST_SOURCE_DIR=<it>
#   STAGE_DIR/benchmark/    relocatable prefix mirroring /usr for Google Benchmark 1.7.1:
#                             include/benchmark/*.h
#                             lib/x86_64-linux-gnu/libbenchmark.so* , libbenchmark_main.a
#                             lib/x86_64-linux-gnu/cmake/benchmark/*.cmake
#                           the build uses it through
#                           -Dbenchmark_DIR=<it>/lib/x86_64-linux-gnu/cmake/benchmark
#   STAGE_DIR/python/       pytest and its pure-Python dependencies (pluggy, iniconfig, packaging,
#                           pygments) copied from this machine's Python, for the Python tests on a
#                           GPU machine whose Python lacks pytest (gpu-check.sh puts it on
#                           PYTHONPATH only then); skipped when this Python has no pytest
#   STAGE_DIR/MANIFEST.txt  what was staged, from where, and when
#
# Symbolic links are resolved into plain files (libbenchmark.so -> .so.1debian -> .so.1.7.1 become
# three copies, about 1 MiB), so the stage survives transfers that drop links. The benchmark
# CMake package computes its prefix from its own location (four folders up from
# lib/x86_64-linux-gnu/cmake/benchmark); this script checks that by configuring a scratch
# project against the copy, and rewrites any hard-coded /usr paths in the copy (never in /usr)
# if a future package version has them.
#
# Idempotent: STAGE_DIR/googletest, STAGE_DIR/benchmark and STAGE_DIR/python are replaced on every
# run; nothing else in STAGE_DIR is touched. Set STAGE_SKIP_SELFTEST=1 to skip the scratch
# configure.
set -euo pipefail

GTEST_SRC=${GTEST_SRC:-/usr/src/googletest}
SYS_PREFIX=${BENCHMARK_PREFIX:-/usr}
MULTIARCH=${MULTIARCH:-x86_64-linux-gnu}
MAX_MIB=60

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stage=${1:-.stage}
case "$stage" in
  /*) ;;
  *) stage="$repo_root/$stage" ;;
esac

die() { echo "stage-deps: error: $*" >&2; exit 1; }

sys_lib="$SYS_PREFIX/lib/$MULTIARCH"
sys_cmake="$sys_lib/cmake/benchmark"
[[ -f "$GTEST_SRC/CMakeLists.txt" ]] ||
  die "no GoogleTest sources at $GTEST_SRC (Debian: apt-get install googletest)"
[[ -f "$SYS_PREFIX/include/benchmark/benchmark.h" ]] ||
  die "no $SYS_PREFIX/include/benchmark/benchmark.h (Debian: apt-get install libbenchmark-dev)"
[[ -f "$sys_cmake/benchmarkConfig.cmake" ]] || die "no $sys_cmake/benchmarkConfig.cmake"
compgen -G "$sys_lib/libbenchmark.so*" >/dev/null || die "no $sys_lib/libbenchmark.so*"

mkdir -p "$stage"
# Build into temporary folders, then swap them in, so an interrupted run leaves no half copy.
tmp_gtest="$stage/.googletest.tmp.$$"
tmp_bench="$stage/.benchmark.tmp.$$"
cleanup() { rm -rf "$tmp_gtest" "$tmp_bench"; }
trap cleanup EXIT

# --- GoogleTest sources ---------------------------------------------------------------------
cp -RL "$GTEST_SRC" "$tmp_gtest"

# --- Google Benchmark prefix ----------------------------------------------------------------
mkdir -p "$tmp_bench/include" "$tmp_bench/lib/$MULTIARCH/cmake"
cp -RL "$SYS_PREFIX/include/benchmark" "$tmp_bench/include/benchmark"
for f in "$sys_lib"/libbenchmark*; do
  case "$f" in
    *.so | *.so.* | *.a) cp -L "$f" "$tmp_bench/lib/$MULTIARCH/" ;;
  esac
done
cp -RL "$sys_cmake" "$tmp_bench/lib/$MULTIARCH/cmake/benchmark"

# Relocatability: the generated files must derive paths from CMAKE_CURRENT_LIST_FILE/DIR. The
# only literal "/usr/..." allowed is the one inside the "/usr move" REALPATH guard, which compares
# against the original install folder and therefore never matches a copy elsewhere.
copied_cmake="$tmp_bench/lib/$MULTIARCH/cmake/benchmark"
grep -q 'CMAKE_CURRENT_LIST_FILE\|CMAKE_CURRENT_LIST_DIR' "$copied_cmake/benchmarkTargets.cmake" ||
  echo "stage-deps: warning: benchmarkTargets.cmake does not refer to its own location" >&2
fixed=0
for f in "$copied_cmake"/*.cmake; do
  # Hard-coded library/include paths (what a non-relocatable export would contain).
  if grep -Eq "\"$SYS_PREFIX/(lib/$MULTIARCH/lib|include)" "$f"; then
    sed -i -E \
      -e "s#\"$SYS_PREFIX/lib/$MULTIARCH/lib#\"\${_IMPORT_PREFIX}/lib/$MULTIARCH/lib#g" \
      -e "s#\"$SYS_PREFIX/include#\"\${_IMPORT_PREFIX}/include#g" "$f"
    echo "stage-deps: rewrote hard-coded $SYS_PREFIX paths in the copy of $(basename "$f")"
    fixed=1
  fi
done
if [[ $fixed == 0 ]]; then
  echo "stage-deps: benchmark CMake package is relocatable (prefix = its folder/../../../..)"
fi

rm -rf "$stage/googletest" "$stage/benchmark"
mv "$tmp_gtest" "$stage/googletest"
mv "$tmp_bench" "$stage/benchmark"

# --- self-test: configure a scratch project against the copies ------------------------------
bench_dir="$stage/benchmark/lib/$MULTIARCH/cmake/benchmark"
if [[ "${STAGE_SKIP_SELFTEST:-0}" != 1 ]] && command -v cmake >/dev/null; then
  scratch=$(mktemp -d)
  trap 'cleanup; rm -rf "$scratch"' EXIT
  cat >"$scratch/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(stage_selftest LANGUAGES CXX)
find_package(benchmark CONFIG REQUIRED)
set(stage "${STAGE_DIR}")
foreach(target benchmark::benchmark benchmark::benchmark_main)
  get_target_property(include_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
  foreach(config IN LISTS configs)
    get_target_property(location ${target} IMPORTED_LOCATION_${config})
    message(STATUS "selftest: ${target} ${config} -> ${location}")
    string(FIND "${location}" "${stage}/" at)
    if(NOT at EQUAL 0 OR NOT EXISTS "${location}")
      message(FATAL_ERROR "selftest: ${target} resolves outside the stage: ${location}")
    endif()
  endforeach()
  string(FIND "${include_dirs}" "${stage}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "selftest: ${target} includes resolve outside the stage: ${include_dirs}")
  endif()
endforeach()
message(STATUS "selftest: benchmark ${benchmark_VERSION} found at ${benchmark_DIR}")
set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
add_subdirectory("${GTEST_DIR}" googletest EXCLUDE_FROM_ALL)
if(NOT TARGET gtest_main OR NOT TARGET gmock)
  message(FATAL_ERROR "selftest: staged GoogleTest did not define gtest_main/gmock")
endif()
message(STATUS "selftest: GoogleTest targets defined from ${GTEST_DIR}")
EOF
  if cmake -S "$scratch" -B "$scratch/build" -DSTAGE_DIR="$stage" -Dbenchmark_DIR="$bench_dir" \
      -DGTEST_DIR="$stage/googletest" >"$scratch/log" 2>&1; then
    grep 'selftest:' "$scratch/log" | sed 's/^-- /stage-deps: /'
  else
    cat "$scratch/log" >&2
    die "scratch configure against the staged copies failed (log above)"
  fi
fi

# --- pytest for the Python tests -------------------------------------------------------------
rm -rf "$stage/python"
python_note="python: not staged (no pytest in this machine's python3)"
if python3 -c "import pytest" >/dev/null 2>&1; then
  mkdir -p "$stage/python"
  # Each file of the five distributions' own modules, wherever python3 has them.
  python3 - "$stage/python" <<'EOF'
import importlib.metadata as metadata
import pathlib
import shutil
import sys

target = pathlib.Path(sys.argv[1])
for distribution in ("pytest", "pluggy", "iniconfig", "packaging", "pygments"):
    for entry in metadata.files(distribution) or []:
        top = entry.parts[0]
        if top.endswith(".dist-info") or top.startswith("..") or "__pycache__" in entry.parts:
            continue
        source = pathlib.Path(entry.locate())
        if not source.is_file():
            continue
        destination = target / entry
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
EOF
  python_note="python: pytest $(python3 -c 'import pytest; print(pytest.__version__)'
    ) and its dependencies from $(python3 --version 2>&1)"
fi

# --- manifest and report --------------------------------------------------------------------
gtest_version=$(sed -n 's/.*GOOGLETEST_VERSION \([0-9.]*\).*/\1/p' \
  "$stage/googletest/CMakeLists.txt" | head -1)
bench_version=$(sed -n 's/^set(PACKAGE_VERSION "\([^"]*\)").*/\1/p' \
  "$bench_dir/benchmarkConfigVersion.cmake" | head -1)
{
  echo "staged by scripts/stage-deps.sh on $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n)"
  echo "googletest ${gtest_version:-?}  from $GTEST_SRC"
  echo "benchmark  ${bench_version:-?}  from $SYS_PREFIX (include/benchmark," \
    "lib/$MULTIARCH/libbenchmark*, lib/$MULTIARCH/cmake/benchmark)"
  echo "$python_note"
  echo "use: -DCONTRASTIVE_GTEST_SOURCE_DIR=<stage>/googletest" \
    "-Dbenchmark_DIR=<stage>/benchmark/lib/$MULTIARCH/cmake/benchmark"
} >"$stage/MANIFEST.txt"

echo "stage-deps: staged into $stage"
echo "  googletest ${gtest_version:-?}: $(find "$stage/googletest" -type f | wc -l) files," \
  "$(du -sh "$stage/googletest" | cut -f1)"
echo "  benchmark  ${bench_version:-?}: $(du -sh "$stage/benchmark" | cut -f1)"
(cd "$stage/benchmark" && find . -type f \( -path './lib/*' -o -name '*.h' \) | sort |
  sed 's#^\./#    #')
total_kib=$(du -sk "$stage" | cut -f1)
echo "  total size of $stage: $((total_kib / 1024)) MiB (${total_kib} KiB)"
if ((total_kib > MAX_MIB * 1024)); then
  die "stage is larger than $MAX_MIB MiB; the carried tree is limited to 64 MiB in all"
fi
echo "copy ${stage#"$repo_root"/} to the CUDA machine with the working tree, then run there:"
echo "  bash scripts/gpu-check.sh \"\$OUT\""
