# build_example.cmake — configures and builds the example plugin out of tree
# against an installed kvq, the way a third-party plugin author would.
#
#   cmake -DSOURCE=<examples/minimal_plugin> -DBUILD=<dir> -DPREFIX=<install prefix>
#         -DC_COMPILER=<cc> -P build_example.cmake
foreach(var SOURCE BUILD PREFIX C_COMPILER)
  if(NOT ${var})
    message(FATAL_ERROR "build_example: ${var} is not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${BUILD}")
# -Werror: the example is meant to be copied; it must build warning-free.
# The package registry is off so only PREFIX can satisfy find_package(kvq).
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${SOURCE}" -B "${BUILD}"
          "-DCMAKE_PREFIX_PATH=${PREFIX}"
          "-DCMAKE_C_COMPILER=${C_COMPILER}"
          -DCMAKE_BUILD_TYPE=RelWithDebInfo
          -DCMAKE_C_FLAGS=-Werror
          -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "build_example: configure failed (${rc})")
endif()

# It must have found the kvq under PREFIX, not some other installation.
file(STRINGS "${BUILD}/CMakeCache.txt" kvq_dir_line REGEX "^kvq_DIR:")
file(REAL_PATH "${PREFIX}" real_prefix)
string(REGEX REPLACE "^kvq_DIR:[A-Z]+=" "" kvq_dir "${kvq_dir_line}")
file(REAL_PATH "${kvq_dir}" kvq_dir)
string(FIND "${kvq_dir}" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "build_example: found kvq in '${kvq_dir}', expected under '${real_prefix}'")
endif()

execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BUILD}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "build_example: build failed (${rc})")
endif()
