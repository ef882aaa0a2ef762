// Where the attention core's keys come from (paged_attention.hpp): the paged
// cache read in place in its RowFormat, or the batch's own float K/V.
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/paged_attention.hpp"
#include "kvq_sdk/plugin.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace kvq::sdk {

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
      format_(format),
      k_scales_(std::move(k_scales)),
      v_scales_(std::move(v_scales)) {
  check_scales(batch, k_scales_, v_scales_);
}

PagedKvSource::PagedKvSource(const ForwardBatch& batch, ChannelVectors channels)
    : batch_(batch),
      format_{RowEncoding::kI8, false, KVQ_DTYPE_BF16, true},
      k_scales_{1.0f},
      v_scales_{1.0f},
      channels_(channels) {
  if (batch.cache.geometry().element_dtype != KVQ_DTYPE_I8)
    fail(KVQ_ERR_INTERNAL, "per-channel rows need an int8 cache");
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
    const ChannelVectors ch = channels(kv_head);
    decode_format(format_, kr, d, ks, k + i * d, ch.k_offset, ch.k_scale);
    decode_format(format_, vr, dv, vs, v + i * dv, ch.v_offset, ch.v_scale);
  }
}

bool PagedKvSource::direct(int64_t kv_head, RowFormat* format, float* k_scale_out,
                           float* v_scale_out) const {
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

}  // namespace kvq::sdk
