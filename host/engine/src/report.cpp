#include "kvq_engine/report.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <kvq_abi.h>
#include <kvq_abi_names.h>

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

// vLLM prints "{:<40} {:<10}" rows and centred 50-column rules.
void row(std::ostream& out, std::string_view label, int64_t value) {
  fmt::print(out, "{:<40} {:<10}\n", label, value);
}
void row(std::ostream& out, std::string_view label, double value, int decimals = 2) {
  fmt::print(out, "{:<40} {:<10.{}f}\n", label, value, decimals);
}
void row(std::ostream& out, std::string_view label, std::string_view value) {
  fmt::print(out, "{:<40} {:<10}\n", label, value);
}
void rule(std::ostream& out, std::string_view title, char fill) {
  fmt::print(out, "{}\n", fmt::format(fmt::runtime(fmt::format("{{:{}^50}}", fill)), title));
}

void latency_block(std::ostream& out, std::string_view title, std::string_view metric,
                   const LatencySummary& s) {
  rule(out, title, '-');
  row(out, fmt::format("Mean {} (ms):", metric), s.mean_ms);
  row(out, fmt::format("Median {} (ms):", metric), s.median_ms);
  row(out, fmt::format("P90 {} (ms):", metric), s.p90_ms);
  row(out, fmt::format("P99 {} (ms):", metric), s.p99_ms);
}

nlohmann::json latency_json(const LatencySummary& s) {
  return {{"mean_ms", s.mean_ms},
          {"median_ms", s.median_ms},
          {"p90_ms", s.p90_ms},
          {"p99_ms", s.p99_ms},
          {"std_ms", s.std_ms}};
}

}  // namespace

std::string attention_state_name(int32_t state) {
  const std::string_view name = kvq_attention_state_name(state);
  return name == "?" ? fmt::format("STATE_{}", state) : std::string(name);
}

void print_report(const BenchmarkReport& r, std::ostream& out) {
  rule(out, " Serving Benchmark Result ", '=');
  row(out, "Successful requests:", r.completed);
  row(out, "Failed requests:", r.failed);
  if (r.max_concurrency > 0) row(out, "Maximum request concurrency:", r.max_concurrency);
  row(out, "Request rate configured (RPS):",
      r.request_rate > 0 ? fmt::format("{:.2f}", r.request_rate) : std::string("inf"));
  row(out, "Benchmark duration (s):", r.duration_s);
  row(out, "Total input tokens:", r.total_input_tokens);
  row(out, "Total generated tokens:", r.total_output_tokens);
  row(out, "Request throughput (req/s):", r.request_throughput);
  row(out, "Output token throughput (tok/s):", r.output_throughput);
  row(out, "Total Token throughput (tok/s):", r.total_token_throughput);
  latency_block(out, "Time to First Token", "TTFT", r.ttft);
  latency_block(out, "Time per Output Token (excl. 1st token)", "TPOT", r.tpot);
  latency_block(out, "Inter-token Latency", "ITL", r.itl);

  rule(out, "KV Cache", '-');
  row(out, "KV cache dtype:", r.kv_cache_dtype);
  row(out, "KV memory per token (bytes):", r.kv_bytes_per_token, 1);
  row(out, "KV cache blocks:", r.kv_num_blocks);
  row(out, "KV cache size (GiB):", r.kv_cache_gib, 3);
  row(out, "Tokens that fit:", r.kv_tokens_fit);
  row(out, "Max concurrency (full requests):", r.max_concurrency_fit);
  row(out, "Peak blocks used:", r.peak_blocks_used);
  row(out, "Prefix cache hit rate (%):",
      r.prefix_caching ? fmt::format("{:.2f}", 100.0 * r.prefix_cache_hit_rate)
                       : std::string("off"));
  row(out, "Preemptions (recompute):", r.preemptions);
  if (r.blocks_in_use_at_end != 0) row(out, "Blocks still in use (leak):", r.blocks_in_use_at_end);

  rule(out, "Accuracy vs float64 reference", '-');
  row(out, "Sampled steps (layer 0):", r.accuracy.sampled_steps);
  row(out, "Sampled query rows:", r.accuracy.sampled_rows);
  row(out, "Max abs error:", fmt::format("{:.3e}", r.accuracy.max_abs_error));
  row(out, "Mean abs error:", fmt::format("{:.3e}", r.accuracy.mean_abs_error()));
  row(out, "Cosine similarity:", r.accuracy.cosine(), 6);
  row(out, "Min cosine (one token, one head):", r.accuracy.min_row_cosine, 6);
  if (r.accuracy.non_finite > 0) row(out, "Non-finite outputs:", r.accuracy.non_finite);
  if (r.accuracy.sampled_rows > 0) {
    row(out, "NMSE:", fmt::format("{:.3e}", r.accuracy.nmse()));
    row(out, "NMSE bound:",
        fmt::format("{:.1e} ({}): {}", r.accuracy_bound_nmse, r.accuracy_bound_source,
                    r.accuracy_within_bound ? "within" : "EXCEEDED"));
  }

  rule(out, "Engine", '-');
  row(out,
      "Plugin:", fmt::format("{} {} (ABI {})", r.plugin_name, r.plugin_version, r.abi_version));
  row(out, "Backend:",
      r.layer_impl.empty() ? r.backend : fmt::format("{} ({})", r.backend, r.layer_impl));
  if (r.tensor_parallel_size > 1) row(out, "Tensor parallel ranks:", r.tensor_parallel_size);
  for (size_t rank = 0; rank < r.rank_devices.size(); ++rank) {
    if (r.rank_devices.size() == 1 && r.rank_devices[0] == "cpu") break;  // the usual case
    row(out,
        r.rank_devices.size() == 1 ? std::string("Device:")
                                   : fmt::format("  rank {} device:", rank),
        r.rank_devices[rank]);
  }
  row(out, "Steps:", r.num_steps);
  for (const auto& [state, count] : r.steps_by_attention_state) {
    row(out, fmt::format("  {} steps:", state), count);
  }
  row(out, "Time in attention calls (s):", r.attention_seconds);
  fmt::print(out, "{}\n", std::string(50, '='));
  for (const auto& [message, count] : r.errors) {
    fmt::print(out, "failed ({} request{}): {}\n", count, count == 1 ? "" : "s", message);
  }
}

std::string report_json_text(const BenchmarkReport& r) {
  nlohmann::json requests = nlohmann::json::array();
  for (const auto& q : r.requests) {
    requests.push_back({{"id", q.id},
                        {"prompt_len", q.prompt_len},
                        {"output_len", q.output_len},
                        {"success", q.success},
                        {"ttft_ms", q.ttft_ms},
                        {"latency_ms", q.latency_ms},
                        {"error", q.error}});
  }
  const nlohmann::json json = {
      {"deployment", r.deployment},
      {"plugin",
       {{"path", r.plugin_path},
        {"name", r.plugin_name},
        {"version", r.plugin_version},
        {"abi", r.abi_version}}},
      {"backend", r.backend},
      {"layer_impl", r.layer_impl},
      {"kv_cache_dtype", r.kv_cache_dtype},
      {"model",
       {{"num_layers", r.num_layers},
        {"num_heads", r.num_heads},
        {"num_kv_heads", r.num_kv_heads},
        {"head_size", r.head_size},
        {"dtype", r.model_dtype}}},
      {"threads", r.threads},
      {"tensor_parallel_size", r.tensor_parallel_size},
      {"rank_devices", r.rank_devices},
      {"request_rate", r.request_rate},
      {"max_concurrency", r.max_concurrency},
      {"completed", r.completed},
      {"failed", r.failed},
      {"duration", r.duration_s},
      {"total_input_tokens", r.total_input_tokens},
      {"total_output_tokens", r.total_output_tokens},
      {"request_throughput", r.request_throughput},
      {"output_throughput", r.output_throughput},
      {"total_token_throughput", r.total_token_throughput},
      {"ttft", latency_json(r.ttft)},
      {"tpot", latency_json(r.tpot)},
      {"itl", latency_json(r.itl)},
      {"e2el", latency_json(r.e2el)},
      {"ttfts_ms", r.ttft.samples_ms},
      {"itls_ms", r.itl.samples_ms},
      {"num_steps", r.num_steps},
      {"steps_by_attention_state", r.steps_by_attention_state},
      {"attention_seconds", r.attention_seconds},
      {"kv_cache",
       {{"bytes_per_token", r.kv_bytes_per_token},
        {"num_blocks", r.kv_num_blocks},
        {"block_size", r.kv_block_size},
        {"tokens_fit", r.kv_tokens_fit},
        {"size_gib", r.kv_cache_gib},
        {"peak_blocks_used", r.peak_blocks_used},
        {"max_concurrency", r.max_concurrency_fit},
        {"prefix_caching", r.prefix_caching},
        {"prefix_cache_hit_rate", r.prefix_cache_hit_rate},
        {"blocks_in_use_at_end", r.blocks_in_use_at_end}}},
      {"preemptions", r.preemptions},
      {"accuracy",
       {{"sampled_steps", r.accuracy.sampled_steps},
        {"sampled_rows", r.accuracy.sampled_rows},
        {"max_abs_error", r.accuracy.max_abs_error},
        {"mean_abs_error", r.accuracy.mean_abs_error()},
        {"cosine", r.accuracy.cosine()},
        {"min_cosine", r.accuracy.min_row_cosine},
        {"non_finite", r.accuracy.non_finite},
        {"nmse", r.accuracy.nmse()},  // NaN (nothing sampled) dumps as null
        {"bound_nmse", r.accuracy_bound_nmse},
        {"bound_source", r.accuracy_bound_source},
        {"within_bound", r.accuracy_within_bound}}},
      {"errors", r.errors},
      {"requests", requests},
  };
  return json.dump(2);
}

void write_report_json(const BenchmarkReport& report, const std::filesystem::path& file) {
  // Through a temporary file renamed over the target: a full disk or a
  // crash never leaves half a JSON document behind.
  std::filesystem::path temp = file;
  temp += fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << report_json_text(report) << '\n';
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      throw Error(fmt::format("cannot write the JSON report to {}", file.string()));
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, file, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    throw Error(fmt::format("cannot write the JSON report to {}: {}", file.string(), ec.message()));
  }
}

void check_report_path(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw Error(fmt::format("--json {}: is a directory", file.string()));
  const std::filesystem::path dir =
      file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir, ec))
    throw Error(
        fmt::format("--json {}: the folder {} does not exist", file.string(), dir.string()));
  if (::access(dir.c_str(), W_OK) != 0)
    throw Error(
        fmt::format("--json {}: the folder {} is not writable", file.string(), dir.string()));
}

}  // namespace kvq::host
