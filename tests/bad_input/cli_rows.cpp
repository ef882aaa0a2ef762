// The `kvq` command's own inputs (issue #17, classes 7 and 8): outputs that
// could be left half-written, and input that used to be ignored. Each row
// runs the real command and checks its exit status, its message and the
// files it leaves.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include "bad_input.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::testing::read_text;
using host::testing::run_process;
using host::testing::ScratchDir;
namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> make_checkpoint_args(const fs::path& out,
                                              std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {KVQ_TEST_KVQ_EXE,
                                   "make-checkpoint",
                                   out.string(),
                                   "--mode",
                                   "fp8",
                                   "--layers",
                                   "1",
                                   "--heads",
                                   "4",
                                   "--kv-heads",
                                   "2",
                                   "--head-size",
                                   "64"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// No staging or set-aside folder may be left beside the target.
void expect_no_leftovers(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_THAT(entry.path().filename().string(),
                Not(::testing::AnyOf(HasSubstr(".partial-"), HasSubstr(".old-"))));
}

TEST(CliRows, MakeCheckpointIntoAFolderHoldingOtherFilesIsRefusedUnchanged) {
  const ScratchDir dir;
  const fs::path out = dir.path() / "ckpt";
  fs::create_directories(out / "model.safetensors");  // a directory where the file would go
  std::ofstream(out / "notes.txt") << "mine";
  const DirSnapshot before = snapshot_dir(dir.path());
  const auto r = run_process(make_checkpoint_args(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ckpt is not empty; pass --force to replace it"));
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

TEST(CliRows, MakeCheckpointWithForceReplacesTheFolderWhole) {
  const ScratchDir dir;
  const fs::path out = dir.path() / "ckpt";
  fs::create_directories(out / "model.safetensors");
  std::ofstream(out / "stale-00002.safetensors") << "old shard";
  const auto r = run_process(make_checkpoint_args(out, {"--force"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
  EXPECT_TRUE(fs::is_regular_file(out / "config.json"));
  EXPECT_TRUE(fs::is_regular_file(out / "quant_model_description.json"));
  EXPECT_FALSE(fs::exists(out / "stale-00002.safetensors"));  // nothing old mixed in
  expect_no_leftovers(dir.path());
}

TEST(CliRows, MakeCheckpointOntoAFileIsRefused) {
  const ScratchDir dir;
  std::ofstream(dir.path() / "ckpt") << "a file";
  const DirSnapshot before = snapshot_dir(dir.path());
  const auto r = run_process(make_checkpoint_args(dir.path() / "ckpt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ckpt exists and is not a directory"));
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

std::string small_deployment() {
  return "plugin: {path: '" + std::string(KVQ_TEST_TRITON_SIM_PLUGIN) +
         "'}\nbackend: triton\nmodel: {num_layers: 1, num_heads: 4, num_kv_heads: 2, head_size: "
         "64, dtype: bf16}\nkv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 64}\n"
         "workload: {num_prompts: 2, input_len: 16, output_len: 2}\n";
}

// An unwritable --json is found before serving, not after the whole run.
TEST(CliRows, RunJsonIntoAMissingFolderFailsBeforeServing) {
  const ScratchDir dir;
  const auto yaml = dir.write("d.yaml", small_deployment());
  const auto r = run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string(), "--json",
                              (dir.path() / "no" / "such" / "r.json").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
  EXPECT_THAT(r.out, Not(HasSubstr("Serving Benchmark Result")));
}

TEST(CliRows, RunJsonThatIsADirectoryFailsBeforeServing) {
  const ScratchDir dir;
  const auto yaml = dir.write("d.yaml", small_deployment());
  fs::create_directory(dir.path() / "r.json");
  const auto r = run_process(
      {KVQ_TEST_KVQ_EXE, "run", yaml.string(), "--json", (dir.path() / "r.json").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("r.json: is a directory"));
  EXPECT_THAT(r.out, Not(HasSubstr("Serving Benchmark Result")));
}

TEST(CliRows, RunJsonIsWrittenWholeWithNoTemporaryLeft) {
  const ScratchDir dir;
  const auto yaml = dir.write("d.yaml", small_deployment());
  const auto r = run_process(
      {KVQ_TEST_KVQ_EXE, "run", yaml.string(), "--json", (dir.path() / "r.json").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(read_text(dir.path() / "r.json"), HasSubstr("\"completed\": 2"));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr(".tmp")));
}

TEST(CliRows, BenchFilterMatchingNothingIsAnError) {
  const auto r = run_process({KVQ_TEST_KVQ_EXE, "bench", "--quick", "--filter", "decode nothing"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AllOf(HasSubstr("--filter 'decode nothing' matches no case"),
                           HasSubstr("decode int8_pth")));
}

// Launcher variables copied into a plain shell: MPI would start one rank
// that serves alone while the deployment says two.
TEST(CliRows, MpiVariablesWithoutMpirunAreRefused) {
  const ScratchDir dir;
  const auto yaml =
      dir.write("d.yaml", small_deployment() + "parallel: {tensor_parallel_size: 2}\n");
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  const auto r = run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string()});
  unsetenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, AnyOf(HasSubstr("but MPI started 1: launch with mpirun -np 2"),
                           HasSubstr("built without it")));
}

// A split the KV heads cannot take is said before "run mpirun -np N".
TEST(CliRows, AKvHeadSplitThatCannotWorkIsNamedFirst) {
  const ScratchDir dir;
  std::string yaml_text = small_deployment() + "parallel: {tensor_parallel_size: 4}\n";
  const auto yaml = dir.write("d.yaml", yaml_text);
  const auto r = run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("model.num_kv_heads (2) must be a multiple of tensor_parallel_size"));
  EXPECT_THAT(r.err, Not(HasSubstr("mpirun")));
}

// Command lines CLI11 refuses: exit 2, a message naming the argument, and
// the help of the command that was given (what it does accept).
struct UsageRow {
  std::vector<std::string> args;
  std::string message;
  std::string help;  // a line of the help printed after the message
};

TEST(CliRows, BadCommandLinesAreUsageErrorsNamingTheArgument) {
  const ScratchDir dir;
  const std::string out = (dir.path() / "out").string();
  const std::vector<UsageRow> rows = {
      {{}, "kvq: no command given", "usage: kvq [OPTIONS] SUBCOMMAND"},
      {{"--bogus"}, "kvq: unknown option '--bogus'", "usage: kvq [OPTIONS] SUBCOMMAND"},
      {{"--log-level", "loud", "run"},
       "--log-level: unknown log level 'loud' (trace, debug, info, warn, error, off)",
       "usage: kvq run"},  // the help of the command given
      {{"run", "--bogus"}, "not expected: --bogus", "usage: kvq run"},
      {{"run", "a.yaml", "b.yaml"}, "not expected: b.yaml", "usage: kvq run"},
      {{"run", "--json"}, "--json: 1 required FILE missing", "usage: kvq run"},
      {{"run", "--accuracy-every", "abc"},
       "--accuracy-every: needs a count >= 0, got 'abc'",
       "usage: kvq run"},
      {{"run", "--accuracy-every", "-1"},
       "--accuracy-every: needs a count >= 0, got '-1'",
       "usage: kvq run"},
      {{"inspect"}, "PLUGIN.so is required", "usage: kvq inspect"},
      {{"bench", "--threads", "1,0"}, "--threads: needs a count >= 1, got '0'", "usage: kvq bench"},
      {{"bench", "--min-time", "soon"},
       "--min-time: needs seconds >= 0, got 'soon'",
       "usage: kvq bench"},
      {{"make-checkpoint", out}, "--mode is required", "usage: kvq make-checkpoint"},
      {{"make-checkpoint", "--mode", "C8"}, "OUT_DIR is required", "usage: kvq make-checkpoint"},
      {{"make-checkpoint", out, "--mode", "C8", "--dtype", "bf8"},
       "--dtype: must be bf16, fp16 or fp32, got 'bf8'",
       "usage: kvq make-checkpoint"},
      {{"make-checkpoint", out, "--mode", "C8", "--layers", "two"},
       "--layers: needs a count >= 0, got 'two'",
       "usage: kvq make-checkpoint"},
      {{"compare", "a.json"}, "B.json is required", "usage: kvq compare"},
  };
  for (const UsageRow& row : rows) {
    std::vector<std::string> argv = {KVQ_TEST_KVQ_EXE};
    argv.insert(argv.end(), row.args.begin(), row.args.end());
    const auto before = snapshot_dir(dir.path());
    const auto r = run_process(argv);
    const std::string what = ::testing::PrintToString(row.args);
    EXPECT_EQ(r.exit_code, 2) << what;
    EXPECT_THAT(r.err, AllOf(HasSubstr(row.message), HasSubstr(row.help))) << what;
    EXPECT_EQ(r.out, "") << what;
    EXPECT_EQ(snapshot_dir(dir.path()), before) << what;  // no "out" folder made
  }
}

}  // namespace
}  // namespace kvq::bad_input
