// The MLA attention implementation behind the FAKQuant scheme (spec/ascend.md
// §7): an int8 latent cache with a bf16 rope part, decode attention with a
// dynamically quantized (per token and head) absorbed query.
//
// Cache (keys only, KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD, one latent "KV head"):
// [num_blocks][block_size][1][row_bytes], a row being
//   bytes [0, L)            the latent c_kv as int8:
//                           saturate(round_half_even(f32(c_kv) * quant_kscale[i]))
//   bytes [L, L + 2R)       the rope part k_pe as bf16 (little-endian, RNE)
// with L = kv_lora_rank, R = qk_rope_head_dim, row_bytes = L + 2R (no padding).
//
// Layer geometry: num_kv_heads 1, head_size L + R (key = c_kv ‖ k_pe, query =
// absorbed q_nope ‖ q_pe), head_size_v L (the output is the latent).
//
// Decode, per (token, head), with s_k = fak_descale:
//   sq = max|q_nope| / 127 (float32); q_int8 = clamp(rne(q_nope / sq)), or all
//   zero when max|q_nope| is 0 (the latent term of every score is then 0);
//   score_j = ((q_int8 · k_int8_j) * sq * s_k + q_pe · k_pe_j) * softmax_scale
//   over the keys j < seq_len; output = sum_j softmax_j * (k_int8_j * s_k).
// softmax_scale is the layer config's (0 = 1/sqrt(head_size)). Scores and
// sums are float32. A non-finite query element is NON_FINITE.
//
// Batches: DecodeOnly, and ChunkedPrefill / SpecDecoding whose sequences all
// have query_len <= 1; any other state or a longer query is UNSUPPORTED (a
// DecodeOnly batch with a longer query is malformed: INVALID_ARGUMENT, as in
// C8), as are ALiBi, sinks, sliding windows and softcap. check_forward says
// so, so supports() agrees with forward.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <cstdint>

namespace kvq::ascend {

// Derived parameters written by the FAKQuant scheme's process_weights and read
// by this implementation (local names).
inline constexpr const char* kFakDescale = "fak_descale";                       // F32 [1]
inline constexpr const char* kFakDescaleReciprocal = "fak_descale_reciprocal";  // F32 [1]
inline constexpr const char* kFakOffset = "fak_offset";      // I8 [1] (unused at decode)
inline constexpr const char* kQuantKscale = "quant_kscale";  // F32 [1, kv_lora_rank]

class MlaFakQuantImpl final : public sdk::LayerImpl {
 public:
  MlaFakQuantImpl(int64_t kv_lora_rank, int64_t qk_rope_head_dim)
      : lora_(kv_lora_rank), rope_(qk_rope_head_dim) {}
  const char* name() const override { return "ascend_mla_fakquant"; }
  kvq_cache_geometry geometry(const sdk::Layer& layer) const override;
  void cache_write(sdk::Layer& layer, const sdk::WriteBatch& batch) override;
  void check_forward(const sdk::Layer& layer, const sdk::ForwardBatch& batch) const override;
  void forward(sdk::Layer& layer, const sdk::ForwardBatch& batch) override;

  int64_t kv_lora_rank() const { return lora_; }
  int64_t qk_rope_head_dim() const { return rope_; }

 private:
  // UNSUPPORTED when kv_lora_rank is 0 (the scheme options lacked it).
  void require_latent(const sdk::Layer& layer) const;

  int64_t lora_, rope_;
};

// One latent element as stored: the float32 product x * quant_kscale rounded
// half to even and saturated to [-128, 127]. x must be finite.
int8_t fakquant_quantize_latent(float x, float quant_kscale);

}  // namespace kvq::ascend
