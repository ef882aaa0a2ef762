# ctest driver for conform.fixture_*: runs kvq-conform on a broken fixture
# followed by the real plugin, and passes only when the suite failed the
# fixture for the right reason and still judged the real plugin.
#   cmake -DCONFORM=... -DFIXTURE=... -DREAL=... -DKIND=crash|wrong|hang [-DTIMEOUT=s]
#         -P check_fixture.cmake
foreach(var CONFORM FIXTURE REAL KIND)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_fixture.cmake: -D${var}= is required")
  endif()
endforeach()

if(NOT DEFINED TIMEOUT)
  set(TIMEOUT 120)
endif()

# The hang fixture runs alone: its short time limit would also apply to the
# real plugin (the crash and wrong fixtures already show that a failed plugin
# does not stop the suite from judging the next one).
set(plugins ${FIXTURE} ${REAL})
if(KIND STREQUAL "hang")
  set(plugins ${FIXTURE})
endif()

execute_process(
  COMMAND ${CONFORM} --timeout ${TIMEOUT} ${plugins}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
message("${out}")

get_filename_component(fixture_name ${FIXTURE} NAME)
get_filename_component(real_name ${REAL} NAME)
set(problems "")

if(rc EQUAL 0)
  string(APPEND problems "\n  the suite exited 0 although the fixture is broken")
endif()
if(KIND STREQUAL "crash")
  set(expected_failure "FAIL ${fixture_name} [^\n]*crashed: SIGSEGV")
elseif(KIND STREQUAL "hang")
  set(expected_failure "FAIL ${fixture_name} [^\n]*timed out after ${TIMEOUT} s")
elseif(KIND STREQUAL "device_overrun")
  # device_memcpy past its destination: the contract case sees the byte after
  # the range, the other cases the guard bytes of their device buffers.
  set(expected_failure "FAIL ${fixture_name} device\\.memcpy_round_trip [^\n]*outside its range")
  if(NOT out MATCHES "FAIL ${fixture_name} numeric\\.[^\n]*guard bytes")
    string(APPEND problems "\n  no numeric case failed on the device buffers' guard bytes")
  endif()
else()
  set(expected_failure "FAIL ${fixture_name} numeric\\.")
endif()
if(NOT out MATCHES "${expected_failure}")
  string(APPEND problems "\n  no line matching \"${expected_failure}\"")
endif()
# The real plugin, run after the fixture, must have been judged in full.
if(NOT KIND STREQUAL "hang")
  foreach(layer contract errors numeric)
    if(NOT out MATCHES "PASS ${real_name} ${layer}\\.")
      string(APPEND problems "\n  no passed ${layer}.* case for ${real_name}: its cases did not run")
    endif()
  endforeach()
endif()
if(NOT out MATCHES "[0-9]+ passed, [1-9][0-9]* failed, [0-9]+ skipped\n?$")
  string(APPEND problems "\n  the totals line is missing or reports no failure")
endif()

if(problems)
  message(FATAL_ERROR "conform.fixture_${KIND}:${problems}\nstderr:\n${err}")
endif()
