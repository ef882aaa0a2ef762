#include "triton_impl.hpp"

#include "per_token_head.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/paged_attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace kvq::triton {
namespace {

// Reads (token, head) rows of key or value as floats.
void read_row(const sdk::TensorView& t, int64_t token, int64_t head, int64_t n, float* out) {
  const unsigned char* p = t.at({token, head, 0});
  sdk::load_floats(t.dtype(), p, t.stride(2) * sdk::dtype_size(t.dtype()), n, out);
}

float absmax_of(const sdk::TensorView& t, const std::vector<int64_t>& slots, int64_t heads,
                int64_t n) {
  std::vector<float> row(static_cast<size_t>(n));
  float m = 0.0f;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0) continue;
    for (int64_t h = 0; h < heads; ++h) {
      read_row(t, static_cast<int64_t>(i), h, n, row.data());
      for (float x : row) m = std::max(m, std::fabs(x));
    }
  }
  return m;
}

}  // namespace

bool calculate_kv_scales(const sdk::LayerConfig& c) {
  const std::string* v = sdk::find_option(c.options, "calculate_kv_scales");
  if (v == nullptr || *v == "false" || *v == "0") return false;
  if (*v == "true" || *v == "1") return true;
  sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
            "layer option calculate_kv_scales = '{}': expected true or false", *v);
}

QuantizedImpl::QuantizedImpl(KvMode mode, int32_t element_dtype)
    : mode_(mode), element_dtype_(element_dtype), codec_(row_codec(mode)) {}

kvq_cache_geometry quantized_geometry(const sdk::LayerConfig& c, KvMode mode,
                                      int32_t element_dtype) {
  const RowCodec* codec = row_codec(mode);
  if (codec == nullptr) return sdk::block_kv_slot_head_geometry(c, element_dtype, false);
  kvq_cache_geometry g = sdk::block_kv_slot_head_geometry(c, codec->stored_dtype, false);
  g.row_bytes = codec->row_bytes(std::max(c.head_size, c.head_size_v));
  g.bytes_per_block = 2 * g.block_size * g.num_kv_heads * g.row_bytes;
  return g;
}

kvq_cache_geometry QuantizedImpl::geometry(const sdk::Layer& layer) const {
  return quantized_geometry(layer.config(), mode_, element_dtype_);
}

void QuantizedImpl::attach(sdk::Layer& layer) {
  if (mode_ == KvMode::kFp8PerTensor) KvScales::declare(layer);
}

void QuantizedImpl::cache_init(const sdk::Layer& layer, const sdk::CacheView& cache) const {
  if (codec_ == nullptr) {
    sdk::LayerImpl::cache_init(layer, cache);  // fp8 per-tensor: zero
    return;
  }
  const kvq_cache_geometry& g = cache.geometry();
  std::memset(cache.base(), 0, static_cast<size_t>(cache.num_blocks() * g.bytes_per_block));
  for (int64_t b = 0; b < cache.num_blocks(); ++b)
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t s = 0; s < g.block_size; ++s)
        for (int64_t h = 0; h < g.num_kv_heads; ++h)
          codec_->set_unit_scale(cache.row(b, kv, s, h), kv == 0 ? g.head_size : g.head_size_v);
}

void QuantizedImpl::cache_write(sdk::Layer& layer, const sdk::WriteBatch& b) {
  const sdk::LayerConfig& c = layer.config();
  const int64_t hkv = c.num_kv_heads, d = c.head_size, dv = c.head_size_v, bs = c.block_size;
  // Refuse NaN/Inf before writing anything: a NaN absmax would poison a row silently.
  std::vector<float> krow(static_cast<size_t>(d)), vrow(static_cast<size_t>(dv));
  for (size_t i = 0; i < b.slots.size(); ++i) {
    if (b.slots[i] < 0) continue;
    for (int64_t h = 0; h < hkv; ++h) {
      read_row(b.key, static_cast<int64_t>(i), h, d, krow.data());
      read_row(b.value, static_cast<int64_t>(i), h, dv, vrow.data());
      for (const auto* row : {&krow, &vrow}) {
        if (sdk::all_finite(row->data(), static_cast<int64_t>(row->size()))) continue;
        for (float x : *row)
          if (!std::isfinite(x))
            sdk::fail(KVQ_ERR_NON_FINITE, "{} of token {} head {} is {}; nothing written",
                      row == &krow ? "key" : "value", i, h, x);
      }
    }
  }
  if (mode_ == KvMode::kFp8PerTensor) {
    if (calculate_kv_scales(c) && !scales_.kv_calibrated())
      scales_.calibrate_kv(layer, absmax_of(b.key, b.slots, hkv, d),
                           absmax_of(b.value, b.slots, hkv, dv));
    scales_.resolve(layer, element_dtype_ == KVQ_DTYPE_F8_E5M2);
  }
  for (size_t i = 0; i < b.slots.size(); ++i) {
    const int64_t slot = b.slots[i];
    if (slot < 0) continue;  // padding token
    for (int64_t h = 0; h < hkv; ++h) {
      read_row(b.key, static_cast<int64_t>(i), h, d, krow.data());
      read_row(b.value, static_cast<int64_t>(i), h, dv, vrow.data());
      unsigned char* kdst = b.cache.row(slot / bs, 0, slot % bs, h);
      unsigned char* vdst = b.cache.row(slot / bs, 1, slot % bs, h);
      if (codec_ != nullptr) {
        codec_->quantize(krow.data(), d, kdst);
        codec_->quantize(vrow.data(), dv, vdst);
        continue;
      }
      // fp8 per-tensor: codes of x / scale, the scales are the layer's.
      const float ks = scales_.k_for(h), vs = scales_.v_for(h);
      for (int64_t x = 0; x < d; ++x)
        sdk::store_float(element_dtype_, kdst + x, krow[static_cast<size_t>(x)] / ks);
      for (int64_t x = 0; x < dv; ++x)
        sdk::store_float(element_dtype_, vdst + x, vrow[static_cast<size_t>(x)] / vs);
    }
  }
}

sdk::ForwardSpec QuantizedImpl::forward_spec(const sdk::Layer& layer) const {
  sdk::ForwardSpec spec = sdk::LayerImpl::forward_spec(layer);
  if (mode_ == KvMode::kFp8PerTensor) spec.query_dtypes.push_back(KVQ_DTYPE_F8_E4M3FN);
  return spec;
}

void QuantizedImpl::forward(sdk::Layer& layer, const sdk::ForwardBatch& b) {
  const sdk::LayerConfig& c = layer.config();
  sdk::AttentionOptions o = sdk::attention_options(c, layer.instance().num_threads());
  if (codec_ != nullptr) {
    // Per-token-head rows are read in place with their inline scale.
    sdk::paged_attention(c, b, sdk::PagedKvSource(b, sdk::RowFormat{codec_->read_encoding, true}),
                         o);
    return;
  }
  const bool fp8_query = b.query.dtype() == KVQ_DTYPE_F8_E4M3FN;
  if (!fp8_query && calculate_kv_scales(c) && !scales_.q_calibrated()) {
    float m = 0.0f;
    for (int64_t t = 0; t < b.num_tokens; ++t)
      for (int64_t h = 0; h < c.num_heads; ++h)
        for (int64_t x = 0; x < c.head_size; ++x)
          m = std::max(m, std::fabs(sdk::load_float(b.query.dtype(), b.query.at({t, h, x}))));
    scales_.calibrate_q(layer, m);
  }
  scales_.resolve(layer, element_dtype_ == KVQ_DTYPE_F8_E5M2);
  if (!fp8_query) {
    // K and V dequantized (fp8 * scale) and rounded to the query dtype.
    const int32_t round_to = c.model_dtype == KVQ_DTYPE_F32 ? 0 : c.model_dtype;
    sdk::paged_attention(c, b,
                         sdk::PagedKvSource(b, sdk::row_format(element_dtype_, false, round_to),
                                            scales_.k(), scales_.v()),
                         o);
    return;
  }
  // FP8 query: scores fold softmax_scale * q_scale * k_scale, P is rounded to
  // e4m3 before P·V on the raw fp8 V, and the output is multiplied by v_scale.
  const int64_t group = c.num_heads / c.num_kv_heads;
  o.query_scales = scales_.q();
  o.quantize_p_e4m3 = true;
  o.output_scales.resize(static_cast<size_t>(c.num_heads));
  for (int64_t h = 0; h < c.num_heads; ++h)
    o.output_scales[static_cast<size_t>(h)] = scales_.v_for(h / group);
  sdk::paged_attention(
      c, b, sdk::PagedKvSource(b, sdk::row_format(element_dtype_, false), scales_.k(), {1.0f}), o);
}

void QuantizedImpl::process_weights(sdk::Layer& layer) {
  if (mode_ == KvMode::kFp8PerTensor) scales_.resolve(layer, element_dtype_ == KVQ_DTYPE_F8_E5M2);
}

}  // namespace kvq::triton
