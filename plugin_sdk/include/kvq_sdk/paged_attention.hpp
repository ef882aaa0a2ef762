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
#pragma once

#include "kvq_sdk/batch.hpp"

#include <cstdint>
#include <vector>

namespace kvq::sdk {

struct LayerConfig;

class KvSource {
 public:
  virtual ~KvSource() = default;
  // Decodes keys [first, first + n) of sequence `seq`, KV head `kv_head`:
  // k -> [n][head_size], v -> [n][head_size_v] floats.
  virtual void load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
                    float* v) const = 0;
};

// Decodes n stored elements of one cache row into floats, times `scale`.
// Per-token-head decoders read the row's inline fp32 scale instead.
using RowDecoder = void (*)(const unsigned char* row, int64_t n, float scale, float* out);
RowDecoder row_decoder(int32_t element_dtype, bool per_token_head);

// Keys from the paged cache through the batch's block table.
class PagedKvSource final : public KvSource {
 public:
  // k_scales / v_scales: one tensor-wide value or one per KV head, passed
  // to the decoders (per-token-head decoders read the row's own scale).
  PagedKvSource(const ForwardBatch& batch, RowDecoder decode_k, RowDecoder decode_v,
                std::vector<float> k_scales = {1.0f}, std::vector<float> v_scales = {1.0f});
  void load(int64_t seq, int64_t first, int64_t n, int64_t kv_head, float* k,
            float* v) const override;

 private:
  const ForwardBatch& batch_;
  RowDecoder decode_k_, decode_v_;
  std::vector<float> k_scales_, v_scales_;
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
