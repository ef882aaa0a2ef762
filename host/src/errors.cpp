#include "kvq_host/errors.hpp"

#include <fmt/format.h>
#include <kvq_abi.h>

namespace kvq::host {

PluginError::PluginError(int32_t code, std::string plugin_message, std::string context)
    : Error(fmt::format("{}: {}: {}", context, error_code_name(code), plugin_message)),
      code_(code),
      plugin_message_(std::move(plugin_message)),
      context_(std::move(context)) {}

std::string error_code_name(int32_t code) {
  switch (code) {
    case KVQ_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KVQ_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case KVQ_ERR_VERSION_MISMATCH: return "VERSION_MISMATCH";
    case KVQ_ERR_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case KVQ_ERR_NOT_FOUND: return "NOT_FOUND";
    case KVQ_ERR_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case KVQ_ERR_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case KVQ_ERR_NON_FINITE: return "NON_FINITE";
    case KVQ_ERR_INTERNAL: return "INTERNAL";
    case KVQ_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    default: return fmt::format("UNKNOWN_ERROR_{}", code);
  }
}

}  // namespace kvq::host
