// Routes a plugin's log callback (ABI rule 9) into spdlog, prefixed with the
// plugin's name.
#pragma once

#include <spdlog/common.h>

#include <cstdint>
#include <string>

namespace kvq::host {

// The user_data the host hands to a plugin with its log callback. It must
// outlive every object of the plugin instance, so the Plugin keeps it next to
// the instance handle.
struct PluginLogContext {
  std::string plugin_name;  // the file name until get_info tells the real name
};

// The kvq_log_fn given to negotiate; user_data is a PluginLogContext*.
// Never throws (it is called from inside plugin code).
void plugin_log_callback(void* user_data, int32_t level, const char* message) noexcept;

// KVQ_LOG_* <-> spdlog levels. Unknown plugin levels are logged as warnings.
spdlog::level::level_enum spdlog_level_for(int32_t kvq_level) noexcept;
// The lowest KVQ_LOG_* level worth sending, given spdlog's current level, so
// a plugin does not format messages the host would drop.
int32_t kvq_log_level_for(spdlog::level::level_enum level) noexcept;

}  // namespace kvq::host
