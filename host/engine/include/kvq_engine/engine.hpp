// `kvq run`: the serving loop (spec/host.md "What the engine does").
// Loads and negotiates the plugin, builds the layers and the paged KV cache,
// then serves the workload with continuous batching, calling every layer's
// cache_write and forward each step, and measures latency, throughput and
// accuracy.
#pragma once

#include <cstdint>
#include <filesystem>

#include "kvq_engine/report.hpp"
#include "kvq_files/deployment.hpp"

namespace kvq::host {

struct RunOptions {
  // Check accuracy on every N-th step (layer 0); 0 = never.
  int64_t accuracy_every = 8;
  // Tests: check every step, every layer, every sequence and every query row
  // (overrides accuracy_every).
  bool check_every_output = false;
  // Show a progress bar on stderr when it is a terminal.
  bool progress = true;
  // When set, every step's outputs of every layer are appended to this file
  // ([layer][token][head][dim] in the model dtype, all ranks' heads), so
  // runs can be compared head for head (e.g. tensor parallel vs one rank).
  std::filesystem::path dump_outputs{};
  // Tests: what the KV cache stores, modelled independently of the plugin.
  // Fills the report's accuracy_vs_model and kv_model_error.
  KvRowModel kv_model{};
};

// Throws Error / DeploymentError / PluginError when the run cannot start (bad
// plugin, refused layer, ...). A plugin error during a step fails that
// step's requests (counted in the report) and the run goes on.
BenchmarkReport run_benchmark(const Deployment& deployment, const RunOptions& options = {});

}  // namespace kvq::host
