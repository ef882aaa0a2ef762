#include "kvq_sdk/plugin.hpp"

#include "kvq_sdk/cpu.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <omp.h>

#include <charconv>
#include <cstring>
#include <utility>

namespace kvq::sdk {

const std::string* find_option(const Options& options, std::string_view key) {
  for (const auto& [k, v] : options)
    if (k == key) return &v;
  return nullptr;
}

int64_t int_option(const Options& options, std::string_view key, int64_t fallback, int64_t min,
                   int64_t max, std::string_view owner) {
  const std::string* s = find_option(options, key);
  if (s == nullptr) return fallback;
  int64_t v = 0;
  const char* end = s->data() + s->size();
  const auto [ptr, ec] = std::from_chars(s->data(), end, v);
  if (s->empty() || ec != std::errc() || ptr != end || v < min || v > max)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{} option {} = '{}' is not an integer in {}..{}", owner, key,
         *s, min, max);
  return v;
}

// ---- Param -----------------------------------------------------------------

int64_t Param::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float Param::get(int64_t i) const {
  return load_float(dtype, bytes.data() + i * dtype_size(dtype));
}

void Param::set(int64_t i, float v) {
  unsigned char* p = bytes.data() + i * dtype_size(dtype);
  switch (dtype) {
    case KVQ_DTYPE_I8: *reinterpret_cast<int8_t*>(p) = static_cast<int8_t>(v); return;
    case KVQ_DTYPE_I32: {
      const int32_t x = static_cast<int32_t>(v);
      std::memcpy(p, &x, 4);
      return;
    }
    default: store_float(dtype, p, v);
  }
}

void Param::reshape(std::vector<int64_t> new_shape) {
  shape = std::move(new_shape);
  bytes.assign(static_cast<size_t>(numel() * dtype_size(dtype)), 0);
}

std::string Param::shape_string() const {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

void default_weight_loader(Param& param, const TensorView& loaded, const LayerConfig&, int32_t,
                           int32_t) {
  std::vector<int64_t> a, b;
  for (int i = 0; i < loaded.ndim(); ++i)
    if (loaded.dim(i) != 1) a.push_back(loaded.dim(i));
  for (int64_t d : param.shape)
    if (d != 1) b.push_back(d);
  if (a != b)
    fail(KVQ_ERR_INVALID_ARGUMENT, "cannot load weight {} into parameter {} {}",
         loaded.shape_string(), param.name, param.shape_string());
  if (!loaded.contiguous())
    fail(KVQ_ERR_UNSUPPORTED, "loaded: only contiguous tensors are supported");
  const int64_t es = dtype_size(loaded.dtype());
  for (int64_t i = 0; i < param.numel(); ++i)
    param.set(
        i, load_float(loaded.dtype(), static_cast<const unsigned char*>(loaded.data()) + i * es));
}

// ---- schemes ---------------------------------------------------------------

void SchemeRegistry::add(SchemeDefinition scheme) {
  if (find(scheme.quant_type, scheme.layer_type) != nullptr)
    fail(KVQ_ERR_ALREADY_EXISTS, "scheme ({}, {}) is already registered", scheme.quant_type,
         scheme.layer_type);
  schemes_.push_back(std::move(scheme));
}

const SchemeDefinition* SchemeRegistry::find(std::string_view quant_type,
                                             std::string_view layer_type) const {
  for (const auto& s : schemes_)
    if (s.quant_type == quant_type && s.layer_type == layer_type) return &s;
  return nullptr;
}

// ---- LayerImpl defaults ----------------------------------------------------

void LayerImpl::cache_init(const Layer& layer, const CacheView& cache) const {
  if (!cache.host_accessible())
    fail(KVQ_ERR_INTERNAL, "{}: a device cache needs the implementation's own cache_init", name());
  const kvq_cache_geometry& g = cache.geometry();
  std::memset(cache.base(), 0, static_cast<size_t>(cache.num_blocks() * g.bytes_per_block));
  if (!layer.mode().per_token_head) return;
  const float one = 1.0f;
  const int planes = cache.keys_only() ? 1 : 2;
  for (int64_t b = 0; b < cache.num_blocks(); ++b)
    for (int kv = 0; kv < planes; ++kv)
      for (int64_t s = 0; s < g.block_size; ++s)
        for (int64_t h = 0; h < g.num_kv_heads; ++h) {
          const int64_t d = kv == 0 ? g.head_size : g.head_size_v;
          std::memcpy(cache.row(b, kv, s, h) + d * dtype_size(g.element_dtype), &one, 4);
        }
}

ForwardSpec LayerImpl::forward_spec(const Layer& layer) const {
  const LayerConfig& c = layer.config();
  return {{c.model_dtype}, c.model_dtype, {c.num_heads, c.head_size_v}, false};
}

void LayerImpl::attach(Layer&) {}
void LayerImpl::check_forward(const Layer&, const ForwardBatch&) const {}
void LayerImpl::process_weights(Layer&) {}

kvq_cache_geometry block_kv_slot_head_geometry(const LayerConfig& c, int32_t element_dtype,
                                               bool per_token_head) {
  kvq_cache_geometry g{};
  g.struct_size = sizeof(g);
  g.layout = KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD;
  g.element_dtype = element_dtype;
  g.block_size = c.block_size;
  g.num_kv_heads = c.num_kv_heads;
  g.head_size = c.head_size;
  g.head_size_v = c.head_size_v;
  g.row_bytes =
      std::max(c.head_size, c.head_size_v) * dtype_size(element_dtype) + (per_token_head ? 4 : 0);
  g.bytes_per_block = 2 * c.block_size * c.num_kv_heads * g.row_bytes;
  g.alignment = 64;
  return g;
}

// ---- Instance --------------------------------------------------------------

Instance::Instance(const PluginDefinition& def, const kvq_host_info& host, uint32_t minor)
    : def_(def),
      logger_(host.log, host.log_user_data, host.log_level == 0 ? KVQ_LOG_INFO : host.log_level),
      num_threads_(host.num_threads > 0 ? host.num_threads : omp_get_num_procs()),
      simd_level_(simd_level()),
      cpu_features_(cpu_features()) {
  if (host.device_ordinal < 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "host_info: device_ordinal {} < 0", host.device_ordinal);
  if (def.open_device) {
    device_ = def.open_device(host.device_ordinal);
    device_name_ = device_->name();
  } else {
    device_name_ = cpu_model_name();
  }
  for (const auto& b : def.backends) {
    auto& list = mode_lists_.emplace_back();
    for (const auto& m : b.modes) {
      kvq_kv_mode_info& mi = mode_infos_.emplace_back();
      mi.struct_size = sizeof(mi);
      mi.name = m.name.c_str();
      mi.description = m.description.c_str();
      mi.element_dtype = m.element_dtype;
      mi.supported = m.supported;
      mi.per_token_head = m.per_token_head;
      mi.needs_scheme = m.needs_scheme;
      list.push_back(&mi);
    }
    kvq_backend_info& bi = backend_infos_.emplace_back();
    bi.struct_size = sizeof(bi);
    bi.name = b.name.c_str();
    bi.description = b.description.c_str();
    bi.num_kv_modes = static_cast<int64_t>(list.size());
    bi.kv_modes = list.data();
    bi.attention_states = b.attention_states;
    auto& options = option_lists_.emplace_back();
    for (const auto& o : b.options) {
      kvq_option_info& oi = option_infos_.emplace_back();
      oi.struct_size = sizeof(oi);
      oi.name = o.name.c_str();
      oi.description = o.description.c_str();
      oi.default_value = o.default_value.c_str();
      oi.kv_modes = o.kv_modes.c_str();
      options.push_back(&oi);
    }
    bi.num_layer_options = static_cast<int64_t>(options.size());
    bi.layer_options = options.data();
    backend_list_.push_back(&bi);
  }
  for (const auto& s : def.schemes.all()) {
    auto& rules = rule_lists_.emplace_back();
    for (const auto& r : s.name_rules) {
      kvq_name_rule& ri = rule_infos_.emplace_back();
      ri.struct_size = sizeof(ri);
      ri.checkpoint_suffix = r.checkpoint_suffix.c_str();
      ri.param_suffix = r.param_suffix.c_str();
      rules.push_back(&ri);
    }
    kvq_scheme_info& si = scheme_infos_.emplace_back();
    si.struct_size = sizeof(si);
    si.quant_type = s.quant_type.c_str();
    si.layer_type = s.layer_type.c_str();
    si.description = s.description.c_str();
    si.supported = s.supported;
    si.num_name_rules = static_cast<int64_t>(rules.size());
    si.name_rules = rules.data();
    si.backend = s.backend.c_str();
    scheme_list_.push_back(&si);
  }
  info_.struct_size = sizeof(info_);
  info_.name = def.name.c_str();
  info_.version = def.version.c_str();
  info_.vendor = def.vendor.c_str();
  info_.abi_major = KVQ_ABI_MAJOR;
  info_.abi_minor = minor;
  info_.simd_level = simd_level_.c_str();
  info_.cpu_features = cpu_features_.c_str();
  info_.num_backends = static_cast<int64_t>(backend_list_.size());
  info_.backends = backend_list_.data();
  info_.num_schemes = static_cast<int64_t>(scheme_list_.size());
  info_.schemes = scheme_list_.data();
  info_.device_type = device_ ? device_->type() : KVQ_DEVICE_CPU;
  info_.device_ordinal = device_ ? device_->ordinal() : 0;
  info_.device_name = device_name_.c_str();
  info_.device_memory_bytes = device_ ? device_->memory_bytes() : 0;
  info_.device_count = device_ ? device_->count() : 1;
  info_.has_device_memory = device_ != nullptr;
}

// ---- Layer -----------------------------------------------------------------

Layer::Layer(const Instance& instance, const BackendDefinition& backend, LayerConfig config,
             const ModeDefinition& mode)
    : instance_(instance),
      backend_(backend),
      config_(std::move(config)),
      mode_(&mode),
      impl_(backend.make_impl(config_, mode)) {
  impl_->attach(*this);
}

void Layer::upgrade(std::unique_ptr<LayerImpl> next, const ModeDefinition& mode) {
  impl_ = std::move(next);
  mode_ = &mode;
  impl_->attach(*this);
}

const ModeDefinition& Layer::backend_mode(std::string_view name) const {
  for (const auto& m : backend_.modes)
    if (m.name == name) return m;
  fail(KVQ_ERR_INTERNAL, "backend {} has no mode {}", backend_.name, name);
}

std::string Layer::full_name(std::string_view local) const {
  return config_.layer_name.empty() ? std::string(local)
                                    : config_.layer_name + "." + std::string(local);
}

Param& Layer::declare(Param param) {
  param.name = full_name(param.name);
  if (find_param(param.name) != nullptr)
    fail(KVQ_ERR_ALREADY_EXISTS, "parameter {} is already declared", param.name);
  if (param.bytes.empty()) param.reshape(param.shape);
  return params_.emplace_back(std::move(param));
}

Param* Layer::find_param(std::string_view full) {
  return const_cast<Param*>(std::as_const(*this).find_param(full));
}

const Param* Layer::find_param(std::string_view full) const {
  for (const auto& p : params_)
    if (p.name == full) return &p;
  return nullptr;
}

const Param& Layer::param(std::string_view local_name) const {
  const Param* p = find_param(full_name(local_name));
  if (p == nullptr)
    fail(KVQ_ERR_FAILED_PRECONDITION, "layer {} has no parameter {}", config_.layer_name,
         local_name);
  return *p;
}

Param& Layer::param(std::string_view local_name) {
  return const_cast<Param&>(std::as_const(*this).param(local_name));
}

}  // namespace kvq::sdk
