// libkvq_ascend.so: the vLLM Ascend attention backend on the CPU, with the C8
// (static per-channel INT8) KV cache reached by the C8 scheme's class upgrade,
// and the FAKQuant / INT8_DYNAMIC attention schemes.
#include "c8_scheme.hpp"
#include "fakquant_scheme.hpp"
#include "indexer_scheme.hpp"
#include "quant_description.hpp"

#include "kvq_sdk/abi_export.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/unquantized.hpp"

namespace kvq::sdk {
namespace {

std::string resolve_mode(std::string_view s) {
  const std::string plain = unquantized_mode_name(s);
  if (!plain.empty()) return plain;
  // Cache modes a scheme sets (C8, FAKQuant, INT8_DYNAMIC): known, but layer_create refuses them.
  if (s == "int8" || s == "int8_latent" || s == "int8_indexer") return std::string(s);
  fail(KVQ_ERR_INVALID_ARGUMENT,
       "unknown kv_cache_dtype '{}'; expected auto, bfloat16, float16, float32, half or float "
       "(int8, int8_latent and int8_indexer caches are set by the C8, FAKQuant and INT8_DYNAMIC "
       "schemes)",
       s);
}

}  // namespace

const PluginDefinition& plugin_definition() {
  static const PluginDefinition def = [] {
    PluginDefinition d;
    d.name = "kvq_ascend";
    d.version = "0.1.0";
    d.vendor = "kvq";
    BackendDefinition b;
    b.name = "ascend";
    b.description = "vLLM Ascend attention backend (all attention states) on the CPU";
    b.modes = unquantized_modes();
    b.modes.push_back({"int8", "C8: static per-channel int8 with offsets (set by the C8 scheme)",
                       KVQ_DTYPE_I8, true, false, true});
    b.modes.push_back(ascend::indexer_mode());
    b.modes.push_back(ascend::fakquant_mode());  // "int8_latent", set by FAKQuant
    b.resolve_mode = resolve_mode;
    b.make_impl = [](const LayerConfig& c, const ModeDefinition& m) -> std::unique_ptr<LayerImpl> {
      // PrefillNoCache attends over the batch's float K/V, as vllm-ascend does.
      return std::make_unique<UnquantizedImpl>("ascend_attention", cache_dtype_of(m, c.model_dtype),
                                               true);
    };
    d.backends.push_back(std::move(b));
    d.schemes.add(ascend::c8_scheme());
    d.schemes.add(ascend::fakquant_scheme());
    d.schemes.add(ascend::indexer_scheme());
    d.loaders["default"] = default_weight_loader;
    d.loaders["c8_kv_scale"] = ascend::c8_scale_loader;
    d.loaders["fa_quant"] = ascend::fa_quant_loader;
    d.select_scheme = ascend::select_attention_scheme;
    return d;
  }();
  return def;
}

}  // namespace kvq::sdk

extern "C" KVQ_SDK_EXPORT const kvq_plugin_api* kvq_plugin_entry(void) {
  return kvq::sdk::plugin_api();
}
