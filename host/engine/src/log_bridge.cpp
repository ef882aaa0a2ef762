#include "log_bridge.hpp"

#include <kvq_abi.h>
#include <spdlog/spdlog.h>

#include <string_view>

namespace kvq::host {

spdlog::level::level_enum spdlog_level_for(int32_t kvq_level) noexcept {
  switch (kvq_level) {
    case KVQ_LOG_TRACE: return spdlog::level::trace;
    case KVQ_LOG_DEBUG: return spdlog::level::debug;
    case KVQ_LOG_INFO: return spdlog::level::info;
    case KVQ_LOG_WARN: return spdlog::level::warn;
    case KVQ_LOG_ERROR: return spdlog::level::err;
    default: return spdlog::level::warn;
  }
}

int32_t kvq_log_level_for(spdlog::level::level_enum level) noexcept {
  switch (level) {
    case spdlog::level::trace: return KVQ_LOG_TRACE;
    case spdlog::level::debug: return KVQ_LOG_DEBUG;
    case spdlog::level::info: return KVQ_LOG_INFO;
    case spdlog::level::warn: return KVQ_LOG_WARN;
    default: return KVQ_LOG_ERROR;  // err, critical, off: errors are still worth sending
  }
}

client::LogSink spdlog_sink() {
  return [](std::string_view plugin, int32_t level, std::string_view message) noexcept {
    try {
      if (level < KVQ_LOG_TRACE || level > KVQ_LOG_ERROR) {
        spdlog::warn("[{}] (unknown log level {}) {}", plugin, level, message);
        return;
      }
      spdlog::log(spdlog_level_for(level), "[{}] {}", plugin, message);
    } catch (...) {
      // Logging must never unwind into plugin code; a lost log line is the lesser evil.
    }
  };
}

}  // namespace kvq::host
