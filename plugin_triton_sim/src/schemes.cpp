#include "schemes.hpp"

#include "kv_modes.hpp"
#include "triton_impl.hpp"

#include "kvq_sdk/error.hpp"

namespace kvq::triton {
namespace {

// The upgrade: the layer keeps its config and switches its cache mode and
// implementation table.
void upgrade_to(sdk::Layer& layer, const std::string& mode_name) {
  if (kind_of(layer.mode()) != KvMode::kNone)
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION, "layer {} already has the quantized KV mode {}",
              layer.config().layer_name, layer.mode().name);
  const sdk::ModeDefinition& m = layer.backend_mode(mode_name);
  validate_geometry(layer.config(), m);
  layer.upgrade(std::make_unique<QuantizedImpl>(kind_of(m), m.element_dtype), m);
}

}  // namespace

void register_schemes(sdk::SchemeRegistry& registry) {
  for (const char* mode : {"fp8", "fp8_e4m3", "fp8_e5m2", "int8_per_token_head",
                           "fp8_per_token_head", "int4_per_token_head"}) {
    sdk::SchemeDefinition s;
    s.quant_type = mode;
    s.layer_type = "attention";
    s.backend = "triton";
    s.description = std::string("KV cache mode ") + mode + " (upgrades an unquantized layer)";
    if (kind_of({mode, "", 0, true, false, false}) == KvMode::kFp8PerTensor) {
      // vLLM's checkpoint names for per-tensor scales (maybe_remap_kv_scale_name).
      s.name_rules = {{".self_attn.k_proj.k_scale", ".self_attn.attn.k_scale"},
                      {".self_attn.v_proj.v_scale", ".self_attn.attn.v_scale"},
                      {".self_attn.k_scale", ".self_attn.attn.k_scale"},
                      {".self_attn.v_scale", ".self_attn.attn.v_scale"},
                      {".self_attn.q_scale", ".self_attn.attn.q_scale"},
                      {".self_attn.kv_scale", ".self_attn.attn.kv_scale"}};
    }
    const std::string name = mode;
    s.create_weights = [name](sdk::Layer& layer, const sdk::Options&) { upgrade_to(layer, name); };
    registry.add(std::move(s));
  }
}

}  // namespace kvq::triton
