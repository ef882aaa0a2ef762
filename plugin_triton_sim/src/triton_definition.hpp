// vLLM's Triton backend as a plugin definition: the "triton" backend with
// every KV mode string, its geometry rules and layer options, the mode
// schemes and the fp8 scale loader. Shared by the plugins that compute it
// (libkvq_triton_sim.so on the CPU, libkvq_cuda.so on a GPU, the arena test
// plugin); each supplies the implementations that compute.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <functional>
#include <memory>
#include <string>

namespace kvq::triton {

using ImplFactory = std::function<std::unique_ptr<sdk::LayerImpl>(const sdk::LayerConfig&,
                                                                  const sdk::ModeDefinition&)>;

// The CPU implementations (UnquantizedImpl, QuantizedImpl).
ImplFactory cpu_impls();

// name / version / vendor of the plugin, the backend's description, and its
// implementations.
sdk::PluginDefinition definition(std::string name, std::string backend_description,
                                 ImplFactory make_impl);

}  // namespace kvq::triton
