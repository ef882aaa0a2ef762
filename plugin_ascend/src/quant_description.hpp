// quant_model_description.json (spec/ascend.md §2, §7, §8): which attention
// scheme a layer gets, in vllm-ascend's order.
#pragma once

#include <string>
#include <string_view>

namespace kvq::ascend {

// Returns "FAKQuant", "INT8_DYNAMIC", "C8" or "" for the attention layer
// `layer_prefix` (e.g. "model.layers.0.self_attn"); other layer types get "".
// Order: fa_quant_type (FAKQuant wins when an indexer is also described),
// then the per-layer "<prefix>.indexer.quant_type" or the top-level
// indexer_quant_type, then kv_cache_type / kv_quant_type for every layer.
// Malformed JSON, an unknown quant type or contradictory keys throw
// INVALID_ARGUMENT naming `source` and the key.
std::string select_attention_scheme(std::string_view text, std::string_view source,
                                    std::string_view layer_prefix, std::string_view layer_type);

}  // namespace kvq::ascend
