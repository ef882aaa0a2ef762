#include <utility>

#include "info.hpp"
#include "kvq_client/error.hpp"
#include "kvq_client/plugin.hpp"
#include "session.hpp"
#include "text.hpp"

namespace kvq::client {

using detail::cat;
using detail::text;

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

LayerInfo Layer::info() const {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, layer_info), "layer_info");
  kvq_layer_info raw{};
  raw.struct_size = KVQ_LAYER_INFO_SIZE;
  session_->check(api->layer_info(layer_.get(), &raw), cat("layer_info (", name_, ")"));
  return LayerInfo{text(raw.impl_name), text(raw.kv_cache_dtype), text(raw.scheme),
                   raw.element_dtype, raw.num_params};
}

kvq_cache_geometry Layer::cache_geometry() const {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, cache_geometry), "cache_geometry");
  kvq_cache_geometry geometry{};
  geometry.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  session_->check(api->cache_geometry(layer_.get(), &geometry),
                  cat("cache_geometry (", name_, ")"));
  return geometry;
}

void Layer::cache_init(const kvq_tensor& kv_cache) {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, cache_init), "cache_init");
  session_->check(api->cache_init(layer_.get(), &kv_cache), cat("cache_init (", name_, ")"));
}

// A 1.0 session ignores the stream field (its struct ends before it), so a
// call the caller meant to enqueue would silently run differently: refuse.
void Layer::require_stream_support(kvq_stream* stream, std::string_view call) const {
  if (stream != nullptr && session_->minor < 1) {
    throw Error(session_->describe(cat(call, " (", name_,
                                       "): a stream needs ABI 1.1, but the session negotiated 1.",
                                       session_->minor)));
  }
}

void Layer::cache_write(const CacheWriteArgs& args) {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, cache_write), "cache_write");
  require_stream_support(args.stream(), "cache_write");
  const kvq_cache_write_args raw = args.c_struct();
  session_->check(api->cache_write(layer_.get(), &raw), cat("cache_write (", name_, ")"));
}

void Layer::forward(const ForwardArgs& args) {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, forward), "forward");
  require_stream_support(args.stream(), "forward");
  const kvq_forward_args raw = args.c_struct();
  session_->check(api->forward(layer_.get(), &raw), cat("forward (", name_, ")"));
}

void Layer::check_supports(const ForwardArgs& args) const {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, supports)) return;
  const kvq_forward_args raw = args.c_struct();
  session_->check(api->supports(layer_.get(), &raw), cat("supports (", name_, ")"));
}

void Layer::apply_scheme(const std::string& quant_type, const std::string& layer_type,
                         const Options& options) {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, apply_scheme), "apply_scheme");
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
  session_->check(api->apply_scheme(layer_.get(), &args),
                  cat("apply_scheme ", quant_type, " (", name_, ")"));
}

void Layer::scheme_apply() {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, scheme_apply), "scheme_apply");
  session_->check(api->scheme_apply(layer_.get()), cat("scheme_apply (", name_, ")"));
}

std::vector<ParamInfo> Layer::params() const {
  const kvq_plugin_api* api = &session_->api();
  const bool by_query = KVQ_API_HAS(api, param_info2);
  session_->require(by_query || KVQ_API_HAS(api, param_info), "param_info");
  const int64_t count = info().num_params;
  std::vector<ParamInfo> out;
  for (int64_t i = 0; i < count; ++i) {
    kvq_param_info raw{};
    raw.struct_size = KVQ_PARAM_INFO_SIZE;
    const std::string where = cat("param_info ", i, " (", name_, ")");
    if (by_query) {
      kvq_param_query query{};
      query.struct_size = KVQ_PARAM_QUERY_SIZE;
      query.index = i;
      session_->check(api->param_info2(layer_.get(), &query, &raw), where);
    } else {
      session_->check(api->param_info(layer_.get(), i, &raw), where);
    }
    out.push_back(detail::copy_param(*session_, raw, where));
  }
  return out;
}

std::optional<ParamInfo> Layer::param(const std::string& name) const {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, param_info2)) {
    for (ParamInfo& p : params())
      if (p.name == name) return std::move(p);
    return std::nullopt;
  }
  kvq_param_query query{};
  query.struct_size = KVQ_PARAM_QUERY_SIZE;
  query.name = name.c_str();
  kvq_param_info raw{};
  raw.struct_size = KVQ_PARAM_INFO_SIZE;
  kvq_error* error = api->param_info2(layer_.get(), &query, &raw);
  if (error != nullptr && api->error_code(error) == KVQ_ERR_NOT_FOUND) {
    api->error_destroy(error);
    return std::nullopt;
  }
  const std::string where = cat("param_info ", name);
  session_->check(error, where);
  return detail::copy_param(*session_, raw, where);
}

void Layer::param_load(const std::string& name, const kvq_tensor& loaded, int32_t tp_rank,
                       int32_t tp_size) {
  const kvq_plugin_api* api = &session_->api();
  const std::string where = cat("param_load ", name);
  if (KVQ_API_HAS(api, param_load2)) {
    kvq_param_load_args args{};
    args.struct_size = KVQ_PARAM_LOAD_ARGS_SIZE;
    args.name = name.c_str();
    args.loaded = &loaded;
    args.tp_rank = tp_rank;
    args.tp_size = tp_size;
    session_->check(api->param_load2(layer_.get(), &args), where);
    return;
  }
  session_->require(KVQ_API_HAS(api, param_load), "param_load");
  session_->check(api->param_load(layer_.get(), name.c_str(), &loaded, tp_rank, tp_size), where);
}

void Layer::param_read(const std::string& name, const kvq_tensor& dst) const {
  const kvq_plugin_api* api = &session_->api();
  const std::string where = cat("param_read ", name);
  if (KVQ_API_HAS(api, param_read2)) {
    kvq_param_read_args args{};
    args.struct_size = KVQ_PARAM_READ_ARGS_SIZE;
    args.name = name.c_str();
    args.dst = &dst;
    session_->check(api->param_read2(layer_.get(), &args), where);
    return;
  }
  session_->require(KVQ_API_HAS(api, param_read), "param_read");
  session_->check(api->param_read(layer_.get(), name.c_str(), &dst), where);
}

void Layer::process_weights() {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, process_weights), "process_weights");
  session_->check(api->process_weights(layer_.get()), cat("process_weights (", name_, ")"));
}

}  // namespace kvq::client
