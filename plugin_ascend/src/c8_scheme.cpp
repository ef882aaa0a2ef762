#include "c8_scheme.hpp"

#include "c8_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

namespace kvq::ascend {
namespace {

constexpr const char* kParams[] = {"k_cache_scale", "k_cache_offset", "v_cache_scale",
                                   "v_cache_offset"};

void create_weights(sdk::Layer& layer, const sdk::Options&) {
  const sdk::LayerConfig& c = layer.config();
  if (c.block_size % 32 != 0)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "C8 needs block_size to be a multiple of 32; layer {} has {}", c.layer_name,
              c.block_size);
  if (c.head_size_v != c.head_size)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "C8 needs equal key and value head sizes (per-channel scales of num_kv_heads x "
              "head_size); layer {} has {} and {}",
              c.layer_name, c.head_size, c.head_size_v);
  if (layer.mode().element_dtype == KVQ_DTYPE_I8)
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION, "layer {} is already C8", c.layer_name);
  for (const char* name : kParams) {
    const std::string_view n = name;
    sdk::Param p;
    p.name = name;
    p.loader = "c8_kv_scale";
    p.role = n == "k_cache_scale"    ? KVQ_PARAM_ROLE_K_CHANNEL_SCALE
             : n == "k_cache_offset" ? KVQ_PARAM_ROLE_K_CHANNEL_OFFSET
             : n == "v_cache_scale"  ? KVQ_PARAM_ROLE_V_CHANNEL_SCALE
                                     : KVQ_PARAM_ROLE_V_CHANNEL_OFFSET;
    p.load_shapes =
        "the full model's num_kv_heads * head_size values, any shape with size-1 dims (kept "
        "whole; preparation takes this rank's heads by tp_rank/tp_size)";
    p.dtype = KVQ_DTYPE_F32;
    p.reshape({1});
    p.set(0, std::string_view(name).ends_with("scale") ? 1.0f : 0.0f);
    layer.declare(std::move(p));
  }
  // The class upgrade: same layer, int8 cache, C8 implementation table.
  layer.upgrade(std::make_unique<C8Impl>(), layer.backend_mode("int8"));
}

// After loading every vector is flattened to 1-D.
void process_weights(sdk::Layer& layer) {
  for (const char* name : kParams) {
    sdk::Param& p = layer.param(name);
    p.shape = {p.numel()};
  }
}

}  // namespace

sdk::SchemeDefinition c8_scheme() {
  sdk::SchemeDefinition s;
  s.quant_type = "C8";
  s.layer_type = "attention";
  s.backend = "ascend";
  s.description = "static per-channel INT8 KV cache with offsets (upgrades the layer to C8)";
  s.name_rules = {{".k_proj.kv_cache_scale", ".attn.k_cache_scale"},
                  {".k_proj.kv_cache_offset", ".attn.k_cache_offset"},
                  {".v_proj.kv_cache_scale", ".attn.v_cache_scale"},
                  {".v_proj.kv_cache_offset", ".attn.v_cache_offset"}};
  s.create_weights = create_weights;
  s.apply = [](sdk::Layer&) {
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION,
              "C8 KV cache quantization is handled by the attention backend");
  };
  s.process_weights = process_weights;
  return s;
}

void c8_scale_loader(sdk::Param& param, const sdk::TensorView& loaded, const sdk::LayerConfig&,
                     int32_t, int32_t) {
  std::vector<int64_t> squeezed;
  for (int i = 0; i < loaded.ndim(); ++i)
    if (loaded.dim(i) != 1) squeezed.push_back(loaded.dim(i));
  if (!loaded.contiguous())
    sdk::fail(KVQ_ERR_UNSUPPORTED, "{}: the loaded tensor is not contiguous", param.name);
  if (!sdk::is_model_dtype(loaded.dtype()))
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "{}: dtype {}; C8 scales and offsets are F32, F16 or BF16",
              param.name, sdk::dtype_name(loaded.dtype()));
  // Lengths and values are checked when the layer is prepared (c8_impl.cpp):
  // a rank-local vector and the whole model's are both valid here.
  const int64_t es = sdk::dtype_size(loaded.dtype());
  if (param.shape != squeezed) param.reshape(squeezed);  // re-created, dtype kept
  for (int64_t i = 0; i < param.numel(); ++i)
    param.set(i, sdk::load_float(loaded.dtype(),
                                 static_cast<const unsigned char*>(loaded.data()) + i * es));
}

}  // namespace kvq::ascend
