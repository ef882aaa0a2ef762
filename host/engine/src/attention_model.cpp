#include "attention_model.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "kvq_files/dtype.hpp"
#include "kvq_files/edit_distance.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

// Explains a layer_create refusal in terms of the deployment file.
[[noreturn]] void explain_layer_refusal(const PluginError& error, const Plugin& plugin,
                                        const Deployment& deployment, const std::string& kv_mode,
                                        const std::string& kv_mode_origin) {
  const BackendInfo* backend = plugin.info().find_backend(deployment.backend);
  if (backend == nullptr) {
    std::vector<std::string> names;
    for (const auto& b : plugin.info().backends) names.push_back(b.name);
    std::string message = fmt::format(
        "backend '{}' is not offered by plugin '{}' (it offers: {})", deployment.backend,
        plugin.info().name,
        names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", ")));
    if (auto suggestion = nearest_candidate(deployment.backend, names)) {
      message += fmt::format("; did you mean '{}'?", *suggestion);
    }
    throw DeploymentError(deployment.locations.backend, message + "\n  " + error.what());
  }
  std::vector<std::string> modes;
  bool mode_listed = false;
  for (const auto& m : backend->kv_modes) {
    if (m.supported) modes.push_back(m.name);
    if (m.name == kv_mode) mode_listed = true;
  }
  if (!mode_listed || error.code() == KVQ_ERR_UNSUPPORTED) {
    throw DeploymentError(
        deployment.kv_cache.dtype.empty() ? deployment.locations.checkpoint
                                          : deployment.locations.kv_cache_dtype,
        fmt::format("backend '{}' refused {} '{}' (supported modes: {})\n  {}", deployment.backend,
                    kv_mode_origin, kv_mode, fmt::join(modes, ", "), error.what()));
  }
  // The mode is fine, so the plugin objects to the layer's geometry.
  const ModelSection& model = *deployment.model;
  throw DeploymentError(
      deployment.locations.backend,
      fmt::format("backend '{}' refused the layer shape (num_heads {}, num_kv_heads {}, head_size "
                  "{}, dtype {}, kv_cache.block_size {})\n  {}",
                  deployment.backend, model.num_heads, model.num_kv_heads, model.head_size,
                  model_dtype_name(model.dtype), deployment.kv_cache.block_size, error.what()));
}

client::LayerConfig layer_config(const Deployment& deployment, const ModelShape& shape,
                                 int64_t index, const std::string& name,
                                 const std::string& kv_mode) {
  client::LayerConfig config;
  config.backend = deployment.backend;
  config.layer_name = name;
  config.kv_cache_dtype = kv_mode;
  config.model_dtype = shape.dtype;
  config.layer_index = static_cast<int32_t>(index);
  config.num_heads = shape.num_heads;
  config.num_kv_heads = shape.num_kv_heads;
  config.head_size = shape.head_size;
  config.head_size_v = shape.head_size_v;
  config.block_size = deployment.kv_cache.block_size;
  config.softmax_scale = 0.0;  // 1/sqrt(head_size)
  config.tp_rank = shape.tp_rank;
  config.tp_size = shape.tp_size;
  return config;
}

// The engine generates per-head K and V for a K+V paged cache; a layer whose
// scheme made its cache keys-only (FAKQuant's MLA latent, INT8_DYNAMIC's
// indexer keys) needs inputs it cannot produce, so the run stops here.
void refuse_keys_only_layer(const Layer& layer, const CheckpointLayerPlan& plan,
                            const Deployment& deployment) {
  const kvq_cache_geometry geometry = layer.cache_geometry();
  if (geometry.layout == KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD) return;
  const LayerInfo info = layer.info();
  throw DeploymentError(
      deployment.locations.checkpoint,
      fmt::format("not supported: scheme {} (chosen by {}) turned layer {} into '{}' with the "
                  "keys-only KV cache '{}' (an MLA latent or sparse-attention indexer cache). "
                  "kvq run drives standard attention layers only: it generates per-head queries, "
                  "keys and values for a K+V paged cache, not MLA latents, absorbed queries or "
                  "indexer queries. The checkpoint loaded; serve a C8 or fp8 checkpoint, or a "
                  "model section, instead",
                  info.scheme.empty() ? plan.scheme : info.scheme, plan.scheme_source, layer.name(),
                  info.impl_name, info.kv_cache_dtype));
}

}  // namespace

std::string attention_layer_name(int64_t index) {
  return fmt::format("model.layers.{}.self_attn.attn", index);
}

AttentionModel::AttentionModel(const Plugin& plugin, const Deployment& deployment,
                               const ModelShape& shape, const Checkpoint* checkpoint)
    : fp8_query_(plugin) {
  for (int64_t i = 0; i < shape.num_layers; ++i) {
    const std::string name = attention_layer_name(i);
    std::optional<CheckpointLayerPlan> plan;
    std::string kv_mode = deployment.kv_cache.dtype;
    std::string kv_mode_origin = "kv_cache.dtype";
    if (checkpoint != nullptr) {
      plan = plan_checkpoint_layer(plugin, deployment.backend, *checkpoint, i,
                                   deployment.kv_cache.dtype);
      kv_mode = plan->create_mode;
      if (deployment.kv_cache.dtype.empty())
        kv_mode_origin = "the KV cache mode chosen by " + plan->scheme_source;
    }
    client::LayerConfig config = layer_config(deployment, shape, i, name, kv_mode);
    // MLA checkpoints: the value is the latent (kv_lora_rank wide).
    if (checkpoint != nullptr) config.head_size_v = checkpoint->config().head_size_v();
    try {
      layers_.push_back(plugin.create_layer(config));
    } catch (const PluginError& error) {
      explain_layer_refusal(error, plugin, deployment, kv_mode, kv_mode_origin);
    }
    if (plan) {
      const CheckpointLoadReport report = load_checkpoint_weights(
          plugin, layers_.back(), *checkpoint, i, *plan,
          CheckpointLoadOptions{shape.tp_rank, shape.tp_size, shape.num_heads, shape.dtype});
      refuse_keys_only_layer(layers_.back(), *plan, deployment);
      schemes_.push_back(report.scheme);
      if (i == 0 || report.scheme != schemes_.front()) {
        spdlog::info("{}: scheme {} ({}), {} parameter(s) loaded from {}", name,
                     report.scheme.empty() ? "none" : report.scheme, plan->scheme_source,
                     report.loaded_params.size(), checkpoint->dir().string());
      }
    } else {
      schemes_.emplace_back();
    }
  }

  if (deployment.kv_cache.query_dtype == "fp8") {
    for (const auto& layer : layers_) {
      try {
        fp8_queries_.push_back(Fp8Query::for_layer(layer, shape.num_heads, shape.num_kv_heads));
      } catch (const Error& e) {
        throw DeploymentError(deployment.locations.kv_cache_query_dtype, e.what());
      }
    }
    spdlog::info("fp8 query: e4m3 with q_scale {} (layer 0, head 0)",
                 fp8_queries_.front().scales().front());
  }

  sizing_.block_size = deployment.kv_cache.block_size;
  for (const auto& layer : layers_) {
    const kvq_cache_geometry geometry = layer.cache_geometry();
    if (geometry.block_size != deployment.kv_cache.block_size || geometry.bytes_per_block < 1) {
      throw Error(
          fmt::format("plugin '{}': cache_geometry of {} reports block_size {} and {} "
                      "bytes per block for a layer created with block_size {}",
                      plugin.info().name, layer.name(), geometry.block_size,
                      geometry.bytes_per_block, deployment.kv_cache.block_size));
    }
    sizing_.geometries.push_back(geometry);
    sizing_.bytes_per_block_all_layers += geometry.bytes_per_block;
  }

  if (deployment.kv_cache.num_blocks) {
    sizing_.num_blocks = *deployment.kv_cache.num_blocks;
  } else {
    const double budget = *deployment.kv_cache.memory_gib * 1024.0 * 1024.0 * 1024.0;
    sizing_.num_blocks = blocks_for_memory(budget, sizing_.bytes_per_block_all_layers);
    if (sizing_.num_blocks < 1) {
      throw DeploymentError(
          deployment.locations.kv_cache_size,
          fmt::format("kv_cache.memory_gib {} GiB holds no block: one block of all {} layers "
                      "takes {} bytes",
                      *deployment.kv_cache.memory_gib, shape.num_layers,
                      sizing_.bytes_per_block_all_layers));
    }
  }
  sizing_.total_bytes = sizing_.num_blocks * sizing_.bytes_per_block_all_layers;

  for (size_t i = 0; i < layers_.size(); ++i) {
    caches_.emplace_back(plugin, sizing_.num_blocks, sizing_.geometries[i]);
    layers_[i].cache_init(caches_.back().tensor());
  }
  spdlog::info("KV cache: {} blocks x {} tokens, {:.1f} bytes per token over {} layers, {:.3f} GiB",
               sizing_.num_blocks, sizing_.block_size, sizing_.bytes_per_token(), layers_.size(),
               static_cast<double>(sizing_.total_bytes) / (1024.0 * 1024.0 * 1024.0));
}

void AttentionModel::run_layer(int64_t index, StepBatch& batch) {
  Layer& layer = layers_[static_cast<size_t>(index)];
  const kvq_tensor& cache = caches_[static_cast<size_t>(index)].tensor();
  layer.cache_write(batch.cache_write_args(cache));
  client::ForwardArgs args = batch.forward_args(cache);
  if (!fp8_queries_.empty()) {
    fp8_queries_[static_cast<size_t>(index)].quantize(batch.query(), fp8_query_);
    args.query(fp8_query_.view());
  }
  layer.forward(args);
  batch.download_output();
}

}  // namespace kvq::host
