#!/usr/bin/env bash
# gpu-check.sh [--long] REPORT_DIR
#
# One-shot check of the library on a GPU machine (one H100/H200, CUDA 13, no internet), run
# from anywhere; it works in the repository root. Companion step, on the development machine:
#
#   bash scripts/stage-deps.sh        # copies GoogleTest sources + Google Benchmark into .stage/
#
# then carry .stage (git-ignored) to the GPU machine with the working tree and run there:
#
#   bash scripts/gpu-check.sh "$OUT"
#
# What it runs, in order; each step has a timeout, a wall time and a PASS/FAIL/SKIP status:
#   env       nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap;
#             nvcc/cmake/ninja/c++/compute-sanitizer --version             -> env.log
#   configure cmake -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH
#             (with .stage/python on PYTHONPATH when the machine's Python has no pytest)
#             into build/gpu-check, with -DCONTRASTIVE_GTEST_SOURCE_DIR=.stage/googletest and
#             -Dbenchmark_DIR=.stage/benchmark/lib/<multiarch>/cmake/benchmark when staged (else
#             what the machine has); if it fails with benchmarks, again with
#             -DCONTRASTIVE_BUILD_BENCHMARKS=OFF                                 -> build.log
#   build     cmake --build build/gpu-check -j $JOBS (on failure with benchmarks: once more with
#             benchmarks OFF)                                                    -> build.log
#   ctest     ctest --output-on-failure -j $JOBS --timeout 300 --output-junit, all but the pip
#             wheel rebuild (python_tests runs the GPU Python tests where torch/CuPy/JAX are) -> ctest.log,
#                                                                                  ctest-junit.xml
#   demo      build/gpu-check/examples/contrastive-demo (GPU vs float64 reference) -> run.log
#   memcheck  compute-sanitizer --tool memcheck --leak-check full over
#             build/gpu-check/tests/contrastive_gpu_tests --gtest_filter=$MEMCHECK_FILTER and
#             contrastive_gpu_tests --gtest_filter=$RELIABILITY_MEMCHECK_FILTER
#                                                                                -> memcheck.log
#   selftest  compute-sanitizer --tool memcheck over contrastive_broken_launch (a deliberate
#             off-by-one launch, tests/gpu/broken_launch.cpp): PASS when memcheck reports errors, FAIL
#             when it stays silent (then its silence elsewhere proves nothing)  -> sanitizers.log
#   racecheck / initcheck / synccheck  compute-sanitizer --tool TOOL over
#             contrastive_gpu_tests --gtest_filter=$RACECHECK_FILTER (INITCHECK_,
#             SYNCCHECK_): every loss and pass on tiny shapes, the workspace left uninitialized
#             for initcheck; each SKIPs when the budget has no time left for it  -> sanitizers.log
#   bench     build/gpu-check/bench/contrastive_bench_infonce
#             --benchmark_min_time=$BENCH_MIN_TIME, JSON (by default without the large-batch
#             family and f16; "out of memory" entries are results)   -> bench.json, run.log
#   compare   python3 bench/compare.py --short (the full set with --long): contrastive.torch beside
#             PyTorch eager / torch.compile / sentence-transformers; SKIP without torch, GPU or
#             time left                                      -> compare/<date>-<card>.{md,json,png}
#   summary   table (step | status | seconds | detail), printed LAST on stdout -> summary.md
# REPORT_DIR receives at most 9 files (the names above) and the folder compare/. Nothing changes GPU settings: nvidia-smi
# is only queried.
#
# Exit status: 0 if no step FAILed, 1 otherwise, 2 on bad usage. A failing step never stops the
# script; steps that depend on it are SKIPped. SKIP (not FAIL): compute-sanitizer missing or
# "Device not supported" on this runtime, benchmark binary not built, GPU steps without a GPU,
# racecheck / initcheck / synccheck without time left in the budget.
#
# Environment knobs (defaults in brackets):
#   CUDA_ARCH [90]  JOBS [nproc]  BUILD_DIR [build/gpu-check]  STAGE_DIR [.stage]
#   CHECK_BUDGET [450 s; 570 with --long] total time; each step's timeout is cut to fit it
#                (a killed step gets 10 s grace, so allow ~15 s above the budget)
#   MEMCHECK_FILTER [$MEMCHECK_FILTER_DEFAULT below]  BENCH_MIN_TIME [0.05 s; 0.5 with --long]
#   RELIABILITY_MEMCHECK_FILTER, RACECHECK_FILTER, INITCHECK_FILTER, SYNCCHECK_FILTER
#                [$SANITIZER_SMOKE, or its f32 half, below; --long adds more tests]
#   BENCH_FILTER ['-(infonce_clip|/f16/)'; all with --long]  CTEST_TIMEOUT [300 s per test]
#   GPU_CHECK_FORCE_GPU_STEPS=1 runs demo/sanitizers/bench even where no GPU is visible (to test
#   this script on a machine without one)
# --long: longer benchmarks (min_time 0.5 s, every family, bench step up to 240 s), racecheck,
# initcheck and synccheck over more tests, compare.py's full set, and a 570 s budget; give the
# call a limit of 600 s then (the full compare needs more: run it on its own, see README).
set -uo pipefail
export LC_ALL=C

# gtest filter for the compute-sanitizer run: the scenario tests of every loss, the f32 sweep
# cases with B <= 33 and the other precisions' cases with B <= 3 (InfoNCE, MNR per-anchor and
# in-batch, Repel); leaves out B127, B1000, B4097. MEMCHECK_FILTER='*' checks every GPU test: use
# it once that is known to fit the time budget.
MEMCHECK_FILTER_DEFAULT='*Scenario.*:Sweep/*/B1_*:Sweep/*/B2_*:Sweep/*/B3_*:Sweep/*/B7_*:Sweep/*/B33_*:Precision/*/B1_*:Precision/*/B2_*:Precision/*/B3_*'
# The reliability tests' small set for every sanitizer (tests/gpu/every_loss_sanitizer_smoke_gpu.cpp: every
# loss, every pass, f32 and bf16, one tile and small tiles); --long adds the numerical edges (and,
# for racecheck and synccheck, the other test binary's scenario tests).
# racecheck and synccheck, the slowest, take its f32 half by default.
SANITIZER_SMOKE='Losses/SanitizerSmoke.*'
SANITIZER_SMOKE_F32='Losses/SanitizerSmoke.*/*_f32'
SANITIZER_LONG="$SANITIZER_SMOKE:Edges/*"

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

long=0
report=""
for arg in "$@"; do
  case "$arg" in
    --long) long=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gpu-check: unknown option $arg" >&2; exit 2 ;;
    *)
      [[ -z "$report" ]] || { echo "gpu-check: one REPORT_DIR only" >&2; exit 2; }
      report=$arg
      ;;
  esac
done
[[ -n "$report" ]] || { echo "usage: bash scripts/gpu-check.sh [--long] REPORT_DIR" >&2; exit 2; }
mkdir -p "$report" || exit 2
R=$(cd "$report" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$(pwd)

CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
BUILD_DIR=${BUILD_DIR:-build/gpu-check}
STAGE_DIR=${STAGE_DIR:-.stage}
MEMCHECK_FILTER=${MEMCHECK_FILTER:-$MEMCHECK_FILTER_DEFAULT}
RELIABILITY_MEMCHECK_FILTER=${RELIABILITY_MEMCHECK_FILTER:-$SANITIZER_SMOKE}
CTEST_TIMEOUT=${CTEST_TIMEOUT:-300}
# The short run leaves out the large-batch family (B up to 131072) and f16 (as bf16 in time).
BENCH_FILTER_DEFAULT='-(infonce_clip|/f16/)'
if ((long)); then
  CHECK_BUDGET=${CHECK_BUDGET:-570}
  BENCH_MIN_TIME=${BENCH_MIN_TIME:-0.5}
  CAP_BENCH=240 CAP_COMPARE=240 COMPARE_PRESET=()
  BENCH_FILTER=${BENCH_FILTER:-}
  RACECHECK_FILTER=${RACECHECK_FILTER:-$SANITIZER_LONG}
  INITCHECK_FILTER=${INITCHECK_FILTER:-$SANITIZER_LONG}
  SYNCCHECK_FILTER=${SYNCCHECK_FILTER:-$SANITIZER_LONG}
  SCENARIOS_TOO=1
  CAP_RACECHECK=120 CAP_INITCHECK=90 CAP_SYNCCHECK=60
else
  CHECK_BUDGET=${CHECK_BUDGET:-450}
  BENCH_MIN_TIME=${BENCH_MIN_TIME:-0.05}
  CAP_BENCH=45 CAP_COMPARE=60 COMPARE_PRESET=(--short)
  BENCH_FILTER=${BENCH_FILTER-$BENCH_FILTER_DEFAULT}
  RACECHECK_FILTER=${RACECHECK_FILTER:-$SANITIZER_SMOKE_F32}
  INITCHECK_FILTER=${INITCHECK_FILTER:-$SANITIZER_SMOKE}
  SYNCCHECK_FILTER=${SYNCCHECK_FILTER:-$SANITIZER_SMOKE_F32}
  SCENARIOS_TOO=0
  CAP_RACECHECK=40 CAP_INITCHECK=25 CAP_SYNCCHECK=20
fi
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
[[ "$STAGE_DIR" == /* ]] || STAGE_DIR="$ROOT/$STAGE_DIR"

# Longest each step may take (env: 20 s per query), and the least each later step needs (kept
# free while earlier steps run). A step's timeout is min(its cap, budget left - later minimums).
# racecheck, initcheck and synccheck reserve nothing: they run in what is left before the bench's
# minimum, and SKIP when that is under MIN_SANITIZER.
CAP_CONFIGURE=120 CAP_BUILD=300 CAP_CTEST=150 CAP_DEMO=30 CAP_MEMCHECK=100 CAP_SELFTEST=20
MIN_BUILD=30 MIN_CTEST=40 MIN_DEMO=10 MIN_MEMCHECK=40 MIN_SELFTEST=10 MIN_BENCH=20 MIN_SUMMARY=5
MIN_SANITIZER=15 MIN_COMPARE=20  # compare, like the other sanitizers, runs in what is left

LOG_ENV="$R/env.log" LOG_BUILD="$R/build.log" LOG_CTEST="$R/ctest.log" JUNIT="$R/ctest-junit.xml"
LOG_RUN="$R/run.log" LOG_MEMCHECK="$R/memcheck.log" BENCH_JSON="$R/bench.json"
LOG_SANITIZERS="$R/sanitizers.log"
SUMMARY="$R/summary.md"

now_ms() {
  if [[ -n "${EPOCHREALTIME:-}" ]]; then
    local t=${EPOCHREALTIME/[.,]/}
    echo $((10#$t / 1000))
  else
    date +%s%3N
  fi
}
T0=$(now_ms)
DEADLINE=$((T0 + CHECK_BUDGET * 1000))
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }
remaining() { echo $(((DEADLINE - $(now_ms)) / 1000)); }

# step_timeout CAP KEEP -> seconds this step may use (0: no time left)
step_timeout() {
  local left t
  left=$(($(remaining) - $2))
  t=$(($1 < left ? $1 : left))
  ((t >= 5)) && echo "$t" || echo 0
}

# run_to LOG SECONDS CMD...  runs CMD with a timeout, appending its output to LOG; returns its rc
# (124/137: timed out). timeout(1) signals the whole process group, so children go too.
# Runs in the background and waits, so that INT/TERM reach the trap below at once.
RUNNING_PID=""
run_to() {
  local log=$1 t=$2 rc start
  shift 2
  start=$(now_ms)
  printf '\n### $ %s   (timeout %ss, %s)\n' "$*" "$t" "$(date -u +%H:%M:%S)" >>"$log"
  timeout -k 10 "$t" "$@" >>"$log" 2>&1 </dev/null &
  RUNNING_PID=$!
  wait "$RUNNING_PID"
  rc=$?
  RUNNING_PID=""
  printf '### exit %s after %ss\n' "$rc" "$(secs_since "$start")" >>"$log"
  return "$rc"
}
timed_out() { [[ $1 == 124 || $1 == 137 ]]; }

# Print the interesting end of a log on stdout (bounded: only ~12 kB of stdout come back).
show_tail() { # LOG [PATTERN [LINES_AFTER_EACH_MATCH]]
  local log=$1 pattern=${2:-} after=${3:-0}
  [[ -f "$log" ]] || return 0
  echo "    --- ${log##*/} ---"
  if [[ -n "$pattern" ]] && grep -Eq "$pattern" "$log"; then
    grep -E -A "$after" "$pattern" "$log" | grep -v '^--$' | head -n 16
  else
    grep -v '^###' "$log" | tail -n 12
  fi | cut -c1-200 | sed 's/^/    /'
}

# --- results ---------------------------------------------------------------------------------
names=() statuses=() seconds=() details=()
CARD="unknown" DRIVER="" GPU_STATE="unknown"
record() { # NAME STATUS START_MS DETAIL
  local detail=${4//|//}
  names+=("$1") statuses+=("$2") seconds+=("$(secs_since "$3")") details+=("${detail:0:160}")
  printf '[%4ss] %-9s %-4s %6ss  %s\n' "$((($(now_ms) - T0) / 1000))" "$1" "$2" \
    "${seconds[-1]}" "${details[-1]}"
  write_summary >/dev/null
}
write_summary() {
  local i failed_steps=() total
  total=$(secs_since "$T0")
  for i in "${!names[@]}"; do [[ ${statuses[i]} == FAIL ]] && failed_steps+=("${names[i]}"); done
  {
    echo "# contrastive gpu-check"
    echo
    echo "- card: $CARD${DRIVER:+ (driver $DRIVER)}"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host $(uname -n), total ${total} s of ${CHECK_BUDGET} s budget"
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a)$(
      [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (modified)')"
    echo "- CUDA_ARCH=$CUDA_ARCH JOBS=$JOBS MEMCHECK_FILTER='$MEMCHECK_FILTER' RELIABILITY_MEMCHECK_FILTER='$RELIABILITY_MEMCHECK_FILTER' BENCH_MIN_TIME=$BENCH_MIN_TIME$( ((long)) && echo ' --long')"
    echo "- RACECHECK_FILTER='$RACECHECK_FILTER' INITCHECK_FILTER='$INITCHECK_FILTER' SYNCCHECK_FILTER='$SYNCCHECK_FILTER'"
    echo
    echo "| step | status | seconds | detail |"
    echo "| --- | --- | --- | --- |"
    for i in "${!names[@]}"; do
      echo "| ${names[i]} | ${statuses[i]} | ${seconds[i]} | ${details[i]} |"
    done
    echo
    if ((${#failed_steps[@]})); then
      echo "RESULT: FAIL (${failed_steps[*]})"
    else
      echo "RESULT: PASS"
    fi
  } | tee "$SUMMARY"
}
finish() {
  local f size max=$((15 * 1024 * 1024))
  for f in "$R"/*; do # every file that comes back must stay under 16 MiB
    [[ -f "$f" ]] || continue
    size=$(stat -c %s "$f")
    if ((size > max)); then
      tail -c "$max" "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    fi
  done
  echo
  echo "===== SUMMARY (files in $R: $(find "$R" -maxdepth 1 -type f | wc -l); logs: env build ctest run memcheck sanitizers) ====="
  write_summary
  grep -q '^RESULT: PASS' "$SUMMARY"
}
on_signal() {
  trap - INT TERM
  [[ -n "$RUNNING_PID" ]] && kill -TERM "$RUNNING_PID" 2>/dev/null # timeout passes it on
  names+=("interrupted") statuses+=("FAIL") seconds+=("-") details+=("signal received at $(secs_since "$T0") s")
  finish
  exit 1
}
trap on_signal INT TERM

echo "gpu-check: report in $R, build in $BUILD_DIR, budget ${CHECK_BUDGET} s$( ((long)) && echo ', --long')"

# --- (a) environment ------------------------------------------------------------------------
start=$(now_ms)
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
SANITIZER=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$SANITIZER" && -x "$c" ]] && SANITIZER=$c
done
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -a)"
  grep -h PRETTY_NAME /etc/os-release 2>/dev/null
  echo "nproc: $(nproc 2>/dev/null)  JOBS=$JOBS  CUDA_ARCH=$CUDA_ARCH"
  echo "stage: $STAGE_DIR"
  cat "$STAGE_DIR/MANIFEST.txt" 2>/dev/null || echo "(no stage manifest)"
} >"$LOG_ENV" 2>&1
env_problems=()
if command -v nvidia-smi >/dev/null; then
  if run_to "$LOG_ENV" 20 nvidia-smi -L && grep -q '^GPU [0-9]' "$LOG_ENV"; then
    GPU_STATE=present
  else
    GPU_STATE=none
  fi
  query=name,driver_version,memory.total,compute_cap
  if ! run_to "$LOG_ENV" 20 nvidia-smi --query-gpu=$query --format=csv,noheader; then
    query=name,driver_version,memory.total
    run_to "$LOG_ENV" 20 nvidia-smi --query-gpu=$query --format=csv,noheader
  fi
  # First CSV line of the query answer: "NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB, 9.0".
  gpu_line=$(sed -n "/--query-gpu=$query/,/^### exit/p" "$LOG_ENV" | grep -v '^###' | grep ', ' | head -1)
  if [[ -n "$gpu_line" ]]; then
    CARD=$(echo "$gpu_line" | cut -d, -f1 | sed 's/ *$//')
    DRIVER=$(echo "$gpu_line" | cut -d, -f2 | tr -d ' ')
    mem=$(echo "$gpu_line" | cut -d, -f3 | sed 's/^ *//')
    cc=$(echo "$gpu_line" | cut -d, -f4 | tr -d ' ')
  fi
else
  echo "nvidia-smi: not found" >>"$LOG_ENV"
  if compgen -G '/dev/nvidia[0-9]*' >/dev/null; then GPU_STATE=unknown; else GPU_STATE=none; fi
fi
# Testing hook for machines without a GPU: run the GPU steps anyway (they will report failures).
[[ "${GPU_CHECK_FORCE_GPU_STEPS:-0}" == 1 && $GPU_STATE == none ]] && GPU_STATE=unknown
[[ $GPU_STATE == none ]] && { CARD="no GPU visible"; env_problems+=("GPU steps will be skipped"); }
nvcc_version="" cmake_version=""
if command -v nvcc >/dev/null; then
  run_to "$LOG_ENV" 20 nvcc --version
  nvcc_version=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
else
  env_problems+=("nvcc not found")
fi
if command -v cmake >/dev/null; then
  run_to "$LOG_ENV" 20 cmake --version
  cmake_version=$(cmake --version | sed -n '1s/cmake version //p')
else
  env_problems+=("cmake not found")
fi
command -v ninja >/dev/null && run_to "$LOG_ENV" 10 ninja --version || env_problems+=("ninja not found")
command -v c++ >/dev/null && run_to "$LOG_ENV" 10 c++ --version
if [[ -n "$SANITIZER" ]]; then
  run_to "$LOG_ENV" 20 "$SANITIZER" --version
else
  echo "compute-sanitizer: not found" >>"$LOG_ENV"
fi
env_detail="$CARD${mem:+, $mem}${cc:+, cc $cc}${DRIVER:+, driver $DRIVER}, nvcc ${nvcc_version:-?}, cmake ${cmake_version:-?}"
if ((${#env_problems[@]})); then
  record env FAIL "$start" "$(IFS=';'; echo "${env_problems[*]}"); $env_detail"
else
  record env PASS "$start" "$env_detail"
fi
have_toolchain=1
[[ -z "$nvcc_version" || -z "$cmake_version" ]] && have_toolchain=0

# --- (b) configure --------------------------------------------------------------------------
cfg_args=(-S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" -DCONTRASTIVE_BUILD_TESTS=ON
  -DCONTRASTIVE_BUILD_EXAMPLES=ON)
deps="GoogleTest: machine's"
if [[ -f "$STAGE_DIR/googletest/CMakeLists.txt" ]]; then
  cfg_args+=("-DCONTRASTIVE_GTEST_SOURCE_DIR=$STAGE_DIR/googletest")
  deps="GoogleTest: staged"
else
  cfg_args+=("-DCONTRASTIVE_GTEST_SOURCE_DIR=")
fi
bench_cfg=$(compgen -G "$STAGE_DIR/benchmark/lib/*/cmake/benchmark/benchmarkConfig.cmake" | head -1)
if [[ -n "$bench_cfg" ]]; then
  cfg_args+=("-Dbenchmark_DIR=${bench_cfg%/*}")
  deps+=", Benchmark: staged"
else
  deps+=", Benchmark: machine's"
fi
# The Python tests (registered when python3 has nanobind, numpy and pytest) with the staged pytest
# where the machine's Python has none; exported, so configure and ctest both see it.
if python3 -c "import pytest" >/dev/null 2>&1; then
  deps+=", pytest: machine's"
elif [[ -d "$STAGE_DIR/python/pytest" ]]; then
  export PYTHONPATH="$STAGE_DIR/python${PYTHONPATH:+:$PYTHONPATH}"
  deps+=", pytest: staged"
else
  deps+=", pytest: none (Python tests not run)"
fi
configured=0 bench_on=1 bench_note=""
start=$(now_ms)
t=$(step_timeout $CAP_CONFIGURE $((MIN_BUILD + MIN_CTEST + MIN_DEMO + MIN_MEMCHECK + MIN_SELFTEST + MIN_BENCH + MIN_SUMMARY)))
if ((!have_toolchain)); then
  record configure SKIP "$start" "no nvcc/cmake (see env.log)"
elif ((t == 0)); then
  record configure FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
else
  : >"$LOG_BUILD"
  run_to "$LOG_BUILD" "$t" cmake "${cfg_args[@]}" -DCONTRASTIVE_BUILD_BENCHMARKS=ON
  rc=$?
  if ((rc == 0)); then
    configured=1
  elif ! timed_out $rc; then
    bench_on=0 bench_note="configure failed with benchmarks ON (see build.log)"
    t2=$((t - ($(now_ms) - start) / 1000))
    ((t2 >= 5)) && run_to "$LOG_BUILD" "$t2" cmake "${cfg_args[@]}" -DCONTRASTIVE_BUILD_BENCHMARKS=OFF &&
      configured=1
  fi
  if ((configured)); then
    record configure PASS "$start" "$deps${bench_note:+; $bench_note}"
  elif timed_out $rc; then
    record configure FAIL "$start" "timed out after $t s"
  else
    record configure FAIL "$start" "cmake failed ($deps)"
    show_tail "$LOG_BUILD" 'CMake Error|error:|Could not' 3
  fi
fi

# --- (c) build ------------------------------------------------------------------------------
built=0 build_note=""
start=$(now_ms)
t=$(step_timeout $CAP_BUILD $((MIN_CTEST + MIN_DEMO + MIN_MEMCHECK + MIN_SELFTEST + MIN_BENCH + MIN_SUMMARY)))
if ((!configured)); then
  record build SKIP "$start" "not configured"
elif ((t == 0)); then
  record build FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
else
  run_to "$LOG_BUILD" "$t" cmake --build "$BUILD_DIR" -j "$JOBS"
  rc=$?
  if ((rc == 0)); then
    built=1
  elif ((bench_on)) && ! timed_out $rc; then
    # Maybe only the benchmarks fail to compile or link (staged library): retry without them.
    bench_on=0 bench_note="build failed with benchmarks ON (see build.log)"
    build_note="retried with benchmarks OFF"
    t2=$((t - ($(now_ms) - start) / 1000))
    if ((t2 >= 10)) && run_to "$LOG_BUILD" "$t2" cmake "${cfg_args[@]}" -DCONTRASTIVE_BUILD_BENCHMARKS=OFF; then
      t2=$((t - ($(now_ms) - start) / 1000))
      ((t2 >= 5)) && run_to "$LOG_BUILD" "$t2" cmake --build "$BUILD_DIR" -j "$JOBS" && built=1
      rc=$?
    fi
  fi
  warnings=$(grep -c 'warning' "$LOG_BUILD")
  if ((built)); then
    record build PASS "$start" "ok, $warnings warning lines${build_note:+; $build_note}"
  elif timed_out $rc; then
    record build FAIL "$start" "timed out after $t s"
  else
    record build FAIL "$start" "$(grep -c '^FAILED:' "$LOG_BUILD") failed build edges, $warnings warning lines"
    show_tail "$LOG_BUILD" '^FAILED:|error'
  fi
fi

# --- (d) ctest ------------------------------------------------------------------------------
start=$(now_ms)
t=$(step_timeout $CAP_CTEST $((MIN_DEMO + MIN_MEMCHECK + MIN_SELFTEST + MIN_BENCH + MIN_SUMMARY)))
if ((!built)); then
  record ctest SKIP "$start" "not built"
elif ((t == 0)); then
  record ctest FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
else
  per_test=$((CTEST_TIMEOUT < t ? CTEST_TIMEOUT : t))
  : >"$LOG_CTEST"
  # python_pip_install rebuilds the whole library into a wheel, fuzz_c_api fuzzes the host-side
  # checks for a minute: CPU work that CI covers, and minutes of this budget. The Python tests
  # themselves (python_tests, GPU ones included) run.
  run_to "$LOG_CTEST" "$t" ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" \
    --timeout "$per_test" --output-junit "$JUNIT" -E '^(python_pip_install|fuzz_c_api)$'
  rc=$?
  failed="" total=""
  read -r failed total < <(sed -nE 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$LOG_CTEST" | tail -1)
  skipped=$(grep -cE '^[[:space:]]+[0-9]+ - .* \((Skipped|Disabled)\)$' "$LOG_CTEST")
  # "Label Time Summary:" lines look like "gpu    =   1.23 sec*proc (200 tests)".
  labels=$(sed -nE '/^Label Time Summary:/,/^$/ s/^([A-Za-z0-9_.-]+) +=.*\(([0-9]+) tests?\).*/\1 \2/p' "$LOG_CTEST" |
    paste -sd, - | sed 's/,/, /g')
  counts="${total:-?} tests, ${failed:-?} failed, $skipped skipped${labels:+ ($labels)}"
  [[ $GPU_STATE == present && $skipped -gt 0 ]] && counts+="; skips with a GPU present"
  if timed_out $rc; then
    record ctest FAIL "$start" "timed out after $t s; $counts"
  elif grep -q 'No tests were found' "$LOG_CTEST"; then
    record ctest FAIL "$start" "no tests were found"
  elif ((rc == 0)); then
    record ctest PASS "$start" "$counts"
  else
    record ctest FAIL "$start" "$counts"
    show_tail "$LOG_CTEST" '^[[:space:]]+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Not Run|Exception|Subprocess)'
  fi
fi

# --- (e) demo -------------------------------------------------------------------------------
start=$(now_ms)
demo="$BUILD_DIR/examples/contrastive-demo"
t=$(step_timeout $CAP_DEMO $((MIN_MEMCHECK + MIN_SELFTEST + MIN_BENCH + MIN_SUMMARY)))
if ((!built)); then
  record demo SKIP "$start" "not built"
elif [[ ! -x "$demo" ]]; then
  record demo FAIL "$start" "$demo not built"
elif ((t == 0)); then
  record demo FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
else
  demo_out="$BUILD_DIR/demo.out"
  : >"$demo_out"
  run_to "$demo_out" "$t" "$demo" --csv "$BUILD_DIR/similarity.csv"
  rc=$?
  { echo "===== demo ====="; cat "$demo_out"; } >>"$LOG_RUN"
  # One line per example (InfoNCE, MNR, Repel), joined so the summary row stays one line.
  ref=$(sed -n 's/^reference (float64) loss: *//p' "$demo_out" | paste -sd'/' -)
  gpu=$(sed -n 's/^GPU (float32) loss: *//p' "$demo_out" | paste -sd'/' -)
  diff=$(sed -n 's/^largest |GPU - reference| gradient difference: *//p' "$demo_out" | paste -sd'/' -)
  why=$(sed -n 's/^GPU path did not run: *//p' "$demo_out" | head -1)
  if timed_out $rc; then
    record demo FAIL "$start" "timed out after $t s"
  elif grep -q MISMATCH "$demo_out"; then
    record demo FAIL "$start" "MISMATCH: loss gpu $gpu vs ref $ref, grad diff $diff"
  elif ((rc != 0)); then
    record demo FAIL "$start" "exit $rc"
    show_tail "$demo_out"
  elif [[ -n "$gpu" ]]; then
    record demo PASS "$start" "loss gpu $gpu, ref $ref, max grad diff $diff"
  elif [[ $GPU_STATE == none ]]; then
    record demo SKIP "$start" "no GPU: reference only (loss $ref); ${why:0:70}"
  else
    record demo FAIL "$start" "GPU path did not run: ${why:0:100}"
  fi
fi

# --- (f) compute-sanitizer: memcheck, its self-test, racecheck, initcheck, synccheck -----------
gpu_tests="$BUILD_DIR/tests/contrastive_gpu_tests"
reliability_tests="$gpu_tests"  # the reliability tests are part of the GPU tests
broken_launch="$BUILD_DIR/tests/contrastive_broken_launch"
: >"$LOG_SANITIZERS"

# sanitizer_step STEP TOOL CAP KEEP LOG OPTIONAL BINARY FILTER [BINARY FILTER ...]
# compute-sanitizer --tool TOOL over each BINARY's gtest FILTER in turn, all within one timeout
# (CAP, less KEEP for the steps after). Each run's output goes to $BUILD_DIR/STEP-BINARY.log and
# is appended to LOG; the step PASSes with 0 sanitizer errors, no failed test and at least one
# test run. OPTIONAL=1: SKIP rather than FAIL when the budget has no MIN_SANITIZER seconds left.
sanitizer_step() {
  local step=$1 tool=$2 cap=$3 keep=$4 log=$5 optional=$6
  shift 6
  local start t deadline part rc binary filter left
  local ran=0 passed=0 gskipped=0 gfailed=0 errors=0 warnings=0 timed=0 no_output="" unsupported=""
  local failed_rc=0 runs=()
  start=$(now_ms)
  t=$(step_timeout "$cap" "$keep")
  if ((!built)); then
    record "$step" SKIP "$start" "not built"
    return
  elif [[ $GPU_STATE == none ]]; then
    record "$step" SKIP "$start" "no GPU"
    return
  elif [[ -z "$SANITIZER" ]]; then
    record "$step" SKIP "$start" "compute-sanitizer not found"
    return
  elif ((t < (optional ? MIN_SANITIZER : 1))); then
    if ((optional)); then
      record "$step" SKIP "$start" "no time left in the ${CHECK_BUDGET} s budget (run with --long)"
    else
      record "$step" FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
    fi
    return
  fi
  deadline=$(($(now_ms) + t * 1000))
  local extra=()
  [[ $tool == memcheck ]] && extra=(--leak-check full)
  while (($# >= 2)); do
    binary=$1 filter=$2
    shift 2
    if [[ ! -x "$binary" ]]; then
      record "$step" FAIL "$start" "${binary##*/} not built"
      return
    fi
    left=$(((deadline - $(now_ms)) / 1000))
    if ((left < 5)); then
      timed=1
      break
    fi
    part="$BUILD_DIR/$step-${binary##*/}.log"
    : >"$part"
    run_to "$part" "$left" "$SANITIZER" --tool "$tool" "${extra[@]}" --error-exitcode 86 \
      --print-limit 100 "$binary" "--gtest_filter=$filter"
    rc=$?
    cat "$part" >>"$log"
    runs+=("${binary##*/}")
    timed_out $rc && timed=1
    local n
    n=$(sed -nE 's/^========= ERROR SUMMARY: ([0-9]+) error.*/\1/p' "$part" | tail -1)
    errors=$((errors + ${n:-0}))
    n=$(sed -nE 's/^========= RACECHECK SUMMARY: .*\(([0-9]+) errors?, ([0-9]+) warnings?\).*/\1/p' "$part" | tail -1)
    ((${n:-0} > 0)) && [[ -z $(sed -nE 's/^========= ERROR SUMMARY: ([0-9]+) error.*/\1/p' "$part") ]] && errors=$((errors + n))
    n=$(sed -nE 's/^========= RACECHECK SUMMARY: .*\(([0-9]+) errors?, ([0-9]+) warnings?\).*/\2/p' "$part" | tail -1)
    warnings=$((warnings + ${n:-0}))
    n=$(sed -nE 's/^\[==========\] ([0-9]+) tests? from .* ran\..*/\1/p' "$part" | tail -1)
    [[ -z "$n" ]] && no_output+="${binary##*/} (exit $rc) "
    ran=$((ran + ${n:-0}))
    n=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) tests?\..*/\1/p' "$part" | tail -1)
    passed=$((passed + ${n:-0}))
    n=$(sed -nE 's/^\[  SKIPPED \] ([0-9]+) tests?, listed below.*/\1/p' "$part" | tail -1)
    gskipped=$((gskipped + ${n:-0}))
    n=$(sed -nE 's/^\[  FAILED  \] ([0-9]+) tests?, listed below.*/\1/p' "$part" | tail -1)
    gfailed=$((gfailed + ${n:-0}))
    [[ -z "$unsupported" ]] && unsupported=$(grep -E '^=========.*(Device not supported|Internal Sanitizer Error|[Uu]nsupported (device|GPU|driver)|driver.*incompatible|incompatible.*driver)' "$part" |
      head -1 | sed 's/^=========[[:space:]]*//')
    ((rc != 0 && rc != 86)) && ! timed_out $rc && failed_rc=$rc
    ((timed)) && break
  done
  local counts="${runs[*]}: $ran tests ran, $passed passed, $gfailed failed, $gskipped skipped"
  ((warnings > 0)) && counts+=", $warnings racecheck warnings"
  local hazards='^=========[[:space:]]+(Invalid|Leaked|Program hit|Malformed|Misaligned|Out.of.bounds|Uninitialized|Barrier|Race|Error|Warning)'
  if [[ -n "$unsupported" ]]; then
    record "$step" SKIP "$start" "sanitizer unusable on this runtime: ${unsupported:0:90}"
  elif ((errors > 0)); then
    record "$step" FAIL "$start" "$errors $tool errors found; $counts"
    show_tail "$log" "$hazards" 1
  elif ((timed)); then
    record "$step" FAIL "$start" "timed out after $t s (narrow its filter); $counts"
  elif [[ -n "$no_output" ]]; then
    record "$step" FAIL "$start" "no gtest output under the sanitizer: $no_output: nothing was checked"
    show_tail "$log"
  elif ((ran == 0)); then
    record "$step" FAIL "$start" "the filters matched no tests: nothing was checked"
  elif ((gfailed > 0 || failed_rc != 0)); then
    record "$step" FAIL "$start" "tests failed under $tool; $counts"
    show_tail "$log" '^\[  FAILED  \]'
  elif ((gskipped == ran)); then
    record "$step" SKIP "$start" "all $ran tests skipped under the sanitizer (no usable device?)"
  else
    record "$step" PASS "$start" "0 errors${extra[*]:+, ${extra[*]}}; $counts"
  fi
}

: >"$LOG_MEMCHECK"
sanitizer_step memcheck memcheck $CAP_MEMCHECK $((MIN_SELFTEST + MIN_BENCH + MIN_SUMMARY)) \
  "$LOG_MEMCHECK" 0 "$gpu_tests" "$MEMCHECK_FILTER" "$reliability_tests" \
  "$RELIABILITY_MEMCHECK_FILTER"

# The self-test: memcheck must report the deliberate off-by-one of contrastive_broken_launch.
start=$(now_ms)
t=$(step_timeout $CAP_SELFTEST $((MIN_BENCH + MIN_SUMMARY)))
if ((!built)); then
  record selftest SKIP "$start" "not built"
elif [[ $GPU_STATE == none ]]; then
  record selftest SKIP "$start" "no GPU"
elif [[ -z "$SANITIZER" ]]; then
  record selftest SKIP "$start" "compute-sanitizer not found"
elif [[ ! -x "$broken_launch" ]]; then
  record selftest FAIL "$start" "contrastive_broken_launch not built"
elif ((t == 0)); then
  record selftest FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
else
  part="$BUILD_DIR/selftest.log"
  : >"$part"
  run_to "$part" "$t" "$SANITIZER" --tool memcheck --error-exitcode 86 --print-limit 20 \
    "$broken_launch"
  rc=$?
  cat "$part" >>"$LOG_SANITIZERS"
  errors=$(sed -nE 's/^========= ERROR SUMMARY: ([0-9]+) error.*/\1/p' "$part" | tail -1)
  first=$(grep -E -m1 '^=========[[:space:]]+(Invalid|Out.of.bounds)' "$part" | sed 's/^=========[[:space:]]*//')
  if timed_out $rc; then
    record selftest FAIL "$start" "timed out after $t s"
  elif ((rc == 77)); then
    record selftest SKIP "$start" "no usable device under the sanitizer"
  elif [[ -n "$errors" && $errors -gt 0 ]]; then
    record selftest PASS "$start" "memcheck caught the deliberate off-by-one: $errors errors (${first:0:60})"
  else
    record selftest FAIL "$start" "memcheck reported nothing for a known out-of-bounds launch (exit $rc): its 0 errors elsewhere prove nothing"
    show_tail "$part"
  fi
fi

# racecheck, initcheck, synccheck: each in what the budget has left before the bench's minimum.
scenario_specs=()
((SCENARIOS_TOO)) && scenario_specs=("$gpu_tests" '*Scenario.*')
sanitizer_step racecheck racecheck $CAP_RACECHECK $((MIN_BENCH + MIN_SUMMARY)) "$LOG_SANITIZERS" 1 \
  "$reliability_tests" "$RACECHECK_FILTER" "${scenario_specs[@]}"
sanitizer_step initcheck initcheck $CAP_INITCHECK $((MIN_BENCH + MIN_SUMMARY)) "$LOG_SANITIZERS" 1 \
  "$reliability_tests" "$INITCHECK_FILTER"
sanitizer_step synccheck synccheck $CAP_SYNCCHECK $((MIN_BENCH + MIN_SUMMARY)) "$LOG_SANITIZERS" 1 \
  "$reliability_tests" "$SYNCCHECK_FILTER" "${scenario_specs[@]}"

# --- (g) benchmarks -------------------------------------------------------------------------
start=$(now_ms)
bench="$BUILD_DIR/bench/contrastive_bench_infonce"
t=$(step_timeout $CAP_BENCH $MIN_SUMMARY)
if ((!built)); then
  record bench SKIP "$start" "not built"
elif [[ ! -x "$bench" ]]; then
  if [[ -z "$bench_note" ]] && grep -q '^benchmark_DIR:[A-Z]*=.*NOTFOUND' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
    bench_note="Google Benchmark not found"
  fi
  record bench SKIP "$start" "not built${bench_note:+: $bench_note}"
elif [[ $GPU_STATE == none ]]; then
  record bench SKIP "$start" "no GPU"
elif ((t == 0)); then
  record bench FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
else
  bench_args=("--benchmark_min_time=$BENCH_MIN_TIME" "--benchmark_out=$BENCH_JSON"
    --benchmark_out_format=json)
  [[ -n "$BENCH_FILTER" ]] && bench_args+=("--benchmark_filter=$BENCH_FILTER")
  echo "===== bench =====" >>"$LOG_RUN"
  run_to "$LOG_RUN" "$t" "$bench" "${bench_args[@]}"
  rc=$?
  stats=""
  if [[ -s "$BENCH_JSON" ]] && command -v python3 >/dev/null; then
    # Prints "N runs, E with errors" on line 1, then a compact table for stdout.
    stats=$(python3 - "$BENCH_JSON" <<'EOF' 2>&1
import json, sys
try:
    runs = json.load(open(sys.argv[1])).get("benchmarks", [])
except Exception as error:  # partial file after a timeout
    print(f"unreadable JSON ({error.__class__.__name__})"); sys.exit(0)
# A path that does not fit the card reports "out of memory": a result, not a failure.
oom = [r for r in runs if r.get("error_occurred")
       and r.get("error_message", "").startswith("out of memory")]
errors = [r for r in runs if r.get("error_occurred") and r not in oom]
print(f"{len(runs)} runs, {len(errors)} with errors" + (f", {len(oom)} out of memory" if oom else ""))
for r in errors[:3]:
    print(f"    {r['name'][:60]:60} ERROR {r.get('error_message', '')[:70]}")
if len(errors) > 3: print(f"    ... {len(errors) - 3} more errors in bench.json")
good = [r for r in runs if not r.get("error_occurred")]
for r in good[:40]:
    extra = ""
    for key in ("bytes_per_second", "items_per_second"):
        if key in r: extra += f"  {key.split('_')[0]}/s {r[key]:.3g}"
    print(f"    {r['name'][:60]:60} {r['real_time']:10.4g} {r.get('time_unit', '')}{extra}")
if len(good) > 40: print(f"    ... {len(good) - 40} more in bench.json")
EOF
    )
  elif [[ -s "$BENCH_JSON" ]]; then
    stats="$(grep -c '"run_type"' "$BENCH_JSON") runs, $(grep -c '"error_occurred": true' "$BENCH_JSON") with errors"
  fi
  first=$(head -1 <<<"$stats")
  if timed_out $rc; then
    record bench FAIL "$start" "timed out after $t s${first:+; $first}"
  elif ((rc != 0)); then
    record bench FAIL "$start" "exit $rc${first:+; $first}"
    show_tail "$LOG_RUN"
  elif [[ ! -s "$BENCH_JSON" ]]; then
    record bench FAIL "$start" "no bench.json written"
  elif [[ ! "$first" =~ ^[1-9][0-9]*\ runs,\ 0\ with\ errors ]]; then
    record bench FAIL "$start" "${first:-no runs}"
    tail -n +2 <<<"$stats"
  else
    record bench PASS "$start" "$first, min_time $BENCH_MIN_TIME s -> bench.json"
    tail -n +2 <<<"$stats"
  fi
fi

# --- (h) compare: bench/compare.py, contrastive.torch beside PyTorch --------------------------
# --short by default (the full set with --long). Skipped without a GPU, PyTorch or the build's
# Python package, or when the budget has under MIN_COMPARE seconds left; compare.py stops
# starting measurements after two thirds of its time so that it still writes its files, which go
# to $R/compare/ (<date>-<card>.md, .json, .png).
start=$(now_ms)
compare_dir="$R/compare"
t=$(step_timeout $CAP_COMPARE $MIN_SUMMARY)
if ((!built)); then
  record compare SKIP "$start" "not built"
elif [[ $GPU_STATE == none ]]; then
  record compare SKIP "$start" "no GPU"
elif ! compgen -G "$BUILD_DIR/python/contrastive/_core*" >/dev/null; then
  record compare SKIP "$start" "Python package not built (nanobind missing? see build.log)"
elif ! python3 -c "import torch" >/dev/null 2>&1; then
  record compare SKIP "$start" "PyTorch not installed"
elif ((t < MIN_COMPARE)); then
  record compare SKIP "$start" "no time left in the ${CHECK_BUDGET} s budget (--long runs it)"
else
  compare_out="$BUILD_DIR/compare.out"
  : >"$compare_out"
  compare_args=("${COMPARE_PRESET[@]}" --out "$compare_dir" --time-budget $((t * 2 / 3)))
  [[ -s "$BENCH_JSON" ]] && compare_args+=(--cpp-json "$BENCH_JSON")
  run_to "$compare_out" "$t" env "PYTHONPATH=$BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}" \
    MPLBACKEND=Agg python3 "$ROOT/bench/compare.py" "${compare_args[@]}"
  rc=$?
  { echo "===== compare ====="; cat "$compare_out"; } >>"$LOG_RUN"
  # compare.py: 0 written and the library passed its checks, 1 a library check failed, 3 nothing
  # measurable (PyTorch sees no GPU, or the library cannot run: the last line says why), 4 stopped.
  md=$(sed -n 's/^compare: wrote \(.*\.md\)$/\1/p' "$compare_out" | head -1)
  targets=$(sed -n 's/^compare: targets: //p' "$compare_out" | tail -1)
  counts=$(sed -n 's/^compare: measurements: //p' "$compare_out" | tail -1)
  where=${md:+ -> compare/${md##*/}}
  if timed_out $rc; then
    record compare FAIL "$start" "timed out after $t s${where}"
  elif ((rc == 3)); then
    record compare SKIP "$start" "$(grep -v '^###' "$compare_out" | grep . | tail -1 | sed 's/^compare: //')"
  elif ((rc == 1)); then
    record compare FAIL "$start" "contrastive failed a check: $(sed -n 's/^compare: LIBRARY FAILURE: //p' "$compare_out" | head -1)"
    grep '^compare: LIBRARY FAILURE' "$compare_out" | head -n 8 | cut -c1-200 | sed 's/^/    /'
  elif ((rc != 0)); then
    record compare FAIL "$start" "exit $rc${where}"
    show_tail "$compare_out"
  elif [[ -z "$md" ]]; then
    record compare FAIL "$start" "no report written"
  else
    record compare PASS "$start" "${targets:-no targets line}${where}"
    [[ -n "$counts" ]] && echo "    measurements: $counts"
  fi
fi

# --- (i) summary, last on stdout ------------------------------------------------------------
finish
