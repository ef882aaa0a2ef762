#include "kvq_sdk/paged_attention.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/plugin.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace kvq::sdk {
namespace {

constexpr int64_t kQueryChunk = 32;  // query tokens per work item
constexpr int64_t kKeyTile = 64;     // keys decoded per tile
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

template <int32_t Dtype>
void decode_plain(const unsigned char* row, int64_t n, float scale, float* out) {
  constexpr int64_t size = Dtype == KVQ_DTYPE_F32                                ? 4
                           : (Dtype == KVQ_DTYPE_BF16 || Dtype == KVQ_DTYPE_F16) ? 2
                                                                                 : 1;
  for (int64_t i = 0; i < n; ++i) out[i] = load_float(Dtype, row + i * size) * scale;
}
void decode_f32(const unsigned char* row, int64_t n, float scale, float* out) {
  std::memcpy(out, row, static_cast<size_t>(n) * 4);
  if (scale != 1.0f)
    for (int64_t i = 0; i < n; ++i) out[i] *= scale;
}
void decode_bf16(const unsigned char* row, int64_t n, float scale, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, row + 2 * i, 2);
    out[i] = bf16_to_float(b) * scale;
  }
}
template <int32_t Dtype>
void decode_per_token_head(const unsigned char* row, int64_t n, float, float* out) {
  float scale;
  std::memcpy(&scale, row + n * dtype_size(Dtype), 4);
  decode_plain<Dtype>(row, n, scale, out);
}

// Partial softmax state of one query row over a key segment.
struct RowState {
  float m;  // running maximum
  float l;  // running sum of exp(s - m)
};

struct WorkItem {
  int64_t seq, kv_head, q_begin, q_end, k_begin, k_end;
  int64_t out_slot;  // first row of this item's partial buffer
};

float scale_for(const std::vector<float>& scales, int64_t head) {
  if (scales.empty()) return 1.0f;
  return scales.size() == 1 ? scales[0] : scales[static_cast<size_t>(head)];
}

}  // namespace

RowDecoder row_decoder(int32_t element_dtype, bool per_token_head) {
  if (per_token_head) {
    switch (element_dtype) {
      case KVQ_DTYPE_I8: return decode_per_token_head<KVQ_DTYPE_I8>;
      case KVQ_DTYPE_F8_E4M3FN: return decode_per_token_head<KVQ_DTYPE_F8_E4M3FN>;
      default: break;
    }
  } else {
    switch (element_dtype) {
      case KVQ_DTYPE_F32: return decode_f32;
      case KVQ_DTYPE_BF16: return decode_bf16;
      case KVQ_DTYPE_F16: return decode_plain<KVQ_DTYPE_F16>;
      case KVQ_DTYPE_F8_E4M3FN: return decode_plain<KVQ_DTYPE_F8_E4M3FN>;
      case KVQ_DTYPE_F8_E5M2: return decode_plain<KVQ_DTYPE_F8_E5M2>;
      case KVQ_DTYPE_I8: return decode_plain<KVQ_DTYPE_I8>;
      default: break;
    }
  }
  fail(KVQ_ERR_INTERNAL, "no row decoder for {}{}", dtype_name(element_dtype),
       per_token_head ? " per token-head" : "");
}

PagedKvSource::PagedKvSource(const ForwardBatch& batch, RowDecoder decode_k, RowDecoder decode_v,
                             std::vector<float> k_scales, std::vector<float> v_scales)
    : batch_(batch),
      decode_k_(decode_k),
      decode_v_(decode_v),
      k_scales_(std::move(k_scales)),
      v_scales_(std::move(v_scales)) {
  const auto heads = static_cast<size_t>(batch.cache.geometry().num_kv_heads);
  for (const auto* s : {&k_scales_, &v_scales_})
    if (s->size() != 1 && s->size() != heads)
      fail(KVQ_ERR_INTERNAL, "{} scales for {} KV heads", s->size(), heads);
}

void PagedKvSource::load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
                         float* v) const {
  const CacheView& c = batch_.cache;
  const int64_t bs = c.geometry().block_size, d = c.geometry().head_size,
                dv = c.geometry().head_size_v;
  const float ks = k_scales_.size() == 1 ? k_scales_[0] : k_scales_[static_cast<size_t>(kv_head)];
  const float vs = v_scales_.size() == 1 ? v_scales_[0] : v_scales_[static_cast<size_t>(kv_head)];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = first + i;
    const int64_t block = batch_.block(seq, j / bs), slot = j % bs;
    decode_k_(c.row(block, 0, slot, kv_head), d, ks, k + i * d);
    decode_v_(c.row(block, 1, slot, kv_head), dv, vs, v + i * dv);
  }
}

BatchKvSource::BatchKvSource(const ForwardBatch& batch) : batch_(batch) {
  if (!batch.key.present())
    fail(KVQ_ERR_INVALID_ARGUMENT, "this attention state needs the batch's key and value");
}

void BatchKvSource::require_no_context(const ForwardBatch& batch, bool prefills_only) {
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SequenceSlice& q = batch.seqs[s];
    if (q.context_len != 0 && !(prefills_only && q.query_len == 1))
      fail(KVQ_ERR_INVALID_ARGUMENT,
           "sequence {} has {} context tokens; attention on the batch's own K/V needs none", s,
           q.context_len);
  }
}

void BatchKvSource::load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
                         float* v) const {
  const SequenceSlice& q = batch_.seqs[static_cast<size_t>(seq)];
  if (first < q.context_len)
    fail(KVQ_ERR_INTERNAL, "key {} of sequence {} is context, not in the batch", first, seq);
  const int64_t row0 = q.query_start + first - q.context_len;
  const int64_t d = batch_.key.dim(2), dv = batch_.value.dim(2);
  const int32_t dt = batch_.key.dtype();
  const int64_t es = dtype_size(dt);
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* kp = batch_.key.at({row0 + i, kv_head, 0});
    const unsigned char* vp = batch_.value.at({row0 + i, kv_head, 0});
    for (int64_t c = 0; c < d; ++c)
      k[i * d + c] = load_float(dt, kp + c * batch_.key.stride(2) * es);
    for (int64_t c = 0; c < dv; ++c)
      v[i * dv + c] = load_float(dt, vp + c * batch_.value.stride(2) * es);
  }
}

AttentionOptions attention_options(const LayerConfig& c, int num_threads) {
  AttentionOptions o;
  o.softmax_scale = static_cast<float>(
      c.softmax_scale != 0.0 ? c.softmax_scale : 1.0 / std::sqrt(static_cast<double>(c.head_size)));
  o.sliding_window = c.sliding_window;
  o.softcap = static_cast<float>(c.softcap);
  o.num_threads = num_threads;
  return o;
}

void paged_attention(const LayerConfig& c, const ForwardBatch& b, const KvSource& kv,
                     const AttentionOptions& o) {
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, group = hq / hkv;
  const int64_t d = c.head_size, dv = c.head_size_v;
  const int64_t num_seqs = static_cast<int64_t>(b.seqs.size());
  const float scale = o.softmax_scale;

  // Key segments per item: split long decodes when there are too few
  // (sequence, KV head) pairs to keep every thread busy.
  int64_t splits = o.num_splits;
  if (splits <= 0) {
    splits = 1;
    const int64_t pairs = num_seqs * hkv;
    if (b.max_query_len == 1 && pairs > 0 && pairs < 2 * o.num_threads)
      splits = std::min<int64_t>(16, (2 * o.num_threads + pairs - 1) / pairs);
  }

  // Build the work list; every item owns rows [out_slot, out_slot + rows) of
  // the partial buffers.
  std::vector<WorkItem> items;
  int64_t total_rows = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const SequenceSlice& q = b.seqs[static_cast<size_t>(s)];
    for (int64_t q0 = 0; q0 < q.query_len; q0 += kQueryChunk) {
      const int64_t q1 = std::min(q.query_len, q0 + kQueryChunk);
      const int64_t hi = std::min(q.seq_len, q.context_len + q1);
      const int64_t lo = o.sliding_window > 0
                             ? std::max<int64_t>(0, q.context_len + q0 - o.sliding_window + 1)
                             : 0;
      const int64_t n_split =
          std::max<int64_t>(1, std::min(splits, (hi - lo + kKeyTile - 1) / kKeyTile));
      const int64_t per = (hi - lo + n_split - 1) / n_split;
      for (int64_t g = 0; g < hkv; ++g)
        for (int64_t sp = 0; sp < n_split; ++sp) {
          const int64_t kb = std::min(hi, lo + sp * per), ke = std::min(hi, lo + (sp + 1) * per);
          items.push_back({s, g, q0, q1, kb, ke, total_rows});
          total_rows += (q1 - q0) * group;
        }
    }
  }

  std::vector<RowState> states(static_cast<size_t>(total_rows));
  std::vector<float> acc(static_cast<size_t>(total_rows * dv));
  const bool has_alibi = b.alibi_slopes.present();
  const bool has_sinks = b.sinks.present();

#pragma omp parallel num_threads(o.num_threads)
  {
    std::vector<float> qbuf, kbuf(static_cast<size_t>(kKeyTile * d)),
        vbuf(static_cast<size_t>(kKeyTile * dv));
    float scores[kKeyTile];
#pragma omp for schedule(dynamic, 1)
    for (size_t it = 0; it < items.size(); ++it) {
      const WorkItem& w = items[it];
      const SequenceSlice& q = b.seqs[static_cast<size_t>(w.seq)];
      const int64_t rows = (w.q_end - w.q_begin) * group;
      qbuf.resize(static_cast<size_t>(rows * d));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t token = q.query_start + w.q_begin + r / group;
        const int64_t h = w.kv_head * group + r % group;
        const unsigned char* src = b.query.at({token, h, 0});
        const int64_t es = dtype_size(b.query.dtype()), st = b.query.stride(2);
        const float qs = scale * scale_for(o.query_scales, h);
        for (int64_t c2 = 0; c2 < d; ++c2)
          qbuf[static_cast<size_t>(r * d + c2)] =
              load_float(b.query.dtype(), src + c2 * st * es) * qs;
      }
      RowState* st = &states[static_cast<size_t>(w.out_slot)];
      float* ac = &acc[static_cast<size_t>(w.out_slot * dv)];
      for (int64_t r = 0; r < rows; ++r) st[r] = {kNegInf, 0.0f};
      std::fill(ac, ac + rows * dv, 0.0f);

      for (int64_t t0 = w.k_begin; t0 < w.k_end; t0 += kKeyTile) {
        const int64_t n = std::min(kKeyTile, w.k_end - t0);
        kv.load(w.seq, t0, n, w.kv_head, kbuf.data(), vbuf.data());
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t pos = q.context_len + w.q_begin + r / group;
          const int64_t h = w.kv_head * group + r % group;
          const float* qr = &qbuf[static_cast<size_t>(r * d)];
          float tile_max = kNegInf;
          for (int64_t i = 0; i < n; ++i) {
            const int64_t j = t0 + i;
            if (j > pos || (o.sliding_window > 0 && pos - j >= o.sliding_window)) {
              scores[i] = kNegInf;
              continue;
            }
            const float* kr = &kbuf[static_cast<size_t>(i * d)];
            float dot = 0.0f;
            for (int64_t c2 = 0; c2 < d; ++c2) dot += qr[c2] * kr[c2];
            if (o.softcap > 0.0f) dot = o.softcap * std::tanh(dot / o.softcap);
            if (has_alibi) {
              float slope;
              std::memcpy(&slope, b.alibi_slopes.at({h}), 4);
              dot += slope * static_cast<float>(j - q.context_len);
            }
            scores[i] = dot;
            tile_max = std::max(tile_max, dot);
          }
          if (tile_max == kNegInf) continue;
          RowState& rs = st[r];
          const float m_new = std::max(rs.m, tile_max);
          const float factor = std::exp(rs.m - m_new);  // exp(-inf) = 0 on the first tile
          float* a = ac + r * dv;
          if (factor != 1.0f)
            for (int64_t c2 = 0; c2 < dv; ++c2) a[c2] *= factor;
          rs.l *= factor;
          for (int64_t i = 0; i < n; ++i) {
            if (scores[i] == kNegInf) continue;
            float p = std::exp(scores[i] - m_new);
            rs.l += p;
            if (o.quantize_p_e4m3) p = e4m3_to_float(float_to_e4m3(p));
            const float* vr = &vbuf[static_cast<size_t>(i * dv)];
            for (int64_t c2 = 0; c2 < dv; ++c2) a[c2] += p * vr[c2];
          }
          rs.m = m_new;
        }
      }
    }
  }

  // Merge the key segments of each (sequence, KV head, query chunk) and store.
  const int32_t out_dtype = b.output.dtype();
  const int64_t out_es = dtype_size(out_dtype);
  std::vector<float> merged(static_cast<size_t>(dv));
  size_t it = 0;
  while (it < items.size()) {
    size_t end = it + 1;
    while (end < items.size() && items[end].seq == items[it].seq &&
           items[end].kv_head == items[it].kv_head && items[end].q_begin == items[it].q_begin)
      ++end;
    const WorkItem& w = items[it];
    const SequenceSlice& q = b.seqs[static_cast<size_t>(w.seq)];
    const int64_t rows = (w.q_end - w.q_begin) * group;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = w.kv_head * group + r % group;
      float m = kNegInf;
      for (size_t k = it; k < end; ++k)
        m = std::max(m, states[static_cast<size_t>(items[k].out_slot + r)].m);
      float sink = kNegInf;
      if (has_sinks) {
        std::memcpy(&sink, b.sinks.at({h}), 4);
        m = std::max(m, sink);
      }
      float l = has_sinks ? std::exp(sink - m) : 0.0f;
      std::fill(merged.begin(), merged.end(), 0.0f);
      for (size_t k = it; k < end; ++k) {
        const RowState& rs = states[static_cast<size_t>(items[k].out_slot + r)];
        if (rs.m == kNegInf) continue;
        const float f = std::exp(rs.m - m);
        l += rs.l * f;
        const float* a = &acc[static_cast<size_t>((items[k].out_slot + r) * dv)];
        for (int64_t c2 = 0; c2 < dv; ++c2) merged[static_cast<size_t>(c2)] += a[c2] * f;
      }
      const float inv = l > 0.0f ? scale_for(o.output_scales, h) / l : 0.0f;
      const int64_t token = q.query_start + w.q_begin + r / group;
      unsigned char* dst = b.output.at_mut({token, h, 0});
      for (int64_t c2 = 0; c2 < dv; ++c2)
        store_float(out_dtype, dst + c2 * b.output.stride(2) * out_es,
                    merged[static_cast<size_t>(c2)] * inv);
    }
    it = end;
  }
}

}  // namespace kvq::sdk
