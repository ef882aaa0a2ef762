// Tensor parallelism: `mpirun -np 2 kvq run` (KV heads split across two
// processes, scales sharded by the plugin's loaders) must give the outputs of
// the single-rank run, head for head. The runs dump every step's outputs of
// every layer ([layer][token][head][dim], bf16) and the test compares them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kvq_engine/plugin.hpp"
#include "kvq_files/errors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using testing::ScratchDir;

constexpr int kHeads = 8;
constexpr int kHeadSize = 64;

std::vector<char> read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// "" when equal; otherwise where the first difference is.
std::string first_difference(const std::vector<char>& a, const std::vector<char>& b) {
  if (a.size() != b.size()) {
    return "sizes differ: " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  }
  const size_t head_bytes = kHeadSize * 2;  // bf16
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      const size_t row = i / head_bytes;
      return "first difference at head " + std::to_string(row % kHeads) + " of output row " +
             std::to_string(row / kHeads);
    }
  }
  return "";
}

std::string deployment(const std::string& body, int tp) {
  return body +
         "scheduler: {max_num_seqs: 4, max_num_batched_tokens: 64, chunked_prefill: true}\n"
         "workload: {num_prompts: 6, input_len: 100, output_len: 12, seed: 0, "
         "shared_prefix_len: 40}\nthreads: 1\nparallel: {tensor_parallel_size: " +
         std::to_string(tp) + "}\n";
}

// The outputs of `mpirun -np 2` equal the single rank's; returns rank 0's report.
std::string expect_two_ranks_equal_one(const ScratchDir& dir, const std::string& body,
                                       const std::string& parallel_extra = "") {
  const auto one = dir.write("tp1.yaml", deployment(body, 1));
  std::string two_text = deployment(body, 2);
  if (!parallel_extra.empty()) {
    two_text.insert(two_text.rfind('}'), ", " + parallel_extra);
  }
  const auto two = dir.write("tp2.yaml", two_text);
  const auto single = testing::run_process(
      {KVQ_TEST_KVQ_EXE, "run", one.string(), "--dump-outputs", (dir.path() / "tp1.bin").string()});
  EXPECT_EQ(single.exit_code, 0) << single.err;
  const auto ranks = testing::run_process(
      {KVQ_TEST_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2", KVQ_TEST_KVQ_EXE,
       "run", two.string(), "--dump-outputs", (dir.path() / "tp2.bin").string()});
  EXPECT_EQ(ranks.exit_code, 0) << ranks.err;
  EXPECT_THAT(ranks.out, HasSubstr("Tensor parallel ranks:                   2"));
  EXPECT_THAT(ranks.out, HasSubstr("Successful requests:                     6"));
  const auto a = read_bytes(dir.path() / "tp1.bin");
  const auto b = read_bytes(dir.path() / "tp2.bin");
  // Whole output rows, at least every request's own tokens (prefix hits
  // skip recomputing the shared 32 tokens) x 2 layers x 8 heads x 64.
  EXPECT_EQ(a.size() % (kHeads * kHeadSize * 2), 0u);
  EXPECT_GE(a.size(), size_t{6 * (111 - 32) * 2 * kHeads * kHeadSize * 2});
  EXPECT_EQ(first_difference(a, b), "");
  return ranks.out;
}

std::string triton_model_on(const std::string& plugin) {
  return "plugin: {path: '" + plugin +
         "', min_minor: 1}\nbackend: triton\n"
         "model: {num_layers: 2, num_heads: 8, num_kv_heads: 4, head_size: 64, dtype: "
         "bf16}\nkv_cache: {dtype: int8_per_token_head, block_size: 16, num_blocks: 64, "
         "prefix_caching: true}\n";
}

TEST(TensorParallelTest, TwoRanksEqualOneHeadForHeadTriton) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const ScratchDir dir;
  expect_two_ranks_equal_one(
      dir, "plugin: {path: '" + testing::triton_plugin() +
               "'}\nbackend: triton\n"
               "model: {num_layers: 2, num_heads: 8, num_kv_heads: 4, head_size: 64, dtype: "
               "bf16}\nkv_cache: {dtype: int8_per_token_head, block_size: 16, num_blocks: 64, "
               "prefix_caching: true}\n");
}

// C8's per-channel scales come from the checkpoint whole; each rank's loader
// takes its KV heads' channels.
TEST(TensorParallelTest, TwoRanksEqualOneHeadForHeadAscendC8Checkpoint) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::ascend_plugin().empty()) GTEST_SKIP() << "this build has no ascend plugin";
  const ScratchDir dir;
  const auto made =
      testing::run_process({KVQ_TEST_KVQ_EXE, "make-checkpoint", (dir.path() / "ckpt").string(),
                            "--mode", "C8", "--layers", "2", "--heads", "8", "--kv-heads", "4",
                            "--head-size", "64", "--calibration-tokens", "2048"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  expect_two_ranks_equal_one(dir, "plugin: {path: '" + testing::ascend_plugin() +
                                      "'}\nbackend: ascend\ncheckpoint: ckpt\n"
                                      "kv_cache: {block_size: 32, num_blocks: 32, "
                                      "prefix_caching: true}\n");
}

TEST(TensorParallelTest, TheShippedTwoRankExampleServesEveryRequest) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const auto example =
      std::filesystem::path(KVQ_SOURCE_DIR) / "deploy" / "triton_int8_per_token_head_tp2.yaml";
  const auto result =
      testing::run_process({KVQ_TEST_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                            KVQ_TEST_KVQ_EXE, "run", example.string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("Successful requests:                     16"));
  EXPECT_THAT(result.out, HasSubstr("Failed requests:                         0"));
  EXPECT_THAT(result.out, HasSubstr("Tensor parallel ranks:                   2"));
}

TEST(TensorParallelTest, ALaunchThatDoesNotMatchIsRefusedWithTheFix) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const ScratchDir dir;
  const auto file = dir.write(
      "tp2.yaml", deployment("plugin: {path: '" + testing::triton_plugin() +
                                 "'}\nbackend: triton\nmodel: {num_layers: 1, num_heads: 8, "
                                 "num_kv_heads: 4, head_size: 64, dtype: bf16}\n"
                                 "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 64}\n",
                             2));
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", file.string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("tp2.yaml: line 8"));
  if (std::string(KVQ_TEST_MPIEXEC).empty()) {
    EXPECT_THAT(result.err, HasSubstr("built without it"));
  } else {
    EXPECT_THAT(result.err, HasSubstr("tensor_parallel_size is 2 but 1 rank was started: run "
                                      "mpirun -np 2 kvq run"));
  }
}

TEST(TensorParallelTest, KvHeadsMustSplitEvenly) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const ScratchDir dir;
  const auto file = dir.write(
      "odd.yaml", deployment("plugin: {path: '" + testing::triton_plugin() +
                                 "'}\nbackend: triton\nmodel: {num_layers: 1, num_heads: 8, "
                                 "num_kv_heads: 1, head_size: 64, dtype: bf16}\n"
                                 "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 64}\n",
                             2));
  const auto result =
      testing::run_process({KVQ_TEST_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                            KVQ_TEST_KVQ_EXE, "run", file.string()});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("model.num_kv_heads (1) must be a multiple of "
                                    "tensor_parallel_size (2)"));
}

// A device plugin: each rank negotiates the device of its local rank (the
// arena test plugin has two), and the outputs are the single rank's bytes.
TEST(TensorParallelTest, TwoRanksOnTwoDevicesEqualOneHeadForHead) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::arena_plugin().empty()) GTEST_SKIP() << "this build has no arena plugin";
  const ScratchDir dir;
  const std::string report =
      expect_two_ranks_equal_one(dir, triton_model_on(testing::arena_plugin()));
  EXPECT_THAT(report, ContainsRegex("rank 0 device: +opaque 0 "));
  EXPECT_THAT(report, ContainsRegex("rank 1 device: +opaque 1 "));
}

// With one device: parallel.ranks_share_device puts both ranks on device 0,
// the same code path as two devices.
TEST(TensorParallelTest, TwoRanksSharingDeviceZeroEqualOneHeadForHead) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::arena_plugin().empty()) GTEST_SKIP() << "this build has no arena plugin";
  const ScratchDir dir;
  const std::string report = expect_two_ranks_equal_one(
      dir, triton_model_on(testing::arena_plugin()), "ranks_share_device: true");
  EXPECT_THAT(report, ContainsRegex("rank 0 device: +opaque 0 "));
  EXPECT_THAT(report, ContainsRegex("rank 1 device: +opaque 0 "));
}

TEST(TensorParallelTest, MoreRanksThanDevicesIsRefusedWithTheFix) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (testing::arena_plugin().empty()) GTEST_SKIP() << "this build has no arena plugin";
  const ScratchDir dir;
  std::string text = deployment(triton_model_on(testing::arena_plugin()), 4);
  const auto file = dir.write("tp4.yaml", text);
  const auto result =
      testing::run_process({KVQ_TEST_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "4",
                            KVQ_TEST_KVQ_EXE, "run", file.string()});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("is local rank 2 on this machine and takes device 2, which the "
                                    "plugin refuses"));
  EXPECT_THAT(result.err, HasSubstr("or set parallel.ranks_share_device: true"));
}

// The same two-rank check on two NVIDIA GPUs (issue 16): needs a machine
// with two; anywhere else it says why it did not run.
TEST(TensorParallelTest, TwoRanksOnTwoGpusEqualOneHeadForHead) {
  if (std::string(KVQ_TEST_MPIEXEC).empty()) GTEST_SKIP() << "built without MPI";
  if (std::string(KVQ_TEST_CUDA_PLUGIN).empty()) GTEST_SKIP() << "this build has no CUDA plugin";
  int32_t gpus = 0;
  try {
    gpus = open_plugin(std::string(KVQ_TEST_CUDA_PLUGIN), NegotiationOptions{1, 1, 0})
               .info()
               .device_count;
  } catch (const Error& e) {
    GTEST_SKIP() << "the CUDA plugin cannot run here: " << e.what();
  }
  if (gpus < 2) GTEST_SKIP() << "two GPUs needed, this machine has " << gpus;
  for (const char* mode : {"int8_per_token_head", "bfloat16"}) {
    SCOPED_TRACE(mode);
    const ScratchDir dir;
    std::string body = triton_model_on(std::string(KVQ_TEST_CUDA_PLUGIN));
    body.replace(body.find("int8_per_token_head"), 19, mode);
    const std::string report = expect_two_ranks_equal_one(dir, body);
    EXPECT_THAT(report, ContainsRegex("rank 1 device: +cuda 1 "));
  }
}

}  // namespace
}  // namespace kvq::host
