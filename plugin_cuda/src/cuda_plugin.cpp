// libkvq_cuda.so: vLLM's Triton attention backend and its KV-cache modes on
// an NVIDIA GPU (spec/cuda.md): the same backend name, mode strings, cache
// bytes and scale rules as libkvq_triton_sim.so, computed by CUDA kernels
// over device memory the host reaches through the ABI 1.1 device hooks.
#include "cuda_device.hpp"
#include "cuda_impl.hpp"
#include "triton_definition.hpp"

#include "kvq_sdk/abi_export.hpp"

namespace kvq::sdk {

const PluginDefinition& plugin_definition() {
  static const PluginDefinition def = [] {
    PluginDefinition d = triton::definition(
        "kvq_cuda", "vLLM Triton unified attention (mixed prefill/decode batches) on an NVIDIA GPU",
        cuda::make_cuda_impl);
    d.open_device = [](int32_t ordinal) -> std::unique_ptr<Device> {
      return std::make_unique<cuda::CudaDevice>(ordinal);
    };
    d.unavailable_reason = cuda::unavailable_reason;
    return d;
  }();
  return def;
}

}  // namespace kvq::sdk

extern "C" KVQ_SDK_EXPORT const kvq_plugin_api* kvq_plugin_entry(void) {
  return kvq::sdk::device_plugin_api();
}
