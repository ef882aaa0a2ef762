#include "info.hpp"

#include <algorithm>

#include "kvq_client/error.hpp"
#include "text.hpp"

namespace kvq::client {

const KvModeInfo* BackendInfo::find_mode(const std::string& mode) const {
  for (const auto& m : kv_modes)
    if (m.name == mode) return &m;
  return nullptr;
}

const BackendInfo* PluginInfo::find_backend(const std::string& backend_name) const {
  for (const auto& backend : backends)
    if (backend.name == backend_name) return &backend;
  return nullptr;
}

const SchemeInfo* PluginInfo::find_scheme(const std::string& quant_type,
                                          const std::string& layer_type) const {
  for (const auto& scheme : schemes)
    if (scheme.quant_type == quant_type && scheme.layer_type == layer_type) return &scheme;
  return nullptr;
}

const BackendInfo* PluginInfo::backend_claiming(const std::string& mode) const {
  for (const auto& backend : backends) {
    const KvModeInfo* m = backend.find_mode(mode);
    if (m != nullptr && m->supported) return &backend;
  }
  return nullptr;
}

namespace detail {
namespace {

// A field exists only when the record the plugin handed over is large
// enough to hold it.
#define KVQ_CLIENT_HAS_FIELD(ptr, type, field) ((ptr)->struct_size >= KVQ_STRUCT_SIZE(type, field))

template <typename T>
void require_array(const Session& session, const T* const* array, int64_t count,
                   std::string_view what) {
  if (count < 0 || (count > 0 && array == nullptr)) {
    throw Error(session.describe(cat("get_info returned ", count, " ", what, " with a ",
                                     array == nullptr ? "NULL" : "non-NULL", " array")));
  }
}

KvModeInfo copy_mode(const kvq_kv_mode_info& m) {
  KvModeInfo out;
  out.name = text(m.name);
  if (KVQ_CLIENT_HAS_FIELD(&m, kvq_kv_mode_info, description))
    out.description = text(m.description);
  if (KVQ_CLIENT_HAS_FIELD(&m, kvq_kv_mode_info, element_dtype))
    out.element_dtype = m.element_dtype;
  if (KVQ_CLIENT_HAS_FIELD(&m, kvq_kv_mode_info, supported)) out.supported = m.supported != 0;
  if (KVQ_CLIENT_HAS_FIELD(&m, kvq_kv_mode_info, per_token_head))
    out.per_token_head = m.per_token_head != 0;
  if (KVQ_CLIENT_HAS_FIELD(&m, kvq_kv_mode_info, needs_scheme))
    out.needs_scheme = m.needs_scheme != 0;
  return out;
}

OptionInfo copy_option(const kvq_option_info& o) {
  OptionInfo out;
  out.name = text(o.name);
  if (KVQ_CLIENT_HAS_FIELD(&o, kvq_option_info, description)) out.description = text(o.description);
  if (KVQ_CLIENT_HAS_FIELD(&o, kvq_option_info, default_value))
    out.default_value = text(o.default_value);
  if (KVQ_CLIENT_HAS_FIELD(&o, kvq_option_info, kv_modes)) out.kv_modes = text(o.kv_modes);
  return out;
}

BackendInfo copy_backend(const Session& session, const kvq_backend_info& b) {
  BackendInfo out;
  out.name = text(b.name);
  if (KVQ_CLIENT_HAS_FIELD(&b, kvq_backend_info, description))
    out.description = text(b.description);
  if (KVQ_CLIENT_HAS_FIELD(&b, kvq_backend_info, kv_modes)) {
    require_array(session, b.kv_modes, b.num_kv_modes, "KV modes");
    for (int64_t i = 0; i < b.num_kv_modes; ++i)
      if (b.kv_modes[i] != nullptr) out.kv_modes.push_back(copy_mode(*b.kv_modes[i]));
  }
  if (KVQ_CLIENT_HAS_FIELD(&b, kvq_backend_info, attention_states))
    out.attention_states = b.attention_states;
  if (KVQ_CLIENT_HAS_FIELD(&b, kvq_backend_info, layer_options)) {
    require_array(session, b.layer_options, b.num_layer_options, "layer options");
    out.lists_layer_options = true;
    for (int64_t i = 0; i < b.num_layer_options; ++i)
      if (b.layer_options[i] != nullptr)
        out.layer_options.push_back(copy_option(*b.layer_options[i]));
  }
  return out;
}

SchemeInfo copy_scheme(const Session& session, const kvq_scheme_info& s) {
  SchemeInfo out;
  out.quant_type = text(s.quant_type);
  if (KVQ_CLIENT_HAS_FIELD(&s, kvq_scheme_info, layer_type)) out.layer_type = text(s.layer_type);
  if (KVQ_CLIENT_HAS_FIELD(&s, kvq_scheme_info, description)) out.description = text(s.description);
  if (KVQ_CLIENT_HAS_FIELD(&s, kvq_scheme_info, supported)) out.supported = s.supported != 0;
  if (KVQ_CLIENT_HAS_FIELD(&s, kvq_scheme_info, name_rules)) {
    require_array(session, s.name_rules, s.num_name_rules, "name rules");
    for (int64_t i = 0; i < s.num_name_rules; ++i) {
      const kvq_name_rule* rule = s.name_rules[i];
      if (rule == nullptr) continue;
      NameRule copy{text(rule->checkpoint_suffix), {}};
      if (KVQ_CLIENT_HAS_FIELD(rule, kvq_name_rule, param_suffix))
        copy.param_suffix = text(rule->param_suffix);
      out.name_rules.push_back(std::move(copy));
    }
  }
  if (KVQ_CLIENT_HAS_FIELD(&s, kvq_scheme_info, backend)) out.backend = text(s.backend);
  return out;
}

}  // namespace

PluginInfo read_plugin_info(const Session& session) {
  kvq_plugin_info raw{};
  raw.struct_size = KVQ_PLUGIN_INFO_SIZE;
  session.check(session.api().get_info(session.instance.get(), &raw), "get_info");
  PluginInfo info;
  info.name = text(raw.name);
  info.version = text(raw.version);
  info.vendor = text(raw.vendor);
  info.abi_major = raw.abi_major;
  info.abi_minor = raw.abi_minor;
  info.plugin_abi_minor = session.api().abi_minor;
  info.simd_level = text(raw.simd_level);
  info.cpu_features = text(raw.cpu_features);
  require_array(session, raw.backends, raw.num_backends, "backends");
  for (int64_t i = 0; i < raw.num_backends; ++i)
    if (raw.backends[i] != nullptr)
      info.backends.push_back(copy_backend(session, *raw.backends[i]));
  require_array(session, raw.schemes, raw.num_schemes, "schemes");
  for (int64_t i = 0; i < raw.num_schemes; ++i)
    if (raw.schemes[i] != nullptr) info.schemes.push_back(copy_scheme(session, *raw.schemes[i]));
  // The 1.1 fields exist when the session negotiated 1.1 (a 1.0 plugin never
  // writes them; they stay zero). 0 is not a device type: keep the CPU default.
  if (raw.abi_minor >= 1 && raw.device_type != 0) {
    info.device_type = raw.device_type;
    info.device_ordinal = raw.device_ordinal;
    info.device_name = text(raw.device_name);
    info.device_memory_bytes = raw.device_memory_bytes;
    info.device_count = raw.device_count;
    info.has_device_memory = raw.has_device_memory != 0;
  }
  return info;
}

ParamInfo copy_param(const Session& session, const kvq_param_info& raw, std::string_view where) {
  ParamInfo p;
  p.name = text(raw.name);
  p.loader = text(raw.loader);
  p.dtype = raw.dtype;
  if (raw.ndim < 0 || raw.ndim > KVQ_MAX_DIMS)
    throw Error(session.describe(cat(where, " reports ndim ", raw.ndim)));
  p.shape.assign(raw.shape, raw.shape + raw.ndim);
  p.trainable = raw.trainable != 0;
  p.derived = raw.derived != 0;
  p.loaded = raw.loaded != 0;
  if (KVQ_CLIENT_HAS_FIELD(&raw, kvq_param_info, load_shapes)) {
    p.role = raw.role;
    p.load_shapes = text(raw.load_shapes);
  }
  return p;
}

}  // namespace detail
}  // namespace kvq::client
