#include "mla_fakquant_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace kvq::ascend {
namespace {

const char* state_name(int32_t state) {
  switch (state) {
    case KVQ_ATTN_PREFILL_NO_CACHE: return "PrefillNoCache";
    case KVQ_ATTN_PREFILL_CACHE_HIT: return "PrefillCacheHit";
    case KVQ_ATTN_DECODE_ONLY: return "DecodeOnly";
    case KVQ_ATTN_CHUNKED_PREFILL: return "ChunkedPrefill";
    case KVQ_ATTN_SPEC_DECODING: return "SpecDecoding";
    default: return "unknown";
  }
}

// The processed scales; FAILED_PRECONDITION before process_weights.
struct Scales {
  float descale = 1.0f;             // s_k
  std::vector<float> quant_kscale;  // [kv_lora_rank]
};

Scales processed_scales(const sdk::Layer& layer, int64_t lora) {
  const sdk::Param* descale = layer.find_param(layer.full_name(kFakDescale));
  const sdk::Param* kscale = layer.find_param(layer.full_name(kQuantKscale));
  if (descale == nullptr || kscale == nullptr)
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION,
              "layer {}: FAKQuant scales not processed (call process_weights after loading "
              "fa_k.scale)",
              layer.config().layer_name);
  if (descale->numel() != 1 || kscale->numel() != lora)
    sdk::fail(KVQ_ERR_INTERNAL, "layer {}: {} / {} have {} / {} values (kv_lora_rank {})",
              layer.config().layer_name, descale->name, kscale->name, descale->numel(),
              kscale->numel(), lora);
  Scales s;
  s.descale = descale->get(0);
  s.quant_kscale.resize(static_cast<size_t>(lora));
  for (int64_t i = 0; i < lora; ++i) s.quant_kscale[static_cast<size_t>(i)] = kscale->get(i);
  return s;
}

}  // namespace

int8_t fakquant_quantize_latent(float x, float quant_kscale) {
  const float t = x * quant_kscale;                                            // float32 product
  return static_cast<int8_t>(std::clamp(std::nearbyint(t), -128.0f, 127.0f));  // ties to even
}

kvq_cache_geometry MlaFakQuantImpl::geometry(const sdk::Layer& layer) const {
  const sdk::LayerConfig& c = layer.config();
  kvq_cache_geometry g{};
  g.struct_size = sizeof(g);
  g.layout = KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD;
  g.element_dtype = KVQ_DTYPE_I8;
  g.block_size = c.block_size;
  g.num_kv_heads = c.num_kv_heads;  // 1
  g.head_size = c.head_size;
  g.head_size_v = c.head_size_v;
  g.row_bytes = lora_ + 2 * rope_;  // int8 latent, then bf16 rope; no padding
  g.bytes_per_block = c.block_size * c.num_kv_heads * g.row_bytes;
  g.alignment = 64;
  return g;
}

void MlaFakQuantImpl::require_latent(const sdk::Layer& layer) const {
  if (lora_ == 0)
    sdk::fail(KVQ_ERR_UNSUPPORTED,
              "FAKQuant layer {}: kv_lora_rank is 0 (absent from the scheme options); the MLA "
              "int8 latent cache needs kv_lora_rank > 0",
              layer.config().layer_name);
}

void MlaFakQuantImpl::cache_write(sdk::Layer& layer, const sdk::WriteBatch& b) {
  require_latent(layer);
  const Scales s = processed_scales(layer, lora_);
  const int64_t bs = layer.config().block_size, d = lora_ + rope_;
  const int32_t dt = b.key.dtype();
  // Refuse NaN/Inf before writing anything.
  for (size_t i = 0; i < b.slots.size(); ++i) {
    if (b.slots[i] < 0) continue;
    const auto t = static_cast<int64_t>(i);
    for (int64_t x = 0; x < d; ++x)
      if (!std::isfinite(sdk::load_float(dt, b.key.at({t, 0, x}))))
        sdk::fail(KVQ_ERR_NON_FINITE,
                  "key of token {} head 0 is not finite (element {}, {}); nothing written", t, x,
                  x < lora_ ? "latent c_kv" : "rope k_pe");
  }
  for (size_t i = 0; i < b.slots.size(); ++i) {
    const int64_t slot = b.slots[i];
    if (slot < 0) continue;  // padding token
    const auto t = static_cast<int64_t>(i);
    unsigned char* row = b.cache.row(slot / bs, 0, slot % bs, 0);
    for (int64_t x = 0; x < lora_; ++x) {
      const int8_t q = fakquant_quantize_latent(sdk::load_float(dt, b.key.at({t, 0, x})),
                                                s.quant_kscale[static_cast<size_t>(x)]);
      std::memcpy(row + x, &q, 1);
    }
    for (int64_t x = 0; x < rope_; ++x) {
      const uint16_t bits = sdk::float_to_bf16(sdk::load_float(dt, b.key.at({t, 0, lora_ + x})));
      std::memcpy(row + lora_ + 2 * x, &bits, 2);
    }
  }
}

void MlaFakQuantImpl::check_forward(const sdk::Layer& layer, const sdk::ForwardBatch& b) const {
  require_latent(layer);
  const sdk::LayerConfig& c = layer.config();
  if (b.state != KVQ_ATTN_DECODE_ONLY && b.state != KVQ_ATTN_CHUNKED_PREFILL &&
      b.state != KVQ_ATTN_SPEC_DECODING)
    sdk::fail(KVQ_ERR_UNSUPPORTED,
              "FAKQuant (MLA) layer {}: attention state {} is not supported; only decode batches "
              "(DecodeOnly, or ChunkedPrefill / SpecDecoding with one query token per sequence) "
              "run on the int8 latent cache",
              c.layer_name, state_name(b.state));
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    if (b.seqs[s].query_len <= 1) continue;
    if (b.state == KVQ_ATTN_DECODE_ONLY)
      sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "DecodeOnly: sequence {} schedules {} query tokens", s,
                b.seqs[s].query_len);
    sdk::fail(KVQ_ERR_UNSUPPORTED,
              "FAKQuant (MLA) layer {}: {} batch sequence {} has query_len {}; only decode "
              "sequences (query_len 1) are supported (MLA prefill is not built)",
              c.layer_name, state_name(b.state), s, b.seqs[s].query_len);
  }
  if (b.alibi_slopes.present() || b.sinks.present())
    sdk::fail(KVQ_ERR_UNSUPPORTED,
              "FAKQuant (MLA) layer {}: ALiBi slopes and sinks are not "
              "supported",
              c.layer_name);
  if (c.sliding_window != 0 || c.softcap != 0.0)
    sdk::fail(KVQ_ERR_UNSUPPORTED,
              "FAKQuant (MLA) layer {}: sliding_window {} / softcap {} are not supported",
              c.layer_name, c.sliding_window, c.softcap);
  processed_scales(layer, lora_);
}

void MlaFakQuantImpl::forward(sdk::Layer& layer, const sdk::ForwardBatch& b) {
  const sdk::LayerConfig& c = layer.config();
  const Scales s = processed_scales(layer, lora_);
  const int64_t nh = c.num_heads, d = lora_ + rope_, bs = c.block_size, lora = lora_, rope = rope_;
  const float scale = static_cast<float>(
      c.softmax_scale != 0.0 ? c.softmax_scale : 1.0 / std::sqrt(static_cast<double>(c.head_size)));
  const int32_t qdt = b.query.dtype(), odt = b.output.dtype();
  // The query is quantized: it must be finite (checked before any output is written).
  for (int64_t t = 0; t < b.num_tokens; ++t)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t x = 0; x < d; ++x)
        if (!std::isfinite(sdk::load_float(qdt, b.query.at({t, h, x}))))
          sdk::fail(KVQ_ERR_NON_FINITE, "query of token {} head {} is not finite (element {})", t,
                    h, x);

  // Work items: (decode token, head).
  std::vector<int64_t> token_seq(static_cast<size_t>(b.num_tokens), -1);
  for (size_t si = 0; si < b.seqs.size(); ++si)
    if (b.seqs[si].query_len == 1)
      token_seq[static_cast<size_t>(b.seqs[si].query_start)] = static_cast<int64_t>(si);
  const int64_t items = b.num_tokens * nh;
  const float sk = s.descale;

#pragma omp parallel num_threads(layer.instance().num_threads())
  {
    std::vector<float> q(static_cast<size_t>(d)), scores, acc(static_cast<size_t>(lora));
    std::vector<int32_t> qi(static_cast<size_t>(lora));
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = item / nh, h = item % nh;
      const int64_t si = token_seq[static_cast<size_t>(t)];
      if (si < 0) continue;  // cannot happen: every row belongs to a query_len-1 sequence
      const sdk::SequenceSlice& seq = b.seqs[static_cast<size_t>(si)];
      for (int64_t x = 0; x < d; ++x)
        q[static_cast<size_t>(x)] = sdk::load_float(qdt, b.query.at({t, h, x}));
      // Dynamic per-(token, head) int8 quantization of q_nope.
      float amax = 0.0f;
      for (int64_t x = 0; x < lora; ++x)
        amax = std::max(amax, std::fabs(q[static_cast<size_t>(x)]));
      const float sq = amax / 127.0f;
      const bool zero = !(sq > 0.0f);  // all-zero q_nope (or one that underflows): no latent term
      for (int64_t x = 0; x < lora; ++x)
        qi[static_cast<size_t>(x)] =
            zero ? 0
                 : static_cast<int32_t>(
                       std::clamp(std::nearbyint(q[static_cast<size_t>(x)] / sq), -128.0f, 127.0f));
      // Scores over the causal keys j < seq_len.
      const int64_t n = seq.seq_len;
      scores.resize(static_cast<size_t>(n));
      float m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const unsigned char* row = b.cache.row(b.block(si, j / bs), 0, j % bs, 0);
        const auto* k = reinterpret_cast<const int8_t*>(row);
        int32_t dot = 0;
        for (int64_t x = 0; x < lora; ++x) dot += qi[static_cast<size_t>(x)] * k[x];
        float pe = 0.0f;
        for (int64_t x = 0; x < rope; ++x) {
          uint16_t bits;
          std::memcpy(&bits, row + lora + 2 * x, 2);
          pe += q[static_cast<size_t>(lora + x)] * sdk::bf16_to_float(bits);
        }
        const float sc = (static_cast<float>(dot) * sq * sk + pe) * scale;
        scores[static_cast<size_t>(j)] = sc;
        m = std::max(m, sc);
      }
      // Softmax and the latent output sum_j p_j * k_int8_j * s_k.
      std::fill(acc.begin(), acc.end(), 0.0f);
      float sum = 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        const float p = std::exp(scores[static_cast<size_t>(j)] - m);
        sum += p;
        const auto* k =
            reinterpret_cast<const int8_t*>(b.cache.row(b.block(si, j / bs), 0, j % bs, 0));
        for (int64_t x = 0; x < lora; ++x)
          acc[static_cast<size_t>(x)] += p * static_cast<float>(k[x]);
      }
      const float norm = sk / sum;
      for (int64_t x = 0; x < lora; ++x)
        sdk::store_float(odt, b.output.at_mut({t, h, x}), acc[static_cast<size_t>(x)] * norm);
    }
  }
}

}  // namespace kvq::ascend
