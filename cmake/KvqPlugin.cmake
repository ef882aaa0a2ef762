# kvq_add_plugin(<target> SOURCES ...): a kvq plugin shared library that exports
# only kvq_plugin_entry (hidden visibility + version script), resolves every
# symbol at link time, and binds its own symbols first.
function(kvq_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_NAME" "SOURCES" ${ARGN})
  add_library(${target} SHARED ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_NAME)
    set_target_properties(${target} PROPERTIES OUTPUT_NAME ${ARG_OUTPUT_NAME})
  endif()
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${KVQ_PLUGIN_MAP}
    -Wl,-Bsymbolic
    -Wl,--exclude-libs,ALL)
  # Every symbol resolved at link time; except in the fuzz build, where clang
  # leaves the sanitizer runtime out of shared libraries: the fuzz target that
  # dlopens a plugin carries the runtime and exports its symbols.
  if(NOT KVQ_FUZZ)
    target_link_options(${target} PRIVATE -Wl,--no-undefined)
  endif()
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${KVQ_PLUGIN_MAP})
  set_property(GLOBAL APPEND PROPERTY KVQ_PLUGINS ${target})
endfunction()
set(KVQ_PLUGIN_MAP ${CMAKE_CURRENT_LIST_DIR}/kvq_plugin.map)
