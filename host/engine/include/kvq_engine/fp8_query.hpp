// The fp8 query of an fp8 per-tensor KV cache (spec/triton_sim.md §4, the
// deployment's kv_cache.query_dtype: fp8): the host quantizes the query to
// e4m3 with the layer's q_scale before forward, as vLLM's attention layer does
// for backends that take fp8 queries; the plugin folds softmax_scale *
// q_scale * k_scale into the scores.
#pragma once

#include <cstdint>
#include <vector>

#include "kvq_engine/plugin.hpp"
#include "kvq_engine/plugin_tensor.hpp"

namespace kvq::host {

class Fp8Query {
 public:
  // The q_scale the plugin folds in, from the layer's parameters after
  // loading (spec/triton_sim.md §5): q_scale when loaded, else k_scale, else
  // the legacy kv_scale, else 1.0; a scalar or one value per head (a per-KV-
  // head k_scale is repeated over its query heads). Throws Error when the
  // layer has no q_scale parameter (its mode takes no fp8 query).
  static Fp8Query for_layer(const Layer& layer, int64_t num_heads, int64_t num_kv_heads);

  // out = e4m3(float32(query) / q_scale[head]) (float32 division, as vLLM's
  // static fp8 quantization), round to nearest even, saturating to +-448;
  // `query` is [T, num_heads, D] in a model dtype (its host bytes are read);
  // `out` is uploaded to the plugin's memory.
  void quantize(const PluginTensor& query, PluginTensor& out) const;

  // One scale per query head.
  const std::vector<float>& scales() const { return scales_; }

 private:
  std::vector<float> scales_;
};

// The e4m3fn code of a finite float: round to nearest even, saturating to
// +-448 (never NaN). Bit arithmetic, fast enough for every query element.
uint8_t encode_e4m3(float value);

}  // namespace kvq::host
