// Host-side error types: the client library's (kvq_client/error.hpp), so a
// failure anywhere between the deployment file and a plugin call is caught as
// one Error, and a plugin's refusal as a PluginError that keeps the ABI code.
#pragma once

#include <kvq_client/error.hpp>

namespace kvq::host {

using Error = client::Error;
using PluginError = client::PluginError;
// "OUT_OF_RANGE" for KVQ_ERR_OUT_OF_RANGE; "UNKNOWN_ERROR_42" for codes this
// host does not know (a newer plugin may add codes).
using client::error_code_name;

}  // namespace kvq::host
