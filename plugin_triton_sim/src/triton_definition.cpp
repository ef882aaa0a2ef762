#include "triton_definition.hpp"

#include "kv_modes.hpp"
#include "kv_scales.hpp"
#include "schemes.hpp"
#include "triton_impl.hpp"

#include "kvq_sdk/unquantized.hpp"

#include <utility>

namespace kvq::triton {

ImplFactory cpu_impls() {
  return [](const sdk::LayerConfig& c,
            const sdk::ModeDefinition& m) -> std::unique_ptr<sdk::LayerImpl> {
    if (kind_of(m) == KvMode::kNone)
      return std::make_unique<sdk::UnquantizedImpl>("triton_unified_attention",
                                                    sdk::cache_dtype_of(m, c.model_dtype), false);
    return std::make_unique<QuantizedImpl>(kind_of(m), m.element_dtype);
  };
}

sdk::PluginDefinition definition(std::string name, std::string backend_description,
                                 ImplFactory make_impl) {
  sdk::PluginDefinition d;
  d.name = std::move(name);
  d.version = "0.1.0";
  d.vendor = "kvq";
  sdk::BackendDefinition b;
  b.name = "triton";
  b.description = std::move(backend_description);
  b.modes = modes();
  b.resolve_mode = resolve_mode;
  b.validate = validate_geometry;
  b.options = {{"calculate_kv_scales",
                "true: fp8 scales computed on the fly (q = max|q|/200, k = max|k|/200, "
                "v = max|v|/100 at the first write / float-query forward, then frozen); "
                "true | false",
                "false", "fp8 fp8_e4m3 fp8_e5m2"}};
  b.make_impl = [make = std::move(make_impl)](const sdk::LayerConfig& c,
                                              const sdk::ModeDefinition& m) {
    calculate_kv_scales(c);  // rejects a malformed option value at creation
    return make(c, m);
  };
  d.backends.push_back(std::move(b));
  register_schemes(d.schemes);
  d.loaders["default"] = sdk::default_weight_loader;
  d.loaders["fp8_scale"] = KvScales::load;
  return d;
}

}  // namespace kvq::triton
