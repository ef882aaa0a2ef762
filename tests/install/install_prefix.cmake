# install_prefix.cmake — installs the build tree into a fresh prefix and checks
# that the files a plugin author and a host need are there.
#
#   cmake -DBINARY_DIR=<build> -DPREFIX=<prefix> -DEXPECT="rel;paths" -P install_prefix.cmake
foreach(var BINARY_DIR PREFIX)
  if(NOT ${var})
    message(FATAL_ERROR "install_prefix: ${var} is not set")
  endif()
endforeach()

# Start from an empty prefix so a file left by an earlier run cannot make a
# missing install rule look fine.
file(REMOVE_RECURSE "${PREFIX}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --prefix "${PREFIX}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install_prefix: cmake --install failed (${rc})")
endif()

set(missing "")
foreach(path IN LISTS EXPECT)
  if(NOT EXISTS "${PREFIX}/${path}")
    list(APPEND missing "${path}")
  endif()
endforeach()
if(missing)
  list(JOIN missing "\n  " pretty)
  message(FATAL_ERROR "install_prefix: missing under ${PREFIX}:\n  ${pretty}")
endif()
message(STATUS "install_prefix: ${PREFIX} complete")
