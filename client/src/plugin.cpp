#include "kvq_client/plugin.hpp"

#include <utility>

#include "info.hpp"
#include "kvq_client/error.hpp"
#include "session.hpp"
#include "text.hpp"

namespace kvq::client {
namespace detail {

void log_callback(void* user_data, int32_t level, const char* message) noexcept {
  try {
    const auto* context = static_cast<const LogContext*>(user_data);
    if (context == nullptr || !context->sink) return;
    context->sink(context->plugin_name, level, message != nullptr ? message : "");
  } catch (...) {
    // Logging must never unwind into plugin code; a lost log line is the lesser evil.
  }
}

std::string Session::describe(std::string_view call) const {
  return cat("plugin '", log->plugin_name, "': ", call);
}

void Session::check(kvq_error* raw, std::string_view call) const {
  if (raw == nullptr) return;
  struct Destroy {
    const kvq_plugin_api* api;
    kvq_error* error;
    ~Destroy() { api->error_destroy(error); }
  } owner{&api(), raw};
  const char* message = api().error_message(raw);
  throw PluginError(api().error_code(raw), text(message), describe(call));
}

void Session::require(bool present, std::string_view function) const {
  if (!present) throw Error(describe(cat("does not implement ", function)));
}

}  // namespace detail

using detail::cat;
using detail::Session;
using detail::text;

Plugin::Plugin(std::shared_ptr<Session> session, PluginInfo info)
    : session_(std::move(session)), info_(std::move(info)) {}
Plugin::Plugin(Plugin&&) noexcept = default;
Plugin& Plugin::operator=(Plugin&&) noexcept = default;
Plugin::~Plugin() = default;

Plugin Plugin::load(const std::filesystem::path& path, const PluginOptions& options) {
  return open(open_library(path), options);
}

Plugin Plugin::open(const Library& library, const PluginOptions& options) {
  if (library.api == nullptr) throw Error(cat("plugin ", library.path.string(), ": no api table"));
  auto session = std::make_shared<Session>();
  session->library = library;
  session->log->plugin_name = library.path.filename().string();
  session->log->sink = options.log;
  const kvq_plugin_api& api = session->api();

  kvq_host_info host{};
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = kAbiMajor;
  host.abi_minor = kAbiMinor;
  if (options.log) {
    host.log = &detail::log_callback;
    host.log_user_data = session->log.get();
  }
  host.log_level = options.log_level;
  host.num_threads = options.num_threads;
  host.device_ordinal = options.device_ordinal;
  kvq_instance* instance = nullptr;
  kvq_error* error = api.negotiate(&host, &instance);
  // Own the instance before check() can throw, in case a plugin sets both.
  session->instance = std::unique_ptr<kvq_instance, detail::InstanceDeleter>(
      instance, detail::InstanceDeleter{&api});
  session->check(error, "negotiate");
  if (session->instance == nullptr)
    throw Error(session->describe("negotiate succeeded but returned no instance"));

  PluginInfo info = detail::read_plugin_info(*session);
  const std::string path = library.path.string();
  session->log->plugin_name = info.name.empty() ? library.path.filename().string() : info.name;
  if (info.abi_major != kAbiMajor) {
    throw Error(cat("plugin ", path, " speaks ABI major ", info.abi_major, "; this host speaks ",
                    kAbiMajor));
  }
  if (info.abi_minor > kAbiMinor) {
    // The plugin broke negotiation (it must answer min(host, plugin)); the
    // session runs at what this client knows.
    info.abi_minor = kAbiMinor;
  }
  if (info.abi_minor < options.min_minor) {
    throw Error(cat("plugin '", info.name, "' (", path, "): ABI minor >= ", options.min_minor,
                    " is required, but the session negotiated ", info.abi_major, ".",
                    info.abi_minor, " (this host knows ", kAbiMajor, ".", kAbiMinor,
                    ", the plugin implements ", info.abi_major, ".", info.plugin_abi_minor, ")"));
  }
  if (info.device_type != KVQ_DEVICE_CPU) {
    // Bulk tensors of a device plugin live in its memory, which only its
    // hooks reach: without them nothing could be passed to it.
    const kvq_plugin_api* table = &api;
    const bool hooks = KVQ_API_HAS(table, device_alloc) && KVQ_API_HAS(table, device_free) &&
                       KVQ_API_HAS(table, device_memcpy) && KVQ_API_HAS(table, device_memset);
    if (!hooks) {
      throw Error(session->describe(cat("computes on device type ", info.device_type,
                                        " but lacks the device memory hooks (device_alloc, "
                                        "device_free, device_memcpy, device_memset)")));
    }
  }
  session->minor = info.abi_minor;
  session->device_type = info.device_type;
  session->device_id = info.device_ordinal;
  return Plugin(std::move(session), std::move(info));
}

const std::filesystem::path& Plugin::path() const {
  return session_->library.path;
}

const kvq_plugin_api& Plugin::api() const {
  return session_->api();
}

kvq_instance* Plugin::instance() const {
  return session_->instance.get();
}

void Plugin::check(kvq_error* error, std::string_view call) const {
  session_->check(error, call);
}

Status Plugin::take(kvq_error* error) const {
  if (error == nullptr) return {};
  Status s{api().error_code(error), text(api().error_message(error))};
  api().error_destroy(error);
  return s;
}

std::optional<ProbeResult> Plugin::probe() const {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, probe)) return std::nullopt;
  kvq_probe_result raw{};
  raw.struct_size = KVQ_PROBE_RESULT_SIZE;
  session_->check(api->probe(&raw), "probe");
  return ProbeResult{raw.can_run != 0, text(raw.reason), text(raw.simd_level)};
}

Layer Plugin::create_layer(const LayerConfig& config) const {
  std::vector<const char*> flat;
  return create_layer(config.c_struct(flat));
}

Layer Plugin::create_layer(const kvq_layer_config& config) const {
  const kvq_plugin_api* api = &session_->api();
  const std::string name = text(config.layer_name);
  if (!KVQ_API_HAS(api, layer_create) || !KVQ_API_HAS(api, layer_destroy))
    throw Error(session_->describe("does not implement layer_create/layer_destroy"));
  kvq_layer_config sized = config;
  if (sized.struct_size == 0) sized.struct_size = KVQ_LAYER_CONFIG_SIZE;
  kvq_layer* raw = nullptr;
  kvq_error* error = api->layer_create(session_->instance.get(), &sized, &raw);
  Layer layer(session_, raw, name);  // owns raw (if any) before check() may throw
  session_->check(error, cat("layer_create (", name, ")"));
  if (raw == nullptr) throw Error(session_->describe("layer_create returned no layer"));
  return layer;
}

std::optional<std::string> Plugin::select_scheme(const std::string& description,
                                                 const std::string& source,
                                                 const std::string& layer_prefix,
                                                 const std::string& layer_type) const {
  const kvq_plugin_api* api = &session_->api();
  kvq_error* raw = nullptr;
  std::string chosen;
  if (KVQ_API_HAS(api, select_scheme2)) {
    kvq_select_scheme_args args{};
    args.struct_size = KVQ_SELECT_SCHEME_ARGS_SIZE;
    args.description = description.c_str();
    args.source = source.c_str();
    args.layer_prefix = layer_prefix.c_str();
    args.layer_type = layer_type.c_str();
    kvq_scheme_choice choice{};
    choice.struct_size = KVQ_SCHEME_CHOICE_SIZE;
    raw = api->select_scheme2(session_->instance.get(), &args, &choice);
    chosen = text(choice.quant_type);
  } else if (KVQ_API_HAS(api, select_scheme)) {
    const char* quant_type = nullptr;
    raw = api->select_scheme(session_->instance.get(), description.c_str(), source.c_str(),
                             layer_prefix.c_str(), layer_type.c_str(), &quant_type);
    chosen = text(quant_type);
  } else {
    return std::nullopt;
  }
  if (raw != nullptr && api->error_code(raw) == KVQ_ERR_UNSUPPORTED) {
    api->error_destroy(raw);
    return std::nullopt;
  }
  session_->check(raw, cat("select_scheme (", layer_prefix, ")"));
  return chosen;
}

void Plugin::synchronize() const {
  const kvq_plugin_api* api = &session_->api();
  // A CPU plugin completes every call before it returns.
  if (session_->device_type == KVQ_DEVICE_CPU || !KVQ_API_HAS(api, synchronize)) return;
  session_->check(api->synchronize(session_->instance.get(), nullptr), "synchronize");
}

}  // namespace kvq::client
