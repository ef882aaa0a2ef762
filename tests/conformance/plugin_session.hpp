// The suite's view of a plugin: what the load cases found (the raw table),
// owning wrappers for the raw calls the contract and error cases make on
// purpose (errors, instances, layers), and the client library's session
// (kvq_client) for every case that just uses the plugin. Plus the lookups
// every case layer needs in the capability records.
#pragma once

#include <kvq_abi.h>
#include <kvq_client/plugin.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace kvq::conform {

// The library the load cases opened and checked.
struct Plugin {
  std::string path;
  void* handle = nullptr;
  const kvq_plugin_api* api = nullptr;
};

// Owns one kvq_error (NULL = success) and destroys it through the plugin.
class Error {
 public:
  Error(const kvq_plugin_api* api, kvq_error* error) : api_(api), error_(error) {}
  Error(Error&& other) noexcept : api_(other.api_), error_(std::exchange(other.error_, nullptr)) {}
  Error& operator=(Error&&) = delete;
  ~Error();

  explicit operator bool() const { return error_ != nullptr; }
  int32_t code() const;
  std::string message() const;
  // "OUT_OF_RANGE(4): <message>" or "ok".
  std::string describe() const;

 private:
  const kvq_plugin_api* api_;
  kvq_error* error_;
};

// Throws CaseFailure("<what>: <error>") when `error` is set.
void require_ok(const Error& error, std::string_view what);
// The detail for a case that expects `code`: "" when it matched.
std::string expect_code(const Error& error, int32_t code);

// A raw instance, for the cases that test negotiation itself.
class Instance {
 public:
  Instance() = default;
  Instance(const kvq_plugin_api* api, kvq_instance* instance) : api_(api), instance_(instance) {}
  Instance(Instance&& other) noexcept
      : api_(other.api_), instance_(std::exchange(other.instance_, nullptr)) {}
  Instance& operator=(Instance&& other) noexcept;
  ~Instance();
  kvq_instance* get() const { return instance_; }

 private:
  const kvq_plugin_api* api_ = nullptr;
  kvq_instance* instance_ = nullptr;
};

// A raw layer, for the cases that check layer_create's answers.
class Layer {
 public:
  Layer() = default;
  Layer(const kvq_plugin_api* api, kvq_layer* layer) : api_(api), layer_(layer) {}
  Layer(Layer&& other) noexcept : api_(other.api_), layer_(std::exchange(other.layer_, nullptr)) {}
  Layer& operator=(Layer&& other) noexcept;
  ~Layer();
  kvq_layer* get() const { return layer_; }

 private:
  const kvq_plugin_api* api_ = nullptr;
  kvq_layer* layer_ = nullptr;
};

// A host of this header's version: major 1, the given minor, no log sink
// (the plugin must then stay silent on stdio).
kvq_host_info host_info(uint32_t minor = KVQ_ABI_MINOR);
Instance negotiate(const kvq_plugin_api* api, uint32_t minor = KVQ_ABI_MINOR);
kvq_plugin_info plugin_info(const kvq_plugin_api* api, const kvq_instance* instance);

// A session through the client library: negotiated like a host does, no log
// sink. Layers, buffers and streams of a case come from one session (a
// device plugin's memory belongs to the instance that allocated it).
using Session = client::Plugin;
Session open_session(const Plugin& plugin, int32_t device_ordinal = 0);

// Layer config with the suite's defaults (layer name, TP 1); the caller
// fills geometry and mode.
client::LayerConfig layer_config(const char* backend, const char* kv_cache_dtype,
                                 int32_t model_dtype, int64_t num_heads, int64_t num_kv_heads,
                                 int64_t head_size, int64_t block_size);
// Throws on any error (the case fails with the plugin's message); with
// `unsupported_skips`, an UNSUPPORTED answer (well-formed but not built)
// skips the case instead.
client::Layer create_layer(const Session& session, const client::LayerConfig& config,
                           bool unsupported_skips = false);
// param_load of `value` into "<kLayerName>.<local>" (TP rank 0 of 1).
void load_param(client::Layer& layer, const std::string& local, const kvq_tensor& value);

// The first backend that lists `mode` with supported=1, or nullptr.
const kvq_backend_info* backend_claiming(const kvq_plugin_info& info, std::string_view mode);
const kvq_kv_mode_info* find_mode(const kvq_backend_info& backend, std::string_view mode);
const kvq_scheme_info* find_scheme(const kvq_plugin_info& info, std::string_view quant_type,
                                   std::string_view layer_type);

// A backend and one of its supported modes that stores the model dtype.
struct ModeChoice {
  const char* backend = nullptr;
  const char* mode = nullptr;
  int32_t model_dtype = 0;
};
// KVQ_DTYPE_* a mode named "bfloat16"/"float16"/"float32" stores; 0 otherwise.
int32_t unquantized_mode_dtype(std::string_view mode);
// The first backend (in info order) with a supported unquantized mode,
// preferring bfloat16, then float16, float32, auto. backend == nullptr: none.
ModeChoice first_unquantized(const kvq_plugin_info& info);

inline constexpr const char* kLayerName = "model.layers.0.self_attn.attn";

}  // namespace kvq::conform
