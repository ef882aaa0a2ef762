// Runs one plugin's cases in a forked child so that a crash, a hang or stray
// output of the plugin fails that plugin and never the suite.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "case_log.hpp"

namespace kvq::conform {

// Forks, redirects the child's stdout/stderr to temporary files, runs
// `body` there and forwards every message it sends to `on_message` as it
// arrives. The parent kills the child after `timeout_seconds`. A crash or a
// timeout becomes a failed result for the case that was running; anything
// the child printed becomes a failed "contract.silent_*" case.
void run_in_child(double timeout_seconds, const std::function<void(CaseLog&)>& body,
                  const std::function<void(const nlohmann::json&)>& on_message);

}  // namespace kvq::conform
