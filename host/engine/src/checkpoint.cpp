#include "kvq_engine/checkpoint.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <kvq_client/tensor.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string_view>

#include "attention_model.hpp"
#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/text_file.hpp"

namespace kvq::host {
namespace {

using nlohmann::json;

json parse_json_object(const std::filesystem::path& file, const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  }
  if (!j.is_object()) {
    throw Error(fmt::format("{}: must be a JSON object, not {}", file.string(), j.type_name()));
  }
  return j;
}

// An integer of config.json in [min, max]; nullopt when absent (or null).
std::optional<int64_t> config_integer(const std::filesystem::path& file, const json& j,
                                      const char* key, int64_t min, int64_t max) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) {
    throw Error(
        fmt::format("{}: key \"{}\" must be an integer, not {}", file.string(), key, it->dump()));
  }
  const bool too_large =
      it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max);
  if (too_large || it->get<int64_t>() < min || it->get<int64_t>() > max) {
    throw Error(fmt::format("{}: key \"{}\" is {}; expected {}..{}", file.string(), key, it->dump(),
                            min, max));
  }
  return it->get<int64_t>();
}

int64_t required_integer(const std::filesystem::path& file, const json& j, const char* key,
                         int64_t min, int64_t max) {
  const auto value = config_integer(file, j, key, min, max);
  if (!value) throw Error(fmt::format("{}: missing required key \"{}\"", file.string(), key));
  return *value;
}

ModelDtype config_dtype(const std::filesystem::path& file, const json& j) {
  for (const char* key : {"torch_dtype", "dtype"}) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) {
      throw Error(
          fmt::format("{}: key \"{}\" must be a string, not {}", file.string(), key, it->dump()));
    }
    const std::string text = it->get<std::string>();
    if (text == "bfloat16") return ModelDtype::kBf16;
    if (text == "float16" || text == "half") return ModelDtype::kFp16;
    if (text == "float32" || text == "float") return ModelDtype::kFp32;
    throw Error(
        fmt::format("{}: key \"{}\" is \"{}\"; the host runs bfloat16, float16 or "
                    "float32 models",
                    file.string(), key, text));
  }
  spdlog::warn("{}: no torch_dtype; assuming bfloat16", file.string());
  return ModelDtype::kBf16;
}

CheckpointConfig read_config(const std::filesystem::path& file) {
  const json j = parse_json_object(file, read_text_file(file, "checkpoint file"));
  CheckpointConfig c;
  c.num_layers = required_integer(file, j, "num_hidden_layers", 1, 4096);
  c.num_heads = required_integer(file, j, "num_attention_heads", 1, 65536);
  c.num_kv_heads = config_integer(file, j, "num_key_value_heads", 1, 65536).value_or(c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    throw Error(
        fmt::format("{}: num_attention_heads ({}) must be a multiple of "
                    "num_key_value_heads ({})",
                    file.string(), c.num_heads, c.num_kv_heads));
  }
  if (const auto head_dim = config_integer(file, j, "head_dim", 1, 4096)) {
    c.head_size = *head_dim;
  } else {
    const auto hidden = config_integer(file, j, "hidden_size", 1, int64_t{1} << 30);
    if (!hidden) {
      throw Error(
          fmt::format("{}: needs \"head_dim\" or \"hidden_size\" (head_dim = "
                      "hidden_size / num_attention_heads)",
                      file.string()));
    }
    if (*hidden % c.num_heads != 0 || *hidden / c.num_heads > 4096) {
      throw Error(
          fmt::format("{}: hidden_size {} is not num_attention_heads ({}) x a head "
                      "size of at most 4096; give \"head_dim\"",
                      file.string(), *hidden, c.num_heads));
    }
    c.head_size = *hidden / c.num_heads;
  }
  c.dtype = config_dtype(file, j);
  c.kv_lora_rank = config_integer(file, j, "kv_lora_rank", 0, int64_t{1} << 20);
  c.qk_rope_head_dim = config_integer(file, j, "qk_rope_head_dim", 0, int64_t{1} << 20);
  c.index_head_dim = config_integer(file, j, "index_head_dim", 1, int64_t{1} << 20);
  c.index_topk = config_integer(file, j, "index_topk", 1, int64_t{1} << 24);
  if (const auto it = j.find("kvq_activation_seed"); it != j.end() && it->is_number_unsigned()) {
    c.activation_seed = it->get<uint64_t>();
  }
  return c;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// The parameter a checkpoint name loads into: the longest matching rule's
// suffix replaced; nullopt when no rule matches.
std::optional<std::string> map_name(const std::string& name, const std::vector<NameRule>& rules) {
  const NameRule* best = nullptr;
  for (const auto& rule : rules) {
    if (rule.checkpoint_suffix.empty() || !name.ends_with(rule.checkpoint_suffix)) continue;
    if (best == nullptr || rule.checkpoint_suffix.size() > best->checkpoint_suffix.size()) {
      best = &rule;
    }
  }
  if (best == nullptr) return std::nullopt;
  return name.substr(0, name.size() - best->checkpoint_suffix.size()) + best->param_suffix;
}

// A view the plugin can read with aligned loads: the mapped bytes when they
// are aligned for the element type, else a copy.
class AlignedTensor {
 public:
  explicit AlignedTensor(const SafetensorsTensor& t) : view_(t.view()) {
    const auto size = static_cast<uintptr_t>(std::max<int64_t>(abi_dtype_size(t.dtype), 1));
    if (reinterpret_cast<uintptr_t>(t.data) % size != 0) {
      copy_.resize((t.size_bytes() + 7) / 8);
      if (t.size_bytes() > 0) std::memcpy(copy_.data(), t.data, t.size_bytes());
      view_.data = copy_.data();
    }
  }
  const kvq_tensor& view() const { return view_; }

 private:
  kvq_tensor view_;
  std::vector<uint64_t> copy_;
};

// A one-token decode over one block, shapes only: supports() answers what
// forward would, so a layer whose parameters are missing or malformed (e.g.
// C8 scales never loaded, or of the wrong length) is refused before the
// engine starts serving. The probe is a well-formed batch for attention over
// a K+V cache; layers with other layouts (MLA latent, indexer keys) are not
// probed, and UNSUPPORTED (a batch the layer cannot run) is not an error.
// Bulk tensors carry the plugin's device type (without data); the block
// table, which is read, is a real buffer in the plugin's memory.
void check_ready(const Plugin& plugin, const Layer& layer, const CheckpointLoadOptions& options) {
  if (options.num_heads < 1) return;
  const kvq_cache_geometry g = layer.cache_geometry();
  if (g.layout != KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD) return;
  const int32_t device = plugin.device_type(), id = plugin.device_id();
  const std::vector<int32_t> starts = {0, 1}, lens = {1};
  const int32_t first_block = 0;
  Buffer table(plugin, sizeof first_block);
  table.upload(std::as_bytes(std::span(&first_block, 1)));
  client::ForwardArgs args;
  args.attention_state(KVQ_ATTN_DECODE_ONLY)
      .query(client::describe(nullptr, options.model_dtype, {1, options.num_heads, g.head_size},
                              device, id))
      .output(client::describe(nullptr, options.model_dtype, {1, options.num_heads, g.head_size_v},
                               device, id))
      .kv_cache(client::describe(nullptr, KVQ_DTYPE_U8, {1, g.bytes_per_block}, device, id))
      .query_start_loc(client::host_vector(starts))
      .seq_lens(client::host_vector(lens))
      .block_table(table.tensor(KVQ_DTYPE_I32, {1, 1}));
  try {
    layer.check_supports(args);
  } catch (const PluginError& e) {
    if (e.code() != KVQ_ERR_UNSUPPORTED) throw;
    spdlog::debug("{}: the readiness probe (a one-token decode) is unsupported: {}", layer.name(),
                  e.what());
  }
}

}  // namespace

// ---- Checkpoint -------------------------------------------------------------

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    throw Error(fmt::format("checkpoint {}: the directory does not exist", dir.string()));
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error(
        fmt::format("checkpoint {}: not a directory (a checkpoint is a directory with "
                    "config.json and *.safetensors)",
                    dir.string()));
  }
  Checkpoint c;
  c.dir_ = dir;
  const std::filesystem::path config_file = dir / kCheckpointConfigFile;
  if (!std::filesystem::exists(config_file, ec)) {
    throw Error(fmt::format("checkpoint {}: no {} (the model shape comes from it)", dir.string(),
                            kCheckpointConfigFile));
  }
  c.config_ = read_config(config_file);

  const std::filesystem::path description_file = c.description_path();
  if (std::filesystem::exists(description_file, ec)) {
    c.description_ = read_text_file(description_file, "quantization description");
    const json j = parse_json_object(description_file, *c.description_);
    const auto it = j.find(kDescriptionKvCacheSchemeKey);
    if (it != j.end()) {
      if (!it->is_string()) {
        throw Error(fmt::format("{}: key \"{}\" must be a string, not {}",
                                description_file.string(), kDescriptionKvCacheSchemeKey,
                                it->dump()));
      }
      c.kv_cache_scheme_ = it->get<std::string>();
    }
  }

  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  }
  if (ec) {
    throw Error(
        fmt::format("checkpoint {}: cannot list the directory: {}", dir.string(), ec.message()));
  }
  std::sort(files.begin(), files.end());
  std::map<std::string, std::filesystem::path> owner;
  for (const auto& file : files) {
    c.files_.push_back(SafetensorsFile::open(file));
    for (const auto& t : c.files_.back().tensors()) {
      const auto [it, inserted] = owner.emplace(t.name, file);
      if (!inserted) {
        throw Error(fmt::format("checkpoint {}: tensor '{}' is in both {} and {}", dir.string(),
                                t.name, it->second.string(), file.string()));
      }
    }
  }
  if (c.files_.empty()) {
    spdlog::warn("checkpoint {}: no *.safetensors files; no parameters will be loaded",
                 dir.string());
  }
  c.check_layer_range();
  return c;
}

// A tensor or description entry for a layer the model does not have would
// otherwise be dropped without a word (a checkpoint of another model?).
void Checkpoint::check_layer_range() const {
  const auto layer_of = [](std::string_view name) -> std::optional<int64_t> {
    constexpr std::string_view kPrefix = "model.layers.";
    const size_t at = name.find(kPrefix);
    if (at == std::string_view::npos) return std::nullopt;
    int64_t index = 0;
    const char* first = name.data() + at + kPrefix.size();
    const auto [end, ec] = std::from_chars(first, name.data() + name.size(), index);
    if (ec != std::errc() || end == first) return std::nullopt;
    return index;
  };
  const int64_t layers = config_.num_layers;
  for (const SafetensorsFile& file : files_) {
    for (const SafetensorsTensor& t : file.tensors()) {
      const auto index = layer_of(t.name);
      if (index && *index >= layers) {
        throw Error(
            fmt::format("checkpoint {}: tensor '{}' in {} is for layer {}, but {} gives "
                        "the model {} layers (0..{})",
                        dir_.string(), t.name, file.path().string(), *index, kCheckpointConfigFile,
                        layers, layers - 1));
      }
    }
  }
  if (!description_) return;
  const json j = json::parse(*description_);
  for (const auto& [key, value] : j.items()) {
    const auto index = layer_of(key);
    if (index && *index >= layers) {
      throw Error(fmt::format(
          "{}: entry \"{}\" is for layer {}, but {} gives the model {} "
          "layers (0..{})",
          description_path().string(), key, *index, kCheckpointConfigFile, layers, layers - 1));
    }
  }
}

ModelSection Checkpoint::model() const {
  return ModelSection{config_.num_layers, config_.num_heads, config_.num_kv_heads,
                      config_.head_size, config_.dtype};
}

SchemeOptions Checkpoint::scheme_options() const {
  SchemeOptions options;
  if (config_.kv_lora_rank)
    options.emplace_back("kv_lora_rank", std::to_string(*config_.kv_lora_rank));
  if (config_.qk_rope_head_dim) {
    options.emplace_back("qk_rope_head_dim", std::to_string(*config_.qk_rope_head_dim));
  }
  if (config_.index_head_dim) {
    options.emplace_back("index_head_dim", std::to_string(*config_.index_head_dim));
  }
  if (config_.index_topk) options.emplace_back("index_topk", std::to_string(*config_.index_topk));
  return options;
}

std::string attention_layer_prefix(int64_t index) {
  return fmt::format("model.layers.{}.self_attn", index);
}

// ---- planning -----------------------------------------------------------------

namespace {

// The quantization a description asks for through the keys vllm-ascend's
// quant_model_description.json uses ("kv_cache_type": "C8", ...), as
// "key: value"; "" when it asks for none (FLOAT, or no such key).
std::string quantization_asked(const std::string& description) {
  static constexpr std::string_view kKeys[] = {"kv_cache_type", "kv_quant_type", "fa_quant_type",
                                               "indexer_quant_type"};
  const json j = json::parse(description);
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) continue;
    const std::string v = value.get<std::string>();
    if (v.empty() || v == "FLOAT") continue;
    for (std::string_view k : kKeys)
      if (std::string_view(key).ends_with(k)) return fmt::format("\"{}\": \"{}\"", key, v);
  }
  return "";
}

}  // namespace

CheckpointLayerPlan plan_checkpoint_layer(const Plugin& plugin, const std::string& backend,
                                          const Checkpoint& checkpoint, int64_t index,
                                          const std::string& deployment_mode) {
  const std::string description_source = checkpoint.description_path().string();
  std::optional<std::string> selected;
  if (checkpoint.description()) {
    selected = plugin.select_scheme(*checkpoint.description(), description_source,
                                    attention_layer_prefix(index), "attention");
  }
  if (checkpoint.description() && !selected) {
    // The plugin reads no descriptions: a quantized checkpoint would be
    // served unquantized without a word.
    const std::string asked = quantization_asked(*checkpoint.description());
    if (!asked.empty()) {
      std::string schemes;
      for (const SchemeInfo& s : plugin.info().schemes)
        schemes += (schemes.empty() ? "" : ", ") + s.quant_type;
      throw Error(fmt::format(
          "{} asks for {}, but plugin '{}' does not read quantization descriptions (it offers "
          "the schemes: {}): serve this checkpoint with a plugin that implements it",
          description_source, asked, plugin.info().name, schemes.empty() ? "none" : schemes));
    }
  }
  CheckpointLayerPlan plan;
  if (selected && !selected->empty()) {
    // The description decides; the cache mode the scheme starts from is
    // the deployment's, which must then be unquantized.
    plan.scheme = *selected;
    plan.scheme_source = description_source;
    plan.create_mode = deployment_mode.empty() ? "auto" : deployment_mode;
    if (const BackendInfo* b = plugin.info().find_backend(backend)) {
      for (const auto& mode : b->kv_modes) {
        const bool float_cache = mode.element_dtype == 0 || mode.element_dtype == KVQ_DTYPE_F32 ||
                                 mode.element_dtype == KVQ_DTYPE_F16 ||
                                 mode.element_dtype == KVQ_DTYPE_BF16;
        if (mode.name == plan.create_mode && !float_cache) {
          throw Error(fmt::format(
              "kv_cache.dtype '{}' is a quantized cache mode, but {} already selects scheme {} "
              "for {}; omit kv_cache.dtype (or use auto) with this checkpoint",
              deployment_mode, description_source, plan.scheme, attention_layer_prefix(index)));
        }
      }
    }
    return plan;
  }
  std::string mode = deployment_mode;
  plan.scheme_source = "kv_cache.dtype";
  // "auto" in the deployment means "as the checkpoint says", like omitting it.
  if ((mode.empty() || mode == "auto") && !checkpoint.description_kv_cache_scheme().empty()) {
    mode = checkpoint.description_kv_cache_scheme();
    plan.scheme_source =
        fmt::format("{} (\"{}\")", description_source, kDescriptionKvCacheSchemeKey);
  }
  if (mode.empty()) mode = "auto";
  const SchemeInfo* scheme = plugin.info().find_scheme(mode, "attention");
  if (scheme != nullptr && scheme->supported) {
    plan.create_mode = "auto";
    plan.scheme = mode;
  } else {
    plan.create_mode = mode;
  }
  return plan;
}

// ---- loading ------------------------------------------------------------------

CheckpointLoadReport load_checkpoint_weights(const Plugin& plugin, Layer& layer,
                                             const Checkpoint& checkpoint, int64_t index,
                                             const CheckpointLayerPlan& plan,
                                             const CheckpointLoadOptions& options) {
  const std::string where =
      fmt::format("checkpoint {}: layer {}", checkpoint.dir().string(), layer.name());
  CheckpointLoadReport report;
  if (!plan.scheme.empty()) {
    try {
      layer.apply_scheme(plan.scheme, "attention", checkpoint.scheme_options());
    } catch (const Error& e) {
      throw Error(fmt::format("{}: applying scheme {} (chosen by {}) failed: {}", where,
                              plan.scheme, plan.scheme_source, e.what()));
    }
  }
  const LayerInfo info = layer.info();
  report.scheme = info.scheme.empty() ? plan.scheme : info.scheme;
  std::vector<NameRule> rules;
  if (!report.scheme.empty()) {
    if (const SchemeInfo* s = plugin.info().find_scheme(report.scheme, "attention")) {
      rules = s->name_rules;
    }
  }

  std::map<std::string, ParamInfo> params;
  if (info.num_params > 0) {
    for (auto& p : layer.params()) params.emplace(p.name, std::move(p));
  }
  const std::string tensor_prefix = fmt::format("model.layers.{}.", index);
  std::set<std::string> loaded;
  for (const SafetensorsFile& file : checkpoint.files()) {
    for (const SafetensorsTensor& t : file.tensors()) {
      if (!t.name.starts_with(tensor_prefix)) continue;
      const std::optional<std::string> mapped = map_name(t.name, rules);
      const std::string target = mapped.value_or(t.name);
      const auto param = params.find(target);
      if (param == params.end()) {
        if (mapped) {
          spdlog::warn(
              "{}: tensor '{}' of {} maps to '{}', which the layer does not declare; "
              "dropped",
              where, t.name, file.path().string(), target);
          report.dropped_tensors.push_back(t.name);
        } else {
          spdlog::debug("{}: tensor '{}' is not one of the layer's parameters; ignored", where,
                        t.name);
        }
        continue;
      }
      if (param->second.loader.empty() || param->second.derived) {
        spdlog::warn(
            "{}: tensor '{}' of {} names parameter '{}', which is derived, not loaded; "
            "dropped",
            where, t.name, file.path().string(), target);
        report.dropped_tensors.push_back(t.name);
        continue;
      }
      try {
        const AlignedTensor view(t);
        layer.param_load(target, view.view(), options.tp_rank, options.tp_size);
      } catch (const Error& e) {
        throw Error(
            fmt::format("{}: loading tensor '{}' ({} {}) from {} into parameter '{}' "
                        "(tp rank {} of {}) failed: {}",
                        where, t.name, safetensors_dtype_name(t.dtype), shape_text(t.shape),
                        file.path().string(), target, options.tp_rank, options.tp_size, e.what()));
      }
      spdlog::debug("{}: loaded '{}' from '{}' ({})", where, target, t.name, file.path().string());
      report.loaded_params.push_back(target);
      report.loaded_from.push_back(
          fmt::format("'{}' from {} -> {}", t.name, file.path().string(), target));
      loaded.insert(target);
    }
  }

  // Failures after the loads name what was loaded (the tensors at fault
  // are among them).
  const auto loaded_list = [&report] {
    if (report.loaded_from.empty()) return std::string(" (no tensor was loaded)");
    return fmt::format(" (loaded: {})", fmt::join(report.loaded_from, "; "));
  };
  try {
    layer.process_weights();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: process_weights failed{}: {}", where, loaded_list(), e.what()));
  }
  for (const auto& [name, p] : params) {
    if (!p.loader.empty() && !p.derived && !loaded.contains(name)) {
      report.unloaded_parameters.push_back(name);
    }
  }
  if (!report.unloaded_parameters.empty()) {
    spdlog::warn(
        "{}: the checkpoint has no tensor for {} (scheme {}); they keep their initial "
        "values",
        where, fmt::join(report.unloaded_parameters, ", "),
        report.scheme.empty() ? "none" : report.scheme);
  }
  try {
    check_ready(plugin, layer, options);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: the layer cannot run after loading{}{}: {}", where,
                            report.unloaded_parameters.empty()
                                ? std::string()
                                : fmt::format(" (not in the checkpoint: {})",
                                              fmt::join(report.unloaded_parameters, ", ")),
                            loaded_list(), e.what()));
  }
  spdlog::debug("{}: scheme {}, {} parameter(s) loaded", where,
                report.scheme.empty() ? "none" : report.scheme, report.loaded_params.size());
  return report;
}

LoadedLayer create_checkpoint_layer(const Plugin& plugin, const Checkpoint& checkpoint,
                                    int64_t index, const CheckpointLayerSpec& spec) {
  const CheckpointConfig& c = checkpoint.config();
  const int32_t tp = std::max(spec.tp_size, 1);
  if (index < 0 || index >= c.num_layers) {
    throw Error(fmt::format("checkpoint {}: layer {} is outside 0..{}", checkpoint.dir().string(),
                            index, c.num_layers - 1));
  }
  if (c.num_heads % tp != 0 || (c.num_kv_heads >= tp && c.num_kv_heads % tp != 0) ||
      (c.num_kv_heads < tp && tp % c.num_kv_heads != 0)) {
    throw Error(fmt::format("checkpoint {}: {} query / {} KV heads do not split over TP size {}",
                            checkpoint.dir().string(), c.num_heads, c.num_kv_heads, tp));
  }
  CheckpointLayerPlan plan =
      plan_checkpoint_layer(plugin, spec.backend, checkpoint, index, spec.kv_cache_dtype);
  const std::string name = attention_layer_name(index);
  client::LayerConfig config;
  config.backend = spec.backend;
  config.layer_name = name;
  config.kv_cache_dtype = plan.create_mode;
  config.model_dtype = abi_dtype(c.dtype);
  config.layer_index = static_cast<int32_t>(index);
  config.num_heads = c.num_heads / tp;
  config.num_kv_heads = std::max<int64_t>(c.num_kv_heads / tp, 1);
  config.head_size = c.head_size;
  config.head_size_v = c.head_size_v();
  config.block_size = spec.block_size;
  config.tp_rank = spec.tp_rank;
  config.tp_size = tp;
  Layer layer = plugin.create_layer(config);
  CheckpointLoadReport report = load_checkpoint_weights(
      plugin, layer, checkpoint, index, plan,
      CheckpointLoadOptions{spec.tp_rank, tp, config.num_heads, config.model_dtype});
  return LoadedLayer{std::move(layer), std::move(plan), std::move(report)};
}

}  // namespace kvq::host
