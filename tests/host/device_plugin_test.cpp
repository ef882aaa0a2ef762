// The engine serves a device plugin: the arena test plugin keeps the KV
// cache, Q/K/V, slot mapping, block table and output in memory only its
// hooks reach (a host dereference faults), so `kvq run` works only if every
// step goes through client Buffers. Its outputs must equal the CPU plugin's
// byte for byte (the same triton kernels compute on the arena's bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "kvq_engine/engine.hpp"
#include "kvq_files/deployment.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using testing::ScratchDir;

#define REQUIRE_ARENA()                                                    \
  if (testing::arena_plugin().empty() || testing::triton_plugin().empty()) \
  GTEST_SKIP() << "this build has no arena or triton plugin"

struct Served {
  BenchmarkReport report;
  std::string outputs;  // --dump-outputs bytes
};

Served serve(const ScratchDir& dir, const std::string& name, const std::string& plugin,
             const std::string& rest) {
  const std::string yaml = "plugin: {path: '" + plugin + "'}\nbackend: triton\n" + rest;
  RunOptions options;
  options.accuracy_every = 1;
  options.progress = false;
  options.dump_outputs = dir.path() / (name + ".bin");
  Served s{run_benchmark(load_deployment_file(dir.write(name + ".yaml", yaml),
                                              DeploymentParseOptions{{}, true}),
                         options),
           {}};
  s.outputs = testing::read_text(options.dump_outputs);
  return s;
}

void expect_same_run(const Served& cpu, const Served& arena) {
  EXPECT_EQ(arena.report.completed, cpu.report.completed);
  EXPECT_EQ(arena.report.failed, 0);
  EXPECT_EQ(arena.report.num_steps, cpu.report.num_steps);
  EXPECT_EQ(arena.report.kv_num_blocks, cpu.report.kv_num_blocks);
  ASSERT_FALSE(cpu.outputs.empty());
  EXPECT_EQ(arena.outputs.size(), cpu.outputs.size());
  EXPECT_TRUE(arena.outputs == cpu.outputs) << "the arena plugin's outputs differ";
  EXPECT_EQ(arena.report.accuracy.sampled_steps, cpu.report.accuracy.sampled_steps);
  EXPECT_EQ(arena.report.accuracy.max_abs_error, cpu.report.accuracy.max_abs_error);
}

// Prefill, chunked prefill, decodes and prefix-cache hits over a small cache
// (preemptions), in three cache modes.
TEST(DevicePluginEngine, ArenaServesTheCpuPluginsBytes) {
  REQUIRE_ARENA();
  for (const char* mode : {"bfloat16", "int8_per_token_head", "fp8"}) {
    SCOPED_TRACE(mode);
    const ScratchDir dir;
    const std::string rest =
        std::string(
            "model: {num_layers: 2, num_heads: 8, num_kv_heads: 2, head_size: 64, "
            "dtype: bf16}\n"
            "kv_cache: {dtype: ") +
        mode +
        ", block_size: 16, num_blocks: 48, prefix_caching: true}\n"
        "scheduler: {max_num_seqs: 4, max_num_batched_tokens: 96, chunked_prefill: true}\n"
        "workload: {num_prompts: 6, input_len: 70, output_len: 8, shared_prefix_len: 32, "
        "seed: 5}\nthreads: 2\n";
    const Served cpu = serve(dir, "cpu", testing::triton_plugin(), rest);
    const Served arena = serve(dir, "arena", testing::arena_plugin(), rest);
    expect_same_run(cpu, arena);
    EXPECT_EQ(arena.report.blocks_in_use_at_end, 0);
  }
}

// The fp8-query path: the host quantizes the query on its side and uploads
// the e4m3 codes.
TEST(DevicePluginEngine, ArenaServesTheFp8QueryPath) {
  REQUIRE_ARENA();
  const ScratchDir dir;
  const std::string rest =
      "model: {num_layers: 1, num_heads: 4, num_kv_heads: 2, head_size: 64, dtype: bf16}\n"
      "kv_cache: {dtype: fp8, query_dtype: fp8, block_size: 16, num_blocks: 32}\n"
      "workload: {num_prompts: 3, input_len: 40, output_len: 5, seed: 2}\nthreads: 1\n";
  expect_same_run(serve(dir, "cpu", testing::triton_plugin(), rest),
                  serve(dir, "arena", testing::arena_plugin(), rest));
}

}  // namespace
}  // namespace kvq::host
