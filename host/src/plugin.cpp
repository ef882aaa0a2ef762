#include "kvq_host/plugin.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string_view>
#include <utility>

#include "kvq_host/errors.hpp"

namespace kvq::host {
namespace detail {

struct InstanceDeleter {
  const kvq_plugin_api* api = nullptr;
  void operator()(kvq_instance* instance) const noexcept { api->instance_destroy(instance); }
};

struct Session {
  PluginLibrary library;
  // Heap-allocated so its address, held by the plugin as log_user_data, is
  // stable; declared before `instance` so it is destroyed after it.
  std::unique_ptr<PluginLogContext> log = std::make_unique<PluginLogContext>();
  std::unique_ptr<kvq_instance, InstanceDeleter> instance;

  const kvq_plugin_api& api() const { return *library.api; }
  std::string describe(std::string_view call) const {
    return fmt::format("plugin '{}': {}", log->plugin_name, call);
  }
};

}  // namespace detail

namespace {

using detail::Session;

struct ErrorDeleter {
  const kvq_plugin_api* api = nullptr;
  void operator()(kvq_error* error) const noexcept { api->error_destroy(error); }
};
using ErrorHandle = std::unique_ptr<kvq_error, ErrorDeleter>;

// Takes ownership of a returned error; throws PluginError when it is set.
void check(const Session& session, kvq_error* raw, std::string_view call) {
  if (raw == nullptr) return;
  const ErrorHandle error(raw, ErrorDeleter{&session.api()});
  const char* message = session.api().error_message(error.get());
  throw PluginError(session.api().error_code(error.get()), message ? message : "",
                    session.describe(call));
}

// Tolerant reading (ABI rule 4): a field exists only when the struct the
// plugin handed over is large enough to hold it.
#define KVQ_HOST_HAS_FIELD(ptr, type, field) ((ptr)->struct_size >= KVQ_STRUCT_SIZE(type, field))

std::string text(const char* s) {
  return s != nullptr ? std::string(s) : std::string();
}

template <typename T>
void require_array(const Session& session, const T* const* array, int64_t count,
                   std::string_view what) {
  if (count < 0 || (count > 0 && array == nullptr)) {
    throw Error(session.describe(fmt::format("get_info returned {} {} with a {} array", count, what,
                                             array == nullptr ? "NULL" : "non-NULL")));
  }
}

KvModeInfo copy_mode(const kvq_kv_mode_info& m) {
  KvModeInfo out;
  out.name = text(m.name);
  if (KVQ_HOST_HAS_FIELD(&m, kvq_kv_mode_info, description)) out.description = text(m.description);
  if (KVQ_HOST_HAS_FIELD(&m, kvq_kv_mode_info, element_dtype)) out.element_dtype = m.element_dtype;
  if (KVQ_HOST_HAS_FIELD(&m, kvq_kv_mode_info, supported)) out.supported = m.supported != 0;
  if (KVQ_HOST_HAS_FIELD(&m, kvq_kv_mode_info, per_token_head))
    out.per_token_head = m.per_token_head != 0;
  if (KVQ_HOST_HAS_FIELD(&m, kvq_kv_mode_info, needs_scheme))
    out.needs_scheme = m.needs_scheme != 0;
  return out;
}

BackendInfo copy_backend(const Session& session, const kvq_backend_info& b) {
  BackendInfo out;
  out.name = text(b.name);
  if (KVQ_HOST_HAS_FIELD(&b, kvq_backend_info, description)) out.description = text(b.description);
  if (KVQ_HOST_HAS_FIELD(&b, kvq_backend_info, kv_modes)) {
    require_array(session, b.kv_modes, b.num_kv_modes, "KV modes");
    for (int64_t i = 0; i < b.num_kv_modes; ++i) {
      if (b.kv_modes[i] != nullptr) out.kv_modes.push_back(copy_mode(*b.kv_modes[i]));
    }
  }
  if (KVQ_HOST_HAS_FIELD(&b, kvq_backend_info, attention_states))
    out.attention_states = b.attention_states;
  return out;
}

SchemeInfo copy_scheme(const Session& session, const kvq_scheme_info& s) {
  SchemeInfo out;
  out.quant_type = text(s.quant_type);
  if (KVQ_HOST_HAS_FIELD(&s, kvq_scheme_info, layer_type)) out.layer_type = text(s.layer_type);
  if (KVQ_HOST_HAS_FIELD(&s, kvq_scheme_info, description)) out.description = text(s.description);
  if (KVQ_HOST_HAS_FIELD(&s, kvq_scheme_info, supported)) out.supported = s.supported != 0;
  if (KVQ_HOST_HAS_FIELD(&s, kvq_scheme_info, name_rules)) {
    require_array(session, s.name_rules, s.num_name_rules, "name rules");
    for (int64_t i = 0; i < s.num_name_rules; ++i) {
      const kvq_name_rule* rule = s.name_rules[i];
      if (rule == nullptr) continue;
      NameRule copy{text(rule->checkpoint_suffix), {}};
      if (KVQ_HOST_HAS_FIELD(rule, kvq_name_rule, param_suffix))
        copy.param_suffix = text(rule->param_suffix);
      out.name_rules.push_back(std::move(copy));
    }
  }
  return out;
}

PluginInfo read_info(const Session& session) {
  kvq_plugin_info raw{};
  raw.struct_size = KVQ_PLUGIN_INFO_SIZE;
  check(session, session.api().get_info(session.instance.get(), &raw), "get_info");
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
  for (int64_t i = 0; i < raw.num_backends; ++i) {
    if (raw.backends[i] != nullptr)
      info.backends.push_back(copy_backend(session, *raw.backends[i]));
  }
  require_array(session, raw.schemes, raw.num_schemes, "schemes");
  for (int64_t i = 0; i < raw.num_schemes; ++i) {
    if (raw.schemes[i] != nullptr) info.schemes.push_back(copy_scheme(session, *raw.schemes[i]));
  }
  return info;
}

}  // namespace

const BackendInfo* PluginInfo::find_backend(const std::string& backend_name) const {
  for (const auto& backend : backends) {
    if (backend.name == backend_name) return &backend;
  }
  return nullptr;
}

const SchemeInfo* PluginInfo::find_scheme(const std::string& quant_type,
                                          const std::string& layer_type) const {
  for (const auto& scheme : schemes) {
    if (scheme.quant_type == quant_type && scheme.layer_type == layer_type) return &scheme;
  }
  return nullptr;
}

// ---- Plugin -------------------------------------------------------------

Plugin::Plugin(std::shared_ptr<detail::Session> session, PluginInfo info)
    : session_(std::move(session)), info_(std::move(info)) {}
Plugin::Plugin(Plugin&&) noexcept = default;
Plugin& Plugin::operator=(Plugin&&) noexcept = default;
Plugin::~Plugin() = default;

Plugin Plugin::load(const std::filesystem::path& path, const NegotiationOptions& options) {
  auto session = std::make_shared<Session>();
  session->library = open_plugin_library(path);
  session->log->plugin_name = path.filename().string();
  const kvq_plugin_api& api = session->api();

  kvq_host_info host{};
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = kHostAbiMajor;
  host.abi_minor = kHostAbiMinor;
  host.log = &plugin_log_callback;
  host.log_user_data = session->log.get();
  host.log_level = kvq_log_level_for(spdlog::get_level());
  host.num_threads = options.num_threads;
  kvq_instance* instance = nullptr;
  kvq_error* error = api.negotiate(&host, &instance);
  // Own the instance before check() can throw, in case a plugin sets both.
  session->instance = std::unique_ptr<kvq_instance, detail::InstanceDeleter>(
      instance, detail::InstanceDeleter{&api});
  check(*session, error, "negotiate");
  if (session->instance == nullptr) {
    throw Error(session->describe("negotiate succeeded but returned no instance"));
  }

  PluginInfo info = read_info(*session);
  session->log->plugin_name = info.name.empty() ? path.filename().string() : info.name;
  if (info.abi_major != kHostAbiMajor) {
    throw Error(fmt::format("plugin {} speaks ABI major {}; this host speaks {}", path.string(),
                            info.abi_major, kHostAbiMajor));
  }
  if (info.abi_minor > kHostAbiMinor) {
    spdlog::warn("plugin '{}' reports negotiated minor {} above the host's {}; using {}", info.name,
                 info.abi_minor, kHostAbiMinor, kHostAbiMinor);
    info.abi_minor = kHostAbiMinor;
  }
  if (info.abi_minor < options.min_minor) {
    throw Error(fmt::format(
        "plugin '{}' ({}): the deployment needs ABI minor >= {}, but the session negotiated "
        "{}.{} (this host knows {}.{}, the plugin implements {}.{})",
        info.name, path.string(), options.min_minor, info.abi_major, info.abi_minor, kHostAbiMajor,
        kHostAbiMinor, info.abi_major, info.plugin_abi_minor));
  }
  return Plugin(std::move(session), std::move(info));
}

const std::filesystem::path& Plugin::path() const {
  return session_->library.path;
}
const kvq_plugin_api& Plugin::api() const {
  return session_->api();
}

std::optional<ProbeResult> Plugin::probe() const {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, probe)) return std::nullopt;
  kvq_probe_result raw{};
  raw.struct_size = KVQ_PROBE_RESULT_SIZE;
  check(*session_, api->probe(&raw), "probe");
  return ProbeResult{raw.can_run != 0, text(raw.reason), text(raw.simd_level)};
}

Layer Plugin::create_layer(const kvq_layer_config& config) const {
  const kvq_plugin_api* api = &session_->api();
  const std::string name = text(config.layer_name);
  if (!KVQ_API_HAS(api, layer_create) || !KVQ_API_HAS(api, layer_destroy)) {
    throw Error(session_->describe("does not implement layer_create/layer_destroy"));
  }
  kvq_layer_config sized = config;
  sized.struct_size = KVQ_LAYER_CONFIG_SIZE;
  kvq_layer* raw = nullptr;
  kvq_error* error = api->layer_create(session_->instance.get(), &sized, &raw);
  Layer layer(session_, raw, name);  // owns raw (if any) before check() may throw
  check(*session_, error, fmt::format("layer_create ({})", name));
  if (raw == nullptr) throw Error(session_->describe("layer_create returned no layer"));
  return layer;
}

std::optional<std::string> Plugin::select_scheme(const std::string& description,
                                                 const std::string& source,
                                                 const std::string& layer_prefix,
                                                 const std::string& layer_type) const {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, select_scheme)) return std::nullopt;
  const char* quant_type = nullptr;
  kvq_error* raw = api->select_scheme(session_->instance.get(), description.c_str(), source.c_str(),
                                      layer_prefix.c_str(), layer_type.c_str(), &quant_type);
  if (raw != nullptr && api->error_code(raw) == KVQ_ERR_UNSUPPORTED) {
    api->error_destroy(raw);
    return std::nullopt;
  }
  check(*session_, raw, fmt::format("select_scheme ({})", layer_prefix));
  return text(quant_type);
}

// ---- Layer --------------------------------------------------------------

void Layer::Deleter::operator()(kvq_layer* layer) const noexcept {
  api->layer_destroy(layer);
}

Layer::Layer(std::shared_ptr<detail::Session> session, kvq_layer* layer, std::string name)
    : session_(std::move(session)),
      layer_(layer, Deleter{&session_->api()}),
      name_(std::move(name)) {}
Layer::Layer(Layer&&) noexcept = default;
Layer& Layer::operator=(Layer&&) noexcept = default;
Layer::~Layer() = default;

namespace {
void require(const Session& session, bool present, std::string_view function) {
  if (!present) {
    throw Error(session.describe(fmt::format("does not implement {}", function)));
  }
}
}  // namespace

LayerInfo Layer::info() const {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, layer_info), "layer_info");
  kvq_layer_info raw{};
  raw.struct_size = KVQ_LAYER_INFO_SIZE;
  check(*session_, api->layer_info(layer_.get(), &raw), fmt::format("layer_info ({})", name_));
  return LayerInfo{text(raw.impl_name), text(raw.kv_cache_dtype), text(raw.scheme),
                   raw.element_dtype, raw.num_params};
}

kvq_cache_geometry Layer::cache_geometry() const {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, cache_geometry), "cache_geometry");
  kvq_cache_geometry geometry{};
  geometry.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  check(*session_, api->cache_geometry(layer_.get(), &geometry),
        fmt::format("cache_geometry ({})", name_));
  return geometry;
}

void Layer::cache_init(const kvq_tensor& kv_cache) {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, cache_init), "cache_init");
  check(*session_, api->cache_init(layer_.get(), &kv_cache), fmt::format("cache_init ({})", name_));
}

void Layer::cache_write(const kvq_cache_write_args& args) {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, cache_write), "cache_write");
  check(*session_, api->cache_write(layer_.get(), &args), fmt::format("cache_write ({})", name_));
}

void Layer::forward(const kvq_forward_args& args) {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, forward), "forward");
  check(*session_, api->forward(layer_.get(), &args), fmt::format("forward ({})", name_));
}

void Layer::check_supports(const kvq_forward_args& args) const {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, supports)) return;
  check(*session_, api->supports(layer_.get(), &args), fmt::format("supports ({})", name_));
}

void Layer::apply_scheme(const std::string& quant_type, const std::string& layer_type,
                         const SchemeOptions& options) {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, apply_scheme), "apply_scheme");
  std::vector<const char*> flat;
  for (const auto& [key, value] : options) {
    flat.push_back(key.c_str());
    flat.push_back(value.c_str());
  }
  kvq_scheme_args args{};
  args.struct_size = KVQ_SCHEME_ARGS_SIZE;
  args.quant_type = quant_type.c_str();
  args.layer_type = layer_type.c_str();
  args.num_options = static_cast<int64_t>(options.size());
  args.options = flat.empty() ? nullptr : flat.data();
  check(*session_, api->apply_scheme(layer_.get(), &args),
        fmt::format("apply_scheme {} ({})", quant_type, name_));
}

std::vector<ParamInfo> Layer::params() const {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, param_info), "param_info");
  const int64_t count = info().num_params;
  std::vector<ParamInfo> out;
  for (int64_t i = 0; i < count; ++i) {
    kvq_param_info raw{};
    raw.struct_size = KVQ_PARAM_INFO_SIZE;
    check(*session_, api->param_info(layer_.get(), i, &raw),
          fmt::format("param_info {} ({})", i, name_));
    ParamInfo p;
    p.name = text(raw.name);
    p.loader = text(raw.loader);
    p.dtype = raw.dtype;
    if (raw.ndim < 0 || raw.ndim > KVQ_MAX_DIMS) {
      throw Error(session_->describe(
          fmt::format("param_info {} ({}) reports ndim {}", i, name_, raw.ndim)));
    }
    p.shape.assign(raw.shape, raw.shape + raw.ndim);
    p.trainable = raw.trainable != 0;
    p.derived = raw.derived != 0;
    p.loaded = raw.loaded != 0;
    out.push_back(std::move(p));
  }
  return out;
}

void Layer::param_load(const std::string& name, const kvq_tensor& loaded, int32_t tp_rank,
                       int32_t tp_size) {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, param_load), "param_load");
  check(*session_, api->param_load(layer_.get(), name.c_str(), &loaded, tp_rank, tp_size),
        fmt::format("param_load {}", name));
}

void Layer::param_read(const std::string& name, const kvq_tensor& dst) const {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, param_read), "param_read");
  check(*session_, api->param_read(layer_.get(), name.c_str(), &dst),
        fmt::format("param_read {}", name));
}

void Layer::process_weights() {
  const kvq_plugin_api* api = &session_->api();
  require(*session_, KVQ_API_HAS(api, process_weights), "process_weights");
  check(*session_, api->process_weights(layer_.get()), fmt::format("process_weights ({})", name_));
}

}  // namespace kvq::host
