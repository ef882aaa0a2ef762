// The INT8_DYNAMIC scheme of vllm-ascend (spec/ascend.md §8): the DeepSeek-V3.2
// sparse-attention "lightning indexer" with a dynamic int8 key cache.
// Applying it reads the scheme options "index_topk" (default 2048) and
// "index_head_dim" (default 128), declares indexer.q_rot / indexer.k_rot
// (float32 [index_head_dim, index_head_dim], loader "default", all zero until
// loaded) and upgrades the layer to the indexer implementation with the cache
// mode "int8_indexer". The layer must have num_kv_heads 1 and
// head_size == index_head_dim; num_heads is the indexer's head count.
#pragma once

#include "kvq_sdk/plugin.hpp"

namespace kvq::ascend {

sdk::SchemeDefinition indexer_scheme();

// The backend's "int8_indexer" mode (int8 keys + fp16 per-token scale,
// reachable only through the INT8_DYNAMIC scheme).
sdk::ModeDefinition indexer_mode();

}  // namespace kvq::ascend
