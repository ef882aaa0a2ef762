// The negotiated instance plus everything that must live as long as it: the
// api table and the log context whose address the plugin holds. Shared by
// the Plugin and its Layers, Buffers and Streams, so an instance is destroyed
// after the last object that uses it.
#pragma once

#include <kvq_abi.h>

#include <memory>
#include <string>
#include <string_view>

#include "kvq_client/library.hpp"
#include "kvq_client/plugin.hpp"

namespace kvq::client::detail {

// The user_data of the log callback: its address is stable (heap) for the
// instance's lifetime.
struct LogContext {
  std::string plugin_name;  // the file name until get_info tells the real name
  LogSink sink;
};

// The kvq_log_fn given to negotiate; never throws.
void log_callback(void* user_data, int32_t level, const char* message) noexcept;

struct InstanceDeleter {
  const kvq_plugin_api* api = nullptr;
  void operator()(kvq_instance* instance) const noexcept { api->instance_destroy(instance); }
};

struct Session {
  Library library;
  std::unique_ptr<LogContext> log = std::make_unique<LogContext>();
  // Declared after `log`, so it is destroyed first.
  std::unique_ptr<kvq_instance, InstanceDeleter> instance;
  uint32_t minor = 0;
  int32_t device_type = KVQ_DEVICE_CPU;
  int32_t device_id = 0;

  const kvq_plugin_api& api() const { return *library.api; }
  // "plugin 'NAME': <call>"
  std::string describe(std::string_view call) const;
  // Takes over `error`; throws PluginError naming `call` when it is set.
  void check(kvq_error* error, std::string_view call) const;
  // Throws Error "plugin 'NAME' does not implement <function>" unless present.
  void require(bool present, std::string_view function) const;
};

}  // namespace kvq::client::detail
