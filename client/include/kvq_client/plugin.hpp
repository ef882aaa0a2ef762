// A negotiated plugin session and its layers, as RAII objects over the C ABI.
// Every plugin call that returns a kvq_error* is checked: the error is taken
// over and thrown as PluginError with its code name and message. Optional
// functions are checked with KVQ_API_HAS before a call; the 1.1 struct
// variants (param_load2, param_info2, ...) are used when a plugin has them.
//
// Lifetimes: the Plugin, its Layers, Buffers and Streams share the session,
// so the instance is destroyed after the last of them, whatever the order in
// which the caller drops them.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvq_client/args.hpp"
#include "kvq_client/error.hpp"
#include "kvq_client/info.hpp"
#include "kvq_client/library.hpp"

namespace kvq::client {

// Where a plugin's log lines go: `plugin` is its name (the file name until
// get_info has answered). Called from any thread inside a plugin call; it
// must not throw (an exception is swallowed and the line lost).
using LogSink =
    std::function<void(std::string_view plugin, int32_t level, std::string_view message)>;

struct PluginOptions {
  uint32_t min_minor = 0;            // refuse a session whose negotiated minor is lower
  int32_t num_threads = 0;           // worker threads per plugin call; 0 = all cores
  int32_t device_ordinal = 0;        // 1.1: which device of the plugin's type (a rank's local rank)
  int32_t log_level = KVQ_LOG_INFO;  // the lowest KVQ_LOG_* level wanted
  LogSink log;                       // empty: the plugin stays silent
};

// What a raw call returned, taken over (the error is destroyed).
struct Status {
  int32_t code = 0;  // 0 = success
  std::string message;
  bool ok() const { return code == 0; }
};

namespace detail {
struct Session;
}  // namespace detail

class Layer;

class Plugin {
 public:
  // Opens the library (open_library), negotiates and reads get_info. Throws
  // Error or PluginError; refuses a negotiated minor below options.min_minor.
  static Plugin load(const std::filesystem::path& path, const PluginOptions& options = {});
  // The same over a library already opened and checked (open_library).
  static Plugin open(const Library& library, const PluginOptions& options = {});

  Plugin(Plugin&&) noexcept;
  Plugin& operator=(Plugin&&) noexcept;
  ~Plugin();

  const std::filesystem::path& path() const;
  const PluginInfo& info() const { return info_; }
  uint32_t negotiated_minor() const { return info_.abi_minor; }

  // Where the plugin computes: its tensors' device_type / device_id. A
  // device plugin (device_type other than CPU) takes bulk tensors only in
  // its own memory: allocate them as Buffers.
  int32_t device_type() const { return info_.device_type; }
  int32_t device_id() const { return info_.device_ordinal; }
  bool on_device() const { return info_.device_type != KVQ_DEVICE_CPU; }

  // The optional probe; nullopt when the plugin does not implement it.
  std::optional<ProbeResult> probe() const;

  // layer_create. Throws PluginError on a refusal.
  Layer create_layer(const LayerConfig& config) const;
  // The same with a struct the caller filled (its struct_size is kept).
  Layer create_layer(const kvq_layer_config& config) const;

  // The quant_type the plugin chooses for a layer from a quantization
  // description ("" = unquantized), through select_scheme2 or select_scheme.
  // nullopt when the plugin has neither or answers UNSUPPORTED (it does not
  // read descriptions); any other refusal throws PluginError.
  std::optional<std::string> select_scheme(const std::string& description,
                                           const std::string& source,
                                           const std::string& layer_prefix,
                                           const std::string& layer_type) const;

  // Waits for every stream's work and reports the first error found on the
  // device (1.1 synchronize(NULL)); returns at once for a plugin without
  // streams (its calls complete before they return).
  void synchronize() const;

  // Raw access, for callers that drive the C API themselves (conformance
  // cases, fuzz targets): the table and the instance stay owned here.
  const kvq_plugin_api& api() const;
  kvq_instance* instance() const;
  // Takes over an error a raw call returned: throws PluginError naming
  // `call` when it is set.
  void check(kvq_error* error, std::string_view call) const;
  // Takes over an error a raw call returned and gives its code and message.
  Status take(kvq_error* error) const;

 private:
  friend class Buffer;
  friend class Stream;
  Plugin(std::shared_ptr<detail::Session> session, PluginInfo info);
  std::shared_ptr<detail::Session> session_;
  PluginInfo info_;
};

class Layer {
 public:
  Layer(Layer&&) noexcept;
  Layer& operator=(Layer&&) noexcept;
  ~Layer();

  const std::string& name() const { return name_; }
  kvq_layer* get() const { return layer_.get(); }

  LayerInfo info() const;
  kvq_cache_geometry cache_geometry() const;
  void cache_init(const kvq_tensor& kv_cache);
  void cache_write(const CacheWriteArgs& args);
  void forward(const ForwardArgs& args);
  // supports(): throws the PluginError forward would raise for these
  // arguments; returns when the plugin has no supports().
  void check_supports(const ForwardArgs& args) const;

  // Schemes and parameters (throw Error when the plugin lacks the function).
  void apply_scheme(const std::string& quant_type, const std::string& layer_type,
                    const Options& options = {});
  void scheme_apply();
  std::vector<ParamInfo> params() const;  // param_info for every index
  // The parameter of that full name (param_info2 by name when the plugin has
  // it, else a scan); nullopt when the layer has none.
  std::optional<ParamInfo> param(const std::string& name) const;
  void param_load(const std::string& name, const kvq_tensor& loaded, int32_t tp_rank,
                  int32_t tp_size);
  void param_read(const std::string& name, const kvq_tensor& dst) const;
  void process_weights();

 private:
  friend class Plugin;
  struct Deleter {
    const kvq_plugin_api* api = nullptr;
    void operator()(kvq_layer* layer) const noexcept;
  };
  Layer(std::shared_ptr<detail::Session> session, kvq_layer* layer, std::string name);
  void require_stream_support(kvq_stream* stream, std::string_view call) const;

  std::shared_ptr<detail::Session> session_;
  std::unique_ptr<kvq_layer, Deleter> layer_;
  std::string name_;
};

}  // namespace kvq::client
