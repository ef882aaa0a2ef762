// The model as the engine sees it: one plugin layer per attention layer and
// the host-owned paged KV cache behind them. Building it is steps 2-3 of
// spec/host.md (create layers, size and allocate the cache, cache_init);
// running a layer is cache_write then forward.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <vector>

#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/fp8_query.hpp"
#include "kvq_engine/kv_cache_buffer.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_engine/plugin_tensor.hpp"
#include "kvq_engine/step_batch.hpp"
#include "kvq_files/deployment.hpp"

namespace kvq::host {

struct KvCacheSizing {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t bytes_per_block_all_layers = 0;  // one block id in every layer
  int64_t total_bytes = 0;
  std::vector<kvq_cache_geometry> geometries;  // per layer

  int64_t tokens_fit() const { return num_blocks * block_size; }
  double bytes_per_token() const {
    return static_cast<double>(bytes_per_block_all_layers) / static_cast<double>(block_size);
  }
};

class AttentionModel {
 public:
  // Creates the layers (backend and KV mode from the deployment) and the KV
  // cache (in the plugin's memory space). Plugin refusals are rethrown naming the deployment line
  // of the value at fault (backend, kv_cache.dtype). With a checkpoint, each layer's scheme comes
  // from it (plan_checkpoint_layer) and its parameters are loaded from it before the cache is
  // sized; a layer the scheme turned into something the engine cannot drive (a keys-only cache: MLA
  // latent, sparse-attention indexer) is refused with a DeploymentError. With kv_cache.query_dtype
  // fp8 each layer's q_scale is read after loading.
  AttentionModel(const Plugin& plugin, const Deployment& deployment, const ModelShape& shape,
                 const Checkpoint* checkpoint = nullptr);

  // The layer's cache_write then forward over `batch` (which holds the
  // layer's Q/K/V; the query is quantized to e4m3 first with query_dtype
  // fp8), then the output is brought to the batch's host bytes. Throws
  // PluginError on a refusal.
  void run_layer(int64_t layer, StepBatch& batch);

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  const KvCacheSizing& sizing() const { return sizing_; }
  const Layer& layer(int64_t index) const { return layers_[static_cast<size_t>(index)]; }
  // The scheme applied to each layer ("" = none).
  const std::vector<std::string>& schemes() const { return schemes_; }

 private:
  // Declared before the layers, so the layers are destroyed while the cache
  // memory they were given is still there.
  std::vector<KvCacheBuffer> caches_;
  std::vector<Layer> layers_;
  std::vector<std::string> schemes_;
  std::vector<Fp8Query> fp8_queries_;  // per layer with query_dtype fp8, else empty
  PluginTensor fp8_query_;
  KvCacheSizing sizing_;
};

// "model.layers.{i}.self_attn.attn", vLLM's attention layer name.
std::string attention_layer_name(int64_t index);

}  // namespace kvq::host
