// The attention core shared by every backend: causal (bottom-right aligned)
// GQA attention over a batch that mixes decodes and prefill chunks, with
// sliding window, softcap, ALiBi and sinks, fp32 accumulation and an online
// softmax. Keys come from a KvSource, so the same core reads a paged cache in
// any storage mode or the batch's own float K/V.
//
// Work is split into items (sequence, KV head, query chunk, key segment).
// All query heads of a GQA group share an item, so each K/V tile is decoded
// once for the whole group. When few sequences decode (max_query_len == 1),
// the key range is split into segments that run on different threads; their
// partial results are merged by their maxima and exp-sums (vLLM's "3D" path).
//
// The per-tile math (Q·K for every row of an item against a tile of keys,
// online softmax, P·V) runs in kernels compiled for AVX-512, AVX2+FMA and
// portable C++, one chosen per process (cpu.hpp: simd_choice()). Sources in
// a RowFormat are read in place: the kernels dequantize in registers.
// Decode tasks on a paged cache (PagedRows) take a block-streaming kernel
// instead, when it has a codec for the format: each cache block is read
// once, front to back, for all KV heads and their query rows.
#pragma once

#include "kvq_sdk/batch.hpp"

#include <cstdint>
#include <vector>

namespace kvq::sdk {

struct LayerConfig;

// How a cache row stores its elements, for sources whose rows the attention
// kernels read in place (dequantizing in registers instead of through a
// float tile). Each element's value is element * scale, where scale is the
// row's inline fp32 (per_token_head: stored right after the elements) or the
// source's per-tensor / per-KV-head scale; with round_to set, that product is
// rounded to bf16 or fp16 (fp8 per-tensor K/V for a bf16/fp16 query).
// per_channel (Ascend C8, int8 only): element c of a KV head's row is
// bf16(bf16(q - offset[c]) * scale[c]) with the source's channel vectors.
// kU4 (per_token_head only): two unsigned 4-bit codes per byte, the even
// element in the low nibble; the row's (n + 1) / 2 bytes are followed by an
// fp32 scale and an fp32 zero point, value = (code - zero_point) * scale.
enum class RowEncoding { kF32, kBF16, kF16, kI8, kE4M3, kE5M2, kU4 };
struct RowFormat {
  RowEncoding encoding = RowEncoding::kF32;
  bool per_token_head = false;
  int32_t round_to = 0;  // 0, KVQ_DTYPE_BF16 or KVQ_DTYPE_F16
  bool per_channel = false;
};

// Per-channel dequantization vectors (RowFormat::per_channel): bf16 values
// as floats, [num_kv_heads][head_size] for K, [num_kv_heads][head_size_v]
// for V; from channels(), those of one KV head.
struct ChannelVectors {
  const float* k_offset = nullptr;
  const float* k_scale = nullptr;
  const float* v_offset = nullptr;
  const float* v_scale = nullptr;
};
// The format of a cache element dtype (F32/BF16/F16; I8/E4M3 per-token-head;
// E4M3/E5M2 per-tensor), or INTERNAL for one the kernels cannot read.
RowFormat row_format(int32_t element_dtype, bool per_token_head, int32_t round_to = 0);

// A paged cache read in place, as kernels that stream whole cache blocks
// (decode) see it: the batch's cache and block table, the row format and the
// per-tensor scales (one value, or one per KV head).
struct PagedRows {
  const ForwardBatch* batch = nullptr;
  RowFormat format;
  const std::vector<float>* k_scales = nullptr;
  const std::vector<float>* v_scales = nullptr;
  ChannelVectors channels;  // per_channel: every KV head's vectors
};

class KvSource {
 public:
  virtual ~KvSource() = default;
  // Decodes keys [first, first + n) of sequence `seq`, KV head `kv_head`:
  // k -> [n][head_size], v -> [n][head_size_v] floats.
  virtual void load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
                    float* v) const = 0;
  // Sources stored in a RowFormat: true, with the format and the per-tensor
  // scales of `kv_head`; then rows() gives the rows in place. Others: false,
  // and the core decodes tiles through load().
  virtual bool direct(int64_t /*kv_head*/, RowFormat* /*format*/, float* /*k_scale*/,
                      float* /*v_scale*/) const {
    return false;
  }
  // The channel vectors of `kv_head` (direct per_channel sources only).
  virtual ChannelVectors channels(int64_t /*kv_head*/) const { return {}; }
  // The K and V rows of keys [first, first + n) (direct sources only).
  virtual void rows(int64_t /*seq*/, int64_t /*first*/, int64_t /*n*/, int64_t /*kv_head*/,
                    const unsigned char** /*k*/, const unsigned char** /*v*/) const {}
  // Direct sources over a paged cache: true, with the description above.
  virtual bool paged_rows(PagedRows* /*out*/) const { return false; }
};

// Keys from the paged cache through the batch's block table.
class PagedKvSource final : public KvSource {
 public:
  // Rows in `format`, read in place by the kernels. k_scales / v_scales: one
  // tensor-wide value or one per KV head (per-token-head rows use their own).
  PagedKvSource(const ForwardBatch& batch, RowFormat format, std::vector<float> k_scales = {1.0f},
                std::vector<float> v_scales = {1.0f});
  // Per-channel rows (C8): int8 elements dequantized with `channels`, whose
  // vectors cover every KV head and must outlive the source.
  PagedKvSource(const ForwardBatch& batch, ChannelVectors channels);
  void load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
            float* v) const override;
  bool direct(int64_t kv_head, RowFormat* format, float* k_scale, float* v_scale) const override;
  ChannelVectors channels(int64_t kv_head) const override;
  void rows(int64_t seq, int64_t first, int64_t n, int64_t kv_head, const unsigned char** k,
            const unsigned char** v) const override;
  bool paged_rows(PagedRows* out) const override;

 private:
  float k_scale(int64_t kv_head) const;
  float v_scale(int64_t kv_head) const;
  const ForwardBatch& batch_;
  RowFormat format_;
  std::vector<float> k_scales_, v_scales_;
  ChannelVectors channels_;
};

// Keys from the forward call's float key/value (the batch's new tokens):
// key j of sequence s is row query_start + j - context_len, so only the new
// tokens exist; callers check require_no_context for the sequences they read.
class BatchKvSource final : public KvSource {
 public:
  explicit BatchKvSource(const ForwardBatch& batch);  // INVALID_ARGUMENT without key/value
  // INVALID_ARGUMENT unless every sequence (prefills_only: every sequence with
  // more than one query token) has no prior context.
  static void require_no_context(const ForwardBatch& batch, bool prefills_only = false);
  void load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
            float* v) const override;

 private:
  const ForwardBatch& batch_;
};

struct AttentionOptions {
  float softmax_scale = 0.0f;  // 0 = 1/sqrt(head_size)
  int64_t sliding_window = 0;
  float softcap = 0.0f;
  int num_threads = 1;
  int num_splits = 0;  // key segments per decode item; 0 = choose by load
  // FP8 query path (spec/triton_sim.md §4): queries are multiplied by
  // query_scales[h], the softmax numerators P are rounded to e4m3 before the
  // P·V product, and outputs are multiplied by output_scales[h]. Empty = 1;
  // one value = every head.
  std::vector<float> query_scales;
  bool quantize_p_e4m3 = false;
  std::vector<float> output_scales;
};

// Computes batch.output for every query row.
void paged_attention(const LayerConfig& config, const ForwardBatch& batch, const KvSource& kv,
                     const AttentionOptions& options);

// Options from the layer config (scale, window, softcap) and the instance's threads.
AttentionOptions attention_options(const LayerConfig& config, int num_threads);

}  // namespace kvq::sdk
