// The C8 attention implementation: int8 cache [num_blocks][2][block_size]
// [num_kv_heads][head_size], quantized and dequantized in bf16 arithmetic
// with per-channel scales and offsets, for every attention state.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <vector>

namespace kvq::ascend {

// Scales prepared once per layer (spec §4), per local channel h*D + d.
struct C8Channels {
  std::vector<float> inv_scale;  // bf16(1 / scale), for quantize
  std::vector<float> offset;     // bf16(offset)
  std::vector<float> scale;      // bf16(scale), the antiquant scale
};

class C8Impl final : public sdk::LayerImpl {
 public:
  const char* name() const override { return "ascend_c8_attention"; }
  kvq_cache_geometry geometry(const sdk::Layer& layer) const override;
  void cache_write(sdk::Layer& layer, const sdk::WriteBatch& batch) override;
  void check_forward(const sdk::Layer& layer, const sdk::ForwardBatch& batch) const override;
  void forward(sdk::Layer& layer, const sdk::ForwardBatch& batch) override;

  // Lazy, once, idempotent: a later change of the raw parameters is not seen.
  void prepare(sdk::Layer& layer);
  bool prepared() const { return prepared_; }

 private:
  bool prepared_ = false;
  C8Channels k_, v_;
};

// One element quantized exactly as the NPU does, in bf16 arithmetic:
// t = bf16(bf16(x) * inv_scale); t = bf16(t + offset); q = clamp(rne(t)).
int8_t c8_quantize(float x, float inv_scale_bf16, float offset_bf16);
// (q - offset) * scale, each step rounded to bf16.
float c8_dequantize(int8_t q, float offset_bf16, float scale_bf16);

}  // namespace kvq::ascend
