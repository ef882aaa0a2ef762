// kvq: the host command (see cli.hpp).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"

int main(int argc, char** argv) {
  // Logs (the host's and the plugins', via the log callback) go to stderr,
  // so stdout carries only the report.
  spdlog::set_default_logger(spdlog::stderr_color_mt("kvq"));
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  const std::vector<std::string> args(argv + 1, argv + argc);
  return kvq::host::run_cli(args, std::cout, std::cerr);
}
