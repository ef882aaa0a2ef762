#include "kvq_sdk/abi_export.hpp"

#include "kvq_sdk/abi_struct.hpp"
#include "kvq_sdk/cpu.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/plugin.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "abi_guard.hpp"

namespace kvq::sdk {
namespace {

using abi::guard;
using abi::make_error;
using abi::require;
using abi::require_string;

constexpr int32_t kMaxThreads = 1024;

std::string str_or(const char* s, const char* fallback) {
  return s ? s : fallback;
}

Options read_options(int64_t count, const char* const* kv, const char* what) {
  if (count < 0 || count > 4096)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: num_options {} is outside 0..4096", what, count);
  if (count > 0 && kv == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "{}: options is NULL", what);
  Options out;
  for (int64_t i = 0; i < count; ++i) {
    if (kv[2 * i] == nullptr || kv[2 * i + 1] == nullptr)
      fail(KVQ_ERR_INVALID_ARGUMENT, "{}: option {} has a NULL key or value", what, i);
    out.emplace_back(kv[2 * i], kv[2 * i + 1]);
  }
  return out;
}

// ---- negotiation, errors, instances ----------------------------------------

kvq_error* negotiate(const kvq_host_info* host, kvq_instance** out) {
  return guard([&] {
    require(out, "out");
    *out = nullptr;
    require(host, "host_info");
    if (host->struct_size < KVQ_STRUCT_SIZE(kvq_host_info, abi_minor))
      fail(KVQ_ERR_INVALID_ARGUMENT, "host_info: struct_size {} is too small to hold a version",
           host->struct_size);
    const PluginDefinition& def = plugin_definition();
    if (host->abi_major != KVQ_ABI_MAJOR)
      fail(KVQ_ERR_VERSION_MISMATCH,
           "host speaks kvq ABI major {}, plugin {} speaks major {}: refusing to load",
           host->abi_major, def.name, KVQ_ABI_MAJOR);
    const kvq_host_info h = read_struct(host, KVQ_HOST_INFO_SIZE_1_0, "host_info");
    // A thread runtime that cannot create the threads asked for ends the
    // process (libgomp does): absurd counts are refused here instead.
    if (h.num_threads < 0 || h.num_threads > kMaxThreads)
      fail(KVQ_ERR_INVALID_ARGUMENT, "host_info: num_threads {} is outside 0..{}", h.num_threads,
           kMaxThreads);
    if (h.log_level < 0 || h.log_level > KVQ_LOG_ERROR)
      fail(KVQ_ERR_INVALID_ARGUMENT, "host_info: log_level {} is not a KVQ_LOG_* value",
           h.log_level);
    const uint32_t minor = std::min<uint32_t>(h.abi_minor, KVQ_ABI_MINOR);
    // A device plugin's memory is reachable only through the 1.1 hooks.
    if (def.open_device && minor < 1)
      fail(KVQ_ERR_UNSUPPORTED,
           "plugin {} computes on a device and needs a host of ABI 1.1 or later (device memory "
           "hooks); the host speaks 1.{}",
           def.name, h.abi_minor);
    auto inst = std::make_unique<kvq_instance>(def, h, minor);
    inst->instance.logger().log(KVQ_LOG_DEBUG, fmt::format("{} {} negotiated ABI {}.{}", def.name,
                                                           def.version, KVQ_ABI_MAJOR, minor));
    *out = inst.release();
  });
}

int32_t error_code(const kvq_error* e) {
  return e ? e->code : 0;
}
const char* error_message(const kvq_error* e) {
  return e ? e->message.c_str() : "";
}
void error_destroy(kvq_error* e) {
  if (e != nullptr && !e->is_static) std::unique_ptr<kvq_error> owned(e);
}
void instance_destroy(kvq_instance* i) {
  std::unique_ptr<kvq_instance> owned(i);
}

kvq_error* probe(kvq_probe_result* out) {
  return guard([&] {
    check_out_struct(out, KVQ_PROBE_RESULT_SIZE, "probe result");
    // Computed once (the machine does not change under a process); the
    // result's strings are static, as the ABI says.
    static const std::string reason = [] {
      const PluginDefinition& def = plugin_definition();
      return def.unavailable_reason ? def.unavailable_reason() : std::string();
    }();
    kvq_probe_result r{};
    r.can_run = reason.empty() ? 1 : 0;  // CPU kernels are built for the baseline ISA
    r.reason = reason.c_str();
    r.simd_level = simd_level();
    write_struct(out, r);
  });
}

kvq_error* get_info(const kvq_instance* inst, kvq_plugin_info* out) {
  return guard([&] {
    const Instance& i = require(inst, "instance").instance;
    check_out_struct(out, KVQ_PLUGIN_INFO_SIZE_1_0, "plugin info");
    write_struct(out, i.info());
  });
}

// ---- layers ----------------------------------------------------------------

LayerConfig to_layer_config(const kvq_layer_config& c) {
  LayerConfig l;
  l.backend = str_or(c.backend, "");
  l.layer_name = str_or(c.layer_name, "");
  l.kv_cache_dtype = str_or(c.kv_cache_dtype, "auto");
  l.model_dtype = c.model_dtype;
  l.layer_index = c.layer_index;
  l.num_heads = c.num_heads;
  l.num_kv_heads = c.num_kv_heads;
  l.head_size = c.head_size;
  l.head_size_v = c.head_size_v == 0 ? c.head_size : c.head_size_v;
  l.block_size = c.block_size;
  l.softmax_scale = c.softmax_scale;
  l.sliding_window = c.sliding_window;
  l.softcap = c.softcap;
  l.tp_rank = c.tp_rank;
  l.tp_size = c.tp_size == 0 ? 1 : c.tp_size;
  l.options = read_options(c.num_options, c.options, "layer config");
  return l;
}

void check_layer_config(const LayerConfig& c) {
  if (!is_model_dtype(c.model_dtype))
    fail(KVQ_ERR_INVALID_ARGUMENT, "model_dtype {} must be F32, F16 or BF16", c.model_dtype);
  if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    fail(KVQ_ERR_INVALID_ARGUMENT,
         "num_heads {} must be a positive multiple of num_kv_heads {} (GQA)", c.num_heads,
         c.num_kv_heads);
  if (c.head_size <= 0 || c.head_size_v <= 0 || c.head_size > 4096 || c.head_size_v > 4096)
    fail(KVQ_ERR_INVALID_ARGUMENT, "head_size {} / head_size_v {} must be in 1..4096", c.head_size,
         c.head_size_v);
  if (c.num_heads > 65536) fail(KVQ_ERR_INVALID_ARGUMENT, "num_heads {} is too large", c.num_heads);
  if (c.block_size <= 0 || c.block_size > 65536)
    fail(KVQ_ERR_INVALID_ARGUMENT, "block_size {} must be in 1..65536", c.block_size);
  if (c.sliding_window < 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "sliding_window {} < 0", c.sliding_window);
  if (!std::isfinite(c.softcap) || c.softcap < 0.0 || !std::isfinite(c.softmax_scale) ||
      c.softmax_scale < 0.0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "softcap and softmax_scale must be finite and >= 0");
  if (c.tp_size < 1 || c.tp_rank < 0 || c.tp_rank >= c.tp_size)
    fail(KVQ_ERR_INVALID_ARGUMENT, "tp_rank {} is outside 0..tp_size-1 (tp_size {})", c.tp_rank,
         c.tp_size);
}

kvq_error* layer_create(kvq_instance* inst, const kvq_layer_config* config, kvq_layer** out) {
  return guard([&] {
    require(out, "out");
    *out = nullptr;
    const Instance& i = require(inst, "instance").instance;
    const LayerConfig c =
        to_layer_config(read_struct(config, KVQ_LAYER_CONFIG_SIZE, "layer config"));
    const PluginDefinition& def = i.definition();
    const BackendDefinition* backend = nullptr;
    std::string names;
    for (const auto& b : def.backends) {
      if (b.name == c.backend) backend = &b;
      names += (names.empty() ? "" : ", ") + b.name;
    }
    if (backend == nullptr)
      fail(KVQ_ERR_NOT_FOUND, "backend '{}' not found; plugin {} offers: {}", c.backend, def.name,
           names);
    check_layer_config(c);
    for (const auto& [key, value] : c.options) {
      const auto known = std::find_if(backend->options.begin(), backend->options.end(),
                                      [&key](const OptionDefinition& o) { return o.name == key; });
      if (known == backend->options.end()) {
        std::string keys;
        for (const auto& o : backend->options) keys += (keys.empty() ? "" : ", ") + o.name;
        fail(KVQ_ERR_INVALID_ARGUMENT, "unknown layer option '{}' for backend {} (it reads: {})",
             key, backend->name, keys.empty() ? "none" : keys);
      }
    }
    const std::string mode_name = backend->resolve_mode(c.kv_cache_dtype);
    const ModeDefinition* mode = nullptr;
    for (const auto& m : backend->modes)
      if (m.name == mode_name) mode = &m;
    if (mode == nullptr)
      fail(KVQ_ERR_INTERNAL, "backend {} resolved '{}' to unknown mode '{}'", backend->name,
           c.kv_cache_dtype, mode_name);
    if (mode->needs_scheme)
      fail(KVQ_ERR_INVALID_ARGUMENT, "kv_cache_dtype '{}' is set by applying a quantization scheme",
           c.kv_cache_dtype);
    if (!mode->supported)
      fail(KVQ_ERR_UNSUPPORTED, "kv_cache_dtype '{}' (mode {}) is not built in plugin {} yet",
           c.kv_cache_dtype, mode->name, def.name);
    if (backend->validate) backend->validate(c, *mode);
    auto layer = std::make_unique<kvq_layer>(i, *backend, c, *mode);
    *out = layer.release();
  });
}

void layer_destroy(kvq_layer* l) {
  std::unique_ptr<kvq_layer> owned(l);
}

kvq_error* layer_info(const kvq_layer* l, kvq_layer_info* out) {
  return guard([&] {
    const Layer& layer = require(l, "layer").layer;
    check_out_struct(out, KVQ_LAYER_INFO_SIZE, "layer info");
    kvq_layer_info info{};
    info.impl_name = layer.impl().name();
    info.kv_cache_dtype = layer.mode().name.c_str();
    info.scheme = layer.scheme() ? layer.scheme()->quant_type.c_str() : "";
    info.element_dtype = layer.geometry().element_dtype;
    info.num_params = static_cast<int64_t>(layer.params().size());
    write_struct(out, info);
  });
}

kvq_error* cache_geometry(const kvq_layer* l, kvq_cache_geometry* out) {
  return guard([&] {
    const Layer& layer = require(l, "layer").layer;
    check_out_struct(out, KVQ_CACHE_GEOMETRY_SIZE, "cache geometry");
    write_struct(out, layer.geometry());
  });
}

kvq_error* cache_init(kvq_layer* l, const kvq_tensor* cache) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    layer.impl().cache_init(layer, CacheView(cache, layer.geometry(), true, layer.memory_space()));
  });
}

kvq_error* cache_write(kvq_layer* l, const kvq_cache_write_args* args) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    const WriteBatch b =
        validate_write(layer.config(), layer.geometry(), args, layer.memory_space());
    layer.impl().cache_write(layer, b);
  });
}

kvq_error* supports(const kvq_layer* l, const kvq_forward_args* args) {
  return guard([&] {
    const Layer& layer = require(l, "layer").layer;
    const ForwardBatch b = validate_forward(layer.config(), layer.geometry(), args, false,
                                            layer.impl().forward_spec(layer), layer.memory_space());
    layer.impl().check_forward(layer, b);
  });
}

kvq_error* forward(kvq_layer* l, const kvq_forward_args* args) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    const ForwardBatch b = validate_forward(layer.config(), layer.geometry(), args, true,
                                            layer.impl().forward_spec(layer), layer.memory_space());
    layer.impl().check_forward(layer, b);
    layer.impl().forward(layer, b);
  });
}

// ---- schemes and parameters ------------------------------------------------

kvq_error* apply_scheme(kvq_layer* l, const kvq_scheme_args* in) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    const kvq_scheme_args a = read_struct(in, KVQ_SCHEME_ARGS_SIZE, "scheme args");
    if (a.quant_type == nullptr || a.layer_type == nullptr)
      fail(KVQ_ERR_INVALID_ARGUMENT, "scheme args: quant_type and layer_type are required");
    const PluginDefinition& def = layer.instance().definition();
    const SchemeDefinition* s = def.schemes.find(a.quant_type, a.layer_type);
    if (s == nullptr)
      fail(KVQ_ERR_NOT_FOUND, "no scheme ({}, {}) in plugin {}", a.quant_type, a.layer_type,
           def.name);
    if (!s->supported)
      fail(KVQ_ERR_UNSUPPORTED, "scheme ({}, {}) is not built in plugin {} yet", a.quant_type,
           a.layer_type, def.name);
    if (layer.scheme() != nullptr)
      fail(KVQ_ERR_FAILED_PRECONDITION, "layer {} already has scheme {}", layer.config().layer_name,
           layer.scheme()->quant_type);
    const Options options = read_options(a.num_options, a.options, "scheme args");
    if (s->create_weights) s->create_weights(layer, options);
    layer.set_scheme(s);
  });
}

kvq_error* scheme_apply(kvq_layer* l) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    const SchemeDefinition* s = layer.scheme();
    if (s == nullptr)
      fail(KVQ_ERR_FAILED_PRECONDITION, "layer {} has no scheme applied",
           layer.config().layer_name);
    if (!s->apply)
      fail(KVQ_ERR_FAILED_PRECONDITION, "{} quantization is handled by the attention backend",
           s->quant_type);
    s->apply(layer);
  });
}

void write_param_info(const Param& p, kvq_param_info* out) {
  kvq_param_info info{};
  info.name = p.name.c_str();
  info.loader = p.loader.c_str();
  info.dtype = p.dtype;
  info.ndim = static_cast<int32_t>(p.shape.size());
  for (size_t i = 0; i < p.shape.size(); ++i) info.shape[i] = p.shape[i];
  info.trainable = p.trainable;
  info.derived = p.derived;
  info.loaded = p.loaded;
  info.role = p.derived ? KVQ_PARAM_ROLE_DERIVED : p.role;
  info.load_shapes = p.load_shapes.c_str();
  write_struct(out, info);
}

const Param& param_at(const Layer& layer, int64_t index) {
  const auto& params = layer.params();
  if (index < 0 || index >= static_cast<int64_t>(params.size()))
    fail(KVQ_ERR_OUT_OF_RANGE, "parameter index {} is outside 0..{}", index,
         static_cast<int64_t>(params.size()) - 1);
  return params[static_cast<size_t>(index)];
}

kvq_error* param_info(const kvq_layer* l, int64_t index, kvq_param_info* out) {
  return guard([&] {
    const Layer& layer = require(l, "layer").layer;
    check_out_struct(out, KVQ_PARAM_INFO_SIZE_1_0, "param info");
    write_param_info(param_at(layer, index), out);
  });
}

kvq_error* param_read(const kvq_layer* l, const char* name, const kvq_tensor* dst) {
  return guard([&] {
    const Layer& layer = require(l, "layer").layer;
    const Param* p = layer.find_param(require_string(name, "name"));
    if (p == nullptr)
      fail(KVQ_ERR_NOT_FOUND, "layer {} has no parameter '{}'", layer.config().layer_name, name);
    const TensorView d(dst, "dst");
    if (d.dtype() != p->dtype || d.numel() != p->numel())
      fail(KVQ_ERR_INVALID_ARGUMENT, "dst: {} {} cannot hold parameter {} ({} {})",
           dtype_name(d.dtype()), d.shape_string(), p->name, dtype_name(p->dtype),
           p->shape_string());
    if (!d.contiguous()) fail(KVQ_ERR_UNSUPPORTED, "dst: only contiguous tensors are supported");
    std::memcpy(d.data(), p->bytes.data(), p->bytes.size());
  });
}

kvq_error* param_load(kvq_layer* l, const char* name, const kvq_tensor* loaded, int32_t tp_rank,
                      int32_t tp_size) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    Param* p = layer.find_param(require_string(name, "name"));
    if (p == nullptr)
      fail(KVQ_ERR_NOT_FOUND, "layer {} has no parameter '{}'", layer.config().layer_name, name);
    if (p->loader.empty())
      fail(KVQ_ERR_FAILED_PRECONDITION, "parameter {} is derived, not loadable", p->name);
    if (tp_size < 1 || tp_rank < 0 || tp_rank >= tp_size)
      fail(KVQ_ERR_INVALID_ARGUMENT, "tp_rank {} is outside 0..tp_size-1 (tp_size {})", tp_rank,
           tp_size);
    const auto& loaders = layer.instance().definition().loaders;
    const auto it = loaders.find(p->loader);
    if (it == loaders.end()) fail(KVQ_ERR_INTERNAL, "no weight loader named '{}'", p->loader);
    Param staged = *p;  // load into a copy: a failing loader leaves the parameter untouched
    it->second(staged, TensorView(loaded, "loaded"), layer.config(), tp_rank, tp_size);
    staged.loaded = true;
    *p = std::move(staged);
  });
}

kvq_error* process_weights(kvq_layer* l) {
  return guard([&] {
    Layer& layer = require(l, "layer").layer;
    if (layer.scheme() != nullptr && layer.scheme()->process_weights)
      layer.scheme()->process_weights(layer);
    layer.impl().process_weights(layer);
  });
}

kvq_error* select_scheme(const kvq_instance* inst, const char* description, const char* source,
                         const char* layer_prefix, const char* layer_type, const char** out) {
  return guard([&] {
    require(out, "quant_type");
    *out = nullptr;
    const PluginDefinition& def = require(inst, "instance").instance.definition();
    require_string(description, "description");
    require_string(layer_prefix, "layer_prefix");
    require_string(layer_type, "layer_type");
    if (!def.select_scheme)
      fail(KVQ_ERR_UNSUPPORTED, "plugin {} does not read quantization descriptions", def.name);
    const std::string chosen =
        def.select_scheme(description, source ? source : "<description>", layer_prefix, layer_type);
    if (chosen.empty()) {
      *out = "";
      return;
    }
    const SchemeDefinition* s = def.schemes.find(chosen, layer_type);
    if (s == nullptr)
      fail(KVQ_ERR_INTERNAL, "selected scheme ({}, {}) is not registered", chosen, layer_type);
    *out = s->quant_type.c_str();  // lives in the plugin's definition
  });
}

// ---- 1.1: struct-argument variants of the positional functions ------------

kvq_error* param_load2(kvq_layer* l, const kvq_param_load_args* in) {
  kvq_param_load_args a{};
  if (kvq_error* e =
          guard([&] { a = read_struct(in, KVQ_PARAM_LOAD_ARGS_SIZE, "param_load args"); }))
    return e;
  return param_load(l, a.name, a.loaded, a.tp_rank, a.tp_size == 0 ? 1 : a.tp_size);
}

kvq_error* param_read2(const kvq_layer* l, const kvq_param_read_args* in) {
  kvq_param_read_args a{};
  if (kvq_error* e =
          guard([&] { a = read_struct(in, KVQ_PARAM_READ_ARGS_SIZE, "param_read args"); }))
    return e;
  return param_read(l, a.name, a.dst);
}

kvq_error* param_info2(const kvq_layer* l, const kvq_param_query* query, kvq_param_info* out) {
  return guard([&] {
    const Layer& layer = require(l, "layer").layer;
    const kvq_param_query q = read_struct(query, KVQ_PARAM_QUERY_SIZE, "param query");
    check_out_struct(out, KVQ_PARAM_INFO_SIZE_1_0, "param info");
    if (q.name == nullptr) {
      write_param_info(param_at(layer, q.index), out);
      return;
    }
    const Param* p = layer.find_param(q.name);
    if (p == nullptr)
      fail(KVQ_ERR_NOT_FOUND, "layer {} has no parameter '{}'", layer.config().layer_name, q.name);
    write_param_info(*p, out);
  });
}

kvq_error* select_scheme2(const kvq_instance* inst, const kvq_select_scheme_args* in,
                          kvq_scheme_choice* out) {
  kvq_select_scheme_args a{};
  if (kvq_error* e = guard([&] {
        a = read_struct(in, KVQ_SELECT_SCHEME_ARGS_SIZE, "select_scheme args");
        check_out_struct(out, KVQ_SCHEME_CHOICE_SIZE, "scheme choice");
      }))
    return e;
  const char* chosen = nullptr;
  if (kvq_error* e =
          select_scheme(inst, a.description, a.source, a.layer_prefix, a.layer_type, &chosen))
    return e;
  kvq_scheme_choice c{};
  c.quant_type = chosen;
  write_struct(out, c);
  return nullptr;
}

// A CPU plugin's table leaves the device hooks NULL (host memory is used);
// a device plugin's has them (abi_export_device.cpp).
constexpr kvq_plugin_api kApi = {
    KVQ_PLUGIN_API_SIZE,
    KVQ_ABI_MAJOR,
    KVQ_ABI_MINOR,
    negotiate,
    error_code,
    error_message,
    error_destroy,
    instance_destroy,
    probe,
    get_info,
    layer_create,
    layer_destroy,
    layer_info,
    cache_geometry,
    cache_init,
    cache_write,
    supports,
    forward,
    apply_scheme,
    scheme_apply,
    param_info,
    param_read,
    param_load,
    process_weights,
    select_scheme,
    nullptr,  // device_alloc
    nullptr,  // device_free
    nullptr,  // device_memcpy
    nullptr,  // device_memset
    nullptr,  // stream_create
    nullptr,  // stream_destroy
    nullptr,  // synchronize
    param_load2,
    param_read2,
    param_info2,
    select_scheme2,
};

constexpr kvq_plugin_api with_device_hooks(kvq_plugin_api api) {
  api.device_alloc = abi::device_alloc;
  api.device_free = abi::device_free;
  api.device_memcpy = abi::device_memcpy;
  api.device_memset = abi::device_memset;
  api.stream_create = abi::stream_create;
  api.stream_destroy = abi::stream_destroy;
  api.synchronize = abi::synchronize;
  return api;
}
constexpr kvq_plugin_api kDeviceApi = with_device_hooks(kApi);

}  // namespace

const kvq_plugin_api* plugin_api() {
  return &kApi;
}

const kvq_plugin_api* device_plugin_api() {
  return &kDeviceApi;
}

}  // namespace kvq::sdk
