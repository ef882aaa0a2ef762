# ctest driver for conform.missing_vectors_fail: kvq-conform pointed at a
# folder that does not exist (KVQ_VECTORS_DIR) must exit non-zero and name it.
#   cmake -DCONFORM=... -DPLUGIN=... -DMISSING=... -P check_missing_vectors.cmake
set(ENV{KVQ_VECTORS_DIR} "${MISSING}")
execute_process(
  COMMAND ${CONFORM} ${PLUGIN}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "kvq-conform exited 0 without its golden vectors:\n${out}${err}")
endif()
string(FIND "${err}" "golden-vector folder ${MISSING} not found" at)
if(at EQUAL -1)
  message(FATAL_ERROR "kvq-conform's error does not name ${MISSING}:\n${err}")
endif()
