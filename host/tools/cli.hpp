// The kvq command line: run, inspect, conform. Kept in the library so tests
// and a future engine binary share it.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kvq::host {

// Exit codes of kvq.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;           // config, plugin or I/O error
inline constexpr int kExitUsage = 2;           // bad command line
inline constexpr int kExitFailedRequests = 3;  // run finished, some requests failed
inline constexpr int kExitAccuracy = 4;        // run finished, outputs beyond the accuracy bound

// `args` excludes the program name. Reports go to `out`, errors to `err`.
// `conform` replaces the process with kvq-conform (it returns only on error).
int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace kvq::host
