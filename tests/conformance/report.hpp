// The parent's view of the results: one block per plugin (support matrix,
// then every case line), the totals line, and the --json file.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvq::conform {

struct CaseResult {
  std::string name;
  std::string status;  // "PASS", "FAIL" or "SKIP"
  std::string detail;
};

struct PluginReport {
  std::string path;
  std::string label;      // the file name, as case lines name the plugin
  nlohmann::json matrix;  // the child's "matrix" message, or null
  std::vector<CaseResult> cases;

  // Takes one message from the child (a result or the matrix).
  void take(const nlohmann::json& message);
};

class Report {
 public:
  // Prints the plugin's block to stdout and keeps it for the totals.
  void add(PluginReport plugin);
  int passed() const { return count("PASS"); }
  int failed() const { return count("FAIL"); }
  int skipped() const { return count("SKIP"); }
  // "N passed, M failed, K skipped"
  std::string totals() const;
  // Throws std::runtime_error when the file cannot be written.
  void write_json(const std::string& path) const;

 private:
  int count(const std::string& status) const;
  std::vector<PluginReport> plugins_;
};

}  // namespace kvq::conform
