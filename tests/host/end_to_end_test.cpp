// `kvq run` / `kvq inspect` end to end: the serving loop against the real
// plugins (skipped when this build has none), and the engine's refusals
// against the stub plugin.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kvq_abi.h>

#include <nlohmann/json.hpp>

#include "kv_models.hpp"
#include "kvq_engine/engine.hpp"
#include "kvq_engine/workload.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/safetensors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ScratchDir;

struct SmallRun {
  std::string plugin;
  std::string backend = "triton";
  std::string model_dtype = "bf16";
  std::string kv_dtype = "bfloat16";
  int block_size = 16;
  std::string scheduler = "{max_num_seqs: 8, max_num_batched_tokens: 256, chunked_prefill: true}";
  std::string workload = "{num_prompts: 6, input_len: 100, output_len: 12, seed: 3}";
  std::string extra;

  std::string yaml() const {
    return "plugin: {path: '" + plugin + "', abi_major: 1, min_minor: 0}\n" +
           "backend: " + backend + "\n" +
           "model: {num_layers: 2, num_heads: 4, num_kv_heads: 2, head_size: 64, dtype: " +
           model_dtype + "}\n" + "kv_cache: {dtype: " + kv_dtype +
           ", block_size: " + std::to_string(block_size) + ", num_blocks: 128}\n" +
           "scheduler: " + scheduler + "\n" + "workload: " + workload + "\n" + "threads: 2\n" +
           extra;
  }
};

Deployment parse(const ScratchDir& dir, const SmallRun& run) {
  return load_deployment_file(dir.write("deploy.yaml", run.yaml()), DeploymentParseOptions{});
}

TEST(EndToEndTest, KvqRunCompletesAllRequestsAccurately) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  SmallRun run;
  run.plugin = testing::triton_plugin();
  const auto yaml = dir.write("deploy.yaml", run.yaml());
  const auto json_file = dir.path() / "result.json";
  const auto result =
      testing::run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string(), "--json", json_file.string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, AllOf(HasSubstr("============ Serving Benchmark Result ============"),
                                HasSubstr("Successful requests:                     6"),
                                HasSubstr("Mean TTFT (ms):"), HasSubstr("Cosine similarity:")));
  const auto json = nlohmann::json::parse(testing::read_text(json_file));
  EXPECT_EQ(json["completed"], 6);
  EXPECT_EQ(json["failed"], 0);
  EXPECT_EQ(json["total_output_tokens"], 6 * 12);
  EXPECT_GT(json["accuracy"]["sampled_steps"].get<int>(), 0);
  EXPECT_GT(json["accuracy"]["cosine"].get<double>(), 0.999);
  EXPECT_EQ(json["accuracy"]["non_finite"], 0);
  EXPECT_GT(json["kv_cache"]["bytes_per_token"].get<double>(), 0.0);
}

TEST(EndToEndTest, DefaultDeploymentRunsWithoutAFile) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  const auto json_file = dir.path() / "default.json";
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", "--json", json_file.string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto json = nlohmann::json::parse(testing::read_text(json_file));
  EXPECT_EQ(json["completed"], 8);
  EXPECT_EQ(json["deployment"], std::string(kEmbeddedDeploymentName));
  EXPECT_GT(json["accuracy"]["cosine"].get<double>(), 0.999);
}

// Without a file and without --json, `kvq run` shows what kvq is for: the
// default deployment with a bf16 and an int8_per_token_head cache in the same
// memory, side by side. The capacity ratio is computed from the two runs'
// own figures: 1024 vs 544 bytes per token (128 + 4 scale bytes per row).
TEST(EndToEndTest, WithoutAFileBf16AndInt8AreServedSideBySide) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", "--no-progress"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("kvq compare"));
  EXPECT_THAT(result.out, HasSubstr("KV cache bfloat16, 8 ok / 0 failed"));
  EXPECT_THAT(result.out, HasSubstr("KV cache int8_per_token_head, 8 ok / 0 failed"));
  EXPECT_THAT(result.out,
              ::testing::ContainsRegex("KV memory per token \\(bytes\\): +1024\\.0 +544\\.0"));
  // Same memory: the int8 cache holds 1024/544 = 1.88x the tokens (whole blocks).
  EXPECT_THAT(result.out, ::testing::ContainsRegex("Tokens that fit: +8192 +15408 +1\\.881"));
}

TEST(EndToEndTest, EveryAttentionStateAndModelDtypeRunsAccurately) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  for (const auto& [model_dtype, kv_dtype] : std::vector<std::pair<std::string, std::string>>{
           {"bf16", "bfloat16"}, {"fp16", "float16"}, {"fp32", "float32"}, {"bf16", "auto"}}) {
    SCOPED_TRACE(model_dtype + " / " + kv_dtype);
    const ScratchDir dir;
    SmallRun run;
    run.plugin = testing::triton_plugin();
    run.model_dtype = model_dtype;
    run.kv_dtype = kv_dtype;
    // A small budget forces chunked prefill mixed with decodes.
    run.scheduler = "{max_num_seqs: 4, max_num_batched_tokens: 64, chunked_prefill: true}";
    run.workload =
        "{num_prompts: 5, input_len: 90, output_len: 10, seed: 11, shared_prefix_len: 32}";
    const BenchmarkReport report = run_benchmark(parse(dir, run), RunOptions{1});
    EXPECT_EQ(report.completed, 5);
    EXPECT_EQ(report.failed, 0);
    EXPECT_GT(report.steps_by_attention_state.count("CHUNKED_PREFILL"), 0u);
    EXPECT_GT(report.steps_by_attention_state.count("DECODE_ONLY"), 0u);
    EXPECT_GT(report.accuracy.cosine(), 0.999);
    EXPECT_GT(report.accuracy.min_row_cosine, 0.99);
    EXPECT_EQ(report.accuracy.non_finite, 0);
    EXPECT_LE(report.peak_blocks_used, report.kv_num_blocks);
  }
}

TEST(EndToEndTest, RequestRateSpreadsArrivals) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  SmallRun run;
  run.plugin = testing::triton_plugin();
  run.workload = "{num_prompts: 4, input_len: 32, output_len: 4, request_rate: 100, seed: 1}";
  const Deployment deployment = parse(dir, run);
  const double last_arrival = make_workload(deployment.workload).back().arrival_s;
  ASSERT_GT(last_arrival, 0.0);
  const BenchmarkReport report = run_benchmark(deployment, RunOptions{0});
  EXPECT_EQ(report.completed, 4);
  EXPECT_GE(report.duration_s, last_arrival);
  EXPECT_GT(report.steps_by_attention_state.count("PREFILL_NO_CACHE"), 0u);
}

TEST(EndToEndTest, AscendBackendRunsAccurately) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const ScratchDir dir;
  SmallRun run;
  run.plugin = testing::ascend_plugin();
  run.backend = "ascend";
  run.block_size = 32;
  run.scheduler = "{max_num_seqs: 4, max_num_batched_tokens: 64, chunked_prefill: true}";
  const BenchmarkReport report = run_benchmark(parse(dir, run), RunOptions{1});
  EXPECT_EQ(report.completed, 6);
  EXPECT_EQ(report.failed, 0);
  EXPECT_GT(report.accuracy.cosine(), 0.999);
}

TEST(EndToEndTest, KvqInspectPrintsTheBackends) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "inspect", testing::triton_plugin()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, AllOf(HasSubstr("triton"), HasSubstr("bfloat16"), HasSubstr("ABI"),
                                HasSubstr("backends ("), HasSubstr("schemes (")));
}

TEST(EndToEndTest, UnknownBackendIsExplainedAtItsLine) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  SmallRun run;
  run.plugin = testing::triton_plugin();
  run.backend = "tritn";
  const auto result =
      testing::run_process({KVQ_TEST_KVQ_EXE, "run", dir.write("d.yaml", run.yaml()).string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, AllOf(HasSubstr("d.yaml: line 2, column 10"),
                                HasSubstr("backend 'tritn' is not offered"),
                                HasSubstr("did you mean 'triton'?"), HasSubstr("NOT_FOUND")));
}

TEST(EndToEndTest, RefusedLayerShowsThePluginErrorAtTheKvDtypeLine) {
  const ScratchDir dir;
  SmallRun run;
  run.plugin = KVQ_TEST_STUB_PLUGIN;
  run.backend = "stub";
  run.kv_dtype = "refuse";
  try {
    run_benchmark(parse(dir, run));
    FAIL() << "the stub refuses this mode";
  } catch (const DeploymentError& e) {
    EXPECT_EQ(e.location().line, 4);
    EXPECT_THAT(
        std::string(e.what()),
        AllOf(HasSubstr("UNSUPPORTED: the stub refuses kv_cache_dtype 'refuse'"),
              HasSubstr("kv_cache.dtype 'refuse'"), HasSubstr("supported modes: bfloat16")));
  }
}

// The stub fails each layer's second forward: with one request at a time,
// that fails the first request only, and the run goes on.
TEST(EndToEndTest, AFailedStepFailsItsRequestsAndTheRunContinues) {
  const ScratchDir dir;
  const auto yaml = dir.write(
      "stub.yaml", std::string("plugin: {path: '") + KVQ_TEST_STUB_PLUGIN +
                       "'}\nbackend: stub\n"
                       "model: {num_layers: 1, num_heads: 2, num_kv_heads: 1, head_size: 8, "
                       "dtype: bf16}\n"
                       "kv_cache: {dtype: bfloat16, block_size: 16, num_blocks: 16}\n"
                       "workload: {num_prompts: 3, input_len: 20, output_len: 4, "
                       "max_concurrency: 1}\n"
                       // The stub writes zeros as attention output: this test is about
                       // a failed step, not accuracy (AccuracyGate tests that).
                       "accuracy: {max_nmse: 10}\n");
  const BenchmarkReport report =
      run_benchmark(load_deployment_file(yaml, DeploymentParseOptions{}), RunOptions{0});
  EXPECT_EQ(report.completed, 2);
  EXPECT_EQ(report.failed, 1);
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_THAT(report.errors.begin()->first,
              HasSubstr("OUT_OF_RANGE: the stub fails the second forward of every layer"));
  EXPECT_FALSE(report.requests[0].success);
  EXPECT_TRUE(report.requests[1].success);
  EXPECT_TRUE(report.layer_impl.empty());  // the stub has no layer_info

  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string()});
  EXPECT_EQ(result.exit_code, 3) << result.err;
  EXPECT_THAT(result.out, AllOf(HasSubstr("Failed requests:                         1"),
                                HasSubstr("OUT_OF_RANGE")));
}

TEST(EndToEndTest, ConformNeedsTheSuiteNextToKvq) {
  const auto suite = std::filesystem::path(KVQ_TEST_KVQ_EXE).parent_path() / "kvq-conform";
  if (std::filesystem::exists(suite))
    GTEST_SKIP() << "kvq-conform is built; not testing its absence";
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "conform", KVQ_TEST_STUB_PLUGIN});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, AllOf(HasSubstr("kvq-conform"), HasSubstr(suite.string())));
}

TEST(EndToEndTest, AMissingCheckpointIsRefusedAtItsLine) {
  const ScratchDir dir;
  const auto file =
      dir.write("deploy.yaml", std::string("plugin: {path: '") + KVQ_TEST_STUB_PLUGIN +
                                   "'}\nbackend: stub\ncheckpoint: ckpt\n"
                                   "kv_cache: {block_size: 16, num_blocks: 8}\n");
  try {
    run_benchmark(load_deployment_file(file, DeploymentParseOptions{}));
    FAIL() << "a missing checkpoint directory was accepted";
  } catch (const DeploymentError& e) {
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("line 3"), HasSubstr((dir.path() / "ckpt").string()),
                      HasSubstr("does not exist")));
  }
}

TEST(EndToEndTest, KvqUsageErrors) {
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "frobnicate"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, AllOf(HasSubstr("unknown command 'frobnicate'"), HasSubstr("usage:")));
  const auto help = testing::run_process({KVQ_TEST_KVQ_EXE, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out,
              AllOf(HasSubstr("usage: kvq [OPTIONS] SUBCOMMAND"), HasSubstr("--log-level"),
                    HasSubstr("exit codes: 0 ok, 1 error, 2 usage")));
  for (const char* command : {"run", "inspect", "bench", "conform", "make-checkpoint", "compare"})
    EXPECT_THAT(help.out, HasSubstr(std::string("  ") + command + " ")) << command;
  // `kvq help` is the same text.
  EXPECT_EQ(testing::run_process({KVQ_TEST_KVQ_EXE, "help"}).out, help.out);
}

// Every command's --help is CLI11's, generated from the options it parses:
// each lists its arguments and options.
TEST(EndToEndTest, EveryCommandHasGeneratedHelp) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"run",
       {"DEPLOY.yaml", "--json FILE", "--accuracy-every N", "--dump-outputs FILE",
        "--no-progress"}},
      {"inspect", {"PLUGIN.so"}},
      {"bench",
       {"--quick", "--filter TEXT", "--threads N,...", "--plugin-dir DIR", "--min-time SECONDS"}},
      {"conform", {"kvq-conform"}},
      {"make-checkpoint",
       {"OUT_DIR", "--mode MODE", "--layers N", "--heads N", "--kv-heads N", "--head-size N",
        "--dtype DTYPE", "--seed N", "--asymmetric", "--calibration-tokens N", "--kv-lora-rank N",
        "--qk-rope-head-dim N", "--index-topk N", "--force"}},
      {"compare", {"A.json", "B.json"}},
  };
  for (const auto& [command, expected] : commands) {
    const auto help = testing::run_process({KVQ_TEST_KVQ_EXE, command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_THAT(help.out, HasSubstr("usage: kvq " + command)) << command;
    for (const std::string& text : expected) EXPECT_THAT(help.out, HasSubstr(text)) << command;
  }
}

}  // namespace
}  // namespace kvq::host

namespace kvq::host {
namespace {

// Issue #17, class 6: the accuracy report samples decode steps (they read
// the quantized cache) even in short runs, and `kvq run` fails (exit 4, a
// message) when the outputs are beyond the bound of their cache kind or the
// deployment's accuracy.max_nmse.
std::string accuracy_yaml(const std::string& kv_dtype, const std::string& extra = "") {
  return "plugin: {path: '" + testing::triton_plugin() +
         "'}\nbackend: triton\nmodel: {num_layers: 1, num_heads: 4, num_kv_heads: 2, head_size: "
         "64, dtype: bf16}\nkv_cache: {dtype: " +
         kv_dtype +
         ", block_size: 16, num_blocks: 64}\nworkload: {num_prompts: 2, input_len: 32, "
         "output_len: 3, seed: 1}\nthreads: 1\n" +
         extra;
}

TEST(AccuracyGate, ShortRunsSampleDecodeStepsToo) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  const BenchmarkReport r =
      run_benchmark(load_deployment_file(dir.write("d.yaml", accuracy_yaml("int8_per_token_head")),
                                         DeploymentParseOptions{}),
                    RunOptions{8});
  // 3 steps (1 prefill, 2 decodes), one every 8 sampled: the first decode
  // step is sampled as the first of its state.
  ASSERT_EQ(r.num_steps, 3);
  EXPECT_EQ(r.accuracy.sampled_steps, 2);
  EXPECT_TRUE(r.accuracy_within_bound);
}

// An fp8 checkpoint whose scales are valid floats but saturate every code:
// the cache holds nothing of the activations and the run must say so.
TEST(AccuracyGate, ADestroyedCacheFailsTheRun) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  const auto made = testing::run_process(
      {KVQ_TEST_KVQ_EXE, "make-checkpoint", (dir.path() / "ckpt").string(), "--mode", "fp8",
       "--layers", "1", "--heads", "4", "--kv-heads", "2", "--head-size", "64", "--seed", "1"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::vector<float> tiny = {1e-30f};
  write_safetensors(dir.path() / "ckpt" / "model.safetensors",
                    {NamedTensor::f32("model.layers.0.self_attn.k_scale", {}, tiny),
                     NamedTensor::f32("model.layers.0.self_attn.v_scale", {}, tiny)});
  const auto yaml = dir.write(
      "d.yaml", "plugin: {path: '" + testing::triton_plugin() +
                    "'}\nbackend: triton\ncheckpoint: ckpt\nkv_cache: {block_size: 16, "
                    "num_blocks: 64}\nworkload: {num_prompts: 2, input_len: 32, output_len: 3, "
                    "seed: 1}\n");
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string()});
  EXPECT_EQ(result.exit_code, 4) << result.err;
  EXPECT_THAT(result.out, HasSubstr("(default for 8-bit caches): EXCEEDED"));
  EXPECT_THAT(result.err, HasSubstr("accuracy check failed: NMSE"));
}

// int4 per token head on the generator's 10-50x K outlier channels loses the
// other channels entirely: as inaccurate as float64 of the same quantization
// says (so not a plugin bug), beyond the default 4-bit bound, and accepted
// when the deployment raises accuracy.max_nmse.
TEST(AccuracyGate, Int4OnOutlierActivationsIsItsQuantizationsLimit) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  RunOptions options{1};
  options.kv_model = testing::int4_per_token_head_model();
  const BenchmarkReport r =
      run_benchmark(load_deployment_file(dir.write("d.yaml", accuracy_yaml("int4_per_token_head")),
                                         DeploymentParseOptions{}),
                    options);
  EXPECT_GT(r.kv_model_error.nmse(), 0.3);  // the quantization itself
  EXPECT_LE(r.accuracy.nmse(), 1.1 * r.kv_model_error.nmse() + 1e-5);
  EXPECT_GT(r.accuracy_vs_model.min_row_cosine, 0.999);
  EXPECT_FALSE(r.accuracy_within_bound);
  const BenchmarkReport relaxed = run_benchmark(
      load_deployment_file(
          dir.write("r.yaml", accuracy_yaml("int4_per_token_head", "accuracy: {max_nmse: 2.0}\n")),
          DeploymentParseOptions{}),
      RunOptions{1});
  EXPECT_TRUE(relaxed.accuracy_within_bound);
  EXPECT_EQ(relaxed.accuracy_bound_source, "the deployment's accuracy.max_nmse");
}

TEST(AccuracyGate, TheDeploymentsBoundIsApplied) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  const auto yaml = dir.write("d.yaml", accuracy_yaml("bfloat16", "accuracy: {max_nmse: 1e-12}\n"));
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string()});
  EXPECT_EQ(result.exit_code, 4) << result.err;
  EXPECT_THAT(result.out, HasSubstr("1.0e-12 (the deployment's accuracy.max_nmse): EXCEEDED"));
}

}  // namespace
}  // namespace kvq::host
