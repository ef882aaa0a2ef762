// The C ABI glue: the one api table every plugin exports. Each exported
// function validates its arguments, dispatches into the framework
// (plugin.hpp), and turns every exception into a kvq_error value.
//
// A plugin defines kvq::sdk::plugin_definition() and its entry symbol:
//   extern "C" KVQ_SDK_EXPORT const kvq_plugin_api* kvq_plugin_entry(void) {
//     return kvq::sdk::plugin_api();   // device plugins: device_plugin_api()
//   }
#pragma once

#include <kvq_abi.h>

#define KVQ_SDK_EXPORT __attribute__((visibility("default")))

namespace kvq::sdk {

// A CPU plugin's table (device hooks NULL: hosts use host memory).
const kvq_plugin_api* plugin_api();
// A device plugin's table (PluginDefinition::open_device set): the same
// functions plus device_alloc ... synchronize, served by the instance's Device.
const kvq_plugin_api* device_plugin_api();

}  // namespace kvq::sdk
