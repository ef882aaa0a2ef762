#include "kvq_files/deployment.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

#include "kvq_files/text_file.hpp"
#include "yaml_mapping.hpp"

namespace kvq::host {
namespace {

constexpr int64_t kMaxDeploymentBytes = 1 << 20;
constexpr double kMaxArrivalSeconds = 86400.0;
constexpr double kMaxWorkloadTokens = 1e9;
constexpr int64_t kMaxThreads = 256;

constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();
constexpr int64_t kMaxBlockId = std::numeric_limits<int32_t>::max();  // block tables are int32

// ${exe_dir} is the only variable: it lets one file name a plugin next to the
// kvq executable both in the build tree (bin/ + lib/) and in an install prefix.
std::string expand_variables(const YamlMapping& plugin, const std::string& text,
                             const DeploymentParseOptions& options) {
  constexpr std::string_view kExeDir = "${exe_dir}";
  std::string out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find("${", at);
    if (open == std::string::npos) {
      out += text.substr(at);
      break;
    }
    out += text.substr(at, open - at);
    if (text.compare(open, kExeDir.size(), kExeDir) != 0) {
      const size_t close = text.find('}', open);
      const std::string name =
          text.substr(open, close == std::string::npos ? close : close - open + 1);
      plugin.fail_at_value("path",
                           fmt::format("unknown variable '{}' in plugin.path (the only "
                                       "variable is ${{exe_dir}}, the kvq executable's folder)",
                                       name));
    }
    if (options.exe_dir.empty()) {
      plugin.fail_at_value("path",
                           "plugin.path uses ${exe_dir}, but the executable's folder is "
                           "not known here");
    }
    out += options.exe_dir.string();
    at = open + kExeDir.size();
  }
  return out;
}

std::filesystem::path resolve(const std::filesystem::path& base_dir, const std::string& text) {
  std::filesystem::path path(text);
  if (path.is_relative()) path = base_dir / path;
  return path.lexically_normal();
}

PluginSection read_plugin(const YamlMapping& root, const DeploymentParseOptions& options,
                          const std::filesystem::path& base_dir, DeploymentLocations& locations) {
  const YamlMapping plugin = *root.mapping("plugin", {"path", "abi_major", "min_minor"}, true);
  PluginSection out;
  const std::string written = plugin.string("path");
  locations.plugin_path = plugin.value_location("path");
  out.path = resolve(base_dir, expand_variables(plugin, written, options));
  const int64_t major = plugin.integer("abi_major", 0, kUnbounded, 1);
  if (major != 1) {
    plugin.fail_at_value("abi_major",
                         fmt::format("plugin.abi_major is {}, but this host speaks ABI "
                                     "major 1",
                                     major));
  }
  out.abi_major = static_cast<uint32_t>(major);
  out.min_minor = static_cast<uint32_t>(plugin.integer("min_minor", 0, 65535, 0));

  if (options.check_plugin_file) {
    std::error_code ec;
    const auto status = std::filesystem::status(out.path, ec);
    const std::string shown = written == out.path.string()
                                  ? written
                                  : fmt::format("'{}' ({})", written, out.path.string());
    if (ec || !std::filesystem::exists(status)) {
      plugin.fail_at_value("path", fmt::format("plugin file {} does not exist", shown));
    }
    if (std::filesystem::is_directory(status)) {
      plugin.fail_at_value("path", fmt::format("plugin.path {} is a directory, not a plugin "
                                               "library (.so)",
                                               shown));
    }
    // Refused here too (the loader also refuses it), so the error names the line.
    if ((status.permissions() & std::filesystem::perms::others_write) !=
        std::filesystem::perms::none) {
      plugin.fail_at_value("path", fmt::format("plugin file {} is world-writable; refusing to load "
                                               "it (chmod o-w)",
                                               shown));
    }
  }
  return out;
}

ModelSection read_model(const YamlMapping& root) {
  const YamlMapping model = *root.mapping(
      "model", {"num_layers", "num_heads", "num_kv_heads", "head_size", "dtype"}, true);
  ModelSection out;
  out.num_layers = model.integer("num_layers", 1, 4096);
  out.num_heads = model.integer("num_heads", 1, 65536);
  out.num_kv_heads = model.integer("num_kv_heads", 1, 65536);
  out.head_size = model.integer("head_size", 1, 4096);
  if (out.num_heads % out.num_kv_heads != 0) {
    model.fail_at_value("num_kv_heads",
                        fmt::format("model.num_heads ({}) must be a multiple of model.num_kv_heads "
                                    "({})",
                                    out.num_heads, out.num_kv_heads));
  }
  const std::string dtype = model.string("dtype");
  const auto parsed = parse_model_dtype(dtype);
  if (!parsed) {
    model.fail_at_value(
        "dtype", fmt::format("model.dtype must be one of bf16, fp16, fp32, got '{}'", dtype));
  }
  out.dtype = *parsed;
  return out;
}

KvCacheSection read_kv_cache(const YamlMapping& root, bool has_checkpoint,
                             DeploymentLocations& locations) {
  const YamlMapping kv = *root.mapping(
      "kv_cache",
      {"dtype", "block_size", "memory_gib", "num_blocks", "prefix_caching", "query_dtype"}, true);
  KvCacheSection out;
  // With a checkpoint the cache mode may come from its quantization
  // description instead: "" = not given.
  out.dtype = has_checkpoint ? kv.string("dtype", "") : kv.string("dtype");
  locations.kv_cache_dtype = kv.has("dtype") ? kv.value_location("dtype") : kv.location();
  out.block_size = kv.integer("block_size", 1, 1024);
  const bool has_memory = kv.has("memory_gib");
  const bool has_blocks = kv.has("num_blocks");
  if (has_memory && has_blocks) {
    const SourceLocation first = kv.key_location("memory_gib");
    const SourceLocation second = kv.key_location("num_blocks");
    const bool blocks_later =
        second.line > first.line || (second.line == first.line && second.column > first.column);
    kv.fail_at_key(blocks_later ? "num_blocks" : "memory_gib",
                   "give kv_cache.memory_gib or kv_cache.num_blocks, not both");
  }
  if (!has_memory && !has_blocks) {
    kv.fail("kv_cache needs its size: memory_gib (GiB for all layers) or num_blocks");
  }
  locations.kv_cache_size = kv.value_location(has_memory ? "memory_gib" : "num_blocks");
  if (has_memory) out.memory_gib = kv.number("memory_gib", 0.0, true, 1 << 20);
  if (has_blocks) out.num_blocks = kv.integer("num_blocks", 1, kMaxBlockId);
  out.prefix_caching = kv.boolean("prefix_caching", false);
  out.query_dtype = kv.string("query_dtype", "auto");
  locations.kv_cache_query_dtype =
      kv.has("query_dtype") ? kv.value_location("query_dtype") : kv.location();
  if (out.query_dtype == "fp8_e4m3") out.query_dtype = "fp8";  // the same e4m3 query
  if (out.query_dtype != "auto" && out.query_dtype != "fp8") {
    kv.fail_at_value("query_dtype",
                     fmt::format("kv_cache.query_dtype must be auto (the model dtype) or fp8 (an "
                                 "e4m3 query for fp8 per-tensor caches), got '{}'",
                                 out.query_dtype));
  }
  return out;
}

SchedulerSection read_scheduler(const YamlMapping& root) {
  SchedulerSection out;
  const auto scheduler = root.mapping(
      "scheduler", {"max_num_seqs", "max_num_batched_tokens", "chunked_prefill"}, false);
  if (!scheduler) return out;
  out.max_num_seqs = scheduler->integer("max_num_seqs", 1, 1 << 20, out.max_num_seqs);
  out.max_num_batched_tokens =
      scheduler->integer("max_num_batched_tokens", 1, 1 << 24, out.max_num_batched_tokens);
  out.chunked_prefill = scheduler->boolean("chunked_prefill", out.chunked_prefill);
  // As in vLLM: every running sequence must be able to decode in each step.
  if (out.max_num_batched_tokens < out.max_num_seqs) {
    const char* at =
        scheduler->has("max_num_batched_tokens") ? "max_num_batched_tokens" : "max_num_seqs";
    scheduler->fail_at_value(
        at, fmt::format("scheduler.max_num_batched_tokens ({}) must be >= scheduler.max_num_seqs "
                        "({}), so every running sequence can decode in each step",
                        out.max_num_batched_tokens, out.max_num_seqs));
  }
  return out;
}

ParallelSection read_parallel(const YamlMapping& root, const std::optional<ModelSection>& model,
                              DeploymentLocations& locations) {
  ParallelSection out;
  const auto parallel =
      root.mapping("parallel", {"tensor_parallel_size", "ranks_share_device"}, false);
  if (!parallel) return out;
  out.tensor_parallel_size = parallel->integer("tensor_parallel_size", 1, 1024, 1);
  out.ranks_share_device = parallel->boolean("ranks_share_device", false);
  locations.tensor_parallel_size = parallel->value_location("tensor_parallel_size");
  if (model && model->num_heads % out.tensor_parallel_size != 0) {
    parallel->fail_at_value(
        "tensor_parallel_size",
        fmt::format("model.num_heads ({}) must be a multiple of parallel.tensor_parallel_size ({})",
                    model->num_heads, out.tensor_parallel_size));
  }
  return out;
}

WorkloadSection read_workload(const YamlMapping& root) {
  WorkloadSection out;
  const auto workload =
      root.mapping("workload",
                   {"num_prompts", "input_len", "output_len", "max_concurrency", "seed",
                    "shared_prefix_len", "request_rate", "random_range_ratio", "prefix_groups"},
                   false);
  if (!workload) return out;
  out.num_prompts = workload->integer("num_prompts", 1, 1 << 24, out.num_prompts);
  out.input_len = workload->integer("input_len", 1, 1 << 24, out.input_len);
  out.output_len = workload->integer("output_len", 1, 1 << 24, out.output_len);
  out.max_concurrency = workload->integer("max_concurrency", 0, 1 << 24, out.max_concurrency);
  out.seed = static_cast<uint64_t>(workload->integer("seed", 0, kUnbounded, 0));
  out.shared_prefix_len =
      workload->integer("shared_prefix_len", 0, out.input_len, out.shared_prefix_len);
  out.request_rate = workload->number("request_rate", 0.0, false, 1e9, out.request_rate);
  out.random_range_ratio =
      workload->number("random_range_ratio", 0.0, false, 1.0, out.random_range_ratio);
  out.prefix_groups = workload->integer("prefix_groups", 1, 1 << 24, out.prefix_groups);
  // A benchmark run, not a week-long job: arrivals within a day, and a bounded
  // number of tokens in all.
  if (out.request_rate > 0.0 &&
      static_cast<double>(out.num_prompts) / out.request_rate > kMaxArrivalSeconds) {
    workload->fail_at_value(
        "request_rate",
        fmt::format("request_rate {} req/s spreads {} prompts over {:.3g} s; the arrivals must "
                    "fit in {} s (24 h): use 0 (all at once) or at least {:.3g} req/s",
                    out.request_rate, out.num_prompts,
                    static_cast<double>(out.num_prompts) / out.request_rate, kMaxArrivalSeconds,
                    static_cast<double>(out.num_prompts) / kMaxArrivalSeconds));
  }
  const double tokens =
      static_cast<double>(out.num_prompts) * static_cast<double>(out.input_len + out.output_len);
  if (tokens > kMaxWorkloadTokens) {
    workload->fail(
        fmt::format("the workload asks for {:.3g} tokens ({} prompts x ({} + {})); at "
                    "most {:.0e} in one run",
                    tokens, out.num_prompts, out.input_len, out.output_len, kMaxWorkloadTokens));
  }
  return out;
}

}  // namespace

std::string SourceLocation::describe() const {
  return fmt::format("{}: line {}, column {}", file, line, column);
}

DeploymentError::DeploymentError(SourceLocation location, const std::string& message)
    : Error(fmt::format("{}: {}", location.describe(), message)), location_(std::move(location)) {}

Deployment parse_deployment(std::string_view yaml_text, const std::string& source_name,
                            const std::filesystem::path& base_dir,
                            const DeploymentParseOptions& options) {
  const YamlDocument document(source_name);
  const YAML::Node root = document.load_single_document(yaml_text);
  if (root.IsNull()) {
    document.fail(SourceLocation{source_name, 1, 1}, "the deployment is empty");
  }
  const YamlMapping top(document, root, "",
                        {"plugin", "backend", "model", "checkpoint", "kv_cache", "scheduler",
                         "parallel", "workload", "threads", "accuracy"},
                        SourceLocation{source_name, 1, 1});

  Deployment out;
  out.source = source_name;
  out.plugin = read_plugin(top, options, base_dir, out.locations);
  out.backend = top.string("backend");
  out.locations.backend = top.value_location("backend");

  if (top.has("model") && top.has("checkpoint")) {
    top.fail_at_key("checkpoint", "give model or checkpoint, not both");
  }
  if (top.has("checkpoint")) {
    out.checkpoint = resolve(base_dir, top.string("checkpoint"));
    out.locations.checkpoint = top.value_location("checkpoint");
  } else if (top.has("model")) {
    out.model = read_model(top);
  } else {
    top.fail("missing required key 'model' (or 'checkpoint': a checkpoint directory)");
  }

  out.kv_cache = read_kv_cache(top, out.checkpoint.has_value(), out.locations);
  out.scheduler = read_scheduler(top);
  out.parallel = read_parallel(top, out.model, out.locations);
  out.workload = read_workload(top);
  // More threads than that only oversubscribes the cores (and a runtime that
  // cannot create them would end the process).
  out.threads = top.integer("threads", 0, kMaxThreads, 0);
  if (const auto accuracy = top.mapping("accuracy", {"max_nmse"}, false)) {
    out.accuracy_max_nmse = accuracy->number("max_nmse", 0.0, true, 10.0);
  }
  return out;
}

Deployment load_deployment_file(const std::filesystem::path& file,
                                const DeploymentParseOptions& options) {
  const std::string text = read_text_file(file, "deployment", kMaxDeploymentBytes);
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(file, ec);
  const std::filesystem::path base_dir = (ec ? file : absolute).parent_path();
  return parse_deployment(text, file.string(), base_dir, options);
}

Deployment load_default_deployment(const DeploymentParseOptions& options) {
  return parse_deployment(embedded_default_deployment_yaml(), std::string(kEmbeddedDeploymentName),
                          options.exe_dir, options);
}

}  // namespace kvq::host
