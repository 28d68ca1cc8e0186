# The C++ examples of the documentation, compiled and run as tests.
#
#   contrastive_add_doc_examples(LINK <target> LABELS <labels...> FILES <markdown files...>)
#
# Every ```cpp block between <!-- readme-example NAME --> and <!-- /readme-example --> markers, each
# at the start of a line (a marker quoted inside a sentence is prose), in the given files
# (README.md and docs/*.md) becomes a program contrastive_readme_NAME, linked to
# LINK, and a test readme_example_NAME. Names are unique across the files; a file without examples
# is fine, no examples at all is an error, and so is a ```cpp fence at the start of a line outside
# the markers (an example that would silently not be compiled). The files are configure
# dependencies: editing an example reconfigures. (Walked with string(FIND): C++ code is full of
# ';', which would split a CMake list.)
function(contrastive_add_doc_examples)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "LINK" "LABELS;FILES")
  set(names "")
  foreach(file IN LISTS arg_FILES)
    file(READ ${file} rest)
    string(PREPEND rest "\n")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
    set(fences 0)
    set(scan "${rest}")
    while(TRUE)
      string(FIND "${scan}" "\n```cpp" at)
      if(at EQUAL -1)
        break()
      endif()
      math(EXPR fences "${fences} + 1")
      math(EXPR at "${at} + 7")
      string(SUBSTRING "${scan}" ${at} -1 scan)
    endwhile()
    set(blocks 0)
    while(TRUE)
      string(FIND "${rest}" "\n<!-- readme-example " block_start)
      if(block_start EQUAL -1)
        break()
      endif()
      math(EXPR block_start "${block_start} + 1")
      string(SUBSTRING "${rest}" ${block_start} -1 rest)
      string(FIND "${rest}" "\n<!-- /readme-example -->" block_end)
      if(block_end EQUAL -1)
        message(FATAL_ERROR "${file}: a <!-- readme-example --> block is not closed")
      endif()
      string(SUBSTRING "${rest}" 0 ${block_end} block)
      string(REGEX MATCH "^<!-- readme-example ([a-z_]+) -->[\r\n]+```cpp[\r\n]+(.*)```" parts
             "${block}")
      if(NOT CMAKE_MATCH_1)
        message(FATAL_ERROR "${file}: a readme-example block needs a name and one ```cpp fence")
      endif()
      set(name ${CMAKE_MATCH_1})
      if(name IN_LIST names)
        message(FATAL_ERROR "${file}: a second readme-example named ${name}")
      endif()
      list(APPEND names ${name})
      math(EXPR blocks "${blocks} + 1")
      set(source ${PROJECT_BINARY_DIR}/readme_example_${name}.cpp)
      file(WRITE ${source} "${CMAKE_MATCH_2}")
      add_executable(contrastive_readme_${name} ${source})
      target_link_libraries(contrastive_readme_${name} PRIVATE ${arg_LINK})
      add_test(NAME readme_example_${name} COMMAND contrastive_readme_${name})
      set_tests_properties(readme_example_${name} PROPERTIES LABELS "${arg_LABELS}")
      string(SUBSTRING "${rest}" ${block_end} -1 rest)
      string(SUBSTRING "${rest}" 1 -1 rest)  # past the newline: the closing marker is not a start
    endwhile()
    if(NOT fences EQUAL blocks)
      message(FATAL_ERROR "${file}: ${fences} ```cpp blocks, ${blocks} of them between "
                          "<!-- readme-example NAME --> markers: put every C++ example between "
                          "markers (or fence it as another language) so that it is compiled")
    endif()
  endforeach()
  if(NOT names)
    message(FATAL_ERROR "no ```cpp block between <!-- readme-example NAME --> markers in: "
                        "${arg_FILES}")
  endif()
endfunction()
