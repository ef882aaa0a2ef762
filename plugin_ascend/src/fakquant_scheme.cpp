#include "fakquant_scheme.hpp"

#include "mla_fakquant_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace kvq::ascend {
namespace {

constexpr const char* kLoader = "fa_quant";
constexpr const char* kPrefixes[] = {"fa_q", "fa_k", "fa_v"};

// A non-negative integer scheme option; 0 when absent.
int64_t int_option(const sdk::Options& options, const char* key) {
  return sdk::int_option(options, key, 0, 0, 65536, "FAKQuant scheme");
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_geometry(const sdk::LayerConfig& c, int64_t lora, int64_t rope) {
  if (c.num_kv_heads != 1)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "FAKQuant (MLA) layer {} needs num_kv_heads 1 (one latent KV head); the layer has "
              "num_kv_heads {}",
              c.layer_name, c.num_kv_heads);
  if (lora > 0 && (c.head_size != lora + rope || c.head_size_v != lora))
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "FAKQuant (MLA) layer {} needs head_size == kv_lora_rank + qk_rope_head_dim = {} + "
              "{} = {} and head_size_v == kv_lora_rank = {}; the layer has head_size {} and "
              "head_size_v {}",
              c.layer_name, lora, rope, lora + rope, lora, c.head_size, c.head_size_v);
}

void create_weights(sdk::Layer& layer, const sdk::Options& options) {
  const sdk::LayerConfig& c = layer.config();
  const int64_t lora = int_option(options, "kv_lora_rank");
  const int64_t rope = int_option(options, "qk_rope_head_dim");
  check_geometry(c, lora, rope);  // before anything changes
  for (const char* prefix : kPrefixes) {
    const int64_t rows = std::string_view(prefix) == "fa_q" ? c.num_heads : c.num_kv_heads;
    for (const bool is_scale : {true, false}) {
      sdk::Param p;
      p.name = std::string(prefix) + (is_scale ? ".scale" : ".offset");
      p.loader = kLoader;
      p.dtype = is_scale ? c.model_dtype : KVQ_DTYPE_I8;
      p.reshape({rows, 1});
      if (is_scale)
        for (int64_t i = 0; i < rows; ++i) p.set(i, 1.0f);
      layer.declare(std::move(p));
    }
  }
  // The class upgrade: the layer becomes the MLA latent-cache implementation.
  layer.upgrade(std::make_unique<MlaFakQuantImpl>(lora, rope), layer.backend_mode("int8_latent"));
}

// Declares a derived parameter, or re-shapes the existing one (re-processing).
sdk::Param& derived(sdk::Layer& layer, const char* name, int32_t dtype,
                    std::vector<int64_t> shape) {
  sdk::Param* p = layer.find_param(layer.full_name(name));
  if (p == nullptr) {
    sdk::Param d;
    d.name = name;
    d.dtype = dtype;
    d.derived = true;
    d.shape = shape;
    p = &layer.declare(std::move(d));
  }
  p->reshape(std::move(shape));
  return *p;
}

void process_weights(sdk::Layer& layer) {
  const sdk::LayerConfig& c = layer.config();
  const auto* impl = dynamic_cast<const MlaFakQuantImpl*>(&layer.impl());
  if (impl == nullptr)
    sdk::fail(KVQ_ERR_INTERNAL, "FAKQuant layer {} does not run the MLA implementation ({})",
              c.layer_name, layer.impl().name());
  const sdk::Param& scale = layer.param("fa_k.scale");
  const sdk::Param& offset = layer.param("fa_k.offset");
  if (!scale.loaded)
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION,
              "FAKQuant layer {}: {} was never loaded; the checkpoint lacks the FA-quant key scale",
              c.layer_name, scale.name);
  if (scale.numel() != 1 || offset.numel() != 1)
    sdk::fail(KVQ_ERR_INTERNAL, "FAKQuant layer {}: fa_k holds {} scales and {} offsets, not 1",
              c.layer_name, scale.numel(), offset.numel());
  const float s = scale.get(0);  // squeeze(fa_k.scale), exact in float32
  if (!std::isfinite(s) || s == 0.0f)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "FAKQuant layer {}: {} is {}; a finite, non-zero scale is required", c.layer_name,
              scale.name, s);
  const float inv = 1.0f / s;
  derived(layer, kFakDescale, KVQ_DTYPE_F32, {1}).set(0, s);
  derived(layer, kFakDescaleReciprocal, KVQ_DTYPE_F32, {1}).set(0, inv);
  derived(layer, kFakOffset, KVQ_DTYPE_I8, {1}).set(0, offset.get(0));
  const int64_t lora = impl->kv_lora_rank();
  sdk::Param& q = derived(layer, kQuantKscale, KVQ_DTYPE_F32, {1, lora});
  for (int64_t i = 0; i < lora; ++i) q.set(i, inv);
}

// One value converted into the parameter's dtype: integer parameters take
// integral values (truncated toward zero, as a tensor copy does) in range.
void store_value(sdk::Param& param, int64_t i, float v) {
  if (param.dtype == KVQ_DTYPE_I8 || param.dtype == KVQ_DTYPE_I32) {
    const float lo = param.dtype == KVQ_DTYPE_I8 ? -128.0f : -2147483648.0f;
    const float hi = param.dtype == KVQ_DTYPE_I8 ? 127.0f : 2147483520.0f;
    const float t = std::trunc(v);
    if (!std::isfinite(v) || t < lo || t > hi)
      sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "{}: value {} does not fit the {} parameter", param.name,
                v, sdk::dtype_name(param.dtype));
    param.set(i, t);
    return;
  }
  param.set(i, v);
}

}  // namespace

sdk::SchemeDefinition fakquant_scheme() {
  sdk::SchemeDefinition s;
  s.quant_type = "FAKQuant";
  s.layer_type = "attention";
  s.backend = "ascend";
  s.description =
      "MLA int8 latent cache (bf16 rope) with a dynamic per-(token, head) int8 query; decode only "
      "(upgrades the layer to the MLA implementation)";
  for (const char* prefix : kPrefixes)
    for (const char* what : {".scale", ".offset"})
      s.name_rules.push_back({std::string(".self_attn.") + prefix + what,
                              std::string(".self_attn.attn.") + prefix + what});
  s.create_weights = create_weights;
  s.process_weights = process_weights;
  return s;
}

sdk::ModeDefinition fakquant_mode() {
  return {"int8_latent",
          "FAKQuant MLA latent: int8 c_kv (static per-layer scale) + bf16 rope, keys only (set by "
          "the FAKQuant scheme)",
          KVQ_DTYPE_I8,
          true,
          false,
          true};
}

void fa_quant_loader(sdk::Param& param, const sdk::TensorView& loaded, const sdk::LayerConfig&,
                     int32_t tp_rank, int32_t tp_size) {
  if (!loaded.contiguous())
    sdk::fail(KVQ_ERR_UNSUPPORTED, "{}: the loaded tensor is not contiguous", param.name);
  const auto* data = static_cast<const unsigned char*>(loaded.data());
  const int64_t es = sdk::dtype_size(loaded.dtype());
  if (param.numel() == 1 && loaded.numel() == 1) {  // fill, no split
    store_value(param, 0, sdk::load_float(loaded.dtype(), data));
    return;
  }
  std::vector<int64_t> shard_shape;
  int64_t shard = 0, row = 1;
  if (loaded.ndim() > 0) {
    shard = loaded.dim(0) / tp_size;
    shard_shape.push_back(shard);
    for (int i = 1; i < loaded.ndim(); ++i) {
      shard_shape.push_back(loaded.dim(i));
      row *= loaded.dim(i);
    }
  }
  if (shard_shape != param.shape)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "{}: Attempted to load weight ({}) into parameter ({}) when TP is ({})", param.name,
              shape_text(shard_shape), shape_text(param.shape), tp_size);
  const int64_t first = shard * tp_rank * row;
  for (int64_t i = 0; i < param.numel(); ++i)
    store_value(param, i, sdk::load_float(loaded.dtype(), data + (first + i) * es));
}

}  // namespace kvq::ascend
