# The fuzz_c_api test (cmake -P): configure fuzz/ with clang++ into WORK_DIR/build, build the
# fuzzer and the seed writer, write fresh seeds into WORK_DIR/corpus, then fuzz for SECONDS on
# them and on the committed corpus (SOURCE_DIR/corpus, read, never written). A crash, a sanitizer
# report or a broken invariant fails the test; the input that did it is left in WORK_DIR/artifacts
# (`contrastive_fuzz_c_api <file>` replays it). Prints "fuzz_c_api: skipped" and exits 0 (CTest
# then reports the test as skipped) when there is no clang++ with libFuzzer.
#
# Inputs: SOURCE_DIR WORK_DIR CLANGXX CUDA_ROOT GENERATOR LAUNCHER SECONDS
foreach(var SOURCE_DIR WORK_DIR GENERATOR SECONDS)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_fuzz.cmake: ${var} is not set")
  endif()
endforeach()

if(NOT CLANGXX OR NOT EXISTS "${CLANGXX}")
  message(STATUS "fuzz_c_api: skipped: no clang++ found (libFuzzer needs clang)")
  return()
endif()
# Does this clang link libFuzzer? (Debian: libclang-rt-NN-dev)
set(probe_dir "${WORK_DIR}/probe")
file(MAKE_DIRECTORY "${probe_dir}")
file(WRITE "${probe_dir}/probe.cpp"
     "#include <cstddef>\n#include <cstdint>\n"
     "extern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }\n")
execute_process(
  COMMAND "${CLANGXX}" -fsanitize=fuzzer,address,undefined "${probe_dir}/probe.cpp" -o
          "${probe_dir}/probe"
  RESULT_VARIABLE probe_result OUTPUT_VARIABLE probe_output ERROR_VARIABLE probe_output)
if(NOT probe_result EQUAL 0)
  message(STATUS "fuzz_c_api: skipped: ${CLANGXX} cannot link libFuzzer:\n${probe_output}")
  return()
endif()

set(build_dir "${WORK_DIR}/build")
set(configure_args -S "${SOURCE_DIR}" -B "${build_dir}" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CLANGXX}" -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if(CUDA_ROOT)
  list(APPEND configure_args "-DCUDAToolkit_ROOT=${CUDA_ROOT}")
endif()
if(LAUNCHER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" ${configure_args} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "fuzz_c_api: configuring fuzz/ with ${CLANGXX} failed")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${build_dir}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "fuzz_c_api: building the fuzzer failed")
endif()

set(corpus "${WORK_DIR}/corpus")
set(artifacts "${WORK_DIR}/artifacts")
file(REMOVE_RECURSE "${corpus}" "${artifacts}")
file(MAKE_DIRECTORY "${corpus}" "${artifacts}")
execute_process(COMMAND "${build_dir}/contrastive_fuzz_seeds" "${corpus}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "fuzz_c_api: writing the seeds failed")
endif()

# New inputs go to the first corpus folder (the scratch one); the committed corpus is only read.
execute_process(
  COMMAND "${build_dir}/contrastive_fuzz_c_api" "-max_total_time=${SECONDS}" -timeout=10
          -rss_limit_mb=4096 -print_final_stats=1 "-artifact_prefix=${artifacts}/"
          "${corpus}" "${SOURCE_DIR}/corpus"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  file(GLOB found "${artifacts}/*")
  message(FATAL_ERROR "fuzz_c_api: the fuzzer failed (exit ${result}); inputs: ${found}")
endif()
file(GLOB new_inputs "${corpus}/*")
list(LENGTH new_inputs count)
message(STATUS "fuzz_c_api: ${SECONDS} s of fuzzing, no failure; ${count} inputs in ${corpus}")
