// Helpers shared by the host tests: scratch folders, files, child processes.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kvq::host::testing {

// A fresh folder under the test temp dir, removed with its contents.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Writes `text` to path()/name and returns the full path.
  std::filesystem::path write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

std::string read_text(const std::filesystem::path& file);

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] with the arguments, waits, and captures stdout and stderr.
ProcessResult run_process(const std::vector<std::string>& argv);

// Paths baked in by CMake; empty when the build has no such plugin.
std::string triton_plugin();
std::string ascend_plugin();
// The arena test plugin (tests/fixtures): the triton backend behind opaque
// device memory that only its hooks reach.
std::string arena_plugin();

}  // namespace kvq::host::testing

// Skips a test whose plugin this build lacks (the path CMake baked in is "").
#define REQUIRE_PLUGIN(path) \
  if (std::string(path).empty()) GTEST_SKIP() << "this build has no such plugin"
