// Checkpoint directories (spec/host.md step 2, spec/ascend.md §1-§4): the
// model shape from config.json, the quantization description from
// quant_model_description.json, and the KV-cache parameters from every
// *.safetensors file, loaded into plugin layers through the ABI (scheme
// selection, apply_scheme, name rules, param_load, process_weights).
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kvq_engine/plugin.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/safetensors.hpp"

namespace kvq::host {

inline constexpr const char* kCheckpointConfigFile = "config.json";
inline constexpr const char* kQuantDescriptionFile = "quant_model_description.json";
// The description key the host itself reads when the plugin chooses no
// scheme (e.g. a plugin without select_scheme): a KV-cache mode or scheme
// string such as "fp8", used when the deployment gives no kv_cache.dtype.
inline constexpr const char* kDescriptionKvCacheSchemeKey = "kv_cache_scheme";

// What config.json says about the attention layers (Hugging Face names).
struct CheckpointConfig {
  int64_t num_layers = 0;                   // num_hidden_layers
  int64_t num_heads = 0;                    // num_attention_heads
  int64_t num_kv_heads = 0;                 // num_key_value_heads (default: num_attention_heads)
  int64_t head_size = 0;                    // head_dim, or hidden_size / num_attention_heads
  ModelDtype dtype = ModelDtype::kBf16;     // torch_dtype (or dtype)
  std::optional<int64_t> kv_lora_rank;      // MLA (DeepSeek)
  std::optional<int64_t> qk_rope_head_dim;  // MLA
  std::optional<int64_t> index_head_dim;    // the sparse-attention indexer (DeepSeek-V3.2)
  std::optional<int64_t> index_topk;        // the indexer
  // kvq_activation_seed: the generator seed `kvq make-checkpoint` calibrated on.
  std::optional<uint64_t> activation_seed;

  // The value head size of an attention layer: kv_lora_rank for MLA (the
  // value is the latent, as vLLM's use_mla layers), head_size otherwise.
  int64_t head_size_v() const { return kv_lora_rank.value_or(0) > 0 ? *kv_lora_rank : head_size; }
};

class Checkpoint {
 public:
  // Reads config.json, the optional description and maps every *.safetensors
  // file (sorted by name). Throws Error naming the file at fault.
  static Checkpoint open(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const CheckpointConfig& config() const { return config_; }
  ModelSection model() const;  // the config as a deployment's model section

  // The text of quant_model_description.json, when the directory has one.
  const std::optional<std::string>& description() const { return description_; }
  std::filesystem::path description_path() const { return dir_ / kQuantDescriptionFile; }
  // The description's "kv_cache_scheme" string, or "".
  const std::string& description_kv_cache_scheme() const { return kv_cache_scheme_; }

  const std::vector<SafetensorsFile>& files() const { return files_; }
  // Options for apply_scheme from config.json: kv_lora_rank,
  // qk_rope_head_dim, index_head_dim and index_topk when present.
  SchemeOptions scheme_options() const;

 private:
  void check_layer_range() const;  // throws for a layer index beyond the model
  std::filesystem::path dir_;
  CheckpointConfig config_;
  std::optional<std::string> description_;
  std::string kv_cache_scheme_;
  std::vector<SafetensorsFile> files_;
};

// "model.layers.{i}.self_attn": the prefix select_scheme is asked about.
std::string attention_layer_prefix(int64_t index);

// How one attention layer is created and which scheme it gets.
struct CheckpointLayerPlan {
  std::string create_mode;    // kv_cache_dtype for layer_create
  std::string scheme;         // quant_type to apply ("" = none)
  std::string scheme_source;  // what chose it: the description's path or "kv_cache.dtype"
};

// Chooses a layer's scheme: the plugin's select_scheme over the description
// when both exist and the plugin reads descriptions; otherwise the
// deployment's kv_cache.dtype (`deployment_mode`, "" when omitted) unless it
// is "" or "auto", else the description's kv_cache_scheme, else "auto". A mode string that is also
// a supported attention scheme of the plugin is reached through apply_scheme on an "auto" layer;
// any other mode is passed to layer_create as is. Throws Error/PluginError (an unreadable
// description names file and key).
CheckpointLayerPlan plan_checkpoint_layer(const Plugin& plugin, const std::string& backend,
                                          const Checkpoint& checkpoint, int64_t index,
                                          const std::string& deployment_mode);

struct CheckpointLoadOptions {
  int32_t tp_rank = 0;
  int32_t tp_size = 1;
  // The layer's query heads (this rank's share) and model dtype, for the
  // readiness check after loading (a supports() call on a one-token decode).
  int64_t num_heads = 0;
  int32_t model_dtype = KVQ_DTYPE_BF16;
};

struct CheckpointLoadReport {
  std::string scheme;                            // "" = none applied
  std::vector<std::string> loaded_params;        // parameter names, in load order
  std::vector<std::string> loaded_from;          // "'tensor' from FILE -> parameter", same order
  std::vector<std::string> dropped_tensors;      // mapped names without a parameter
  std::vector<std::string> unloaded_parameters;  // loadable but absent from the checkpoint
};

// apply_scheme (with the checkpoint's scheme options), then every checkpoint
// tensor of the layer ("model.layers.{i}." names) mapped by the applied
// scheme's name rules (suffix replace; the longest matching suffix wins; a
// name that is already a parameter's loads as is) and param_load-ed into
// the parameter it names; a mapped name the layer does not declare is
// logged as a warning and dropped. Then process_weights and a readiness
// check (supports() on a one-token decode, for layers with a K+V cache).
// Any failure throws Error naming the checkpoint, the layer, and the file
// and tensor involved (after the loads: every tensor loaded); the layer is
// then unusable and the engine does not start (all-or-nothing).
CheckpointLoadReport load_checkpoint_weights(const Plugin& plugin, Layer& layer,
                                             const Checkpoint& checkpoint, int64_t index,
                                             const CheckpointLayerPlan& plan,
                                             const CheckpointLoadOptions& options);

// A layer built from a checkpoint in one call (plan, layer_create, load):
// this rank's share of the model's heads, KV heads replicated when the TP
// size exceeds them.
struct CheckpointLayerSpec {
  std::string backend;
  std::string kv_cache_dtype;  // as in a deployment ("" = from the checkpoint)
  int64_t block_size = 16;
  int32_t tp_rank = 0;
  int32_t tp_size = 1;
};
struct LoadedLayer {
  Layer layer;
  CheckpointLayerPlan plan;
  CheckpointLoadReport report;
};
LoadedLayer create_checkpoint_layer(const Plugin& plugin, const Checkpoint& checkpoint,
                                    int64_t index, const CheckpointLayerSpec& spec);

}  // namespace kvq::host
