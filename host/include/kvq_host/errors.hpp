// Host-side error types. Everything the host reports to a user is an Error;
// a failure returned by a plugin call is a PluginError that keeps the ABI
// error code, so callers can react to e.g. UNSUPPORTED differently.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace kvq::host {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class PluginError : public Error {
 public:
  // `context` says which plugin and which call, e.g. "plugin 'x': forward (layer 0)".
  PluginError(int32_t code, std::string plugin_message, std::string context);

  int32_t code() const noexcept { return code_; }
  const std::string& plugin_message() const noexcept { return plugin_message_; }
  const std::string& context() const noexcept { return context_; }

 private:
  int32_t code_;
  std::string plugin_message_;
  std::string context_;
};

// "OUT_OF_RANGE" for KVQ_ERR_OUT_OF_RANGE; "UNKNOWN_ERROR_42" for codes this
// host does not know (a newer plugin may add codes).
std::string error_code_name(int32_t code);

}  // namespace kvq::host
