// The kvq command line (run, inspect, bench, conform, make-checkpoint,
// compare), defined with CLI11 in cli.cpp.
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

// `args` excludes the program name. Reports and help go to `out`, errors to
// `err`. `conform` replaces the process with kvq-conform (it returns only on
// error).
int run_cli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace kvq::host
