// Owning wrappers around the objects a plugin hands out (errors, instances,
// layers) and the few helpers every case layer needs: negotiate, create a
// layer, look a mode up in the capabilities.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace kvq::conform {

struct Plugin {
  std::string path;
  void* handle = nullptr;
  const kvq_plugin_api* api = nullptr;
};

const char* error_code_name(int32_t code);

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
  // "OUT_OF_RANGE: <message>" or "ok".
  std::string describe() const;

 private:
  const kvq_plugin_api* api_;
  kvq_error* error_;
};

// Throws CaseFailure("<what>: <error>") when `error` is set.
void require_ok(const Error& error, std::string_view what);
// The detail for a case that expects `code`: "" when it matched.
std::string expect_code(const Error& error, int32_t code);

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

// A v1.0 host: major 1, the given minor, no log sink wanted on stdio.
kvq_host_info host_info(uint32_t minor = KVQ_ABI_MINOR);
Instance negotiate(const kvq_plugin_api* api, uint32_t minor = KVQ_ABI_MINOR);
kvq_plugin_info plugin_info(const kvq_plugin_api* api, const kvq_instance* instance);

// Layer config with the suite's defaults (layer name, TP 1); the caller
// fills geometry and mode.
kvq_layer_config layer_config(const char* backend, const char* kv_cache_dtype, int32_t model_dtype,
                              int64_t num_heads, int64_t num_kv_heads, int64_t head_size,
                              int64_t block_size);
// Throws CaseFailure on any error; with `unsupported_skips`, an UNSUPPORTED
// answer (well-formed but not built) skips the case instead.
Layer create_layer(const kvq_plugin_api* api, kvq_instance* instance,
                   const kvq_layer_config& config, bool unsupported_skips = false);
kvq_cache_geometry cache_geometry(const kvq_plugin_api* api, const kvq_layer* layer);
// param_load of `value` into "<kLayerName>.<local>" (TP rank 0 of 1); throws
// CaseFailure with the plugin's message on any error.
void load_param(const kvq_plugin_api* api, kvq_layer* layer, const std::string& local,
                const kvq_tensor* value);

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
