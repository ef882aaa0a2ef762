#include "kvq_sdk/unquantized.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/paged_attention.hpp"

#include <cstring>

namespace kvq::sdk {

std::vector<ModeDefinition> unquantized_modes() {
  return {
      {"auto", "cache in the model dtype", 0, true, false, false},
      {"bfloat16", "bf16 cache", KVQ_DTYPE_BF16, true, false, false},
      {"float16", "fp16 cache (alias: half)", KVQ_DTYPE_F16, true, false, false},
      {"float32", "fp32 cache (alias: float)", KVQ_DTYPE_F32, true, false, false},
  };
}

std::string unquantized_mode_name(std::string_view s) {
  if (s == "auto" || s == "bfloat16" || s == "float16" || s == "float32") return std::string(s);
  if (s == "half") return "float16";
  if (s == "float") return "float32";
  return "";
}

UnquantizedImpl::UnquantizedImpl(const char* name, int32_t cache_dtype, bool batch_kv)
    : name_(name), cache_dtype_(cache_dtype), batch_kv_(batch_kv) {}

kvq_cache_geometry UnquantizedImpl::geometry(const Layer& layer) const {
  return block_kv_slot_head_geometry(layer.config(), cache_dtype_, false);
}

void UnquantizedImpl::cache_write(Layer& layer, const WriteBatch& b) {
  const LayerConfig& c = layer.config();
  const int64_t es = dtype_size(cache_dtype_), in_es = dtype_size(c.model_dtype);
  const int64_t bs = c.block_size;
  for (size_t i = 0; i < b.slots.size(); ++i) {
    const int64_t slot = b.slots[i];
    if (slot < 0) continue;  // padding token
    const int64_t t = static_cast<int64_t>(i);
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      unsigned char* krow = b.cache.row(slot / bs, 0, slot % bs, h);
      unsigned char* vrow = b.cache.row(slot / bs, 1, slot % bs, h);
      const unsigned char* k = b.key.at({t, h, 0});
      const unsigned char* v = b.value.at({t, h, 0});
      // Same dtype, contiguous rows (the usual case): a copy stores the same
      // values (only a signaling NaN's payload is not quieted).
      if (cache_dtype_ == c.model_dtype && b.key.stride(2) == 1 && b.value.stride(2) == 1) {
        std::memcpy(krow, k, static_cast<size_t>(c.head_size * es));
        std::memcpy(vrow, v, static_cast<size_t>(c.head_size_v * es));
        continue;
      }
      for (int64_t d = 0; d < c.head_size; ++d)
        store_float(cache_dtype_, krow + d * es,
                    load_float(c.model_dtype, k + d * b.key.stride(2) * in_es));
      for (int64_t d = 0; d < c.head_size_v; ++d)
        store_float(cache_dtype_, vrow + d * es,
                    load_float(c.model_dtype, v + d * b.value.stride(2) * in_es));
    }
  }
}

void UnquantizedImpl::check_forward(const Layer&, const ForwardBatch& b) const {
  if (batch_kv_ && b.state == KVQ_ATTN_PREFILL_NO_CACHE) {
    BatchKvSource check(b);
    BatchKvSource::require_no_context(b);
  }
}

void UnquantizedImpl::forward(Layer& layer, const ForwardBatch& b) {
  const AttentionOptions o = attention_options(layer.config(), layer.instance().num_threads());
  if (batch_kv_ && b.state == KVQ_ATTN_PREFILL_NO_CACHE) {
    paged_attention(layer.config(), b, BatchKvSource(b), o);
  } else {
    paged_attention(layer.config(), b, PagedKvSource(b, row_format(cache_dtype_, false)), o);
  }
}

}  // namespace kvq::sdk
