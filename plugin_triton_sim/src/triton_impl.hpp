// The Triton backend's quantized KV modes (spec/triton_sim.md §2-§5): the
// per-token-head int8 / fp8 / int4 caches and fp8 per-tensor with bf16/fp16
// or fp8 queries. The unquantized modes use the SDK's UnquantizedImpl.
#pragma once

#include "kv_modes.hpp"
#include "kv_scales.hpp"
#include "per_token_head.hpp"

#include "kvq_sdk/plugin.hpp"

namespace kvq::triton {

class QuantizedImpl final : public sdk::LayerImpl {
 public:
  QuantizedImpl(KvMode mode, int32_t element_dtype);
  const char* name() const override { return "triton_unified_attention"; }
  kvq_cache_geometry geometry(const sdk::Layer& layer) const override;
  void attach(sdk::Layer& layer) override;
  void cache_init(const sdk::Layer& layer, const sdk::CacheView& cache) const override;
  void cache_write(sdk::Layer& layer, const sdk::WriteBatch& batch) override;
  sdk::ForwardSpec forward_spec(const sdk::Layer& layer) const override;
  void forward(sdk::Layer& layer, const sdk::ForwardBatch& batch) override;
  void process_weights(sdk::Layer& layer) override;

 private:
  KvMode mode_;
  int32_t element_dtype_;
  const RowCodec* codec_;  // per-token-head modes; nullptr for fp8 per-tensor
  KvScales scales_;        // fp8 per-tensor only
};

// True when the layer options ask for calculate_kv_scales.
bool calculate_kv_scales(const sdk::LayerConfig& config);

// The cache geometry of a quantized mode (spec §2; int4 rows are nibbles,
// then fp32 scale and zero point), the same on every device.
kvq_cache_geometry quantized_geometry(const sdk::LayerConfig& config, KvMode mode,
                                      int32_t element_dtype);

}  // namespace kvq::triton
