// The case layers of the suite, run in order inside the plugin's child
// process. Each reports its cases to the log.
#pragma once

#include <kvq_abi.h>

#include <string>

#include "case_log.hpp"
#include "plugin_session.hpp"

namespace kvq::conform {

// dlopen, export list, entry table. Fills plugin.handle/api; false when
// nothing else can be run on this plugin.
bool run_load_cases(CaseLog& log, Plugin& plugin);
// Version negotiation, struct sizes, NULL handling, capabilities, leaks.
void run_contract_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info);
// ABI 1.1 structs: host_info and out-structs at their 1.0 / 1.1 sizes with
// poisoned tails, the 1.1 record fields, layer options, the struct variants
// of the positional functions, argument structs from a 1.0 host.
void run_struct_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info);
// ABI 1.1 device hooks (skipped for a CPU plugin without them).
void run_device_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info);
// Exact error codes for bad input.
void run_error_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info);
// Unquantized modes against the float64 reference.
void run_numeric_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info);
// Quantized modes (int8/fp8/int4 per-token-head, fp8 per-tensor) and the C8
// scheme: write path byte-exact against the suite's IEEE reference, read path
// and end-to-end against the float64 reference.
void run_quantized_numeric_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info);
// The golden vectors in `vectors_dir`.
void run_vector_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info,
                      const std::string& vectors_dir);

}  // namespace kvq::conform
