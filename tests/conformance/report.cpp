#include "report.hpp"

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace kvq::conform {

void PluginReport::take(const nlohmann::json& message) {
  const std::string type = message.value("type", "");
  if (type == "matrix") {
    matrix = message;
  } else if (type == "result") {
    cases.push_back(
        {message.value("case", "?"), message.value("status", "FAIL"), message.value("detail", "")});
  }
}

namespace {

// A case line stays one line: newlines from plugin messages or tools become
// spaces, and very long details are cut (the --json file keeps them whole).
std::string one_line(const std::string& detail) {
  std::string out = detail.substr(0, 400);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (char& c : out)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return detail.size() > 400 ? out + "..." : out;
}

}  // namespace

void Report::add(PluginReport plugin) {
  std::printf("== %s (%s)\n", plugin.label.c_str(), plugin.path.c_str());
  if (plugin.matrix.is_object()) {
    const nlohmann::json& id = plugin.matrix["identity"];
    std::printf("%s %s by %s, ABI %s, SIMD %s\n", id.value("name", "").c_str(),
                id.value("version", "").c_str(), id.value("vendor", "").c_str(),
                id.value("abi", "").c_str(), id.value("simd_level", "").c_str());
    std::printf("support matrix:\n");
    for (const auto& m : plugin.matrix["modes"])
      std::printf("  %-12s %-32s %s\n", m.value("backend", "").c_str(), m.value("mode", "").c_str(),
                  m.value("supported", false) ? "supported" : "unsupported (not built)");
    for (const auto& s : plugin.matrix["schemes"]) {
      const std::string key = s.value("quant_type", "") + "/" + s.value("layer_type", "");
      std::printf("  %-12s %-32s %s\n", "scheme", key.c_str(),
                  s.value("supported", false) ? "supported" : "unsupported (not built)");
    }
  } else {
    std::printf("support matrix: unavailable (the plugin did not get that far)\n");
  }
  for (const CaseResult& c : plugin.cases) {
    std::printf("%s %s %s", c.status.c_str(), plugin.label.c_str(), c.name.c_str());
    if (!c.detail.empty()) std::printf(" \u2014 %s", one_line(c.detail).c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
  plugins_.push_back(std::move(plugin));
}

int Report::count(const std::string& status) const {
  int n = 0;
  for (const PluginReport& p : plugins_)
    for (const CaseResult& c : p.cases) n += c.status == status;
  return n;
}

std::string Report::totals() const {
  return std::to_string(passed()) + " passed, " + std::to_string(failed()) + " failed, " +
         std::to_string(skipped()) + " skipped";
}

void Report::write_json(const std::string& path) const {
  nlohmann::json plugins = nlohmann::json::array();
  for (const PluginReport& p : plugins_) {
    nlohmann::json cases = nlohmann::json::array();
    for (const CaseResult& c : p.cases)
      cases.push_back({{"case", c.name}, {"status", c.status}, {"detail", c.detail}});
    nlohmann::json entry = {{"path", p.path}, {"plugin", p.label}, {"cases", cases}};
    if (p.matrix.is_object()) {
      entry["identity"] = p.matrix["identity"];
      entry["modes"] = p.matrix["modes"];
      entry["schemes"] = p.matrix["schemes"];
    }
    plugins.push_back(std::move(entry));
  }
  const nlohmann::json doc = {
      {"plugins", plugins}, {"passed", passed()}, {"failed", failed()}, {"skipped", skipped()}};
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace kvq::conform
