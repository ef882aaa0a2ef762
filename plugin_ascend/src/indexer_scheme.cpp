#include "indexer_scheme.hpp"

#include "indexer_impl.hpp"

#include "kvq_sdk/error.hpp"

#include <memory>
#include <string>

namespace kvq::ascend {
namespace {

// A positive integer scheme option in [1, max]; `fallback` when absent.
int64_t int_option(const sdk::Options& options, const char* key, int64_t fallback, int64_t max) {
  return sdk::int_option(options, key, fallback, 1, max, "INT8_DYNAMIC scheme");
}

void create_weights(sdk::Layer& layer, const sdk::Options& options) {
  const sdk::LayerConfig& c = layer.config();
  const int64_t topk = int_option(options, "index_topk", 2048, kIndexerMaxTopk);
  const int64_t dim = int_option(options, "index_head_dim", 128, 4096);
  if (c.num_kv_heads != 1 || c.head_size != dim)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "INT8_DYNAMIC indexer layer {} needs num_kv_heads 1 and head_size == index_head_dim "
              "{}; the layer has num_kv_heads {} and head_size {}",
              c.layer_name, dim, c.num_kv_heads, c.head_size);
  for (const char* name : {kIndexerQRot, kIndexerKRot}) {
    sdk::Param p;
    p.name = name;
    p.loader = "default";
    p.dtype = KVQ_DTYPE_F32;
    p.reshape({dim, dim});  // all zero: "not loaded" (Param::loaded says which)
    layer.declare(std::move(p));
  }
  // The class upgrade: the layer becomes the indexer (keys-only int8 cache).
  layer.upgrade(std::make_unique<IndexerImpl>(topk), layer.backend_mode("int8_indexer"));
}

}  // namespace

sdk::SchemeDefinition indexer_scheme() {
  sdk::SchemeDefinition s;
  s.quant_type = "INT8_DYNAMIC";
  s.layer_type = "attention";
  s.backend = "ascend";
  s.description =
      "sparse-attention lightning indexer: rotated keys in a dynamic per-token int8 cache, "
      "top-k key positions per query token (upgrades the layer to the indexer)";
  // Checkpoint tensors ...self_attn.indexer.{q,k}_rot load into the layer
  // ...self_attn.attn (the naming of the C8 rules).
  s.name_rules = {{".self_attn.indexer.q_rot", ".self_attn.attn.indexer.q_rot"},
                  {".self_attn.indexer.k_rot", ".self_attn.attn.indexer.k_rot"}};
  s.create_weights = create_weights;
  return s;
}

sdk::ModeDefinition indexer_mode() {
  return {"int8_indexer",
          "INT8_DYNAMIC indexer keys: rotated, int8 per token + fp16 scale (set by the "
          "INT8_DYNAMIC scheme)",
          KVQ_DTYPE_I8,
          true,
          false,
          true};
}

}  // namespace kvq::ascend
