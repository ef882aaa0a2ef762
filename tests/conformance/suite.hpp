// What the child process runs for one plugin: the case layers in order.
#pragma once

#include <string>

#include "case_log.hpp"

namespace kvq::conform {

struct SuiteOptions {
  std::string vectors_dir;
  bool only_contract = false;  // load, contract and error-code cases only
};

void run_plugin_suite(CaseLog& log, const std::string& plugin_path, const SuiteOptions& options);

}  // namespace kvq::conform
