// libkvq_triton_sim.so: vLLM's Triton attention backend and its KV-cache
// modes, computed on the CPU.
#include "triton_definition.hpp"

#include "kvq_sdk/abi_export.hpp"

namespace kvq::sdk {

const PluginDefinition& plugin_definition() {
  static const PluginDefinition def = triton::definition(
      "kvq_triton_sim", "vLLM Triton unified attention (mixed prefill/decode batches) on the CPU",
      triton::cpu_impls());
  return def;
}

}  // namespace kvq::sdk

extern "C" KVQ_SDK_EXPORT const kvq_plugin_api* kvq_plugin_entry(void) {
  return kvq::sdk::plugin_api();
}
