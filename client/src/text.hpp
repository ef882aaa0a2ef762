// Message building without a formatting library: the client depends on
// kvq_abi, libstdc++ and libdl only (no fmt), so hosts with their own fmt
// version link it without conflicts.
#pragma once

#include <sstream>
#include <string>

namespace kvq::client::detail {

// The arguments streamed one after the other: cat("plugin ", path, ": ", n).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// A C string the plugin returned, or "" for NULL.
inline std::string text(const char* s) {
  return s != nullptr ? std::string(s) : std::string();
}

}  // namespace kvq::client::detail
