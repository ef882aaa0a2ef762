# ctest driver for conform.every_plugin_in_lib: `kvq conform LIB_DIR/*.so`
# must pass (exit 0) and judge at least the two CPU plugins.
#   cmake -DKVQ=... -DLIB_DIR=... -P check_lib_dir.cmake
file(GLOB plugins "${LIB_DIR}/*.so")
if(NOT plugins)
  message(FATAL_ERROR "no .so in ${LIB_DIR}")
endif()
execute_process(COMMAND ${KVQ} conform ${plugins} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
string(REGEX MATCH "[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped" totals "${out}")
message("kvq conform ${LIB_DIR}/*.so: ${totals}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kvq conform failed (exit ${rc}):\n${out}\n${err}")
endif()
foreach(name kvq_triton_sim kvq_ascend)
  if(NOT out MATCHES "PASS lib${name}.so numeric\\.")
    message(FATAL_ERROR "lib${name}.so was not judged:\n${out}")
  endif()
endforeach()
