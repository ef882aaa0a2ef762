#include "kvq_client/error.hpp"

#include <kvq_abi_names.h>

#include <string_view>
#include <utility>

namespace kvq::client {

PluginError::PluginError(int32_t code, std::string plugin_message, std::string context)
    : Error(context + ": " + error_code_name(code) + ": " + plugin_message),
      code_(code),
      plugin_message_(std::move(plugin_message)),
      context_(std::move(context)) {}

std::string error_code_name(int32_t code) {
  const std::string_view name = kvq_error_code_name(code);
  if (name == "?") return "UNKNOWN_ERROR_" + std::to_string(code);
  return std::string(name);
}

}  // namespace kvq::client
