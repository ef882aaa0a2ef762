// The progress bar of `kvq run`: drawn on stderr when stderr is a terminal
// (frames "\r\033[K[###---] n/N requests ..."), never when it is a pipe, so
// logs and CI output stay clean.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <string>
#include <vector>

#include "test_support.hpp"

extern char** environ;

namespace kvq::host {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Runs argv with stderr on a pseudo-terminal (terminal = true) or a pipe,
// stdout discarded; returns everything written to stderr.
std::string stderr_of(const std::vector<std::string>& argv, bool terminal, int* exit_code) {
  int read_end = -1, write_end = -1;
  if (terminal) {
    if (openpty(&read_end, &write_end, nullptr, nullptr, nullptr) != 0) return "openpty failed";
  } else {
    int fds[2];
    if (pipe(fds) != 0) return "pipe failed";
    read_end = fds[0];
    write_end = fds[1];
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end, STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, read_end);
  std::vector<std::string> owned = argv;
  std::vector<char*> raw;
  for (auto& a : owned) raw.push_back(a.data());
  raw.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, raw[0], &actions, nullptr, raw.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(write_end);
  std::string text;
  if (spawned == 0) {
    // Read while the child runs (a full terminal buffer would block it);
    // a pty's read end reports EIO once the child has closed its side.
    std::array<char, 4096> buf{};
    for (ssize_t n; (n = read(read_end, buf.data(), buf.size())) > 0;)
      text.append(buf.data(), static_cast<size_t>(n));
    int status = 0;
    waitpid(pid, &status, 0);
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  close(read_end);
  return text;
}

std::filesystem::path deployment(const testing::ScratchDir& dir) {
  return dir.write("d.yaml", "plugin: {path: '" + testing::triton_plugin() +
                                 "'}\nbackend: triton\n"
                                 "model: {num_layers: 1, num_heads: 4, num_kv_heads: 2, "
                                 "head_size: 64, dtype: bf16}\n"
                                 "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 64}\n"
                                 "workload: {num_prompts: 12, input_len: 64, output_len: 24, "
                                 "seed: 1}\nthreads: 1\n");
}

TEST(ProgressBar, DrawnOnATerminal) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const testing::ScratchDir dir;
  int rc = -1;
  const std::string err = stderr_of({KVQ_TEST_KVQ_EXE, "run", deployment(dir).string()}, true, &rc);
  EXPECT_EQ(rc, 0) << err;
  EXPECT_THAT(err, HasSubstr("\r\033[K[")) << "no progress frame";
  EXPECT_THAT(err, HasSubstr("/12 requests, ")) << err;
  // The bar is cleared at the end: the last frame is followed by a clear.
  EXPECT_NE(err.rfind("\r\033[K"), err.rfind("\r\033[K["));
}

TEST(ProgressBar, NeverDrawnInAPipe) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const testing::ScratchDir dir;
  int rc = -1;
  const std::string err =
      stderr_of({KVQ_TEST_KVQ_EXE, "run", deployment(dir).string()}, false, &rc);
  EXPECT_EQ(rc, 0) << err;
  EXPECT_THAT(err, Not(HasSubstr("\033[K")));
  EXPECT_THAT(err, Not(HasSubstr("requests, ")));
}

TEST(ProgressBar, OffOnATerminalWithNoProgress) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const testing::ScratchDir dir;
  int rc = -1;
  const std::string err =
      stderr_of({KVQ_TEST_KVQ_EXE, "run", deployment(dir).string(), "--no-progress"}, true, &rc);
  EXPECT_EQ(rc, 0) << err;
  EXPECT_THAT(err, Not(HasSubstr("\033[K")));
}

}  // namespace
}  // namespace kvq::host
