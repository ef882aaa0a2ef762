// The plugin framework: what a plugin defines (backends, KV modes, schemes,
// weight loaders) and the objects the ABI hands out (Instance, Layer). A
// layer dispatches through its LayerImpl; a scheme may replace the impl — the
// "class upgrade" of spec/ascend.md §1.
#pragma once

#include "kvq_sdk/batch.hpp"
#include "kvq_sdk/device.hpp"
#include "kvq_sdk/tensor.hpp"

#include <kvq_abi.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvq::sdk {

class Layer;
class Instance;

using Options = std::vector<std::pair<std::string, std::string>>;
const std::string* find_option(const Options& options, std::string_view key);
// An integer option in [min, max], `fallback` when absent; anything else is
// INVALID_ARGUMENT "<owner> option <key> = '<text>' is not an integer in min..max".
int64_t int_option(const Options& options, std::string_view key, int64_t fallback, int64_t min,
                   int64_t max, std::string_view owner);

struct LayerConfig {
  std::string backend, layer_name, kv_cache_dtype;
  int32_t model_dtype = 0;
  int32_t layer_index = 0;
  int64_t num_heads = 0, num_kv_heads = 0, head_size = 0, head_size_v = 0, block_size = 0;
  double softmax_scale = 0.0;
  int64_t sliding_window = 0;
  double softcap = 0.0;
  int32_t tp_rank = 0, tp_size = 1;
  Options options;
};

// A declared parameter: raw little-endian bytes of `dtype` in `shape`.
struct Param {
  std::string name;    // full name: layer_name + "." + local name
  std::string loader;  // "" = derived, not loadable
  int32_t dtype = KVQ_DTYPE_F32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;
  bool trainable = false;
  bool derived = false;
  bool loaded = false;
  int32_t role = KVQ_PARAM_ROLE_OTHER;  // KVQ_PARAM_ROLE_*
  std::string load_shapes;              // checkpoint shapes the loader accepts (kvq_param_info)

  int64_t numel() const;
  float get(int64_t i) const;
  void set(int64_t i, float v);
  void reshape(std::vector<int64_t> new_shape);  // resets values to zero
  std::string shape_string() const;
};

// A weight loader: fills `param` of a layer configured as `layer` from a
// checkpoint tensor, for this TP rank/size.
using WeightLoader =
    std::function<void(Param& param, const TensorView& loaded, const LayerConfig& layer,
                       int32_t tp_rank, int32_t tp_size)>;

// One layer's implementation table (vLLM's AttentionImpl).
class LayerImpl {
 public:
  virtual ~LayerImpl() = default;
  // A string literal: layer_info hands it out for the layer's lifetime.
  virtual const char* name() const = 0;
  virtual kvq_cache_geometry geometry(const Layer& layer) const = 0;
  // Called when the impl becomes the layer's (creation or class upgrade):
  // declare the parameters this implementation reads.
  virtual void attach(Layer& layer);
  // Zeroes the cache; per-token-head layouts also set every inline scale to 1.0.
  virtual void cache_init(const Layer& layer, const CacheView& cache) const;
  virtual void cache_write(Layer& layer, const WriteBatch& batch) = 0;
  // Default: queries and outputs in the model dtype, output [T, num_heads, head_size_v].
  virtual ForwardSpec forward_spec(const Layer& layer) const;
  // Beyond the shared validation: UNSUPPORTED (with the reason) for batches
  // this implementation cannot run.
  virtual void check_forward(const Layer& layer, const ForwardBatch& batch) const;
  virtual void forward(Layer& layer, const ForwardBatch& batch) = 0;
  virtual void process_weights(Layer& layer);
};

constexpr uint32_t kAllAttentionStates =
    (1u << KVQ_ATTN_PREFILL_NO_CACHE) | (1u << KVQ_ATTN_PREFILL_CACHE_HIT) |
    (1u << KVQ_ATTN_DECODE_ONLY) | (1u << KVQ_ATTN_CHUNKED_PREFILL) |
    (1u << KVQ_ATTN_SPEC_DECODING);

struct ModeDefinition {
  std::string name;
  std::string description;
  int32_t element_dtype = 0;  // 0 = the model dtype
  bool supported = false;
  bool per_token_head = false;
  bool needs_scheme = false;
};

// A layer option a backend reads (kvq_option_info).
struct OptionDefinition {
  std::string name;
  std::string description;
  std::string default_value;
  std::string kv_modes;  // space-separated modes that read it; "" = every mode
};

struct BackendDefinition {
  std::string name;
  std::string description;
  std::vector<ModeDefinition> modes;
  std::vector<OptionDefinition> options;            // layer options this backend reads
  uint32_t attention_states = kAllAttentionStates;  // bit (1 << KVQ_ATTN_x) per accepted state
  // Maps a user's kv_cache_dtype string to a mode name of `modes`; throws
  // INVALID_ARGUMENT for an unknown string.
  std::function<std::string(std::string_view user_string)> resolve_mode;
  // Geometry rules of the backend (block/head sizes); throws INVALID_ARGUMENT.
  std::function<void(const LayerConfig&, const ModeDefinition&)> validate;
  std::function<std::unique_ptr<LayerImpl>(const LayerConfig&, const ModeDefinition&)> make_impl;
};

struct NameRule {
  std::string checkpoint_suffix;
  std::string param_suffix;
};

struct SchemeDefinition {
  std::string quant_type;
  std::string layer_type;
  std::string backend;  // the backend whose layers it applies to
  std::string description;
  bool supported = true;
  std::vector<NameRule> name_rules;
  // vLLM's create_weights: declares parameters, may upgrade the layer.
  std::function<void(Layer&, const Options&)> create_weights;
  // vLLM's QuantizeMethod.apply; empty = the backend does the work (error).
  std::function<void(Layer&)> apply;
  std::function<void(Layer&)> process_weights;
};

class SchemeRegistry {
 public:
  // Throws ALREADY_EXISTS for a duplicate (quant_type, layer_type).
  void add(SchemeDefinition scheme);
  const SchemeDefinition* find(std::string_view quant_type, std::string_view layer_type) const;
  const std::deque<SchemeDefinition>& all() const { return schemes_; }

 private:
  std::deque<SchemeDefinition> schemes_;
};

struct PluginDefinition {
  std::string name;
  std::string version;
  std::string vendor;
  std::vector<BackendDefinition> backends;
  SchemeRegistry schemes;
  std::map<std::string, WeightLoader> loaders;  // by Param::loader
  // Optional: the quant_type chosen for a layer by a checkpoint's quantization
  // description ("" = none). Arguments: text, source name, layer prefix, layer type.
  std::function<std::string(std::string_view, std::string_view, std::string_view, std::string_view)>
      select_scheme;
  // ABI 1.1: a device plugin opens the device of the negotiated ordinal
  // (OUT_OF_RANGE for one it does not have); empty for a CPU plugin. Its
  // entry returns device_plugin_api() (abi_export.hpp).
  std::function<std::unique_ptr<Device>(int32_t ordinal)> open_device;
  // Optional, for the probe (callable before negotiate): why this plugin
  // cannot run on this machine (e.g. "no CUDA device"), or "" when it can.
  std::function<std::string()> unavailable_reason;
};

// Defined by each plugin: its (immutable) definition.
const PluginDefinition& plugin_definition();

// The loader for parameters without special rules: squeezes size-1
// dimensions of both sides, requires equal shapes, converts the dtype.
void default_weight_loader(Param& param, const TensorView& loaded, const LayerConfig& layer,
                           int32_t tp_rank, int32_t tp_size);

// Routes plugin messages to the host's callback (never stdout/stderr).
class Logger {
 public:
  Logger() = default;
  Logger(kvq_log_fn fn, void* user_data, int32_t level)
      : fn_(fn), user_data_(user_data), level_(level) {}
  void log(int32_t level, const std::string& message) const {
    if (fn_ != nullptr && level >= level_) fn_(user_data_, level, message.c_str());
  }

 private:
  kvq_log_fn fn_ = nullptr;
  void* user_data_ = nullptr;
  int32_t level_ = KVQ_LOG_INFO;
};

class Instance {
 public:
  Instance(const PluginDefinition& def, const kvq_host_info& host, uint32_t negotiated_minor);
  Instance(const Instance&) = delete;  // info_ points into this object
  Instance& operator=(const Instance&) = delete;
  const PluginDefinition& definition() const { return def_; }
  const Logger& logger() const { return logger_; }
  int num_threads() const { return num_threads_; }
  const kvq_plugin_info& info() const { return info_; }
  // The session's device (nullptr for a CPU plugin) and its memory space.
  Device* device() const { return device_.get(); }
  MemorySpace memory_space() const { return MemorySpace{device_.get()}; }

 private:
  const PluginDefinition& def_;
  Logger logger_;
  int num_threads_;
  std::unique_ptr<Device> device_;
  std::string device_name_;
  std::deque<kvq_option_info> option_infos_;
  std::deque<std::vector<const kvq_option_info*>> option_lists_;
  // C views of the definition, owned here so they live as long as the instance.
  std::deque<kvq_kv_mode_info> mode_infos_;
  std::deque<std::vector<const kvq_kv_mode_info*>> mode_lists_;
  std::deque<kvq_backend_info> backend_infos_;
  std::vector<const kvq_backend_info*> backend_list_;
  std::deque<kvq_name_rule> rule_infos_;
  std::deque<std::vector<const kvq_name_rule*>> rule_lists_;
  std::deque<kvq_scheme_info> scheme_infos_;
  std::vector<const kvq_scheme_info*> scheme_list_;
  std::string simd_level_, cpu_features_;
  kvq_plugin_info info_{};
};

class Layer {
 public:
  Layer(const Instance& instance, const BackendDefinition& backend, LayerConfig config,
        const ModeDefinition& mode);
  Layer(const Layer&) = delete;  // implementations may keep references to their layer
  Layer& operator=(const Layer&) = delete;

  const Instance& instance() const { return instance_; }
  MemorySpace memory_space() const { return instance_.memory_space(); }
  const LayerConfig& config() const { return config_; }
  const BackendDefinition& backend() const { return backend_; }
  const ModeDefinition& mode() const { return *mode_; }
  // The backend's mode named `name` (INTERNAL if absent: a plugin bug).
  const ModeDefinition& backend_mode(std::string_view name) const;
  LayerImpl& impl() const { return *impl_; }
  const SchemeDefinition* scheme() const { return scheme_; }

  // The class upgrade: from now on the layer dispatches through `next`, with
  // the cache mode `mode` (e.g. "int8" for C8).
  void upgrade(std::unique_ptr<LayerImpl> next, const ModeDefinition& mode);
  void set_scheme(const SchemeDefinition* scheme) { scheme_ = scheme; }

  Param& declare(Param param);  // name is local; the layer prefixes it
  Param* find_param(std::string_view full_name);
  const Param* find_param(std::string_view full_name) const;
  Param& param(std::string_view local_name);  // FAILED_PRECONDITION if missing
  const Param& param(std::string_view local_name) const;
  const std::deque<Param>& params() const { return params_; }
  kvq_cache_geometry geometry() const { return impl_->geometry(*this); }
  std::string full_name(std::string_view local) const;

 private:
  const Instance& instance_;
  const BackendDefinition& backend_;
  LayerConfig config_;
  const ModeDefinition* mode_;
  std::unique_ptr<LayerImpl> impl_;
  const SchemeDefinition* scheme_ = nullptr;
  std::deque<Param> params_;  // deque: names stay valid as parameters are added
};

// Standard geometry for the block/KV/slot/head layout: rows of
// max(D, Dv) elements plus 4 bytes of fp32 scale in per-token-head modes.
kvq_cache_geometry block_kv_slot_head_geometry(const LayerConfig& config, int32_t element_dtype,
                                               bool per_token_head);

}  // namespace kvq::sdk
