#include "plugin_session.hpp"

#include <kvq_abi_names.h>

#include <cstring>

#include "case_log.hpp"

namespace kvq::conform {

Error::~Error() {
  if (error_) api_->error_destroy(error_);
}

int32_t Error::code() const {
  return error_ ? api_->error_code(error_) : 0;
}

std::string Error::message() const {
  if (!error_) return {};
  const char* m = api_->error_message(error_);
  return m ? m : "(NULL message)";
}

std::string Error::describe() const {
  if (!error_) return "ok";
  const int32_t c = code();
  return std::string(kvq_error_code_name(c)) + "(" + std::to_string(c) + "): " + message();
}

void require_ok(const Error& error, std::string_view what) {
  if (error) throw CaseFailure(std::string(what) + ": " + error.describe());
}

std::string expect_code(const Error& error, int32_t code) {
  if (error.code() == code) return {};
  return std::string("expected ") + kvq_error_code_name(code) + ", got " + error.describe();
}

Instance& Instance::operator=(Instance&& other) noexcept {
  if (this != &other) {
    if (instance_) api_->instance_destroy(instance_);
    api_ = other.api_;
    instance_ = std::exchange(other.instance_, nullptr);
  }
  return *this;
}

Instance::~Instance() {
  if (instance_) api_->instance_destroy(instance_);
}

Layer& Layer::operator=(Layer&& other) noexcept {
  if (this != &other) {
    if (layer_) api_->layer_destroy(layer_);
    api_ = other.api_;
    layer_ = std::exchange(other.layer_, nullptr);
  }
  return *this;
}

Layer::~Layer() {
  if (layer_) api_->layer_destroy(layer_);
}

kvq_host_info host_info(uint32_t minor) {
  kvq_host_info host{};
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = KVQ_ABI_MAJOR;
  host.abi_minor = minor;
  host.log = nullptr;  // the plugin must then stay silent
  host.log_level = KVQ_LOG_INFO;
  host.num_threads = 0;
  return host;
}

Instance negotiate(const kvq_plugin_api* api, uint32_t minor) {
  const kvq_host_info host = host_info(minor);
  kvq_instance* out = nullptr;
  Error error(api, api->negotiate(&host, &out));
  require_ok(error, "negotiate");
  if (!out) throw CaseFailure("negotiate succeeded but returned no instance");
  return Instance(api, out);
}

kvq_plugin_info plugin_info(const kvq_plugin_api* api, const kvq_instance* instance) {
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  require_ok(Error(api, api->get_info(instance, &info)), "get_info");
  return info;
}

Session open_session(const Plugin& plugin, int32_t device_ordinal) {
  client::PluginOptions options;
  options.device_ordinal = device_ordinal;
  return Session::open(client::Library{plugin.path, plugin.api}, options);
}

client::LayerConfig layer_config(const char* backend, const char* kv_cache_dtype,
                                 int32_t model_dtype, int64_t num_heads, int64_t num_kv_heads,
                                 int64_t head_size, int64_t block_size) {
  client::LayerConfig c;
  c.backend = backend;
  c.layer_name = kLayerName;
  c.kv_cache_dtype = kv_cache_dtype;
  c.model_dtype = model_dtype;
  c.num_heads = num_heads;
  c.num_kv_heads = num_kv_heads;
  c.head_size = head_size;
  c.block_size = block_size;
  return c;
}

client::Layer create_layer(const Session& session, const client::LayerConfig& config,
                           bool unsupported_skips) {
  try {
    return session.create_layer(config);
  } catch (const client::PluginError& e) {
    if (unsupported_skips && e.code() == KVQ_ERR_UNSUPPORTED)
      throw CaseSkip("layer_create answers UNSUPPORTED: " + e.plugin_message());
    throw;
  }
}

void load_param(client::Layer& layer, const std::string& local, const kvq_tensor& value) {
  layer.param_load(std::string(kLayerName) + "." + local, value, 0, 1);
}

const kvq_kv_mode_info* find_mode(const kvq_backend_info& backend, std::string_view mode) {
  for (int64_t m = 0; m < backend.num_kv_modes; ++m) {
    const kvq_kv_mode_info* info = backend.kv_modes[m];
    if (info && info->name && mode == info->name) return info;
  }
  return nullptr;
}

const kvq_backend_info* backend_claiming(const kvq_plugin_info& info, std::string_view mode) {
  for (int64_t b = 0; b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    if (!backend) continue;
    const kvq_kv_mode_info* m = find_mode(*backend, mode);
    if (m && m->supported) return backend;
  }
  return nullptr;
}

const kvq_scheme_info* find_scheme(const kvq_plugin_info& info, std::string_view quant_type,
                                   std::string_view layer_type) {
  for (int64_t s = 0; s < info.num_schemes; ++s) {
    const kvq_scheme_info* scheme = info.schemes[s];
    if (scheme && scheme->quant_type && scheme->layer_type && quant_type == scheme->quant_type &&
        layer_type == scheme->layer_type)
      return scheme;
  }
  return nullptr;
}

int32_t unquantized_mode_dtype(std::string_view mode) {
  if (mode == "bfloat16") return KVQ_DTYPE_BF16;
  if (mode == "float16") return KVQ_DTYPE_F16;
  if (mode == "float32") return KVQ_DTYPE_F32;
  return 0;
}

ModeChoice first_unquantized(const kvq_plugin_info& info) {
  for (int64_t b = 0; b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    if (!backend || !backend->name) continue;
    for (const char* mode : {"bfloat16", "float16", "float32", "auto"}) {
      const kvq_kv_mode_info* m = find_mode(*backend, mode);
      if (!m || !m->supported) continue;
      const int32_t dtype = unquantized_mode_dtype(mode);
      return {backend->name, m->name, dtype ? dtype : KVQ_DTYPE_BF16};
    }
  }
  return {};
}

}  // namespace kvq::conform
