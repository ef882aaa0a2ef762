// Errors of the client library. Everything it reports is an Error; a failure
// returned by a plugin call is a PluginError that keeps the ABI error code,
// so callers can react to e.g. UNSUPPORTED differently. The host aliases
// these types (kvq_files/errors.hpp), so host code catches the same classes.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace kvq::client {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class PluginError : public Error {
 public:
  // `context` says which plugin and which call, e.g. "plugin 'x': forward (layer 0)".
  // what() is "<context>: <CODE NAME>: <plugin_message>".
  PluginError(int32_t code, std::string plugin_message, std::string context);

  int32_t code() const noexcept { return code_; }
  const std::string& plugin_message() const noexcept { return plugin_message_; }
  const std::string& context() const noexcept { return context_; }

 private:
  int32_t code_;
  std::string plugin_message_;
  std::string context_;
};

// "OUT_OF_RANGE" for KVQ_ERR_OUT_OF_RANGE (kvq_abi_names.h); "UNKNOWN_ERROR_42"
// for a code this client does not know (a newer plugin may add codes).
std::string error_code_name(int32_t code);

}  // namespace kvq::client
