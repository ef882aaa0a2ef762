// Owned copies of what a plugin describes (get_info, probe, layer_info,
// param_info): plain strings and vectors, so a caller never keeps pointers
// into the plugin. Fields a plugin's record does not cover (a 1.0 plugin's
// records end before the 1.1 fields) keep the defaults given here.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvq::client {

struct KvModeInfo {
  std::string name;
  std::string description;
  int32_t element_dtype = 0;  // 0 = the model dtype
  bool supported = false;
  bool per_token_head = false;
  bool needs_scheme = false;
};

// 1.1: a key the backend accepts in kvq_layer_config.options.
struct OptionInfo {
  std::string name;
  std::string description;
  std::string default_value;
  std::string kv_modes;  // space-separated modes that read it; "" = every mode
};

struct BackendInfo {
  std::string name;
  std::string description;
  std::vector<KvModeInfo> kv_modes;
  uint32_t attention_states = 0;  // bit (1 << KVQ_ATTN_x) per state; 0 = not reported
  // 1.1; empty for a 1.0 plugin (which does not list its options).
  std::vector<OptionInfo> layer_options;
  bool lists_layer_options = false;  // the record covers the 1.1 option list

  const KvModeInfo* find_mode(const std::string& mode) const;
};

struct NameRule {
  std::string checkpoint_suffix;
  std::string param_suffix;
};

struct SchemeInfo {
  std::string quant_type;
  std::string layer_type;
  std::string description;
  bool supported = false;
  std::vector<NameRule> name_rules;
  std::string backend;  // 1.1: the backend whose layers it applies to; "" = not reported
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::string vendor;
  uint32_t abi_major = 0;
  uint32_t abi_minor = 0;         // the negotiated minor
  uint32_t plugin_abi_minor = 0;  // the highest minor the plugin implements (its table)
  std::string simd_level;
  std::string cpu_features;
  std::vector<BackendInfo> backends;
  std::vector<SchemeInfo> schemes;
  // 1.1 (a 1.0 plugin computes on the CPU over host memory: these defaults).
  int32_t device_type = KVQ_DEVICE_CPU;
  int32_t device_ordinal = 0;
  std::string device_name;
  uint64_t device_memory_bytes = 0;
  int32_t device_count = 1;
  bool has_device_memory = false;

  const BackendInfo* find_backend(const std::string& name) const;
  const SchemeInfo* find_scheme(const std::string& quant_type, const std::string& layer_type) const;
  // The first backend listing `mode` as supported, or nullptr.
  const BackendInfo* backend_claiming(const std::string& mode) const;
};

struct ProbeResult {
  bool can_run = false;
  std::string reason;
  std::string simd_level;
};

struct LayerInfo {
  std::string impl_name;
  std::string kv_cache_dtype;
  std::string scheme;
  int32_t element_dtype = 0;
  int64_t num_params = 0;
};

struct ParamInfo {
  std::string name;    // full name: layer_name + "." + local name
  std::string loader;  // "" = not loadable
  int32_t dtype = 0;
  std::vector<int64_t> shape;
  bool trainable = false;
  bool derived = false;
  bool loaded = false;
  int32_t role = 0;         // 1.1: KVQ_PARAM_ROLE_*; 0 = not reported (1.0 plugin)
  std::string load_shapes;  // 1.1: shapes the loader accepts; "" = not reported
};

}  // namespace kvq::client
