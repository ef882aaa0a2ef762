// The deployment YAML (spec/host.md): which plugin, backend, model shape,
// KV cache, scheduler, parallelism and workload a run uses. Validation is
// strict and every error names the file, line and column.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {

// Where a value came from: a file (or "<embedded default deployment>") and a
// 1-based line and column.
struct SourceLocation {
  std::string file;
  int64_t line = 1;
  int64_t column = 1;

  // "deploy.yaml: line 3, column 5"
  std::string describe() const;
};

// A deployment error: the message starts with the location.
class DeploymentError : public Error {
 public:
  DeploymentError(SourceLocation location, const std::string& message);
  const SourceLocation& location() const noexcept { return location_; }

 private:
  SourceLocation location_;
};

struct PluginSection {
  std::filesystem::path path;  // resolved: ${exe_dir} expanded, relative to the YAML's folder
  uint32_t abi_major = 1;
  uint32_t min_minor = 0;
};

struct ModelSection {
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  ModelDtype dtype = ModelDtype::kBf16;
};

struct KvCacheSection {
  std::string dtype;  // a mode string, passed to the plugin verbatim; "" = from the checkpoint
  int64_t block_size = 16;
  std::optional<double> memory_gib;  // exactly one of memory_gib and num_blocks
  std::optional<int64_t> num_blocks;
  bool prefix_caching = false;
  // "auto" (the model dtype) or "fp8": the host quantizes the query to e4m3
  // with the layer's q_scale (fp8 per-tensor caches; spec/triton_sim.md §4).
  std::string query_dtype = "auto";
};

struct SchedulerSection {
  int64_t max_num_seqs = 256;             // vLLM's default
  int64_t max_num_batched_tokens = 2048;  // vLLM's default token budget with chunked prefill
  bool chunked_prefill = true;
};

struct ParallelSection {
  int64_t tensor_parallel_size = 1;
  // false: each rank computes on the device of its local rank (one GPU per
  // rank); true: every rank on device 0 (a TP deployment on a one-GPU machine).
  bool ranks_share_device = false;
};

struct WorkloadSection {
  int64_t num_prompts = 8;
  int64_t input_len = 256;
  int64_t output_len = 32;
  int64_t max_concurrency = 0;  // 0 = unlimited
  uint64_t seed = 0;
  int64_t shared_prefix_len = 0;
  double request_rate = 0.0;  // requests per second; 0 = all at once
  // vLLM's random dataset: lengths drawn uniformly from
  // [len * (1 - ratio), len * (1 + ratio)]; 0 = every request the same.
  double random_range_ratio = 0.0;
  // Request i shares the prefix of group i % prefix_groups.
  int64_t prefix_groups = 1;
};

// Locations of values that are checked later (against the plugin, at run).
struct DeploymentLocations {
  SourceLocation plugin_path;
  SourceLocation backend;
  SourceLocation checkpoint;
  SourceLocation kv_cache_dtype;
  SourceLocation kv_cache_size;  // memory_gib or num_blocks
  SourceLocation kv_cache_query_dtype;
  SourceLocation tensor_parallel_size;
};

struct Deployment {
  std::string source;  // the file, or "<embedded default deployment>"
  PluginSection plugin;
  std::string backend;
  std::optional<ModelSection> model;                // exactly one of model and checkpoint
  std::optional<std::filesystem::path> checkpoint;  // resolved relative to the YAML's folder
  KvCacheSection kv_cache;
  SchedulerSection scheduler;
  ParallelSection parallel;
  WorkloadSection workload;
  int64_t threads = 0;  // 0 = all cores
  // accuracy.max_nmse: the NMSE vs float64 beyond which `kvq run` fails;
  // absent = the default of the cache's element type (engine.hpp).
  std::optional<double> accuracy_max_nmse;
  DeploymentLocations locations;
};

struct DeploymentParseOptions {
  // Replaces ${exe_dir} in plugin.path: the folder of the kvq executable.
  std::filesystem::path exe_dir;
  // Check that plugin.path names an existing regular file.
  bool check_plugin_file = true;
};

// Reads and validates a deployment file. Throws DeploymentError (or Error
// when the file cannot be read).
Deployment load_deployment_file(const std::filesystem::path& file,
                                const DeploymentParseOptions& options);

// Validates YAML text. `source_name` is used in messages; relative paths are
// resolved against `base_dir`.
Deployment parse_deployment(std::string_view yaml_text, const std::string& source_name,
                            const std::filesystem::path& base_dir,
                            const DeploymentParseOptions& options);

// deploy/default.yaml, compiled in (generated at build time).
std::string_view embedded_default_deployment_yaml();
inline constexpr std::string_view kEmbeddedDeploymentName = "<embedded default deployment>";
// The embedded default, with relative paths resolved against options.exe_dir.
Deployment load_default_deployment(const DeploymentParseOptions& options);

}  // namespace kvq::host
