// The result of `kvq run`: printed in the block layout of vLLM's serving
// benchmark (so numbers line up with vLLM runs), plus the KV cache and
// accuracy sections, and written as JSON with --json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "kvq_engine/accuracy.hpp"
#include "kvq_engine/latency_stats.hpp"

namespace kvq::host {

struct RequestOutcome {
  int64_t id = 0;
  int64_t prompt_len = 0;
  int64_t output_len = 0;  // tokens generated
  bool success = false;
  double ttft_ms = 0.0;
  double latency_ms = 0.0;  // end-to-end
  std::string error;
};

struct BenchmarkReport {
  // What ran.
  std::string deployment;
  std::string plugin_path;
  std::string plugin_name;
  std::string plugin_version;
  std::string abi_version;  // negotiated "1.0"
  std::string backend;
  std::string kv_cache_dtype;
  std::string layer_impl;  // layer_info.impl_name of layer 0, if the plugin tells
  std::string model_dtype;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t threads = 0;
  int64_t tensor_parallel_size = 1;
  // Where each rank computed, in rank order ("cpu", or "<type> <ordinal> (<name>)").
  std::vector<std::string> rank_devices;
  bool is_root = true;  // false on the other ranks of a tensor-parallel run (they print nothing)
  double request_rate = 0.0;  // 0 = all at once
  int64_t max_concurrency = 0;

  // Serving.
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_s = 0.0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0.0;
  double output_throughput = 0.0;
  double total_token_throughput = 0.0;
  LatencySummary ttft;
  LatencySummary tpot;
  LatencySummary itl;
  LatencySummary e2el;
  int64_t num_steps = 0;
  std::map<std::string, int64_t> steps_by_attention_state;
  double attention_seconds = 0.0;  // inside cache_write + forward

  // KV cache.
  double kv_bytes_per_token = 0.0;  // all layers
  int64_t kv_num_blocks = 0;
  int64_t kv_block_size = 0;
  int64_t kv_tokens_fit = 0;
  double kv_cache_gib = 0.0;
  int64_t peak_blocks_used = 0;
  double max_concurrency_fit = 0.0;  // requests of the workload's length that fit at once
  bool prefix_caching = false;
  double prefix_cache_hit_rate = 0.0;  // prompt tokens found in the cache / looked up
  int64_t preemptions = 0;             // by recompute, when blocks ran out
  int64_t blocks_in_use_at_end = 0;    // 0 unless blocks leaked

  // Accuracy against the float64 reference.
  AccuracyStats accuracy;
  // Only with RunOptions::kv_model (tests): the plugin against float64 over
  // the modelled cache values, and that reference against the unquantized.
  AccuracyStats accuracy_vs_model;
  AccuracyStats kv_model_error;
  // The bound the run is held to (NMSE vs float64), where it comes from, and
  // whether the sampled outputs are within it (true when nothing was sampled).
  double accuracy_bound_nmse = 0.0;
  std::string accuracy_bound_source;
  bool accuracy_within_bound = true;

  std::vector<RequestOutcome> requests;
  std::map<std::string, int64_t> errors;  // distinct failure message -> requests
};

// The vLLM-style text block.
void print_report(const BenchmarkReport& report, std::ostream& out);
// Everything, as JSON (throws Error when the file cannot be written).
void write_report_json(const BenchmarkReport& report, const std::filesystem::path& file);
// Before a run: throws Error when `file` could not be written (a directory,
// a missing or read-only folder), so the run does not fail only at its end.
void check_report_path(const std::filesystem::path& file);
// The JSON text (for tests and other writers).
std::string report_json_text(const BenchmarkReport& report);

// "PREFILL_NO_CACHE" for KVQ_ATTN_PREFILL_NO_CACHE, ...
std::string attention_state_name(int32_t state);

}  // namespace kvq::host
