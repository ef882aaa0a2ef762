#include "c8_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/paged_attention.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace kvq::ascend {
namespace {

// The rank's share of a per-channel vector (spec §4): as is when it already
// holds num_kv_heads_local * D values, else KV heads [start, start + local)
// of the full tensor with start = tp_rank * total / tp_size (floor), which
// also replicates heads when TP exceeds the number of KV heads.
std::vector<float> local_channels(const sdk::Layer& layer, const sdk::Param& p) {
  const sdk::LayerConfig& c = layer.config();
  const int64_t d = c.head_size, local = c.num_kv_heads, n = p.numel();
  if (n == 1)
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION,
              "C8 layer {}: {} was never loaded (one element); the checkpoint lacks its C8 scales",
              c.layer_name, p.name);
  std::vector<float> out(static_cast<size_t>(local * d));
  if (n == local * d) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = p.get(i);
    return out;
  }
  if (n % d != 0)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "C8 layer {}: {} has {} values, not a multiple of head_size {}", c.layer_name, p.name,
              n, d);
  const int64_t total = n / d;
  const int64_t start = static_cast<int64_t>(c.tp_rank) * total / c.tp_size;
  if (start + local > total)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "C8 layer {}: {} holds {} KV heads; rank {} of {} needs heads {}..{}", c.layer_name,
              p.name, total, c.tp_rank, c.tp_size, start, start + local - 1);
  for (int64_t i = 0; i < local * d; ++i) out[static_cast<size_t>(i)] = p.get(start * d + i);
  return out;
}

C8Channels channels(const sdk::Layer& layer, const char* scale_name, const char* offset_name) {
  const std::vector<float> scale = local_channels(layer, layer.param(scale_name));
  const std::vector<float> offset = local_channels(layer, layer.param(offset_name));
  C8Channels ch;
  for (size_t i = 0; i < scale.size(); ++i) {
    if (!std::isfinite(scale[i]) || scale[i] == 0.0f || !std::isfinite(offset[i]))
      sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "C8 layer {}: channel {} has scale {} / offset {}",
                layer.config().layer_name, i, scale[i], offset[i]);
    ch.inv_scale.push_back(sdk::round_bf16(1.0f / scale[i]));
    ch.offset.push_back(sdk::round_bf16(offset[i]));
    ch.scale.push_back(sdk::round_bf16(scale[i]));
  }
  return ch;
}

void declare_antiquant(sdk::Layer& layer, const char* name, const std::vector<float>& values) {
  const sdk::LayerConfig& c = layer.config();
  sdk::Param p;
  p.name = name;
  p.dtype = KVQ_DTYPE_BF16;
  p.derived = true;
  p.reshape({1, c.num_kv_heads, 1, c.head_size});  // BNSD, as the NPU kernels take it
  for (size_t i = 0; i < values.size(); ++i) p.set(static_cast<int64_t>(i), values[i]);
  layer.declare(std::move(p));
}

// The int8 paged cache read in place by the SDK kernels, which dequantize
// each element as c8_dequantize does (bf16 rounding after each step).
sdk::PagedKvSource cache_source(const sdk::ForwardBatch& b, const C8Channels& k,
                                const C8Channels& v) {
  return sdk::PagedKvSource(
      b, sdk::ChannelVectors{k.offset.data(), k.scale.data(), v.offset.data(), v.scale.data()});
}

// Per sequence: decodes (and prefills with context) read the cache; in
// ChunkedPrefill, when no prefill has prior context, prefills read the
// batch's float K/V (spec §6).
class ChunkedSource final : public sdk::KvSource {
 public:
  ChunkedSource(const sdk::ForwardBatch& b, const sdk::KvSource& cache,
                const sdk::KvSource* batch_kv)
      : b_(b), cache_(cache), batch_kv_(batch_kv) {}
  void load(int64_t seq, int64_t first, int64_t n, int64_t head, float* k,
            float* v) const override {
    const bool decode = b_.seqs[static_cast<size_t>(seq)].query_len == 1;
    (batch_kv_ != nullptr && !decode ? *batch_kv_ : cache_).load(seq, first, n, head, k, v);
  }

 private:
  const sdk::ForwardBatch& b_;
  const sdk::KvSource& cache_;
  const sdk::KvSource* batch_kv_;
};

}  // namespace

int8_t c8_quantize(float x, float inv_scale_bf16, float offset_bf16) {
  float t = sdk::round_bf16(sdk::round_bf16(x) * inv_scale_bf16);
  t = sdk::round_bf16(t + offset_bf16);
  return static_cast<int8_t>(std::clamp(std::nearbyint(t), -128.0f, 127.0f));  // ties to even
}

float c8_dequantize(int8_t q, float offset_bf16, float scale_bf16) {
  return sdk::round_bf16(sdk::round_bf16(static_cast<float>(q) - offset_bf16) * scale_bf16);
}

kvq_cache_geometry C8Impl::geometry(const sdk::Layer& layer) const {
  return sdk::block_kv_slot_head_geometry(layer.config(), KVQ_DTYPE_I8, false);
}

void C8Impl::prepare(sdk::Layer& layer) {
  if (prepared_) return;
  C8Channels k = channels(layer, "k_cache_scale", "k_cache_offset");
  C8Channels v = channels(layer, "v_cache_scale", "v_cache_offset");
  declare_antiquant(layer, "antiquant_key_scale", k.scale);
  declare_antiquant(layer, "antiquant_key_offset", k.offset);
  declare_antiquant(layer, "antiquant_value_scale", v.scale);
  declare_antiquant(layer, "antiquant_value_offset", v.offset);
  k_ = std::move(k);
  v_ = std::move(v);
  prepared_ = true;
}

void C8Impl::cache_write(sdk::Layer& layer, const sdk::WriteBatch& b) {
  prepare(layer);
  const sdk::LayerConfig& c = layer.config();
  const int64_t d = c.head_size, dv = c.head_size_v, bs = c.block_size;
  const int32_t dt = b.key.dtype();
  const int64_t es = sdk::dtype_size(dt);
  // Refuse NaN/Inf before writing anything (a NaN would not survive the int8 cast).
  for (size_t i = 0; i < b.slots.size(); ++i) {
    if (b.slots[i] < 0) continue;
    const auto t = static_cast<int64_t>(i);
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      for (int64_t x = 0; x < d; ++x)
        if (!std::isfinite(sdk::load_float(dt, b.key.at({t, h, x}))))
          sdk::fail(KVQ_ERR_NON_FINITE, "key of token {} head {} is not finite; nothing written", t,
                    h);
      for (int64_t x = 0; x < dv; ++x)
        if (!std::isfinite(sdk::load_float(dt, b.value.at({t, h, x}))))
          sdk::fail(KVQ_ERR_NON_FINITE, "value of token {} head {} is not finite; nothing written",
                    t, h);
    }
  }
  for (size_t i = 0; i < b.slots.size(); ++i) {
    const int64_t slot = b.slots[i];
    if (slot < 0) continue;  // padding token
    const auto t = static_cast<int64_t>(i);
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      auto* kdst = reinterpret_cast<int8_t*>(b.cache.row(slot / bs, 0, slot % bs, h));
      auto* vdst = reinterpret_cast<int8_t*>(b.cache.row(slot / bs, 1, slot % bs, h));
      const unsigned char* k = b.key.at({t, h, 0});
      const unsigned char* v = b.value.at({t, h, 0});
      for (int64_t x = 0; x < d; ++x) {
        const size_t ch = static_cast<size_t>(h * d + x);
        kdst[x] = c8_quantize(sdk::load_float(dt, k + x * b.key.stride(2) * es), k_.inv_scale[ch],
                              k_.offset[ch]);
      }
      for (int64_t x = 0; x < dv; ++x) {
        const size_t ch = static_cast<size_t>(h * dv + x);
        vdst[x] = c8_quantize(sdk::load_float(dt, v + x * b.value.stride(2) * es), v_.inv_scale[ch],
                              v_.offset[ch]);
      }
    }
  }
}

void C8Impl::check_forward(const sdk::Layer& layer, const sdk::ForwardBatch& b) const {
  if (!prepared_) {  // the errors prepare() would raise: scales missing or malformed
    channels(layer, "k_cache_scale", "k_cache_offset");
    channels(layer, "v_cache_scale", "v_cache_offset");
  }
  switch (b.state) {
    case KVQ_ATTN_PREFILL_NO_CACHE: {
      const sdk::BatchKvSource check(b);  // needs the batch's K/V and no context
      sdk::BatchKvSource::require_no_context(b);
      break;
    }
    case KVQ_ATTN_DECODE_ONLY:
      for (size_t s = 0; s < b.seqs.size(); ++s)
        if (b.seqs[s].query_len > 1)
          sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "DecodeOnly: sequence {} schedules {} query tokens",
                    s, b.seqs[s].query_len);
      break;
    case KVQ_ATTN_CHUNKED_PREFILL: {
      bool prefill_seen = false;
      for (size_t s = 0; s < b.seqs.size(); ++s) {
        if (b.seqs[s].query_len != 1)
          prefill_seen = true;
        else if (prefill_seen)
          sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
                    "ChunkedPrefill: decode sequence {} comes after a prefill; decodes go first",
                    s);
      }
      break;
    }
    default: break;
  }
}

void C8Impl::forward(sdk::Layer& layer, const sdk::ForwardBatch& b) {
  prepare(layer);
  const sdk::AttentionOptions o =
      sdk::attention_options(layer.config(), layer.instance().num_threads());
  if (b.state == KVQ_ATTN_PREFILL_NO_CACHE) {
    sdk::paged_attention(layer.config(), b, sdk::BatchKvSource(b),
                         o);  // float K/V, no quantization error
    return;
  }
  const sdk::PagedKvSource cache = cache_source(b, k_, v_);
  if (b.state == KVQ_ATTN_CHUNKED_PREFILL && b.key.present()) {
    bool prefill_context = false;
    for (const auto& s : b.seqs)
      if (s.query_len != 1 && s.context_len > 0) prefill_context = true;
    if (!prefill_context) {
      const sdk::BatchKvSource batch_kv(b);
      sdk::paged_attention(layer.config(), b, ChunkedSource(b, cache, &batch_kv), o);
      return;
    }
  }
  sdk::paged_attention(layer.config(), b, cache, o);
}

}  // namespace kvq::ascend
