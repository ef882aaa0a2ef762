// A negotiated plugin session and its layers, as RAII objects over the C ABI.
// Every plugin call that returns a kvq_error* goes through check(), which
// takes ownership of the error and throws PluginError with its code name and
// message. Optional functions are checked with KVQ_API_HAS before a call.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvq_host/log_bridge.hpp"
#include "kvq_host/plugin_library.hpp"

namespace kvq::host {

// Owned copies of what get_info returns (plain strings and vectors), so the
// host never keeps pointers into the plugin.
struct KvModeInfo {
  std::string name;
  std::string description;
  int32_t element_dtype = 0;  // 0 = the model dtype
  bool supported = false;
  bool per_token_head = false;
  bool needs_scheme = false;
};

struct BackendInfo {
  std::string name;
  std::string description;
  std::vector<KvModeInfo> kv_modes;
  uint32_t attention_states = 0;  // bit (1 << KVQ_ATTN_x) per state; 0 = not reported
};

struct NameRule {
  std::string checkpoint_suffix;
  std::string param_suffix;
};

struct SchemeInfo {
  std::string quant_type;
  std::string layer_type;
  std::string description;
  bool supported = false;
  std::vector<NameRule> name_rules;
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::string vendor;
  uint32_t abi_major = 0;
  uint32_t abi_minor = 0;         // the negotiated minor
  uint32_t plugin_abi_minor = 0;  // the highest minor the plugin implements (its table)
  std::string simd_level;
  std::string cpu_features;
  std::vector<BackendInfo> backends;
  std::vector<SchemeInfo> schemes;

  const BackendInfo* find_backend(const std::string& name) const;
  const SchemeInfo* find_scheme(const std::string& quant_type, const std::string& layer_type) const;
};

struct ProbeResult {
  bool can_run = false;
  std::string reason;
  std::string simd_level;
};

struct NegotiationOptions {
  uint32_t min_minor = 0;   // refuse a session whose negotiated minor is lower
  int32_t num_threads = 0;  // worker threads per plugin call; 0 = all cores
};

struct LayerInfo {
  std::string impl_name;
  std::string kv_cache_dtype;
  std::string scheme;
  int32_t element_dtype = 0;
  int64_t num_params = 0;
};

// An owned copy of param_info.
struct ParamInfo {
  std::string name;    // full name: layer_name + "." + local name
  std::string loader;  // "" = not loadable
  int32_t dtype = 0;
  std::vector<int64_t> shape;
  bool trainable = false;
  bool derived = false;
  bool loaded = false;
};

// Flat key/value options (kvq_scheme_args.options).
using SchemeOptions = std::vector<std::pair<std::string, std::string>>;

namespace detail {
// The negotiated instance plus everything that must live as long as it: the
// api table and the log context whose address the plugin holds. Shared by
// the Plugin and its Layers so an instance is destroyed after its last layer.
struct Session;
}  // namespace detail

class Layer;

class Plugin {
 public:
  // Opens the library, negotiates (host major 1, minor KVQ_ABI_MINOR, log
  // callback into spdlog) and reads get_info. Throws Error or PluginError;
  // refuses a negotiated minor below options.min_minor.
  static Plugin load(const std::filesystem::path& path, const NegotiationOptions& options = {});

  Plugin(Plugin&&) noexcept;
  Plugin& operator=(Plugin&&) noexcept;
  ~Plugin();

  const std::filesystem::path& path() const;
  const kvq_plugin_api& api() const;
  const PluginInfo& info() const { return info_; }

  // The optional probe; nullopt when the plugin does not implement it.
  std::optional<ProbeResult> probe() const;

  // layer_create. The config's struct_size is set here.
  Layer create_layer(const kvq_layer_config& config) const;

  // The optional select_scheme hook: the quant_type the plugin chooses for
  // the layer from a quantization description ("" = unquantized). nullopt
  // when the plugin has no hook or answers UNSUPPORTED (it does not read
  // descriptions); any other refusal throws PluginError.
  std::optional<std::string> select_scheme(const std::string& description,
                                           const std::string& source,
                                           const std::string& layer_prefix,
                                           const std::string& layer_type) const;

 private:
  Plugin(std::shared_ptr<detail::Session> session, PluginInfo info);
  std::shared_ptr<detail::Session> session_;
  PluginInfo info_;
};

class Layer {
 public:
  Layer(Layer&&) noexcept;
  Layer& operator=(Layer&&) noexcept;
  ~Layer();

  LayerInfo info() const;
  kvq_cache_geometry cache_geometry() const;
  void cache_init(const kvq_tensor& kv_cache);
  void cache_write(const kvq_cache_write_args& args);
  void forward(const kvq_forward_args& args);
  // supports(): throws the PluginError forward would raise for these
  // arguments; returns when the plugin has no supports().
  void check_supports(const kvq_forward_args& args) const;

  // Schemes and parameters (throw Error when the plugin lacks the function).
  void apply_scheme(const std::string& quant_type, const std::string& layer_type,
                    const SchemeOptions& options = {});
  std::vector<ParamInfo> params() const;  // param_info for every index
  void param_load(const std::string& name, const kvq_tensor& loaded, int32_t tp_rank,
                  int32_t tp_size);
  void param_read(const std::string& name, const kvq_tensor& dst) const;
  void process_weights();

  const std::string& name() const { return name_; }

 private:
  friend class Plugin;
  struct Deleter {
    const kvq_plugin_api* api = nullptr;
    void operator()(kvq_layer* layer) const noexcept;
  };
  Layer(std::shared_ptr<detail::Session> session, kvq_layer* layer, std::string name);

  std::shared_ptr<detail::Session> session_;
  std::unique_ptr<kvq_layer, Deleter> layer_;
  std::string name_;
};

}  // namespace kvq::host
