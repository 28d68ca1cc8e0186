#!/usr/bin/env bash
# gpu-check.sh [--bench-first | --checks-first] [--long] REPORT_DIR
#
# One call that checks the library on a CUDA machine (one H100/H200, CUDA 13, no internet) and
# brings back its numbers, within a time budget; run from anywhere, it works in the repository
# root. See docs/gpu-check.md. On a machine with internet first:
#
#   bash scripts/stage-deps.sh        # GoogleTest sources, Google Benchmark, pytest into .stage/
#
# then copy the working tree with .stage to the CUDA machine and run there:
#
#   bash scripts/gpu-check.sh "$OUT"
#
# Modes (the summary says which ran):
#   --bench-first (default)  configure, build, the three benchmarks, compare.py, then
#                            build_tests, the tests and the demo; no sanitizers: a run that must
#                            bring numbers
#   --checks-first           configure, build_tests, tests, demo, compute-sanitizer (memcheck,
#                            its self-test, racecheck, initcheck, synccheck), then build, the
#                            benchmarks and compare.py in the time reserved for them
# Each step has a cap and a minimum (bench/check_plan.py); a step gets min(cap, time left - the
# minimums of the steps after it), so no step eats the time of the benchmarks or compare.py.
#
# Steps (status PASS / FAIL / SKIP, seconds, detail):
#   env        nvidia-smi -L and --query-gpu (name, driver, memory, clocks, power, temperature);
#              nvcc, cmake, ninja, c++, compute-sanitizer versions            -> env.log
#   configure  cmake -G Ninja Release, CUDA_ARCH, no fuzz target, the staged GoogleTest and
#              Google Benchmark when present                                  -> build.log
#   build      what the numbers need: the benchmarks, the Python module, the demo (once more
#              without the benchmarks if they alone fail)                     -> build.log
#   build_tests  what the tests run: the GPU and API test binaries, the README examples, the
#              demo (checks-first: the broken-launch self-test too). Only what runs here is
#              built; each mode builds first what it runs first                -> build.log
#   tests      contrastive_gpu_tests split into JOBS gtest shards run at once;
#              contrastive_api_tests (one process: with a device its GPU cases run); ctest
#              python_<file> (the Python tests, GPU ones included) and the documentation examples
#                                                         -> tests.log, ctest-junit.xml
#   demo       examples/contrastive-demo: the three examples, GPU vs float64   -> run.log
#   memcheck, selftest, racecheck, initcheck, synccheck (checks-first only) -> memcheck.log,
#              sanitizers.log
#   bench_infonce, bench_mnr, bench_repel, bench_siglip  one process each, its own JSON and
#              filter; every run
#              compares the library's outputs with the float64 reference before timing it;
#              nvidia-smi clocks / power / temperature before and after each -> bench-<loss>.json,
#              gpu-state.csv, run.log
#   compare    python3 bench/compare.py --short (--long: the full set) with the benchmark JSONs
#                                                          -> compare/<date>-<card>.{md,json,png}
#   summary    mode, table (step | status | seconds | detail), what ran and what did not, whether
#              the numbers stand on passing GPU tests; printed LAST on stdout  -> summary.md
# Nothing changes GPU settings: nvidia-smi is only queried.
#
# Exit status: 0 if no step FAILed, 1 otherwise, 2 on bad usage. A failing step never stops the
# script; steps that depend on it are SKIPped. SKIP (not FAIL): a step the mode leaves out,
# compute-sanitizer missing or unusable, a benchmark not built, GPU steps without a GPU, an
# optional sanitizer without time left.
#
# Environment knobs (defaults in brackets):
#   CUDA_ARCH [90]  JOBS [nproc]  BUILD_DIR [build/gpu-check]  STAGE_DIR [.stage]
#   CHECK_BUDGET [450 s; 570 with --long] total time (a killed step gets 10 s grace: allow ~20 s
#                above it)
#   BENCH_SAMPLE_SECONDS [0.15; 0.5 with --long] timed sampling per benchmark run (the
#                benchmarks' CONTRASTIVE_BENCH_SAMPLE_SECONDS)
#   BENCH_FILTER_INFONCE, _MNR, _REPEL, _SIGLIP [the short sets below; --long: all]
#   GPU_CHECK_BENCH_CAP  seconds (fractions allowed) that replace each benchmark step's timeout:
#                a small value simulates a benchmark killed by its timeout
#   GPU_CHECK_CAP_<step>  seconds: that step's cap instead of the plan's (GPU_CHECK_CAP_build=900
#                for a cold build on a machine with few cores)
#   MEMCHECK_FILTER, RELIABILITY_MEMCHECK_FILTER, RACECHECK_FILTER, INITCHECK_FILTER,
#   SYNCCHECK_FILTER [small sets, below; --long adds more]
#   GPU_CHECK_FORCE_GPU_STEPS=1 runs the GPU steps even where no GPU is visible (to test this
#                script on a machine without one: they report what fails)
set -uo pipefail
export LC_ALL=C

# gtest filter for memcheck: the scenario tests of every loss, the f32 sweep cases with B <= 33
# and the other precisions' cases with B <= 3; MEMCHECK_FILTER='*' checks every GPU test.
MEMCHECK_FILTER_DEFAULT='*Scenario.*:Sweep/*/B1_*:Sweep/*/B2_*:Sweep/*/B3_*:Sweep/*/B7_*'
MEMCHECK_FILTER_DEFAULT+=':Sweep/*/B33_*:Precision/*/B1_*:Precision/*/B2_*:Precision/*/B3_*'
# The reliability tests' small set for every sanitizer
# (tests/gpu/every_loss_sanitizer_smoke_gpu.cpp);
# racecheck and synccheck, the slowest, take its f32 half by default.
SANITIZER_SMOKE='Losses/SanitizerSmoke.*'
SANITIZER_SMOKE_F32='Losses/SanitizerSmoke.*/*_f32'
SANITIZER_LONG="$SANITIZER_SMOKE:Edges/*"
# The short benchmark sets: f32 and bf16, forward and forward_backward; InfoNCE at its shapes
# and CLIP's large batch at B = 32768 on both paths (the tiled one queues thousands of launches);
# per-anchor MNR and Repel on the grid at B = 8192 (n in 1, 3, 16, 127; D in 384, 768) and
# in-batch MNR forward_backward. --long runs everything (f16, backward, B = 256, up to 131072).
BENCH_SHORT_INFONCE='^infonce/(forward|forward_backward)/(f32|bf16)/'
BENCH_SHORT_INFONCE+='|^infonce_clip/forward_backward/(tiled|materialized)/bf16/B:32768/'
BENCH_SHORT_MNR='^mnr/per_anchor/(forward|forward_backward)/(f32|bf16)/B:8192/'
BENCH_SHORT_MNR+='|^mnr/in_batch/forward_backward/(f32|bf16)/'
BENCH_SHORT_REPEL='^repel/(forward|forward_backward)/(f32|bf16)/B:8192/'
BENCH_SHORT_SIGLIP='^siglip/forward_backward/(f32|bf16)/B:16384/|^siglip_large/.*/B:65536/'

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

long=0 mode=bench-first report=""
for arg in "$@"; do
  case "$arg" in
    --long) long=1 ;;
    --bench-first) mode=bench-first ;;
    --checks-first) mode=checks-first ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "gpu-check: unknown option $arg" >&2; exit 2 ;;
    *)
      [[ -z "$report" ]] || { echo "gpu-check: one REPORT_DIR only" >&2; exit 2; }
      report=$arg
      ;;
  esac
done
[[ -n "$report" ]] || {
  echo "usage: bash scripts/gpu-check.sh [--bench-first|--checks-first] [--long] REPORT_DIR" >&2
  exit 2
}
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
if ((long)); then
  CHECK_BUDGET=${CHECK_BUDGET:-570}
  BENCH_SAMPLE_SECONDS=${BENCH_SAMPLE_SECONDS:-0.5}
  BENCH_FILTER_INFONCE=${BENCH_FILTER_INFONCE-} BENCH_FILTER_MNR=${BENCH_FILTER_MNR-}
  BENCH_FILTER_REPEL=${BENCH_FILTER_REPEL-} BENCH_FILTER_SIGLIP=${BENCH_FILTER_SIGLIP-}
  COMPARE_PRESET=()
  RACECHECK_FILTER=${RACECHECK_FILTER:-$SANITIZER_LONG}
  INITCHECK_FILTER=${INITCHECK_FILTER:-$SANITIZER_LONG}
  SYNCCHECK_FILTER=${SYNCCHECK_FILTER:-$SANITIZER_LONG}
  SCENARIOS_TOO=1
else
  CHECK_BUDGET=${CHECK_BUDGET:-450}
  BENCH_SAMPLE_SECONDS=${BENCH_SAMPLE_SECONDS:-0.15}
  BENCH_FILTER_INFONCE=${BENCH_FILTER_INFONCE-$BENCH_SHORT_INFONCE}
  BENCH_FILTER_MNR=${BENCH_FILTER_MNR-$BENCH_SHORT_MNR}
  BENCH_FILTER_REPEL=${BENCH_FILTER_REPEL-$BENCH_SHORT_REPEL}
  BENCH_FILTER_SIGLIP=${BENCH_FILTER_SIGLIP-$BENCH_SHORT_SIGLIP}
  COMPARE_PRESET=(--short)
  RACECHECK_FILTER=${RACECHECK_FILTER:-$SANITIZER_SMOKE_F32}
  INITCHECK_FILTER=${INITCHECK_FILTER:-$SANITIZER_SMOKE}
  SYNCCHECK_FILTER=${SYNCCHECK_FILTER:-$SANITIZER_SMOKE_F32}
  SCENARIOS_TOO=0
fi
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
[[ "$STAGE_DIR" == /* ]] || STAGE_DIR="$ROOT/$STAGE_DIR"

# The plan: STEPS and CAP_/MIN_/KEEP_/OPTIONAL_<step> (bench/check_plan.py).
PYTHON=$(command -v python3 || true)
[[ -n "$PYTHON" ]] || {
  echo "gpu-check: python3 is needed (the time plan, the summaries)" >&2
  exit 2
}
long_arg=()
((long)) && long_arg=(--long)
plan_text=$("$PYTHON" "$ROOT/bench/check_plan.py" "$mode" "$CHECK_BUDGET" "${long_arg[@]}") ||
  { echo "gpu-check: no time plan for $mode in ${CHECK_BUDGET} s (above)" >&2; exit 2; }
eval "$plan_text"
# GPU_CHECK_CAP_<step>=SECONDS raises or lowers one step's cap (a 2-core machine's cold build).
for step in $STEPS; do
  cap_override="GPU_CHECK_CAP_$step"
  [[ -n "${!cap_override:-}" ]] && printf -v "CAP_$step" '%d' "${!cap_override}"
done
ALL_STEPS="configure build build_tests tests demo memcheck selftest racecheck initcheck synccheck"
ALL_STEPS+=" bench_infonce bench_mnr bench_repel bench_siglip compare"

LOG_ENV="$R/env.log" LOG_BUILD="$R/build.log" LOG_TESTS="$R/tests.log" JUNIT="$R/ctest-junit.xml"
LOG_RUN="$R/run.log" LOG_MEMCHECK="$R/memcheck.log" LOG_SANITIZERS="$R/sanitizers.log"
GPU_STATE_CSV="$R/gpu-state.csv" SUMMARY="$R/summary.md"

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

# step_timeout STEP -> seconds STEP may use: min(CAP_STEP, time left - KEEP_STEP), 0 when under 5.
step_timeout() {
  local cap_var="CAP_$1" keep_var="KEEP_$1" left t
  left=$(($(remaining) - ${!keep_var:-$MIN_SUMMARY}))
  t=$((${!cap_var:-0} < left ? ${!cap_var:-0} : left))
  ((t >= 5)) && echo "$t" || echo 0
}
MIN_SUMMARY=5

# run_to LOG SECONDS CMD...  runs CMD with a timeout (fractions allowed), appending its output to
# LOG; returns its rc (124/137: timed out). timeout(1) signals the whole process group, so
# children go too. Runs in the background and waits, so that INT/TERM reach the trap at once.
RUNNING_PIDS=()
run_to() {
  local log=$1 t=$2 rc start pid
  shift 2
  start=$(now_ms)
  printf '\n### $ %s   (timeout %ss, %s)\n' "$*" "$t" "$(date -u +%H:%M:%S)" >>"$log"
  timeout -k 10 "$t" "$@" >>"$log" 2>&1 </dev/null &
  pid=$!
  RUNNING_PIDS=("$pid")
  wait "$pid"
  rc=$?
  RUNNING_PIDS=()
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
  names+=("$1") statuses+=("$2") seconds+=("$(secs_since "$3")") details+=("${detail:0:200}")
  printf '[%4ss] %-13s %-4s %6ss  %s\n' "$((($(now_ms) - T0) / 1000))" "$1" "$2" \
    "${seconds[-1]}" "${details[-1]}"
  write_summary >/dev/null
}
status_of() { # STEP -> its recorded status, or "" when it has none yet
  local i
  for i in "${!names[@]}"; do [[ ${names[i]} == "$1" ]] && { echo "${statuses[i]}"; return; }; done
}
# Whether the numbers (benchmarks, compare) stand on passing GPU tests.
numbers_note() {
  local tests benches="" s
  tests=$(status_of tests)
  for s in bench_infonce bench_mnr bench_repel bench_siglip compare; do
    [[ $(status_of "$s") == PASS ]] && benches+="$s "
  done
  if [[ -z "$benches" ]]; then
    echo "no benchmark or compare numbers came back"
  elif [[ $tests == PASS ]]; then
    echo "TRUSTED: the GPU tests passed in this run (and each benchmark run matched the" \
      "float64 reference before it was timed)"
  elif [[ $tests == FAIL ]]; then
    echo "UNTRUSTED: the GPU tests FAILED in this run; ${benches% } numbers are kept" \
      "for diagnosis only"
  else
    echo "UNCHECKED: the GPU tests did not run (${tests:-not reached}); the numbers rest on" \
      "each benchmark run's own float64 comparison"
  fi
}
write_summary() {
  local i failed_steps=() ran_steps=() not_ran=() total s st bench_cap
  total=$(secs_since "$T0")
  bench_cap=${GPU_CHECK_BENCH_CAP:+ GPU_CHECK_BENCH_CAP=$GPU_CHECK_BENCH_CAP}
  for i in "${!names[@]}"; do
    [[ ${statuses[i]} == FAIL ]] && failed_steps+=("${names[i]}")
    if [[ ${statuses[i]} == SKIP ]]; then
      not_ran+=("${names[i]}")
    else
      ran_steps+=("${names[i]}")
    fi
  done
  for s in $ALL_STEPS; do
    st=$(status_of "$s")
    [[ -z "$st" ]] && not_ran+=("$s (not reached)")
  done
  {
    echo "# contrastive gpu-check"
    echo
    echo "- mode: $mode$( ((long)) && echo ', --long'): steps $STEPS"
    echo "- card: $CARD${DRIVER:+ (driver $DRIVER)}"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host $(uname -n)," \
      "total ${total} s of ${CHECK_BUDGET} s budget"
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a)$(
      [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] &&
        echo ' (modified)')"
    echo "- CUDA_ARCH=$CUDA_ARCH JOBS=$JOBS BENCH_SAMPLE_SECONDS=$BENCH_SAMPLE_SECONDS$bench_cap"
    if [[ $mode == checks-first ]]; then
      echo "- MEMCHECK_FILTER='$MEMCHECK_FILTER'" \
        "RELIABILITY_MEMCHECK_FILTER='$RELIABILITY_MEMCHECK_FILTER'"
      echo "- RACECHECK_FILTER='$RACECHECK_FILTER' INITCHECK_FILTER='$INITCHECK_FILTER'" \
        "SYNCCHECK_FILTER='$SYNCCHECK_FILTER'"
    fi
    echo
    echo "| step | status | seconds | detail |"
    echo "| --- | --- | --- | --- |"
    for i in "${!names[@]}"; do
      echo "| ${names[i]} | ${statuses[i]} | ${seconds[i]} | ${details[i]} |"
    done
    echo
    echo "- ran: ${ran_steps[*]:-nothing}"
    echo "- did not run: ${not_ran[*]:-nothing}"
    echo "- numbers: $(numbers_note)"
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
  echo "===== SUMMARY (files in $R: $(find "$R" -maxdepth 1 -type f | wc -l)) ====="
  write_summary
  grep -q '^RESULT: PASS' "$SUMMARY"
}
on_signal() {
  trap - INT TERM
  local pid
  for pid in "${RUNNING_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done # timeout passes it on
  names+=("interrupted") statuses+=("FAIL") seconds+=("-") \
    details+=("signal received at $(secs_since "$T0") s")
  finish
  exit 1
}
trap on_signal INT TERM

echo "gpu-check: $mode$( ((long)) && echo ', --long'), report in $R," \
  "build in $BUILD_DIR, budget ${CHECK_BUDGET} s"

# --- (a) environment ------------------------------------------------------------------------
start=$(now_ms)
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
SANITIZER=$(command -v compute-sanitizer || true)
for c in /usr/local/cuda/bin/compute-sanitizer \
  /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
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
  gpu_line=$(sed -n "/--query-gpu=$query/,/^### exit/p" "$LOG_ENV" | grep -v '^###' |
    grep ', ' | head -1)
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
command -v ninja >/dev/null && run_to "$LOG_ENV" 10 ninja --version ||
  env_problems+=("ninja not found")
command -v c++ >/dev/null && run_to "$LOG_ENV" 10 c++ --version
if [[ -n "$SANITIZER" ]]; then
  run_to "$LOG_ENV" 20 "$SANITIZER" --version
else
  echo "compute-sanitizer: not found" >>"$LOG_ENV"
fi
env_detail="$CARD${mem:+, $mem}${cc:+, cc $cc}${DRIVER:+, driver $DRIVER}"
env_detail+=", nvcc ${nvcc_version:-?}, cmake ${cmake_version:-?}"
if ((${#env_problems[@]})); then
  record env FAIL "$start" "$(IFS=';'; echo "${env_problems[*]}"); $env_detail"
else
  record env PASS "$start" "$env_detail"
fi
have_toolchain=1
[[ -z "$nvcc_version" || -z "$cmake_version" ]] && have_toolchain=0

# Clocks, power and temperature (queries only), one CSV line per call: before and after each
# benchmark and compare.py.
GPU_STATE_QUERY=timestamp,clocks.sm,clocks.mem,clocks.max.sm,power.draw,power.limit
GPU_STATE_QUERY+=,temperature.gpu,clocks_throttle_reasons.active
gpu_state_snapshot() { # LABEL
  command -v nvidia-smi >/dev/null || return 0
  [[ -s "$GPU_STATE_CSV" ]] || echo "label, $GPU_STATE_QUERY" >"$GPU_STATE_CSV"
  local line
  line=$(timeout 10 nvidia-smi --query-gpu=$GPU_STATE_QUERY --format=csv,noheader 2>/dev/null |
    head -1)
  [[ -n "$line" ]] && echo "$1, $line" >>"$GPU_STATE_CSV"
}

# --- configure and build ---------------------------------------------------------------------
cfg_args=(-S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" -DCONTRASTIVE_BUILD_TESTS=ON
  -DCONTRASTIVE_BUILD_EXAMPLES=ON -DCONTRASTIVE_FUZZ=OFF -DCONTRASTIVE_BUILD_BENCHMARKS=ON)
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
configured=0 built=0 tests_built=0 bench_built=0 bench_note=""

step_configure() {
  local start t rc
  start=$(now_ms)
  t=$(step_timeout configure)
  if ((!have_toolchain)); then
    record configure SKIP "$start" "no nvcc/cmake (see env.log)"
    return
  elif ((t == 0)); then
    record configure FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
    return
  fi
  : >"$LOG_BUILD"
  run_to "$LOG_BUILD" "$t" cmake "${cfg_args[@]}"
  rc=$?
  if ((rc == 0)); then
    configured=1
    record configure PASS "$start" "$deps"
  elif timed_out $rc; then
    record configure FAIL "$start" "timed out after $t s"
  else
    record configure FAIL "$start" "cmake failed ($deps)"
    show_tail "$LOG_BUILD" 'CMake Error|error:|Could not' 3
  fi
}

# The targets this machine runs, those of them the build defines, in two builds: `build` what the
# numbers need (the benchmarks, the Python module, the demo), `build_tests` what the tests and
# sanitizers run (the GPU and API test binaries, the README examples, the demo; checks-first: the
# broken launch of the sanitizer self-test). The CPU-only test binaries, fuzz and install tests run
# in CI. Each mode builds first what it runs first.
BENCH_TARGETS="contrastive_bench_infonce contrastive_bench_mnr contrastive_bench_repel"
BENCH_TARGETS+=" contrastive_bench_siglip"
defined_targets() {
  ninja -C "$BUILD_DIR" -t targets all 2>/dev/null | sed -n 's/^\([A-Za-z0-9_.-]*\): .*/\1/p' |
    sort -u
}
wanted_targets() { # numbers | tests
  local defined wanted t
  defined=$(defined_targets)
  if [[ $1 == numbers ]]; then
    wanted="$BENCH_TARGETS contrastive_python contrastive-demo"
  else
    wanted="contrastive_gpu_tests contrastive_api_tests contrastive-demo
      $(grep -E '^contrastive_readme_' <<<"$defined")"
    [[ $mode == checks-first ]] && wanted+=" contrastive_broken_launch"
  fi
  for t in $wanted; do grep -qx -- "$t" <<<"$defined" && echo "$t"; done
}

# build_targets STEP KIND: builds wanted_targets KIND; sets built (numbers) or tests_built.
build_targets() {
  local step=$1 kind=$2 start t t2 rc targets warnings note="" detail
  start=$(now_ms)
  t=$(step_timeout "$step")
  if ((!configured)); then
    record "$step" SKIP "$start" "not configured"
    return
  elif ((t == 0)); then
    record "$step" FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
    return
  fi
  targets=$(wanted_targets "$kind" | paste -sd' ' -)
  if [[ -z "$targets" ]]; then
    record "$step" FAIL "$start" "none of its targets is defined (see build.log)"
    return
  fi
  echo "### $step targets: $targets" >>"$LOG_BUILD"
  local ok=0
  # shellcheck disable=SC2086
  run_to "$LOG_BUILD" "$t" cmake --build "$BUILD_DIR" -j "$JOBS" --target $targets
  rc=$?
  if ((rc == 0)); then
    ok=1
  elif ! timed_out $rc && grep -q contrastive_bench <<<"$targets"; then
    # Maybe only the benchmarks fail to compile or link (a staged library): the rest without them.
    bench_note="the benchmarks failed to build (see build.log)"
    note="; retried without the benchmarks"
    targets=$(tr ' ' '\n' <<<"$targets" | grep -v '^contrastive_bench_' | paste -sd' ' -)
    t2=$((t - ($(now_ms) - start) / 1000))
    # shellcheck disable=SC2086
    ((t2 >= 5)) && [[ -n "$targets" ]] &&
      run_to "$LOG_BUILD" "$t2" cmake --build "$BUILD_DIR" -j "$JOBS" --target $targets && ok=1
  fi
  if [[ $kind == numbers ]]; then
    built=$ok
    local b
    bench_built=1
    for b in $BENCH_TARGETS; do [[ -x "$BUILD_DIR/bench/$b" ]] || bench_built=0; done
    if ((!bench_built)) && [[ -z "$bench_note" ]] &&
      grep -q 'Google Benchmark not found' "$LOG_BUILD"; then
      bench_note="Google Benchmark not found"
    fi
  else
    tests_built=$ok
  fi
  warnings=$(grep -c 'warning' "$LOG_BUILD")
  if ((ok)); then
    detail="$(wc -w <<<"$targets") targets, $warnings warning lines in build.log$note"
    record "$step" PASS "$start" "$detail${bench_note:+; $bench_note}"
  elif timed_out $rc; then
    record "$step" FAIL "$start" "timed out after $t s"
  else
    record "$step" FAIL "$start" \
      "$(grep -c '^FAILED:' "$LOG_BUILD") failed build edges, $warnings warning lines$note"
    show_tail "$LOG_BUILD" '^FAILED:|error'
  fi
}
step_build() { build_targets build numbers; }
step_build_tests() { build_targets build_tests tests; }

# --- tests: the GPU test binaries (sharded), the API binaries, the Python GPU tests, README ------
# Each gtest process writes its own log under $BUILD_DIR/tests-logs; they are appended to
# tests.log. One timeout covers all of them (they run at once).
gtest_count() { # LOG PATTERN -> the number in the last line matching PATTERN (0 if none)
  local n
  n=$(sed -nE "s/$2/\\1/p" "$1" | tail -1)
  echo "${n:-0}"
}

step_tests() {
  local start t pids=() logs=() shards s b log rc=0 pid
  start=$(now_ms)
  t=$(step_timeout tests)
  if ((!tests_built)); then
    record tests SKIP "$start" "not built"
    return
  elif [[ $GPU_STATE == none ]]; then
    record tests SKIP "$start" "no GPU (the CPU and API tests run in CI)"
    return
  elif ((t == 0)); then
    record tests FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
    return
  fi
  : >"$LOG_TESTS"
  local dir="$BUILD_DIR/tests-logs"
  rm -rf "$dir" && mkdir -p "$dir"
  shards=$((JOBS > 0 ? JOBS : 1))  # one GPU test binary, in JOBS shards
  launch() { # LOG CMD... (in the background, under the step's timeout)
    local out=$1
    shift
    printf '### $ %s\n' "$*" >"$out"
    timeout -k 10 "$t" "$@" >>"$out" 2>&1 </dev/null &
    pids+=($!) logs+=("$out")
  }
  for b in contrastive_gpu_tests; do
    [[ -x "$BUILD_DIR/tests/$b" ]] || { echo "### $b not built" >>"$LOG_TESTS"; rc=1; continue; }
    for ((s = 0; s < shards; s++)); do
      launch "$dir/$b-$s.log" env GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$s \
        "$BUILD_DIR/tests/$b"
    done
  done
  for b in contrastive_api_tests; do
    [[ -x "$BUILD_DIR/tests/$b" ]] || { echo "### $b not built" >>"$LOG_TESTS"; rc=1; continue; }
    launch "$dir/$b.log" "$BUILD_DIR/tests/$b"
  done
  # ctest: the Python tests (GPU ones included where PyTorch / CuPy / JAX are) and the
  # documentation examples; not bench_compare_tests or the wheel build (CPU work CI does).
  launch "$dir/ctest.log" ctest --test-dir "$BUILD_DIR" --output-on-failure -j 4 \
    --timeout "$t" --output-junit "$JUNIT" -R '^(python_.*|readme_example_.*)$' \
    -E '^python_pip_install$'
  RUNNING_PIDS=("${pids[@]}")
  local timed=0 crashed=()
  for i in "${!pids[@]}"; do
    wait "${pids[i]}"
    local code=$?
    timed_out $code && timed=1
    # gtest exits 1 when a test failed; anything else without a summary line is a crash.
    if ((code != 0)) && ! grep -q '^\[==========\] .* ran\.' "${logs[i]}" &&
      [[ ${logs[i]} != */ctest.log ]]; then
      crashed+=("$(basename "${logs[i]}" .log) (exit $code)")
    fi
  done
  RUNNING_PIDS=()
  local ran=0 passed=0 failed=0 skipped=0
  for log in "${logs[@]}"; do
    { echo; echo "===== ${log##*/} ====="; cat "$log"; } >>"$LOG_TESTS"
    [[ $log == */ctest.log ]] && continue
    ran=$((ran + $(gtest_count "$log" '^\[==========\] ([0-9]+) tests? from .* ran\..*')))
    passed=$((passed + $(gtest_count "$log" '^\[  PASSED  \] ([0-9]+) tests?\..*')))
    failed=$((failed + $(gtest_count "$log" '^\[  FAILED  \] ([0-9]+) tests?, listed below.*')))
    skipped=$((skipped + $(gtest_count "$log" '^\[  SKIPPED \] ([0-9]+) tests?, listed below.*')))
  done
  local ctest_line ctest_failed="" ctest_total=""
  ctest_line=$(sed -nE 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' \
    "$dir/ctest.log" | tail -1)
  read -r ctest_failed ctest_total <<<"$ctest_line"
  local counts="gtest: $ran ran, $passed passed, $failed failed, $skipped skipped"
  counts+=" ($shards shards per GPU binary)"
  counts+="; ctest python/README: ${ctest_total:-?} tests, ${ctest_failed:-?} failed"
  [[ $GPU_STATE == present && $skipped -gt 0 ]] && counts+="; skips with a GPU present"
  ((${#crashed[@]})) && counts+="; no gtest summary from: ${crashed[*]}"
  if ((timed)); then
    record tests FAIL "$start" "timed out after $t s; $counts"
  elif ((rc != 0 || failed > 0 || ${#crashed[@]} > 0 || ${ctest_failed:-1} != 0 || ran == 0)); then
    record tests FAIL "$start" "$counts"
    local failures='^\[  FAILED  \] [A-Za-z]'
    failures+='|^[[:space:]]+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Not Run|Exception|Subprocess)'
    show_tail "$LOG_TESTS" "$failures"
  else
    record tests PASS "$start" "$counts"
  fi
}

# --- demo: the three examples, GPU vs float64 ---------------------------------------------
step_demo() {
  local start t rc demo demo_out ref gpu diff why
  start=$(now_ms)
  demo="$BUILD_DIR/examples/contrastive-demo"
  t=$(step_timeout demo)
  if ((!built && !tests_built)); then
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
    diff=$(sed -n 's/^largest |GPU - reference| gradient difference: *//p' "$demo_out" |
      paste -sd'/' -)
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

}
# --- compute-sanitizer (checks-first): memcheck, its self-test, racecheck, initcheck, synccheck
# sanitizer_step STEP TOOL LOG OPTIONAL BINARY FILTER [BINARY FILTER ...]
# compute-sanitizer --tool TOOL over each BINARY's gtest FILTER in turn, all within the step's
# timeout (step_timeout). Each run's output goes to $BUILD_DIR/STEP-BINARY.log and
# is appended to LOG; the step PASSes with 0 sanitizer errors, no failed test and at least one
# test run. OPTIONAL=1: SKIP rather than FAIL when the budget leaves it under its minimum.
sanitizer_step() {
  local step=$1 tool=$2 log=$3 optional=$4
  shift 4
  local min_var="MIN_$step"
  local start t deadline part rc binary filter left
  local ran=0 passed=0 gskipped=0 gfailed=0 errors=0 warnings=0 timed=0 no_output="" unsupported=""
  local failed_rc=0 runs=()
  start=$(now_ms)
  t=$(step_timeout "$step")
  if ((!tests_built)); then
    record "$step" SKIP "$start" "not built"
    return
  elif [[ $GPU_STATE == none ]]; then
    record "$step" SKIP "$start" "no GPU"
    return
  elif [[ -z "$SANITIZER" ]]; then
    record "$step" SKIP "$start" "compute-sanitizer not found"
    return
  elif ((t < (optional ? ${!min_var:-15} : 1))); then
    if ((optional)); then
      record "$step" SKIP "$start" \
        "no time left before the benchmarks' reserved time (--long gives more)"
    else
      record "$step" FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
    fi
    return
  fi
  deadline=$(($(now_ms) + t * 1000))
  local extra=()
  [[ $tool == memcheck ]] && extra=(--leak-check full)
  # compute-sanitizer's summary lines, and its messages for a runtime it cannot check.
  local race_summary='^========= RACECHECK SUMMARY: .*\(([0-9]+) errors?, ([0-9]+) warnings?\).*'
  local unusable='^=========.*(Device not supported|Internal Sanitizer Error'
  unusable+='|[Uu]nsupported (device|GPU|driver)|driver.*incompatible|incompatible.*driver)'
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
    n=$(sed -nE "s/$race_summary/\\1/p" "$part" | tail -1)
    ((${n:-0} > 0)) &&
      [[ -z $(sed -nE 's/^========= ERROR SUMMARY: ([0-9]+) error.*/\1/p' "$part") ]] &&
      errors=$((errors + n))
    n=$(sed -nE "s/$race_summary/\\2/p" "$part" | tail -1)
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
    [[ -z "$unsupported" ]] && unsupported=$(grep -E "$unusable" "$part" |
      head -1 | sed 's/^=========[[:space:]]*//')
    ((rc != 0 && rc != 86)) && ! timed_out $rc && failed_rc=$rc
    ((timed)) && break
  done
  local counts="${runs[*]}: $ran tests ran, $passed passed, $gfailed failed, $gskipped skipped"
  ((warnings > 0)) && counts+=", $warnings racecheck warnings"
  local hazards='^=========[[:space:]]+(Invalid|Leaked|Program hit|Malformed|Misaligned'
  hazards+='|Out.of.bounds|Uninitialized|Barrier|Race|Error|Warning)'
  if [[ -n "$unsupported" ]]; then
    record "$step" SKIP "$start" "sanitizer unusable on this runtime: ${unsupported:0:90}"
  elif ((errors > 0)); then
    record "$step" FAIL "$start" "$errors $tool errors found; $counts"
    show_tail "$log" "$hazards" 1
  elif ((timed)); then
    record "$step" FAIL "$start" "timed out after $t s (narrow its filter); $counts"
  elif [[ -n "$no_output" ]]; then
    record "$step" FAIL "$start" \
      "no gtest output under the sanitizer: $no_output: nothing was checked"
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

gpu_tests="$BUILD_DIR/tests/contrastive_gpu_tests"
reliability_tests="$gpu_tests" # the reliability tests are part of the GPU tests
broken_launch="$BUILD_DIR/tests/contrastive_broken_launch"
scenario_specs=()
((SCENARIOS_TOO)) && scenario_specs=("$gpu_tests" '*Scenario.*')
step_memcheck() {
  : >"$LOG_MEMCHECK"
  sanitizer_step memcheck memcheck "$LOG_MEMCHECK" 0 "$gpu_tests" "$MEMCHECK_FILTER" \
    "$reliability_tests" "$RELIABILITY_MEMCHECK_FILTER"
}
step_racecheck() {
  sanitizer_step racecheck racecheck "$LOG_SANITIZERS" 1 "$reliability_tests" "$RACECHECK_FILTER" \
    "${scenario_specs[@]}"
}
step_initcheck() {
  sanitizer_step initcheck initcheck "$LOG_SANITIZERS" 1 "$reliability_tests" "$INITCHECK_FILTER"
}
step_synccheck() {
  sanitizer_step synccheck synccheck "$LOG_SANITIZERS" 1 "$reliability_tests" "$SYNCCHECK_FILTER" \
    "${scenario_specs[@]}"
}

# The self-test: memcheck must report the deliberate off-by-one of contrastive_broken_launch.
step_selftest() {
  local start t part rc errors first detail
  start=$(now_ms)
  t=$(step_timeout selftest)
  if ((!tests_built)); then
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
    first=$(grep -E -m1 '^=========[[:space:]]+(Invalid|Out.of.bounds)' "$part" |
      sed 's/^=========[[:space:]]*//')
    if timed_out $rc; then
      record selftest FAIL "$start" "timed out after $t s"
    elif ((rc == 77)); then
      record selftest SKIP "$start" "no usable device under the sanitizer"
    elif [[ -n "$errors" && $errors -gt 0 ]]; then
      record selftest PASS "$start" \
        "memcheck caught the deliberate off-by-one: $errors errors (${first:0:60})"
    else
      detail="memcheck reported nothing for a known out-of-bounds launch (exit $rc):"
      detail+=" its 0 errors elsewhere prove nothing"
      record selftest FAIL "$start" "$detail"
      show_tail "$part"
    fi
  fi
}

# --- benchmarks: one process per binary, its own JSON and filter ------------------------------
# bench_step STEP LOSS FILTER: build/bench/contrastive_bench_LOSS -> $R/bench-LOSS.json. A run
# whose outputs differ from the float64 reference reports an error instead of a time, which
# FAILs the step; "out of memory" entries are results. A timeout keeps what the JSON holds.
bench_step() {
  local step=$1 loss=$2 filter=$3 start t rc binary json stats first
  start=$(now_ms)
  t=$(step_timeout "$step")
  binary="$BUILD_DIR/bench/contrastive_bench_$loss"
  json="$R/bench-$loss.json"
  if ((!built)); then
    record "$step" SKIP "$start" "not built"
    return
  elif [[ ! -x "$binary" ]]; then
    record "$step" SKIP "$start" "not built${bench_note:+: $bench_note}"
    return
  elif [[ $GPU_STATE == none ]]; then
    record "$step" SKIP "$start" "no GPU"
    return
  elif ((t == 0)); then
    record "$step" FAIL "$start" "no time left in the ${CHECK_BUDGET} s budget"
    return
  fi
  [[ -n "${GPU_CHECK_BENCH_CAP:-}" ]] && t=$GPU_CHECK_BENCH_CAP
  local args=("--benchmark_out=$json" --benchmark_out_format=json)
  [[ -n "$filter" ]] && args+=("--benchmark_filter=$filter")
  rm -f "$json"
  echo "===== $step =====" >>"$LOG_RUN"
  gpu_state_snapshot "$step before"
  run_to "$LOG_RUN" "$t" env "CONTRASTIVE_BENCH_SAMPLE_SECONDS=$BENCH_SAMPLE_SECONDS" \
    "$binary" "${args[@]}"
  rc=$?
  gpu_state_snapshot "$step after"
  stats=""
  [[ -e "$json" ]] && stats=$(cd "$ROOT/bench" && "$PYTHON" -m compare.cpp summarize "$json" 2>&1)
  first=$(head -1 <<<"$stats")
  # checks-first: the tests ran before; failed tests make these numbers diagnosis only.
  [[ $(status_of tests) == FAIL ]] && first+=" [UNTRUSTED: the GPU tests failed]"
  if timed_out $rc; then
    record "$step" FAIL "$start" \
      "timed out after $t s; ${first:-no JSON written}${filter:+ (filter $filter)}"
  elif ((rc != 0)); then
    record "$step" FAIL "$start" "exit $rc${first:+; $first}"
    show_tail "$LOG_RUN"
  elif [[ ! -s "$json" ]]; then
    record "$step" FAIL "$start" "no JSON written"
  elif [[ ! "$first" =~ ^[1-9][0-9]*\ runs,\ 0\ with\ errors ]] ||
    [[ "$first" == *truncated* ]]; then
    record "$step" FAIL "$start" "${first:-no runs} -> bench-$loss.json"
    tail -n +2 <<<"$stats" | head -n 24
  else
    record "$step" PASS "$start" "$first -> bench-$loss.json"
    tail -n +2 <<<"$stats" | head -n 24
  fi
}
step_bench_infonce() { bench_step bench_infonce infonce "$BENCH_FILTER_INFONCE"; }
step_bench_mnr() { bench_step bench_mnr mnr "$BENCH_FILTER_MNR"; }
step_bench_repel() { bench_step bench_repel repel "$BENCH_FILTER_REPEL"; }
step_bench_siglip() { bench_step bench_siglip siglip "$BENCH_FILTER_SIGLIP"; }

# --- compare: bench/compare.py, contrastive.torch beside PyTorch --------------------------------
# --short by default (the full set with --long), with every benchmark JSON written above (their
# floors, the copy-bandwidth target). compare.py stops starting measurements at 3/4 of its time
# so that it still writes its files, to $R/compare/ (<date>-<card>.md, .json, .png).
step_compare() {
  local start t rc compare_dir compare_out md targets counts where json
  start=$(now_ms)
  compare_dir="$R/compare"
  t=$(step_timeout compare)
  if ((!built)); then
    record compare SKIP "$start" "not built"
    return
  elif [[ $GPU_STATE == none ]]; then
    record compare SKIP "$start" "no GPU"
    return
  elif ! compgen -G "$BUILD_DIR/python/contrastive/_core*" >/dev/null; then
    record compare SKIP "$start" "Python package not built (nanobind missing? see build.log)"
    return
  elif ! python3 -c "import torch" >/dev/null 2>&1; then
    record compare SKIP "$start" "PyTorch not installed"
    return
  elif ((t < ${MIN_compare:-45})); then
    record compare FAIL "$start" \
      "only $t s left of the ${CHECK_BUDGET} s budget, under its ${MIN_compare:-45} s"
    return
  fi
  compare_out="$BUILD_DIR/compare.out"
  : >"$compare_out"
  local args=("${COMPARE_PRESET[@]}" --out "$compare_dir" --time-budget $((t * 3 / 4)))
  for json in "$R"/bench-*.json; do [[ -s "$json" ]] && args+=(--cpp-json "$json"); done
  gpu_state_snapshot "compare before"
  run_to "$compare_out" "$t" env "PYTHONPATH=$BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}" \
    MPLBACKEND=Agg python3 "$ROOT/bench/compare.py" "${args[@]}"
  rc=$?
  gpu_state_snapshot "compare after"
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
    record compare SKIP "$start" \
      "$(grep -v '^###' "$compare_out" | grep . | tail -1 | sed 's/^compare: //')"
  elif ((rc == 1)); then
    record compare FAIL "$start" "contrastive failed a check: $(
      sed -n 's/^compare: LIBRARY FAILURE: //p' "$compare_out" | head -1)"
    grep '^compare: LIBRARY FAILURE' "$compare_out" | head -n 8 | cut -c1-200 | sed 's/^/    /'
  elif ((rc != 0)); then
    record compare FAIL "$start" "exit $rc${where}"
    show_tail "$compare_out"
  elif [[ -z "$md" ]]; then
    record compare FAIL "$start" "no report written"
  else
    record compare PASS "$start" "${targets:-no targets line}${where}"
    [[ -n "$counts" ]] && echo "    measurements: $counts"
    grep '^compare: target ' "$compare_out" | cut -c1-200 | sed 's/^/    /'
  fi
}

# --- the steps of the mode, in order; then the summary, last on stdout --------------------------
: >"$LOG_RUN"
[[ $mode == checks-first ]] && : >"$LOG_SANITIZERS"
for step in $STEPS; do
  "step_$step"
done
for step in $ALL_STEPS; do
  [[ " $STEPS " == *" $step "* ]] && continue
  record "$step" SKIP "$(now_ms)" \
    "not in $mode mode$([[ $mode == bench-first ]] && echo ' (--checks-first runs it)')"
done
finish
