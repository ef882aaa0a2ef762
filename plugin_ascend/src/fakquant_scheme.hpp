// The FAKQuant attention scheme of vllm-ascend (spec/ascend.md §7, §3): MLA
// models (DeepSeek) with an int8 latent KV cache.
//
// apply_scheme reads the scheme options "kv_lora_rank" and "qk_rope_head_dim"
// (0 when absent; a value that is not an integer in 0..65536 is
// INVALID_ARGUMENT naming the key), requires num_kv_heads 1 and, when
// kv_lora_rank > 0, head_size == kv_lora_rank + qk_rope_head_dim and
// head_size_v == kv_lora_rank (INVALID_ARGUMENT naming the values, nothing
// changed). It declares fa_q.{scale,offset} [num_heads, 1] and
// fa_k/fa_v.{scale,offset} [num_kv_heads, 1] (scales in the model dtype,
// offsets int8; loader "fa_quant"; scales 1, offsets 0 until loaded) and
// upgrades the layer to the MLA implementation with the cache mode
// "int8_latent". With kv_lora_rank 0 the upgrade still happens, but
// cache_write / forward answer UNSUPPORTED.
//
// process_weights (needs fa_k.scale loaded, finite and non-zero) derives
// fak_descale F32 [1] = fa_k.scale, fak_descale_reciprocal F32 [1] = 1 / it,
// fak_offset I8 [1] = fa_k.offset and quant_kscale F32 [1, kv_lora_rank] =
// 1 / scale repeated (float32 division). Re-running recomputes them from the
// current raw parameters.
//
// Name rules: checkpoint tensors model.layers.N.self_attn.fa_{q,k,v}.{scale,
// offset} load into the layer model.layers.N.self_attn.attn (vLLM's attention
// layer name, which the host uses), as the C8 and INT8_DYNAMIC rules do.
#pragma once

#include "kvq_sdk/plugin.hpp"

namespace kvq::ascend {

sdk::SchemeDefinition fakquant_scheme();

// The backend's "int8_latent" mode (reachable only through the scheme).
sdk::ModeDefinition fakquant_mode();

// The FA-quant loader (_fa_quant_weight_loader): when the parameter and the
// loaded tensor both hold one element, fill; else take this rank's shard
// along dim 0 (rows [shard * rank, shard * (rank + 1)), shard =
// loaded.shape[0] / tp_size), which must have the parameter's shape. The
// parameter keeps its dtype and shape.
void fa_quant_loader(sdk::Param& param, const sdk::TensorView& loaded,
                     const sdk::LayerConfig& layer, int32_t tp_rank, int32_t tp_size);

}  // namespace kvq::ascend
