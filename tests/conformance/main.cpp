// kvq-conform: judges kvq plugin .so files against the ABI contract, the
// float64 reference and the golden vectors (spec/abi.md, "Conformance suite").
//
//   kvq-conform [--timeout SEC] [--vectors DIR] [--json FILE] [--only-contract] PLUGIN.so...
//
// Each plugin runs in its own child process; the last line is
// "N passed, M failed, K skipped" and the exit status is 0 iff M == 0.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "child_runner.hpp"
#include "report.hpp"
#include "suite.hpp"

#ifndef KVQ_CONFORM_VECTORS_DIR
#error "KVQ_CONFORM_VECTORS_DIR must name the shared golden-vector directory"
#endif

namespace {

struct Options {
  double timeout_seconds = 300.0;
  std::string json_path;
  std::vector<std::string> plugins;
  kvq::conform::SuiteOptions suite{KVQ_CONFORM_VECTORS_DIR, false};
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "kvq-conform: %s\n"
               "usage: kvq-conform [--timeout SEC (default 300)] [--vectors DIR] [--json FILE]\n"
               "                   [--only-contract] PLUGIN.so...\n",
               problem.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("KVQ_VECTORS_DIR"); env != nullptr && *env != '\0')
    o.suite.vectors_dir = env;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--timeout") {
      const std::string v = value();
      char* end = nullptr;
      o.timeout_seconds = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(o.timeout_seconds > 0))
        usage("--timeout needs a positive number of seconds, got \"" + v + "\"");
    } else if (arg == "--vectors") {
      o.suite.vectors_dir = value();
    } else if (arg == "--json") {
      o.json_path = value();
    } else if (arg == "--only-contract") {
      o.suite.only_contract = true;
    } else if (arg == "--help" || arg == "-h") {
      usage("help");
    } else if (!arg.empty() && arg[0] == '-') {
      usage("unknown option " + arg);
    } else {
      o.plugins.push_back(arg);
    }
  }
  if (o.plugins.empty()) usage("no plugin given");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  // The golden vectors are part of every full run: without them a plugin
  // would pass without ever meeting the independent reference.
  std::error_code ec;
  if (!options.suite.only_contract &&
      !std::filesystem::is_directory(options.suite.vectors_dir, ec)) {
    std::fprintf(stderr,
                 "kvq-conform: golden-vector folder %s not found (pass --vectors DIR or set "
                 "KVQ_VECTORS_DIR)\n",
                 options.suite.vectors_dir.c_str());
    return 2;
  }
  kvq::conform::Report report;
  for (const std::string& path : options.plugins) {
    kvq::conform::PluginReport plugin;
    plugin.path = path;
    plugin.label = path.substr(path.find_last_of('/') + 1);
    kvq::conform::run_in_child(
        options.timeout_seconds,
        [&](kvq::conform::CaseLog& log) { run_plugin_suite(log, path, options.suite); },
        [&](const nlohmann::json& message) { plugin.take(message); });
    report.add(std::move(plugin));
  }
  if (!options.json_path.empty()) {
    try {
      report.write_json(options.json_path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kvq-conform: %s\n", e.what());
      std::printf("%s\n", report.totals().c_str());
      return 1;
    }
  }
  std::printf("%s\n", report.totals().c_str());
  return report.failed() == 0 ? 0 : 1;
}
