#include "plugin_session.hpp"

#include <cstring>

#include "case_log.hpp"

namespace kvq::conform {

const char* error_code_name(int32_t code) {
  switch (code) {
    case 0: return "OK";
    case KVQ_ERR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case KVQ_ERR_UNSUPPORTED: return "UNSUPPORTED";
    case KVQ_ERR_VERSION_MISMATCH: return "VERSION_MISMATCH";
    case KVQ_ERR_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case KVQ_ERR_NOT_FOUND: return "NOT_FOUND";
    case KVQ_ERR_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case KVQ_ERR_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case KVQ_ERR_NON_FINITE: return "NON_FINITE";
    case KVQ_ERR_INTERNAL: return "INTERNAL";
    case KVQ_ERR_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    default: return "UNKNOWN_CODE";
  }
}

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
  return std::string(error_code_name(c)) + "(" + std::to_string(c) + "): " + message();
}

void require_ok(const Error& error, std::string_view what) {
  if (error) throw CaseFailure(std::string(what) + ": " + error.describe());
}

std::string expect_code(const Error& error, int32_t code) {
  if (error.code() == code) return {};
  return std::string("expected ") + error_code_name(code) + ", got " + error.describe();
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

kvq_layer_config layer_config(const char* backend, const char* kv_cache_dtype, int32_t model_dtype,
                              int64_t num_heads, int64_t num_kv_heads, int64_t head_size,
                              int64_t block_size) {
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = backend;
  c.layer_name = kLayerName;
  c.kv_cache_dtype = kv_cache_dtype;
  c.model_dtype = model_dtype;
  c.num_heads = num_heads;
  c.num_kv_heads = num_kv_heads;
  c.head_size = head_size;
  c.block_size = block_size;
  c.tp_rank = 0;
  c.tp_size = 1;
  return c;
}

Layer create_layer(const kvq_plugin_api* api, kvq_instance* instance,
                   const kvq_layer_config& config, bool unsupported_skips) {
  kvq_layer* out = nullptr;
  Error error(api, api->layer_create(instance, &config, &out));
  if (unsupported_skips && error.code() == KVQ_ERR_UNSUPPORTED)
    throw CaseSkip("layer_create answers UNSUPPORTED: " + error.message());
  require_ok(error, "layer_create");
  if (!out) throw CaseFailure("layer_create succeeded but returned no layer");
  return Layer(api, out);
}

kvq_cache_geometry cache_geometry(const kvq_plugin_api* api, const kvq_layer* layer) {
  kvq_cache_geometry g{};
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  require_ok(Error(api, api->cache_geometry(layer, &g)), "cache_geometry");
  return g;
}

void load_param(const kvq_plugin_api* api, kvq_layer* layer, const std::string& local,
                const kvq_tensor* value) {
  const std::string name = std::string(kLayerName) + "." + local;
  require_ok(Error(api, api->param_load(layer, name.c_str(), value, 0, 1)), "param_load " + name);
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
