#include "suite.hpp"

#include "cases.hpp"
#include "plugin_session.hpp"

namespace kvq::conform {
namespace {

const char* or_null(const char* s) {
  return s ? s : "(NULL)";
}

// The support matrix (backend x mode, schemes) and the plugin's identity,
// read defensively: contract.info_well_formed judges the record itself.
nlohmann::json matrix_message(const kvq_plugin_info& info) {
  nlohmann::json modes = nlohmann::json::array(), schemes = nlohmann::json::array();
  for (int64_t b = 0; info.backends && b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    for (int64_t m = 0; backend && backend->kv_modes && m < backend->num_kv_modes; ++m) {
      const kvq_kv_mode_info* mode = backend->kv_modes[m];
      if (!mode) continue;
      modes.push_back({{"backend", or_null(backend->name)},
                       {"mode", or_null(mode->name)},
                       {"supported", mode->supported != 0}});
    }
  }
  for (int64_t s = 0; info.schemes && s < info.num_schemes; ++s) {
    const kvq_scheme_info* scheme = info.schemes[s];
    if (!scheme) continue;
    schemes.push_back({{"quant_type", or_null(scheme->quant_type)},
                       {"layer_type", or_null(scheme->layer_type)},
                       {"supported", scheme->supported != 0}});
  }
  return {{"type", "matrix"},
          {"identity",
           {{"name", or_null(info.name)},
            {"version", or_null(info.version)},
            {"vendor", or_null(info.vendor)},
            {"abi", std::to_string(info.abi_major) + "." + std::to_string(info.abi_minor)},
            {"simd_level", or_null(info.simd_level)}}},
          {"modes", modes},
          {"schemes", schemes}};
}

}  // namespace

void run_plugin_suite(CaseLog& log, const std::string& plugin_path, const SuiteOptions& options) {
  Plugin plugin;
  plugin.path = plugin_path;
  if (!run_load_cases(log, plugin)) return;
  // A plugin that cannot run here (a GPU plugin without a GPU) is skipped
  // whole, with its probe's reason; it is judged where it can run.
  if (KVQ_API_HAS(plugin.api, probe)) {
    kvq_probe_result r{};
    r.struct_size = KVQ_PROBE_RESULT_SIZE;
    kvq_error* e = plugin.api->probe(&r);
    const bool cannot_run = e == nullptr && r.can_run != 1;
    const std::string reason = cannot_run && r.reason ? r.reason : "";
    plugin.api->error_destroy(e);
    if (cannot_run) {
      log.report("probe", skip("cannot run on this machine: " + reason));
      return;
    }
  }

  // One instance lives through every case: its info strings are read by all.
  Instance instance;
  kvq_plugin_info info{};
  bool have_info = false;
  log.run("contract.get_info", [&] {
    instance = negotiate(plugin.api);
    info = plugin_info(plugin.api, instance.get());
    have_info = true;
    return pass(std::string(or_null(info.name)) + " " + or_null(info.version));
  });
  if (!have_info) return;
  log.send(matrix_message(info));

  run_contract_cases(log, plugin, info);
  run_error_cases(log, plugin, info);
  if (options.only_contract) return;
  run_numeric_cases(log, plugin, info);
  run_quantized_numeric_cases(log, plugin, info);
  run_vector_cases(log, plugin, info, options.vectors_dir);
}

}  // namespace kvq::conform
