# Installs the build tree into WORK_DIR/prefix, then configures, builds and runs examples/consumer
# against that prefix alone. Run by CTest as: cmake -D... -P RunConsumerTest.cmake
foreach(variable BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "RunConsumerTest.cmake needs -D${variable}=...")
  endif()
endforeach()

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output
                  ERROR_VARIABLE output)
  message(STATUS "${description}:\n${output}")
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
# A plain install, as a user runs it: what a C++ consumer needs, nothing else.
run_step("install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
if(EXISTS "${WORK_DIR}/prefix/contrastive")
  message(FATAL_ERROR
          "a plain install must not install the Python module (${WORK_DIR}/prefix/contrastive)")
endif()
file(GLOB_RECURSE installed_libraries "${WORK_DIR}/prefix/*/libcontrastive.so")
find_program(READELF readelf)
if(READELF AND installed_libraries)
  list(GET installed_libraries 0 library)
  execute_process(COMMAND ${READELF} -d "${library}" OUTPUT_VARIABLE dynamic)
  string(REGEX MATCH "R(UN)?PATH[^\n]*" runpath "${dynamic}")
  message(STATUS "installed ${library}: ${runpath}")
  if(runpath MATCHES "[[:]/")
    message(FATAL_ERROR "the installed library names an absolute folder in its RUNPATH: ${runpath}")
  endif()
endif()
run_step("configure the consumer" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}"
         -B "${WORK_DIR}/build" -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release
         -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
run_step("build the consumer" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run_step("run the consumer" "${WORK_DIR}/build/contrastive_consumer")
