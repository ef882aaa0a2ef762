// The unquantized KV modes (bf16 / fp16 / fp32 caches), shared by every
// backend: cache write converts to the cache dtype (round to nearest even),
// attention reads the paged cache through the shared core.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <string>
#include <string_view>

namespace kvq::sdk {

// The mode strings of unquantized caches, as vLLM parses kv_cache_dtype:
// "auto" (the model dtype), "bfloat16", "float16"/"half", "float32"/"float".
std::vector<ModeDefinition> unquantized_modes();
// The canonical mode name for an unquantized alias, or "" if `s` is none.
std::string unquantized_mode_name(std::string_view s);

class UnquantizedImpl : public LayerImpl {
 public:
  // attend_batch_kv_without_context: in PrefillNoCache, attend over the
  // batch's float K/V instead of the cache (the Ascend backend's behaviour).
  UnquantizedImpl(const char* name, int32_t cache_dtype, bool attend_batch_kv_without_context);
  const char* name() const override { return name_; }
  kvq_cache_geometry geometry(const Layer& layer) const override;
  void cache_write(Layer& layer, const WriteBatch& batch) override;
  void check_forward(const Layer& layer, const ForwardBatch& batch) const override;
  void forward(Layer& layer, const ForwardBatch& batch) override;

 private:
  const char* name_;  // a literal: layer_info hands it out for the layer's lifetime
  int32_t cache_dtype_;
  bool batch_kv_;
};

// Cache element dtype of a mode for a given model dtype.
inline int32_t cache_dtype_of(const ModeDefinition& mode, int32_t model_dtype) {
  return mode.element_dtype != 0 ? mode.element_dtype : model_dtype;
}

}  // namespace kvq::sdk
