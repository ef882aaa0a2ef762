// Errors inside a plugin are C++ exceptions of type kvq::sdk::Error; the ABI
// glue (abi_export.cpp) turns every exception into a kvq_error value, so no
// exception ever crosses the C boundary.
#pragma once

#include <kvq_abi.h>

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace kvq::sdk {

class Error : public std::runtime_error {
 public:
  Error(int32_t code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int32_t code() const { return code_; }

 private:
  int32_t code_;
};

// fail(KVQ_ERR_..., "format {}", args...) throws an Error.
template <typename... Args>
[[noreturn]] void fail(int32_t code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace kvq::sdk
