// The host's plugin session: the client library's RAII objects
// (kvq_client/plugin.hpp) under the host's names, opened with the plugin's
// log lines routed into spdlog.
#pragma once

#include <kvq_client/buffer.hpp>
#include <kvq_client/plugin.hpp>

#include <cstdint>
#include <filesystem>

namespace kvq::host {

using client::BackendInfo;
using client::Buffer;
using client::KvModeInfo;
using client::Layer;
using client::LayerInfo;
using client::NameRule;
using client::OptionInfo;
using client::ParamInfo;
using client::Plugin;
using client::PluginInfo;
using client::ProbeResult;
using client::SchemeInfo;
using SchemeOptions = client::Options;

// The major version this host speaks and the highest minor it knows.
inline constexpr uint32_t kHostAbiMajor = client::kAbiMajor;
inline constexpr uint32_t kHostAbiMinor = client::kAbiMinor;

struct NegotiationOptions {
  uint32_t min_minor = 0;      // refuse a session whose negotiated minor is lower
  int32_t num_threads = 0;     // worker threads per plugin call; 0 = all cores
  int32_t device_ordinal = 0;  // which device of a device plugin (a rank's local rank)
};

// Plugin::load with the log callback into spdlog (lines prefixed with the
// plugin's name, at the level spdlog currently passes). Throws Error or
// PluginError.
Plugin open_plugin(const std::filesystem::path& path, const NegotiationOptions& options = {});

}  // namespace kvq::host
