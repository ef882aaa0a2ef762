// libkvq_triton_sim.so: vLLM's Triton attention backend and its KV-cache
// modes, computed on the CPU.
#include "kv_modes.hpp"
#include "kv_scales.hpp"
#include "schemes.hpp"
#include "triton_impl.hpp"

#include "kvq_sdk/abi_export.hpp"
#include "kvq_sdk/unquantized.hpp"

namespace kvq::sdk {

const PluginDefinition& plugin_definition() {
  static const PluginDefinition def = [] {
    PluginDefinition d;
    d.name = "kvq_triton_sim";
    d.version = "0.1.0";
    d.vendor = "kvq";
    BackendDefinition b;
    b.name = "triton";
    b.description = "vLLM Triton unified attention (mixed prefill/decode batches) on the CPU";
    b.modes = triton::modes();
    b.resolve_mode = triton::resolve_mode;
    b.validate = triton::validate_geometry;
    b.options = {{"calculate_kv_scales",
                  "true: fp8 scales computed on the fly (q = max|q|/200, k = max|k|/200, "
                  "v = max|v|/100 at the first write / float-query forward, then frozen); "
                  "true | false",
                  "false", "fp8 fp8_e4m3 fp8_e5m2"}};
    b.make_impl = [](const LayerConfig& c, const ModeDefinition& m) -> std::unique_ptr<LayerImpl> {
      triton::calculate_kv_scales(c);  // rejects a malformed option value at creation
      if (triton::kind_of(m) == triton::KvMode::kNone)
        return std::make_unique<UnquantizedImpl>("triton_unified_attention",
                                                 cache_dtype_of(m, c.model_dtype), false);
      return std::make_unique<triton::QuantizedImpl>(triton::kind_of(m), m.element_dtype);
    };
    d.backends.push_back(std::move(b));
    triton::register_schemes(d.schemes);
    d.loaders["default"] = default_weight_loader;
    d.loaders["fp8_scale"] = triton::KvScales::load;
    return d;
  }();
  return def;
}

}  // namespace kvq::sdk

extern "C" KVQ_SDK_EXPORT const kvq_plugin_api* kvq_plugin_entry(void) {
  return kvq::sdk::plugin_api();
}
