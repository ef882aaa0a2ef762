#include "kvq_engine/plugin.hpp"

#include <spdlog/spdlog.h>

#include "log_bridge.hpp"

namespace kvq::host {

Plugin open_plugin(const std::filesystem::path& path, const NegotiationOptions& options) {
  client::PluginOptions o;
  o.min_minor = options.min_minor;
  o.num_threads = options.num_threads;
  o.device_ordinal = options.device_ordinal;
  o.log_level = kvq_log_level_for(spdlog::get_level());
  o.log = spdlog_sink();
  return Plugin::load(path, o);
}

}  // namespace kvq::host
