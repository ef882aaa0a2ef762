#include "c8_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/paged_attention.hpp"

#include <algorithm>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace kvq::ascend {
namespace {

constexpr float kMaxScale = 1e4f;
constexpr float kMaxOffset = 256.0f;

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
  // The whole model's heads: tp_size ranks of `local` heads, or fewer heads
  // than ranks, each replicated to tp_size / total ranks. Any other count
  // (twice the heads, say) is another model's vector, not to be cut silently.
  const bool whole_model =
      total == local * c.tp_size || (local == 1 && total < c.tp_size && c.tp_size % total == 0);
  if (!whole_model)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "C8 layer {}: {} holds {} KV heads x head_size {}, but this rank has {} and tp size "
              "{} makes the model's {} (a checkpoint of another model?)",
              c.layer_name, p.name, total, d, local, c.tp_size, local * c.tp_size);
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
    // A scale maps int8 codes to activations: positive, normal and small
    // enough that every code stays far inside bf16's range; an offset is a
    // zero point on the int8 code scale.
    const bool scale_ok = std::isfinite(scale[i]) &&
                          scale[i] >= std::numeric_limits<float>::min() && scale[i] <= kMaxScale;
    const bool offset_ok = std::isfinite(offset[i]) && std::fabs(offset[i]) <= kMaxOffset;
    if (!scale_ok || !offset_ok)
      sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
                "C8 layer {}: channel {} has scale {} / offset {} (a scale is a normal float in "
                "[{}, {}], an offset finite within +-{})",
                layer.config().layer_name, i, scale[i], offset[i],
                std::numeric_limits<float>::min(), kMaxScale, kMaxOffset);
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

// c8_quantize, inlinable: an exported function of a shared library is not
// inlined (it could be interposed), and the write loop calls it per element.
inline int8_t quantize_one(float x, float inv_scale_bf16, float offset_bf16) {
  float t = sdk::round_bf16(sdk::round_bf16(x) * inv_scale_bf16);
  t = sdk::round_bf16(t + offset_bf16);
  // Ties to even: clamping to the integer bounds first commutes with the
  // rounding, and then adding and subtracting 1.5 * 2^23 rounds |t| <= 128
  // to an integer in the default rounding mode (no libm nearbyint call).
  constexpr float kMagic = 12582912.0f;
  return static_cast<int8_t>((std::clamp(t, -128.0f, 127.0f) + kMagic) - kMagic);
}

// quantize_one over a row, 16 elements at a time in SSE2 (the plugin's
// baseline ISA) when every scale and offset is finite (then every step is
// finite and the bit operations below are exactly round_bf16; cvtps2dq
// rounds to nearest even like the magic-number addition). Bit-identical to
// c8_quantize.
void quantize_row(const float* x, const float* inv_scale, const float* offset, int64_t n,
                  bool finite_channels, int8_t* dst) {
  int64_t i = 0;
#if defined(__SSE2__)
  if (finite_channels) {
    const auto rb = [](__m128 v) {
      const __m128i u = _mm_castps_si128(v);
      const __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
      const __m128i r = _mm_add_epi32(u, _mm_add_epi32(lsb, _mm_set1_epi32(0x7FFF)));
      return _mm_castsi128_ps(_mm_and_si128(r, _mm_set1_epi32(static_cast<int>(0xFFFF0000u))));
    };
    const auto q4 = [&](int64_t j) {
      __m128 t = rb(_mm_mul_ps(rb(_mm_loadu_ps(x + j)), _mm_loadu_ps(inv_scale + j)));
      t = rb(_mm_add_ps(t, _mm_loadu_ps(offset + j)));
      t = _mm_min_ps(_mm_max_ps(t, _mm_set1_ps(-128.0f)), _mm_set1_ps(127.0f));
      return _mm_cvtps_epi32(t);
    };
    for (; i + 16 <= n; i += 16) {
      const __m128i a = _mm_packs_epi32(q4(i), q4(i + 4)),
                    b = _mm_packs_epi32(q4(i + 8), q4(i + 12));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_packs_epi16(a, b));
    }
  }
#else
  (void)finite_channels;
#endif
  for (; i < n; ++i) dst[i] = quantize_one(x[i], inv_scale[i], offset[i]);
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
  return quantize_one(x, inv_scale_bf16, offset_bf16);
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
  // Rows are converted to floats a whole row at a time (sdk::load_floats
  // vectorizes contiguous bf16/f32) instead of one load_float per element.
  std::vector<float> kx(static_cast<size_t>(d)), vx(static_cast<size_t>(dv));
  const auto load = [&](int64_t t, int64_t h) {
    sdk::load_floats(dt, b.key.at({t, h, 0}), b.key.stride(2) * es, d, kx.data());
    sdk::load_floats(dt, b.value.at({t, h, 0}), b.value.stride(2) * es, dv, vx.data());
  };
  const bool finite =
      sdk::all_finite(k_.inv_scale.data(), static_cast<int64_t>(k_.inv_scale.size())) &&
      sdk::all_finite(k_.offset.data(), static_cast<int64_t>(k_.offset.size())) &&
      sdk::all_finite(v_.inv_scale.data(), static_cast<int64_t>(v_.inv_scale.size())) &&
      sdk::all_finite(v_.offset.data(), static_cast<int64_t>(v_.offset.size()));
  // Refuse NaN/Inf before writing anything (a NaN would not survive the int8 cast).
  for (size_t i = 0; i < b.slots.size(); ++i) {
    if (b.slots[i] < 0) continue;
    const auto t = static_cast<int64_t>(i);
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      load(t, h);
      if (!sdk::all_finite(kx.data(), d))
        sdk::fail(KVQ_ERR_NON_FINITE, "key of token {} head {} is not finite; nothing written", t,
                  h);
      if (!sdk::all_finite(vx.data(), dv))
        sdk::fail(KVQ_ERR_NON_FINITE, "value of token {} head {} is not finite; nothing written", t,
                  h);
    }
  }
  for (size_t i = 0; i < b.slots.size(); ++i) {
    const int64_t slot = b.slots[i];
    if (slot < 0) continue;  // padding token
    const auto t = static_cast<int64_t>(i);
    for (int64_t h = 0; h < c.num_kv_heads; ++h) {
      auto* kdst = reinterpret_cast<int8_t*>(b.cache.row(slot / bs, 0, slot % bs, h));
      auto* vdst = reinterpret_cast<int8_t*>(b.cache.row(slot / bs, 1, slot % bs, h));
      load(t, h);
      const float* ks = &k_.inv_scale[static_cast<size_t>(h * d)];
      const float* ko = &k_.offset[static_cast<size_t>(h * d)];
      const float* vs = &v_.inv_scale[static_cast<size_t>(h * dv)];
      const float* vo = &v_.offset[static_cast<size_t>(h * dv)];
      quantize_row(kx.data(), ks, ko, d, finite, kdst);
      quantize_row(vx.data(), vs, vo, dv, finite, vdst);
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
