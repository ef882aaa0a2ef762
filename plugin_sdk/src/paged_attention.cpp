#include "kvq_sdk/paged_attention.hpp"

#include "attention_kernels.hpp"
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

namespace kernels {
bool quantize_query_i16(const float* q, int64_t rows, int64_t d, int16_t* out, float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = q + r * d;
    float mx = 0.0f;
    for (int64_t c = 0; c < d; ++c) {
      if (!std::isfinite(x[c])) return false;
      mx = std::max(mx, std::fabs(x[c]));
    }
    // Below this the scale (and the products with it) would be subnormal.
    if (mx != 0.0f && mx < 1e-30f) return false;
    const float s = mx / 32767.0f;
    scale[r] = s;
    int16_t* hi = out + 2 * r * d;
    int16_t* lo = hi + d;
    for (int64_t c = 0; c < d; ++c) {
      if (s == 0.0f) {
        hi[c] = lo[c] = 0;
        continue;
      }
      // hi carries ~15 bits, lo the residual's next 15: about 2^-31 of the
      // row max, finer than the fp32 dot product's own rounding.
      const double t = static_cast<double>(x[c]) / s;
      const double h = std::clamp(std::nearbyint(t), -32767.0, 32767.0);
      const double l = std::clamp(std::nearbyint((t - h) * 32768.0), -16384.0, 16384.0);
      hi[c] = static_cast<int16_t>(h);
      lo[c] = static_cast<int16_t>(l);
    }
  }
  return true;
}
bool channels_symmetric(const ChannelVectors& c, int64_t d, int64_t dv) {
  const auto ok = [](const float* off, const float* sc, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const float a = std::fabs(sc[i]);
      if (off[i] != 0.0f || !std::isfinite(a) || (a != 0.0f && a < 0x1p-50f)) return false;
    }
    return true;
  };
  return c.k_offset != nullptr && ok(c.k_offset, c.k_scale, d) && ok(c.v_offset, c.v_scale, dv);
}
}  // namespace kernels

namespace {

// Query tokens per work item: kQueryChunk, doubled up to kMaxQueryChunk
// while every thread keeps >= 4 tasks. Each key tile is decoded once per
// item, so long prefills amortize the decode over more rows.
constexpr int64_t kQueryChunk = 32;
constexpr int64_t kMaxQueryChunk = 128;
constexpr int64_t kKeyTile = kernels::kKeyTile;
constexpr int64_t kMinSegmentTiles = 4;  // key tiles per decode segment, at least
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

RowFormat row_format(int32_t element_dtype, bool per_token_head, int32_t round_to) {
  const auto make = [&](RowEncoding e) { return RowFormat{e, per_token_head, round_to}; };
  if (per_token_head) {
    if (round_to == 0) {
      if (element_dtype == KVQ_DTYPE_I8) return make(RowEncoding::kI8);
      if (element_dtype == KVQ_DTYPE_F8_E4M3FN) return make(RowEncoding::kE4M3);
    }
  } else if (element_dtype == KVQ_DTYPE_F8_E4M3FN || element_dtype == KVQ_DTYPE_F8_E5M2) {
    if (round_to == 0 || round_to == KVQ_DTYPE_BF16 || round_to == KVQ_DTYPE_F16)
      return make(element_dtype == KVQ_DTYPE_F8_E4M3FN ? RowEncoding::kE4M3 : RowEncoding::kE5M2);
  } else if (round_to == 0) {
    if (element_dtype == KVQ_DTYPE_F32) return make(RowEncoding::kF32);
    if (element_dtype == KVQ_DTYPE_BF16) return make(RowEncoding::kBF16);
    if (element_dtype == KVQ_DTYPE_F16) return make(RowEncoding::kF16);
  }
  fail(KVQ_ERR_INTERNAL, "no row format for {}{} rounded to {}", dtype_name(element_dtype),
       per_token_head ? " per token-head" : "", round_to == 0 ? "nothing" : dtype_name(round_to));
}

namespace {

int32_t encoding_dtype(RowEncoding e) {
  switch (e) {
    case RowEncoding::kF32: return KVQ_DTYPE_F32;
    case RowEncoding::kBF16: return KVQ_DTYPE_BF16;
    case RowEncoding::kF16: return KVQ_DTYPE_F16;
    case RowEncoding::kI8: return KVQ_DTYPE_I8;
    case RowEncoding::kE4M3: return KVQ_DTYPE_F8_E4M3FN;
    case RowEncoding::kE5M2: return KVQ_DTYPE_F8_E5M2;
    case RowEncoding::kU4: return KVQ_DTYPE_U8;
  }
  return KVQ_DTYPE_F32;
}

// Scalar decode of a RowFormat row (load(), for sources that wrap this one).
// offset / channel_scale: the KV head's channel vectors (per_channel only).
void decode_format(const RowFormat& f, const unsigned char* row, int64_t n, float scale, float* out,
                   const float* offset = nullptr, const float* channel_scale = nullptr) {
  if (f.encoding == RowEncoding::kU4) {
    const int64_t bytes = (n + 1) / 2;
    float s, zp;
    std::memcpy(&s, row + bytes, 4);
    std::memcpy(&zp, row + bytes + 4, 4);
    for (int64_t i = 0; i < n; ++i) {
      const unsigned code = i % 2 == 0 ? (row[i / 2] & 0x0Fu) : (row[i / 2] >> 4);
      out[i] = (static_cast<float>(code) - zp) * s;
    }
    return;
  }
  const int32_t dt = encoding_dtype(f.encoding);
  const int64_t es = dtype_size(dt);
  if (f.per_channel) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = round_bf16(round_bf16(load_float(dt, row + i) - offset[i]) * channel_scale[i]);
    return;
  }
  if (f.per_token_head) std::memcpy(&scale, row + n * es, 4);
  for (int64_t i = 0; i < n; ++i) {
    const float x = load_float(dt, row + i * es) * scale;
    out[i] = f.round_to == KVQ_DTYPE_BF16  ? round_bf16(x)
             : f.round_to == KVQ_DTYPE_F16 ? f16_to_float(float_to_f16(x))
                                           : x;
  }
}

void check_scales(const ForwardBatch& batch, const std::vector<float>& k,
                  const std::vector<float>& v) {
  const auto heads = static_cast<size_t>(batch.cache.geometry().num_kv_heads);
  for (const auto* s : {&k, &v})
    if (s->size() != 1 && s->size() != heads)
      fail(KVQ_ERR_INTERNAL, "{} scales for {} KV heads", s->size(), heads);
}

}  // namespace

PagedKvSource::PagedKvSource(const ForwardBatch& batch, RowFormat format,
                             std::vector<float> k_scales, std::vector<float> v_scales)
    : batch_(batch),
      direct_(true),
      format_(format),
      k_scales_(std::move(k_scales)),
      v_scales_(std::move(v_scales)) {
  check_scales(batch, k_scales_, v_scales_);
}

PagedKvSource::PagedKvSource(const ForwardBatch& batch, ChannelVectors channels)
    : batch_(batch),
      direct_(true),
      format_{RowEncoding::kI8, false, KVQ_DTYPE_BF16, true},
      k_scales_{1.0f},
      v_scales_{1.0f},
      channels_(channels) {
  if (batch.cache.geometry().element_dtype != KVQ_DTYPE_I8)
    fail(KVQ_ERR_INTERNAL, "per-channel rows need an int8 cache");
}

PagedKvSource::PagedKvSource(const ForwardBatch& batch, RowDecoder decode_k, RowDecoder decode_v,
                             std::vector<float> k_scales, std::vector<float> v_scales)
    : batch_(batch),
      decode_k_(decode_k),
      decode_v_(decode_v),
      k_scales_(std::move(k_scales)),
      v_scales_(std::move(v_scales)) {
  check_scales(batch, k_scales_, v_scales_);
}

float PagedKvSource::k_scale(int64_t kv_head) const {
  return k_scales_.size() == 1 ? k_scales_[0] : k_scales_[static_cast<size_t>(kv_head)];
}
float PagedKvSource::v_scale(int64_t kv_head) const {
  return v_scales_.size() == 1 ? v_scales_[0] : v_scales_[static_cast<size_t>(kv_head)];
}

void PagedKvSource::load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
                         float* v) const {
  const CacheView& c = batch_.cache;
  const int64_t bs = c.geometry().block_size, d = c.geometry().head_size,
                dv = c.geometry().head_size_v;
  const float ks = k_scale(kv_head), vs = v_scale(kv_head);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = first + i;
    const int64_t block = batch_.block(seq, j / bs), slot = j % bs;
    const unsigned char* kr = c.row(block, 0, slot, kv_head);
    const unsigned char* vr = c.row(block, 1, slot, kv_head);
    if (direct_) {
      const ChannelVectors ch = channels(kv_head);
      decode_format(format_, kr, d, ks, k + i * d, ch.k_offset, ch.k_scale);
      decode_format(format_, vr, dv, vs, v + i * dv, ch.v_offset, ch.v_scale);
    } else {
      decode_k_(kr, d, ks, k + i * d);
      decode_v_(vr, dv, vs, v + i * dv);
    }
  }
}

bool PagedKvSource::direct(int64_t kv_head, RowFormat* format, float* k_scale_out,
                           float* v_scale_out) const {
  if (!direct_) return false;
  *format = format_;
  *k_scale_out = k_scale(kv_head);
  *v_scale_out = v_scale(kv_head);
  return true;
}

ChannelVectors PagedKvSource::channels(int64_t kv_head) const {
  if (!format_.per_channel) return {};
  const int64_t d = batch_.cache.geometry().head_size, dv = batch_.cache.geometry().head_size_v;
  return {channels_.k_offset + kv_head * d, channels_.k_scale + kv_head * d,
          channels_.v_offset + kv_head * dv, channels_.v_scale + kv_head * dv};
}

void PagedKvSource::rows(int64_t seq, int64_t first, int64_t n, int64_t kv_head,
                         const unsigned char** k, const unsigned char** v) const {
  const CacheView& c = batch_.cache;
  const int64_t bs = c.geometry().block_size;
  // Within a block the rows of consecutive slots are a fixed stride apart.
  const int64_t stride = c.geometry().num_kv_heads * c.geometry().row_bytes;
  int64_t i = 0;
  while (i < n) {
    const int64_t j = first + i, slot = j % bs, run = std::min(n - i, bs - slot);
    const int64_t block = batch_.block(seq, j / bs);
    const unsigned char* kr = c.row(block, 0, slot, kv_head);
    const unsigned char* vr = c.row(block, 1, slot, kv_head);
    for (int64_t x = 0; x < run; ++x) {
      k[i + x] = kr + x * stride;
      v[i + x] = vr + x * stride;
    }
    i += run;
  }
}

bool PagedKvSource::paged_rows(PagedRows* out) const {
  if (!direct_) return false;
  out->batch = &batch_;
  out->format = format_;
  out->k_scales = &k_scales_;
  out->v_scales = &v_scales_;
  out->channels = channels_;
  return true;
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

  // A task is what one thread runs: the items of one (sequence, query chunk,
  // key segment) for one KV head, or for all KV heads when the chunk has few
  // rows (decode): then each tile of blocks is read for every head at once,
  // a sequential sweep the hardware prefetchers follow, instead of one row
  // in num_kv_heads per head.
  const auto grouped = [&](int64_t chunk_len) {
    return chunk_len * group <= 2 * kernels::kRowBlock;
  };

  // Key segments per chunk: split long decodes when there are too few tasks
  // to keep every thread busy. Four tasks per thread, not one, so a thread
  // that the OS delays does not hold up the call; segments of at least
  // kMinSegmentTiles tiles keep the prefetch ahead of the kernels.
  int64_t splits = o.num_splits, min_segment = kKeyTile;
  if (splits <= 0) {
    splits = 1;
    const int64_t tasks = grouped(1) ? num_seqs : num_seqs * hkv;
    if (b.max_query_len == 1 && o.num_threads > 1 && tasks > 0 && tasks < 4 * o.num_threads) {
      splits = std::min<int64_t>(16, (4 * o.num_threads + tasks - 1) / tasks);
      min_segment = kMinSegmentTiles * kKeyTile;
    }
  }

  // Build the work list; every item owns rows [out_slot, out_slot + rows) of
  // the partial buffers. Items are ordered (sequence, chunk, KV head,
  // segment), as the merge below expects.
  struct Task {
    size_t first;   // item of the first KV head
    size_t stride;  // items between consecutive KV heads
    int64_t heads;  // KV heads in the task
  };
  std::vector<WorkItem> items;
  std::vector<Task> tasks;
  int64_t total_rows = 0;
  int64_t query_chunk = kQueryChunk;
  while (query_chunk < kMaxQueryChunk &&
         num_seqs * hkv * ((b.max_query_len + 2 * query_chunk - 1) / (2 * query_chunk)) >=
             4 * static_cast<int64_t>(o.num_threads))
    query_chunk *= 2;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const SequenceSlice& q = b.seqs[static_cast<size_t>(s)];
    for (int64_t q0 = 0; q0 < q.query_len; q0 += query_chunk) {
      const int64_t q1 = std::min(q.query_len, q0 + query_chunk);
      const int64_t hi = std::min(q.seq_len, q.context_len + q1);
      const int64_t lo = o.sliding_window > 0
                             ? std::max<int64_t>(0, q.context_len + q0 - o.sliding_window + 1)
                             : 0;
      const int64_t n_split = std::max<int64_t>(1, std::min(splits, (hi - lo) / min_segment));
      const int64_t per = (hi - lo + n_split - 1) / n_split;
      const size_t base = items.size();
      for (int64_t g = 0; g < hkv; ++g)
        for (int64_t sp = 0; sp < n_split; ++sp) {
          const int64_t kb = std::min(hi, lo + sp * per), ke = std::min(hi, lo + (sp + 1) * per);
          items.push_back({s, g, q0, q1, kb, ke, total_rows});
          total_rows += (q1 - q0) * group;
        }
      const auto stride = static_cast<size_t>(n_split);
      for (int64_t sp = 0; sp < n_split; ++sp) {
        const size_t first = base + static_cast<size_t>(sp);
        if (grouped(q1 - q0))
          tasks.push_back({first, stride, hkv});
        else
          for (int64_t g = 0; g < hkv; ++g)
            tasks.push_back({first + static_cast<size_t>(g) * stride, stride, 1});
      }
    }
  }

  std::vector<float> maxes(static_cast<size_t>(total_rows)), sums(maxes.size());
  std::vector<float> acc(static_cast<size_t>(total_rows * dv));
  const bool has_alibi = b.alibi_slopes.present();
  const bool has_sinks = b.sinks.present();
  const kernels::KernelSet& kernel = kernels::active_kernels();
  const int64_t row_bytes = b.cache.geometry().row_bytes;

  // Per-thread state of one KV head of a task.
  struct HeadState {
    kernels::ItemRows rows;
    std::vector<float> q, slopes, q16_scale;
    std::vector<int16_t> q16;
    std::vector<int64_t> pos;
    bool direct = false;
    const unsigned char* krows[2][kKeyTile];
    const unsigned char* vrows[2][kKeyTile];
  };

  // Decode tasks over a paged cache stream each cache block once for all KV
  // heads (kernel.decode), when the kernels have a codec for the format. The
  // kernel indexes the cache and the block table's host copy directly, so a
  // cache or table in device memory (ABI 1.1; empty block_table) keeps the
  // source's own accessors.
  PagedRows paged;
  const bool stream_decode = !o.quantize_p_e4m3 && !b.cache.keys_only() &&
                             b.cache.host_accessible() && !b.block_table.empty() &&
                             kv.paged_rows(&paged);
  std::vector<float> k_scales, v_scales;
  if (stream_decode)
    for (int64_t g = 0; g < hkv; ++g) {
      k_scales.push_back(scale_for(*paged.k_scales, g));
      v_scales.push_back(scale_for(*paged.v_scales, g));
    }
  const auto run_decode = [&](const Task& task, std::vector<float>& q_rows,
                              std::vector<int64_t>& row0, std::vector<float>& scratch) {
    const WorkItem& w0 = items[task.first];
    if (!stream_decode || task.heads != hkv || w0.q_end - w0.q_begin != 1) return false;
    const SequenceSlice& q = b.seqs[static_cast<size_t>(w0.seq)];
    const int64_t token = q.query_start + w0.q_begin;
    const int64_t es = dtype_size(b.query.dtype()), st = b.query.stride(2);
    q_rows.resize(static_cast<size_t>(hq * d + hq));  // queries, then slopes
    float* slopes = q_rows.data() + hq * d;
    for (int64_t h = 0; h < hq; ++h) {
      const unsigned char* src = b.query.at({token, h, 0});
      const float qs = scale * scale_for(o.query_scales, h);
      for (int64_t c2 = 0; c2 < d; ++c2)
        q_rows[static_cast<size_t>(h * d + c2)] =
            load_float(b.query.dtype(), src + c2 * st * es) * qs;
      if (has_alibi) std::memcpy(&slopes[h], b.alibi_slopes.at({h}), 4);
    }
    row0.resize(static_cast<size_t>(hkv));
    for (int64_t g = 0; g < hkv; ++g)
      row0[static_cast<size_t>(g)] =
          items[task.first + static_cast<size_t>(g) * task.stride].out_slot;
    const kvq_cache_geometry& geo = b.cache.geometry();
    kernels::DecodeTask t;
    t.heads = hkv;
    t.group = group;
    t.d = d;
    t.dv = dv;
    t.q = q_rows.data();
    t.slopes = has_alibi ? slopes : nullptr;
    t.alibi_origin = q.context_len;
    t.softcap = o.softcap;
    t.k_begin = w0.k_begin;
    t.k_end = w0.k_end;
    t.cache = b.cache.base();
    t.blocks = &b.block_table[static_cast<size_t>(w0.seq * b.max_blocks)];
    t.block_size = geo.block_size;
    t.row_bytes = geo.row_bytes;
    t.format = paged.format;
    t.k_scales = k_scales.data();
    t.v_scales = v_scales.data();
    t.channels = paged.channels;
    t.m = maxes.data();
    t.l = sums.data();
    t.acc = acc.data();
    t.row0 = row0.data();
    return kernel.decode(t, scratch);
  };

#pragma omp parallel num_threads(o.num_threads)
  {
    std::vector<HeadState> heads(static_cast<size_t>(hkv));
    std::vector<float> kbuf, vbuf;
    std::vector<float> scratch(static_cast<size_t>(kernels::scratch_floats(d, dv)));
    std::vector<float> decode_q, decode_scratch;
    std::vector<int64_t> decode_rows;
#pragma omp for schedule(dynamic, 1)
    for (size_t ti = 0; ti < tasks.size(); ++ti) {
      const Task& task = tasks[ti];
      if (run_decode(task, decode_q, decode_rows, decode_scratch)) continue;
      for (int64_t hh = 0; hh < task.heads; ++hh) {
        const WorkItem& w = items[task.first + static_cast<size_t>(hh) * task.stride];
        const SequenceSlice& q = b.seqs[static_cast<size_t>(w.seq)];
        HeadState& hs = heads[static_cast<size_t>(hh)];
        const int64_t rows = (w.q_end - w.q_begin) * group;
        hs.q.resize(static_cast<size_t>(rows * d));
        hs.pos.resize(static_cast<size_t>(rows));
        hs.slopes.resize(has_alibi ? static_cast<size_t>(rows) : 0);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t token = q.query_start + w.q_begin + r / group;
          const int64_t h = w.kv_head * group + r % group;
          const unsigned char* src = b.query.at({token, h, 0});
          const int64_t es = dtype_size(b.query.dtype()), st = b.query.stride(2);
          const float qs = scale * scale_for(o.query_scales, h);
          for (int64_t c2 = 0; c2 < d; ++c2)
            hs.q[static_cast<size_t>(r * d + c2)] =
                load_float(b.query.dtype(), src + c2 * st * es) * qs;
          hs.pos[static_cast<size_t>(r)] = q.context_len + w.q_begin + r / group;
          if (has_alibi) std::memcpy(&hs.slopes[static_cast<size_t>(r)], b.alibi_slopes.at({h}), 4);
        }
        kernels::ItemRows& ir = hs.rows;
        ir.rows = rows;
        ir.d = d;
        ir.dv = dv;
        ir.q = hs.q.data();
        ir.pos = hs.pos.data();
        ir.slopes = has_alibi ? hs.slopes.data() : nullptr;
        ir.alibi_origin = q.context_len;
        ir.window = o.sliding_window;
        ir.softcap = o.softcap;
        ir.quantize_p = o.quantize_p_e4m3;
        ir.m = &maxes[static_cast<size_t>(w.out_slot)];
        ir.l = &sums[static_cast<size_t>(w.out_slot)];
        ir.acc = &acc[static_cast<size_t>(w.out_slot * dv)];
        std::fill(ir.m, ir.m + rows, kNegInf);
        std::fill(ir.l, ir.l + rows, 0.0f);
        std::fill(ir.acc, ir.acc + rows * dv, 0.0f);
        // Direct sources hand over their rows; others decode float tiles.
        hs.direct = kv.direct(w.kv_head, &ir.format, &ir.k_scale, &ir.v_scale);
        ir.channels =
            hs.direct && ir.format.per_channel ? kv.channels(w.kv_head) : ChannelVectors{};
        ir.channels_symmetric =
            ir.format.per_channel && kernels::channels_symmetric(ir.channels, d, dv);
        // Integer Q·K (int8 per-token-head rows): the query split once per item.
        // Only for decode-sized items: more rows than a register block read a
        // transposed float tile instead (attention_kernel_impl.inc, run).
        ir.q16 = nullptr;
        ir.q16_scale = nullptr;
        if (kernel.int16_query && rows <= kernels::kRowBlock && hs.direct &&
            ir.format.encoding == RowEncoding::kI8 && ir.format.per_token_head &&
            !ir.format.per_channel && ir.format.round_to == 0 && d % 32 == 0 &&
            d <= kernels::kMaxInt16QueryD) {
          hs.q16.resize(static_cast<size_t>(2 * rows * d));
          hs.q16_scale.resize(static_cast<size_t>(rows));
          if (kernels::quantize_query_i16(hs.q.data(), rows, d, hs.q16.data(),
                                          hs.q16_scale.data())) {
            ir.q16 = hs.q16.data();
            ir.q16_scale = hs.q16_scale.data();
          }
        }
        if (hs.direct && w.k_begin < w.k_end)
          kv.rows(w.seq, w.k_begin, std::min(kKeyTile, w.k_end - w.k_begin), w.kv_head, hs.krows[0],
                  hs.vrows[0]);
      }
      // Every head of a task has the same key segment.
      const WorkItem& w0 = items[task.first];
      for (int64_t t0 = w0.k_begin; t0 < w0.k_end; t0 += kKeyTile) {
        const int64_t n = std::min(kKeyTile, w0.k_end - t0);
        const int64_t t1 = t0 + kKeyTile,
                      n1 = std::max<int64_t>(0, std::min(kKeyTile, w0.k_end - t1));
        const size_t cur = static_cast<size_t>((t0 - w0.k_begin) / kKeyTile % 2);
        for (int64_t hh = 0; hh < task.heads; ++hh) {
          const WorkItem& w = items[task.first + static_cast<size_t>(hh) * task.stride];
          HeadState& hs = heads[static_cast<size_t>(hh)];
          kernels::KeyTile tile;
          tile.first = t0;
          tile.n = n;
          if (hs.direct) {
            // This tile's row pointers came with the previous one (double
            // buffered), so the kernel can prefetch the next tile's rows.
            if (n1 > 0) kv.rows(w.seq, t1, n1, w.kv_head, hs.krows[1 - cur], hs.vrows[1 - cur]);
            tile.k = hs.krows[cur];
            tile.v = hs.vrows[cur];
            tile.next_n = n1;
            tile.next_k = hs.krows[1 - cur];
            tile.next_v = hs.vrows[1 - cur];
            tile.k_bytes = tile.v_bytes = row_bytes;
          } else {
            kbuf.resize(static_cast<size_t>(kKeyTile * d));
            vbuf.resize(static_cast<size_t>(kKeyTile * dv));
            kv.load(w.seq, t0, n, w.kv_head, kbuf.data(), vbuf.data());
            for (int64_t i = 0; i < n; ++i) {
              hs.krows[0][i] =
                  reinterpret_cast<const unsigned char*>(&kbuf[static_cast<size_t>(i * d)]);
              hs.vrows[0][i] =
                  reinterpret_cast<const unsigned char*>(&vbuf[static_cast<size_t>(i * dv)]);
            }
            tile.k = hs.krows[0];
            tile.v = hs.vrows[0];
          }
          kernel.tile(hs.rows, tile, scratch.data());
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
        m = std::max(m, maxes[static_cast<size_t>(items[k].out_slot + r)]);
      float sink = kNegInf;
      if (has_sinks) {
        std::memcpy(&sink, b.sinks.at({h}), 4);
        m = std::max(m, sink);
      }
      float l = has_sinks ? std::exp(sink - m) : 0.0f;
      std::fill(merged.begin(), merged.end(), 0.0f);
      for (size_t k = it; k < end; ++k) {
        const auto slot = static_cast<size_t>(items[k].out_slot + r);
        if (maxes[slot] == kNegInf) continue;
        const float f = std::exp(maxes[slot] - m);
        l += sums[slot] * f;
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
