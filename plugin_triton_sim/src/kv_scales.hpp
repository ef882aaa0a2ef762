// FP8 per-tensor scales of one layer (spec/triton_sim.md §5): the checkpoint
// parameters k_scale, v_scale, q_scale and the legacy kv_scale, vLLM's
// fallback rules, per-attention-head variants, and calculate_kv_scales.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <vector>

namespace kvq::triton {

class KvScales {
 public:
  // Declares the four scale parameters (float32 [1], value 1.0) on the layer.
  static void declare(sdk::Layer& layer);
  // The "fp8_scale" weight loader: a scalar, or one value per attention head
  // (q_scale [num_heads], k/v/kv_scale [num_kv_heads]); anything else is an
  // error, as are non-finite or non-positive scales.
  static void load(sdk::Param& param, const sdk::TensorView& loaded, const sdk::LayerConfig& layer,
                   int32_t tp_rank, int32_t tp_size);

  // Applies the fallback rules to what was loaded. Idempotent.
  void resolve(sdk::Layer& layer, bool is_e5m2);
  // calculate_kv_scales: the first write sets k = max|k|/200, v = max|v|/100,
  // the first float-query forward q = max|q|/200; then they are frozen.
  void calibrate_kv(sdk::Layer& layer, float k_absmax, float v_absmax);
  void calibrate_q(sdk::Layer& layer, float q_absmax);
  bool kv_calibrated() const { return kv_calibrated_; }
  bool q_calibrated() const { return q_calibrated_; }

  // Per KV head (k, v) and per query head (q); size 1 = tensor-wide.
  const std::vector<float>& k() const { return k_; }
  const std::vector<float>& v() const { return v_; }
  const std::vector<float>& q() const { return q_; }
  float k_for(int64_t kv_head) const {
    return k_.size() == 1 ? k_[0] : k_[static_cast<size_t>(kv_head)];
  }
  float v_for(int64_t kv_head) const {
    return v_.size() == 1 ? v_[0] : v_[static_cast<size_t>(kv_head)];
  }

 private:
  bool resolved_ = false, kv_calibrated_ = false, q_calibrated_ = false;
  std::vector<float> k_{1.0f}, v_{1.0f}, q_{1.0f};
};

}  // namespace kvq::triton
