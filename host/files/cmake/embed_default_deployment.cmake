# cmake -DINPUT=deploy/default.yaml -DOUTPUT=....cpp -P embed_default_deployment.cmake
# Writes a C++ file that holds INPUT as a raw string literal.
file(READ ${INPUT} text)
set(delimiter "kvq_yaml")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string terminator ')${delimiter}\"'")
endif()
set(content "// Generated from ${INPUT} at build time; edit that file, not this one.
#include \"kvq_files/deployment.hpp\"

namespace kvq::host {

std::string_view embedded_default_deployment_yaml() {
  static constexpr char kText[] = R\"${delimiter}(${text})${delimiter}\";
  return {kText, sizeof(kText) - 1};
}

}  // namespace kvq::host
")
# Rewrite only on change, so an unchanged YAML does not rebuild kvq_files.
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} previous)
  if(previous STREQUAL content)
    return()
  endif()
endif()
file(WRITE ${OUTPUT} "${content}")
