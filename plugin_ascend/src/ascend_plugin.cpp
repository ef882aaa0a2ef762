// libkvq_ascend.so: the vLLM Ascend attention backend on the CPU, with the C8
// (static per-channel INT8) KV cache reached by the C8 scheme's class upgrade,
// and the FAKQuant / INT8_DYNAMIC attention schemes.
#include "c8_scheme.hpp"
#include "quant_description.hpp"

#include "kvq_sdk/abi_export.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/unquantized.hpp"

namespace kvq::sdk {
namespace {

std::string resolve_mode(std::string_view s) {
  const std::string plain = unquantized_mode_name(s);
  if (!plain.empty()) return plain;
  if (s == "int8") return "int8";
  fail(KVQ_ERR_INVALID_ARGUMENT,
       "unknown kv_cache_dtype '{}'; expected auto, bfloat16, float16, float32, half or float "
       "(the int8 C8 cache is set by the C8 scheme)",
       s);
}

SchemeDefinition scheme(const char* quant_type, const char* description) {
  SchemeDefinition s;
  s.quant_type = quant_type;
  s.layer_type = "attention";
  s.description = description;
  s.supported = false;  // listed so hosts see them; apply_scheme answers UNSUPPORTED until built
  return s;
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
    b.resolve_mode = resolve_mode;
    b.make_impl = [](const LayerConfig& c, const ModeDefinition& m) -> std::unique_ptr<LayerImpl> {
      // PrefillNoCache attends over the batch's float K/V, as vllm-ascend does.
      return std::make_unique<UnquantizedImpl>("ascend_attention", cache_dtype_of(m, c.model_dtype),
                                               true);
    };
    d.backends.push_back(std::move(b));
    d.schemes.add(ascend::c8_scheme());
    d.schemes.add(scheme("FAKQuant", "MLA int8 latent cache with dynamic per-(token, head) query"));
    d.schemes.add(scheme("INT8_DYNAMIC", "sparse-attention lightning indexer, dynamic int8"));
    d.loaders["default"] = default_weight_loader;
    d.loaders["c8_kv_scale"] = ascend::c8_scale_loader;
    d.select_scheme = ascend::select_attention_scheme;
    return d;
  }();
  return def;
}

}  // namespace kvq::sdk

extern "C" KVQ_SDK_EXPORT const kvq_plugin_api* kvq_plugin_entry(void) {
  return kvq::sdk::plugin_api();
}
