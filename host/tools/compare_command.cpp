#include "compare_command.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kvq_files/errors.hpp"
#include "kvq_files/text_file.hpp"

namespace kvq::host {
namespace {

using nlohmann::json;

// Keys every `kvq run --json` report has; their absence means the file is
// some other JSON.
constexpr const char* kReportKeys[] = {"plugin", "backend", "kv_cache", "ttft",
                                       "tpot",   "itl",     "accuracy"};

json read_report(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    throw Error(
        fmt::format("{}: no such file (write a report with kvq run --json FILE)", file.string()));
  }
  const std::string text = read_text_file(file, "run report");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  }
  if (!j.is_object()) {
    throw Error(fmt::format("{}: not a kvq run report (a JSON {}, not an object)", file.string(),
                            j.type_name()));
  }
  for (const char* key : kReportKeys) {
    if (!j.contains(key)) {
      throw Error(fmt::format(
          "{}: not a kvq run report (no \"{}\" key; write one with kvq run --json FILE)",
          file.string(), key));
    }
  }
  return j;
}

// The number at a dotted path; nullopt for null (JSON has no NaN: the
// writer stores a NaN as null). Anything else is an error naming the key.
std::optional<double> number_at(const std::filesystem::path& file, const json& report,
                                const std::string& path) {
  const json* node = &report;
  size_t at = 0;
  while (true) {
    const size_t dot = path.find('.', at);
    const std::string key = path.substr(at, dot == std::string::npos ? dot : dot - at);
    if (!node->is_object() || !node->contains(key)) {
      throw Error(
          fmt::format("{}: the kvq run report has no \"{}\" (written by another kvq version?)",
                      file.string(), path));
    }
    node = &(*node)[key];
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  if (node->is_null()) return std::nullopt;
  if (!node->is_number()) {
    throw Error(
        fmt::format("{}: \"{}\" must be a number, not {}", file.string(), path, node->dump()));
  }
  return node->get<double>();
}

std::string string_at(const json& report, const char* key) {
  const auto it = report.find(key);
  return it != report.end() && it->is_string() ? it->get<std::string>() : std::string("?");
}

std::string run_summary(const std::filesystem::path& file, const json& report) {
  const auto completed = number_at(file, report, "completed");
  const auto failed = number_at(file, report, "failed");
  return fmt::format("backend {}, KV cache {}, {} ok / {} failed", string_at(report, "backend"),
                     string_at(report, "kv_cache_dtype"), completed.value_or(0),
                     failed.value_or(0));
}

struct MetricSpec {
  const char* section;
  const char* label;
  const char* path;
  int decimals;
  bool scientific;
};

constexpr MetricSpec kMetrics[] = {
    {"KV Cache", "KV memory per token (bytes):", "kv_cache.bytes_per_token", 1, false},
    {"KV Cache", "Tokens that fit:", "kv_cache.tokens_fit", 0, false},
    {"KV Cache", "Max concurrency (full requests):", "kv_cache.max_concurrency", 2, false},
    {"Throughput", "Request throughput (req/s):", "request_throughput", 2, false},
    {"Throughput", "Output token throughput (tok/s):", "output_throughput", 2, false},
    {"Throughput", "Total Token throughput (tok/s):", "total_token_throughput", 2, false},
    {"Latency", "Mean TTFT (ms):", "ttft.mean_ms", 2, false},
    {"Latency", "Median TTFT (ms):", "ttft.median_ms", 2, false},
    {"Latency", "P99 TTFT (ms):", "ttft.p99_ms", 2, false},
    {"Latency", "Mean TPOT (ms):", "tpot.mean_ms", 2, false},
    {"Latency", "Median TPOT (ms):", "tpot.median_ms", 2, false},
    {"Latency", "P99 TPOT (ms):", "tpot.p99_ms", 2, false},
    {"Latency", "Mean ITL (ms):", "itl.mean_ms", 2, false},
    {"Latency", "Median ITL (ms):", "itl.median_ms", 2, false},
    {"Latency", "P99 ITL (ms):", "itl.p99_ms", 2, false},
    {"Accuracy", "Max abs error:", "accuracy.max_abs_error", 3, true},
    {"Accuracy", "Mean abs error:", "accuracy.mean_abs_error", 3, true},
    {"Accuracy", "Cosine similarity:", "accuracy.cosine", 6, false},
};

std::string value_text(const std::optional<double>& v, const ComparedMetric& m) {
  if (!v) return "-";
  return m.scientific ? fmt::format("{:.{}e}", *v, m.decimals)
                      : fmt::format("{:.{}f}", *v, m.decimals);
}

}  // namespace

std::optional<double> ComparedMetric::ratio() const {
  if (!a || !b || *a == 0.0) return std::nullopt;
  return *b / *a;
}

ReportComparison compare_report_files(const std::filesystem::path& a,
                                      const std::filesystem::path& b) {
  const json ja = read_report(a);
  const json jb = read_report(b);
  ReportComparison out;
  out.a_file = a.string();
  out.b_file = b.string();
  out.a_run = run_summary(a, ja);
  out.b_run = run_summary(b, jb);
  for (const MetricSpec& spec : kMetrics) {
    out.metrics.push_back(ComparedMetric{spec.section, spec.label, number_at(a, ja, spec.path),
                                         number_at(b, jb, spec.path), spec.decimals,
                                         spec.scientific});
  }
  return out;
}

void print_comparison(const ReportComparison& c, std::ostream& out) {
  fmt::print(out, "{:=^80}\n", " kvq compare ");
  fmt::print(out, "A: {} ({})\n", c.a_file, c.a_run);
  fmt::print(out, "B: {} ({})\n", c.b_file, c.b_run);
  fmt::print(out, "{:<40} {:>14} {:>14} {:>9}\n", "", "A", "B", "B/A");
  std::string section;
  for (const ComparedMetric& m : c.metrics) {
    if (m.section != section) {
      section = m.section;
      fmt::print(out, "{:-^80}\n", section);
    }
    const auto ratio = m.ratio();
    fmt::print(out, "{:<40} {:>14} {:>14} {:>9}\n", m.label, value_text(m.a, m), value_text(m.b, m),
               ratio ? fmt::format("{:.3f}", *ratio) : std::string("-"));
  }
  fmt::print(out, "{}\n", std::string(80, '='));
}

}  // namespace kvq::host
