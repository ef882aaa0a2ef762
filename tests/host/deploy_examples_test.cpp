// The shipped deployment examples (deploy/*.yaml): each one runs through
// `kvq run` with every request successful; at one memory budget the
// quantized caches fit the number of tokens their row formats say
// (int8/fp8 per-token-head: 128 + 4 bytes per row of head size 128 against
// bf16's 256, about 1.94x; C8 and fp8 per-tensor: 128 bytes, 2x). Plus the
// deployment key kv_cache.query_dtype and the host's fp8 query.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kvq_abi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <kvq_ref/reference.hpp>
#include <random>
#include <sstream>

#include "kv_models.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/engine.hpp"
#include "kvq_engine/fp8_query.hpp"
#include "kvq_engine/make_checkpoint.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::ScratchDir;
using ::testing::ThrowsMessage;

const std::filesystem::path kDeployDir = std::filesystem::path(KVQ_SOURCE_DIR) / "deploy";
const std::filesystem::path kExeDir = std::filesystem::path(KVQ_TEST_KVQ_EXE).parent_path();

bool have_plugins() {
  return !testing::triton_plugin().empty() && !testing::ascend_plugin().empty();
}

// deploy/ascend_c8_checkpoint.yaml names ../build/ascend_c8_checkpoint; a
// copy in `dir` names a checkpoint made there with the defaults its comment
// gives (fewer calibration tokens when only the cache size matters).
std::filesystem::path c8_example_in(const ScratchDir& dir, int64_t calibration_tokens) {
  MakeCheckpointOptions options;  // the defaults of kvq make-checkpoint --mode C8
  options.calibration_tokens = calibration_tokens;
  make_checkpoint(dir.path() / "c8", options);
  std::string yaml = testing::read_text(kDeployDir / "ascend_c8_checkpoint.yaml");
  const std::string line = "checkpoint: ../build/ascend_c8_checkpoint";
  const size_t at = yaml.find(line);
  EXPECT_NE(at, std::string::npos);
  if (at != std::string::npos) yaml.replace(at, line.size(), "checkpoint: c8");
  return dir.write("ascend_c8_checkpoint.yaml", yaml);
}

std::filesystem::path example_path(const ScratchDir& dir, const std::string& name) {
  if (name == "ascend_c8_checkpoint.yaml") return c8_example_in(dir, kDefaultCalibrationTokens);
  return kDeployDir / name;
}

// The integer in the row `label` of kvq run's report; -1 when absent.
int64_t report_row(const std::string& text, const std::string& label) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(label)) return std::stoll(line.substr(label.size()));
  }
  return -1;
}

class DeployExample : public ::testing::TestWithParam<const char*> {};

TEST_P(DeployExample, RunsWithEveryRequestSuccessful) {
  if (!have_plugins()) GTEST_SKIP() << "this build lacks a plugin";
  const ScratchDir dir;
  const std::filesystem::path file = example_path(dir, GetParam());
  const Deployment deployment = load_deployment_file(file, DeploymentParseOptions{kExeDir, true});
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", file.string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(report_row(result.out, "Successful requests:"), deployment.workload.num_prompts)
      << result.out;
  EXPECT_EQ(report_row(result.out, "Failed requests:"), 0) << result.out;
}

INSTANTIATE_TEST_SUITE_P(Shipped, DeployExample,
                         ::testing::Values("triton_bf16.yaml", "triton_int8_per_token_head.yaml",
                                           "triton_fp8_per_token_head.yaml",
                                           "triton_fp8_per_tensor_fp8_query.yaml",
                                           "ascend_bf16.yaml", "ascend_c8_checkpoint.yaml"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name = name.substr(0, name.find('.'));
                           return name;
                         });

// ---- capacity at one memory budget ---------------------------------------------

struct Capacity {
  int64_t tokens_fit = 0;
  int64_t expected_tokens_fit = 0;  // from the row format
  int64_t num_blocks = 0;
};

// Runs `file` with a tiny workload (the cache size does not depend on it)
// and the tokens that fit by the row format: `row_bytes` per (token, KV
// head) for K and for V, in every layer, whole blocks of the budget.
Capacity capacity(const std::filesystem::path& file, const std::function<int64_t(int64_t)>& row) {
  Deployment d = load_deployment_file(file, DeploymentParseOptions{kExeDir, true});
  d.workload.num_prompts = 2;
  d.workload.input_len = 32;
  d.workload.output_len = 2;
  d.workload.max_concurrency = 0;
  const BenchmarkReport report = run_benchmark(d, RunOptions{0});
  EXPECT_EQ(report.failed, 0);
  const int64_t head_size = report.head_size;
  const int64_t block_bytes =
      report.num_layers * 2 * d.kv_cache.block_size * report.num_kv_heads * row(head_size);
  const auto blocks = static_cast<int64_t>(
      std::floor(*d.kv_cache.memory_gib * 1024 * 1024 * 1024 / static_cast<double>(block_bytes)));
  return Capacity{report.kv_tokens_fit, blocks * d.kv_cache.block_size, blocks};
}

int64_t bf16_row(int64_t d) {
  return 2 * d;
}
int64_t int8_row(int64_t d) {
  return d;
}
int64_t per_token_head_row(int64_t d) {
  return d + 4;  // the codes, then the row's fp32 scale
}

TEST(DeployExamplesCapacity, PerTokenHeadCachesFitAbout194TimesTheTokensOfBf16) {
  if (!have_plugins()) GTEST_SKIP() << "this build lacks a plugin";
  const Capacity bf16 = capacity(kDeployDir / "triton_bf16.yaml", bf16_row);
  const Capacity int8 =
      capacity(kDeployDir / "triton_int8_per_token_head.yaml", per_token_head_row);
  const Capacity fp8 = capacity(kDeployDir / "triton_fp8_per_token_head.yaml", per_token_head_row);
  const Capacity fp8_tensor =
      capacity(kDeployDir / "triton_fp8_per_tensor_fp8_query.yaml", int8_row);
  for (const Capacity& c : {bf16, int8, fp8, fp8_tensor}) {
    EXPECT_EQ(c.tokens_fit, c.expected_tokens_fit);
  }
  // Head size 128: 256 / 132 = 1.939..., up to whole blocks of the budget.
  const double per_row = 256.0 / 132.0;
  const double whole_blocks = per_row / static_cast<double>(bf16.num_blocks);
  const auto ratio = [&](const Capacity& c) {
    return static_cast<double>(c.tokens_fit) / static_cast<double>(bf16.tokens_fit);
  };
  EXPECT_NEAR(ratio(int8), per_row, whole_blocks);
  EXPECT_NEAR(ratio(fp8), per_row, whole_blocks);
  EXPECT_NEAR(ratio(fp8_tensor), 2.0, 2.0 / static_cast<double>(bf16.num_blocks));
}

TEST(DeployExamplesCapacity, C8FitsTwiceTheTokensOfAscendBf16) {
  if (!have_plugins()) GTEST_SKIP() << "this build lacks a plugin";
  const ScratchDir dir;
  const Capacity bf16 = capacity(kDeployDir / "ascend_bf16.yaml", bf16_row);
  const Capacity c8 = capacity(c8_example_in(dir, 256), int8_row);  // scales live in parameters
  EXPECT_EQ(bf16.tokens_fit, bf16.expected_tokens_fit);
  EXPECT_EQ(c8.tokens_fit, c8.expected_tokens_fit);
  EXPECT_NEAR(static_cast<double>(c8.tokens_fit) / static_cast<double>(bf16.tokens_fit), 2.0,
              2.0 / static_cast<double>(bf16.num_blocks));
}

// ---- kv_cache.query_dtype and the fp8 query --------------------------------------

Deployment parse(const std::string& kv_cache) {
  return parse_deployment(
      "plugin: {path: p.so}\nbackend: triton\nmodel: {num_layers: 1, "
      "num_heads: 4, num_kv_heads: 2, head_size: 64, dtype: bf16}\n"
      "kv_cache:\n" +
          kv_cache,
      "q.yaml", ".", DeploymentParseOptions{{}, false});
}

TEST(QueryDtypeKey, DefaultsToAutoAndAcceptsFp8) {
  EXPECT_EQ(parse("  dtype: fp8\n  block_size: 16\n  num_blocks: 8\n").kv_cache.query_dtype,
            "auto");
  EXPECT_EQ(parse("  dtype: fp8\n  block_size: 16\n  num_blocks: 8\n  query_dtype: fp8\n")
                .kv_cache.query_dtype,
            "fp8");
  EXPECT_EQ(parse("  dtype: fp8\n  block_size: 16\n  num_blocks: 8\n  query_dtype: fp8_e4m3\n")
                .kv_cache.query_dtype,
            "fp8");
  EXPECT_THAT(
      [] { parse("  dtype: fp8\n  block_size: 16\n  num_blocks: 8\n  query_dtype: int8\n"); },
      ThrowsMessage<DeploymentError>(
          AllOf(HasSubstr("q.yaml: line 8, column 16"),
                HasSubstr("kv_cache.query_dtype must be auto (the model dtype) or fp8"),
                HasSubstr("got 'int8'"))));
}

TEST(Fp8Query, EncodesLikeTheReferenceCodec) {
  // Every finite bf16 value and random floats (the query's inputs), plus the
  // midpoints between neighbouring e4m3 values (ties to even).
  std::vector<float> values;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint32_t word = bits << 16;
    float f;
    std::memcpy(&f, &word, sizeof f);
    if (std::isfinite(f)) values.push_back(f);
  }
  std::mt19937 random(5);
  std::uniform_real_distribution<float> wide(-600.0f, 600.0f);
  std::uniform_real_distribution<float> narrow(-0.05f, 0.05f);
  for (int i = 0; i < 100000; ++i) {
    values.push_back(wide(random));
    values.push_back(narrow(random));
  }
  for (int code = 0; code < 0x7E; ++code) {
    const double lo = ref::decode_fp8(KVQ_DTYPE_F8_E4M3FN, static_cast<uint8_t>(code));
    const double hi = ref::decode_fp8(KVQ_DTYPE_F8_E4M3FN, static_cast<uint8_t>(code + 1));
    values.push_back(static_cast<float>((lo + hi) / 2));
    values.push_back(-static_cast<float>((lo + hi) / 2));
  }
  int64_t mismatches = 0;
  for (const float v : values) {
    if (encode_e4m3(v) != ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, v) && ++mismatches < 5) {
      ADD_FAILURE() << "value " << v << ": " << int(encode_e4m3(v)) << " vs "
                    << int(ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, v));
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Fp8Query, AMissingQScaleIsTheCheckpointsKScale) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const ScratchDir dir;
  MakeCheckpointOptions options;
  options.mode = "fp8";
  options.num_layers = 2;
  options.num_heads = 4;
  options.num_kv_heads = 2;
  options.head_size = 64;
  options.seed = 3;
  options.calibration_tokens = 512;
  make_checkpoint(dir.path() / "fp8", options);
  const Checkpoint checkpoint = Checkpoint::open(dir.path() / "fp8");
  const Plugin plugin = open_plugin(testing::triton_plugin());
  for (int64_t l = 0; l < 2; ++l) {
    LoadedLayer loaded = create_checkpoint_layer(plugin, checkpoint, l, {"triton", "", 16, 0, 1});
    const SafetensorsTensor* k =
        checkpoint.files()[0].find("model.layers." + std::to_string(l) + ".self_attn.k_scale");
    ASSERT_NE(k, nullptr);
    float k_scale;
    std::memcpy(&k_scale, k->data, sizeof k_scale);
    ASSERT_NE(k_scale, 1.0f);
    EXPECT_EQ(Fp8Query::for_layer(loaded.layer, 4, 2).scales(), std::vector<float>(4, k_scale));
  }
}

// The fp8-query run against float64 attention on the unquantized query, K
// and V: as accurate as the same cache with a bf16 query, up to the e4m3
// rounding of the query and of P.
TEST(Fp8Query, ServesAnFp8CheckpointAccurately) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const ScratchDir dir;
  MakeCheckpointOptions options;
  options.mode = "fp8";
  options.num_layers = 2;
  options.num_heads = 4;
  options.num_kv_heads = 2;
  options.head_size = 64;
  options.seed = 3;
  options.calibration_tokens = 4096;
  make_checkpoint(dir.path() / "fp8", options);
  const auto run = [&](const std::string& query_dtype) {
    const auto yaml = dir.write(
        "d.yaml", "plugin: {path: '" + testing::triton_plugin() +
                      "'}\nbackend: triton\ncheckpoint: fp8\n"
                      "kv_cache: {block_size: 16, num_blocks: 128, query_dtype: " +
                      query_dtype +
                      "}\nworkload: {num_prompts: 4, input_len: 96, output_len: 8, seed: 3}\n"
                      "threads: 1\n");
    RunOptions options{1};
    options.kv_model = testing::fp8_checkpoint_model(dir.path() / "fp8", KVQ_DTYPE_BF16);
    return run_benchmark(load_deployment_file(yaml, DeploymentParseOptions{{}, true}), options);
  };
  const BenchmarkReport bf16_query = run("auto");
  const BenchmarkReport fp8_query = run("fp8");
  EXPECT_EQ(fp8_query.failed, 0);
  EXPECT_EQ(fp8_query.completed, 4);
  ASSERT_GT(fp8_query.accuracy.sampled_rows, 0);
  // A bf16 query: what per-tensor e4m3 with these scales costs in float64.
  const double cost = bf16_query.kv_model_error.nmse();
  EXPECT_GT(bf16_query.accuracy_vs_model.min_row_cosine, 0.999);
  EXPECT_LE(bf16_query.accuracy.nmse(), 1.1 * cost + 1e-5) << "the cache's own cost " << cost;
  // An fp8 query adds the e4m3 rounding of the query and of P (relative
  // error <= 2^-4 per element; about 1e-4 of NMSE here, bounded by 1e-3).
  std::printf("[ info     ] fp8 cache nmse %.3e; bf16 query %.3e, fp8 query %.3e\n", cost,
              bf16_query.accuracy.nmse(), fp8_query.accuracy.nmse());
  EXPECT_LE(fp8_query.accuracy.nmse(), 1.1 * cost + 1e-3);
  EXPECT_GT(fp8_query.accuracy.nmse(), bf16_query.accuracy.nmse());
}

TEST(Fp8Query, AModeWithoutQScaleIsRefusedNamingTheKey) {
  if (testing::triton_plugin().empty()) GTEST_SKIP() << "this build has no triton plugin";
  const Deployment d = parse_deployment(
      "plugin: {path: '" + testing::triton_plugin() +
          "'}\nbackend: triton\nmodel: {num_layers: 1, num_heads: 4, num_kv_heads: 2, "
          "head_size: 64, dtype: bf16}\nkv_cache: {dtype: int8_per_token_head, block_size: 16, "
          "num_blocks: 8, "
          "query_dtype: fp8}\n",
      "q.yaml", ".", DeploymentParseOptions{{}, true});
  EXPECT_THAT([&] { run_benchmark(d, RunOptions{0}); },
              ThrowsMessage<DeploymentError>(AllOf(
                  HasSubstr("q.yaml: line 4"),
                  HasSubstr("has no q_scale parameter, so its KV cache mode takes no fp8 query"))));
}

}  // namespace
}  // namespace kvq::host

namespace kvq::host {
namespace {

// spec/cuda.md: a deployment swaps CPU for GPU by changing the plugin path.
// Each deploy/cuda_*.yaml is its triton_*.yaml twin but for the plugin file
// and the minimum ABI minor (device memory needs 1.1).
class CudaTwin : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaTwin, IsItsTritonTwinButForThePlugin) {
  const std::string mode = GetParam();
  const DeploymentParseOptions options{kExeDir, false};
  const Deployment gpu = load_deployment_file(kDeployDir / ("cuda_" + mode + ".yaml"), options);
  const Deployment cpu = load_deployment_file(kDeployDir / ("triton_" + mode + ".yaml"), options);
  EXPECT_EQ(gpu.plugin.path.filename(), "libkvq_cuda.so");
  EXPECT_EQ(cpu.plugin.path.filename(), "libkvq_triton_sim.so");
  EXPECT_EQ(gpu.plugin.min_minor, 1u);
  EXPECT_EQ(gpu.backend, cpu.backend);
  ASSERT_TRUE(gpu.model && cpu.model);
  EXPECT_EQ(gpu.model->num_layers, cpu.model->num_layers);
  EXPECT_EQ(gpu.model->num_heads, cpu.model->num_heads);
  EXPECT_EQ(gpu.model->num_kv_heads, cpu.model->num_kv_heads);
  EXPECT_EQ(gpu.model->head_size, cpu.model->head_size);
  EXPECT_EQ(gpu.kv_cache.dtype, cpu.kv_cache.dtype);
  EXPECT_EQ(gpu.kv_cache.block_size, cpu.kv_cache.block_size);
  EXPECT_EQ(gpu.kv_cache.memory_gib, cpu.kv_cache.memory_gib);
  EXPECT_EQ(gpu.scheduler.max_num_batched_tokens, cpu.scheduler.max_num_batched_tokens);
  EXPECT_EQ(gpu.parallel.tensor_parallel_size, cpu.parallel.tensor_parallel_size);
  EXPECT_EQ(gpu.workload.num_prompts, cpu.workload.num_prompts);
  EXPECT_EQ(gpu.workload.input_len, cpu.workload.input_len);
  EXPECT_EQ(gpu.workload.output_len, cpu.workload.output_len);
  EXPECT_EQ(gpu.workload.seed, cpu.workload.seed);
  EXPECT_EQ(gpu.workload.request_rate, cpu.workload.request_rate);
}

INSTANTIATE_TEST_SUITE_P(Shipped, CudaTwin,
                         ::testing::Values("bf16", "int8_per_token_head", "fp8_per_token_head",
                                           "int8_per_token_head_tp2"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace kvq::host
