// Routes a plugin's log callback (ABI rule 9) into spdlog, prefixed with the
// plugin's name: the client library's LogSink, adapted.
#pragma once

#include <spdlog/common.h>
#include <kvq_client/plugin.hpp>

#include <cstdint>

namespace kvq::host {

// A LogSink writing "[plugin] message" to spdlog. Never throws.
client::LogSink spdlog_sink();

// KVQ_LOG_* <-> spdlog levels. Unknown plugin levels are logged as warnings.
spdlog::level::level_enum spdlog_level_for(int32_t kvq_level) noexcept;
// The lowest KVQ_LOG_* level worth sending, given spdlog's current level, so
// a plugin does not format messages the host would drop.
int32_t kvq_log_level_for(spdlog::level::level_enum level) noexcept;

}  // namespace kvq::host
