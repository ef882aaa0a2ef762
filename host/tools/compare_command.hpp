// `kvq compare A.json B.json`: two runs' reports (the `kvq run --json FILE`
// output) side by side with the ratio B/A of every figure that matters when
// choosing a KV-cache mode: memory per token, tokens and requests that fit,
// throughput, TTFT / TPOT / ITL, and accuracy against float64.
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace kvq::host {

// One row; a value is nullopt when the report holds null there (e.g. the
// cosine of a run without accuracy samples).
struct ComparedMetric {
  std::string section;  // "KV Cache", "Throughput", "Latency", "Accuracy"
  std::string label;
  std::optional<double> a;
  std::optional<double> b;
  int decimals = 2;         // as `kvq run` prints it
  bool scientific = false;  // errors: %.3e

  // b / a; nullopt when a value is missing or a is 0.
  std::optional<double> ratio() const;
};

struct ReportComparison {
  std::string a_file, b_file;
  std::string a_run, b_run;  // "backend triton, KV cache int8_per_token_head, 16/16 ok"
  std::vector<ComparedMetric> metrics;
};

// Reads both reports. Throws Error naming the file for a missing or
// unreadable file, text that is not JSON, or JSON that is not a kvq run
// report (and naming the key when a figure is missing or not a number).
ReportComparison compare_report_files(const std::filesystem::path& a,
                                      const std::filesystem::path& b);

// The side-by-side table (ratios with 3 decimals, "-" when undefined).
void print_comparison(const ReportComparison& comparison, std::ostream& out);

}  // namespace kvq::host
