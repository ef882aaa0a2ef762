# check_exports.cmake — fails unless a plugin's only defined dynamic symbol is
# kvq_plugin_entry (abi.md rule 1: one exported entry symbol; anything else a
# plugin exports can collide with another plugin or with the host).
#
#   cmake -DNM=<nm> -DPLUGIN=<plugin.so> -P check_exports.cmake
if(NOT PLUGIN OR NOT EXISTS "${PLUGIN}")
  message(FATAL_ERROR "check_exports: PLUGIN '${PLUGIN}' does not exist")
endif()
if(NOT NM)
  set(NM nm)
endif()

execute_process(
  COMMAND "${NM}" -D --defined-only "${PLUGIN}"
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "check_exports: ${NM} failed (${rc}): ${err}")
endif()

# nm lines are "<address> <type> <name>[@version]"; collect the names.
string(REPLACE "\n" ";" lines "${out}")
set(symbols "")
foreach(line IN LISTS lines)
  string(STRIP "${line}" line)
  if(line STREQUAL "")
    continue()
  endif()
  string(REGEX REPLACE "^([0-9a-fA-F]+ +)?[A-Za-z?] +" "" name "${line}")
  list(APPEND symbols "${name}")
endforeach()

if(NOT symbols STREQUAL "kvq_plugin_entry")
  list(JOIN symbols "\n  " pretty)
  message(FATAL_ERROR
    "check_exports: ${PLUGIN} must export exactly kvq_plugin_entry; "
    "nm -D --defined-only shows:\n  ${pretty}")
endif()
message(STATUS "check_exports: ${PLUGIN} exports only kvq_plugin_entry")
