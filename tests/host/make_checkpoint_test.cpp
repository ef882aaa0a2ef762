// `kvq make-checkpoint`: the calibration (asymmetric C8 scales round-trip,
// a consistent C8 directory) and end to end, made checkpoints served by
// `kvq run` accurately (C8, asymmetric C8, fp8 on triton, per-token-head
// modes ignoring checkpoint scales, the shipped C8 deployment).
#include "kvq_engine/make_checkpoint.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <kvq_ref/reference.hpp>
#include <nlohmann/json.hpp>

#include "kv_models.hpp"
#include "kvq_engine/activation_generator.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/engine.hpp"
#include "kvq_files/deployment.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ScratchDir;

TEST(MakeCheckpointTest, AsymmetricC8ScalesRoundTrip) {
  const ActivationGenerator generator(3, ActivationShape{1, 4, 2, 64, 0});
  for (const Projection p : {Projection::kKey, Projection::kValue}) {
    const C8Scales scales = calibrate_c8(generator, p, 0, true);
    const C8Scales symmetric = calibrate_c8(generator, p, 0, false);
    ASSERT_EQ(scales.scale.size(), 128u);
    bool nonzero_offset = false;
    for (size_t c = 0; c < scales.scale.size(); ++c) {
      EXPECT_GT(scales.scale[c], 0.0f);
      EXPECT_EQ(scales.offset[c], std::nearbyint(scales.offset[c]));
      EXPECT_GE(scales.offset[c], -128.0f);
      EXPECT_LE(scales.offset[c], 127.0f);
      EXPECT_EQ(symmetric.offset[c], 0.0f);
      nonzero_offset |= scales.offset[c] != 0.0f;
    }
    EXPECT_TRUE(nonzero_offset);
    // Values from texts the calibration did not see: (q - offset) * scale
    // is within one step of x (half a step of rounding, half of the offset's).
    std::vector<float> token(128);
    for (int64_t position = 0; position < 300; position += 7) {
      generator.fill_token(p, 12345, position, 0, token);
      for (size_t c = 0; c < token.size(); ++c) {
        const double x = token[c];
        const double scale = scales.scale[c], offset = scales.offset[c];
        const int8_t q = c8_quantize_reference(x, scale, offset);
        const double back = (q - offset) * scale;
        const double lo = (-128 - offset) * scale, hi = (127 - offset) * scale;
        if (x < lo || x > hi) continue;  // beyond the calibrated range: clipped
        EXPECT_NEAR(back, x, scale) << "channel " << c;
        const double sym = symmetric.scale[c];
        EXPECT_NEAR(c8_quantize_reference(x, sym, 0.0) * sym, x, 0.51 * sym + 1e-7);
      }
    }
  }
}

TEST(MakeCheckpointTest, WritesAConsistentC8Checkpoint) {
  const ScratchDir dir;
  MakeCheckpointOptions options;
  options.num_layers = 2;
  options.num_heads = 4;
  options.num_kv_heads = 2;
  options.head_size = 64;
  options.seed = 5;
  make_checkpoint(dir.path() / "c8", options);
  const Checkpoint checkpoint = Checkpoint::open(dir.path() / "c8");
  EXPECT_EQ(checkpoint.config().num_layers, 2);
  EXPECT_EQ(checkpoint.config().activation_seed, 5u);
  const auto description = nlohmann::json::parse(*checkpoint.description());
  EXPECT_EQ(description["kv_cache_type"], "C8");
  EXPECT_EQ(description["model_quant_type"], "W8A8");
  EXPECT_EQ(description["model.layers.1.self_attn.v_proj.kv_cache_offset"], "C8");
  ASSERT_EQ(checkpoint.files().size(), 1u);
  const SafetensorsFile& file = checkpoint.files()[0];
  EXPECT_EQ(file.tensors().size(), 8u);
  const SafetensorsTensor* scale = file.find("model.layers.1.self_attn.k_proj.kv_cache_scale");
  ASSERT_NE(scale, nullptr);
  EXPECT_EQ(scale->dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(scale->shape, (std::vector<int64_t>{128}));
  // The file holds calibrate_c8's values.
  const ActivationGenerator generator(5, ActivationShape{2, 4, 2, 64, 0});
  const C8Scales expected = calibrate_c8(generator, Projection::kKey, 1, false);
  std::vector<float> stored(128);
  std::memcpy(stored.data(), scale->data, 512);
  EXPECT_EQ(stored, expected.scale);
  // A second run into the same folder needs --force.
  EXPECT_THROW(make_checkpoint(dir.path() / "c8", options), Error);
  options.force = true;
  EXPECT_NO_THROW(make_checkpoint(dir.path() / "c8", options));
}

// `kvq make-checkpoint` then `kvq run` on a deployment with `checkpoint:`.
nlohmann::json make_and_run(const ScratchDir& dir, const std::vector<std::string>& make_args,
                            const std::string& plugin, const std::string& backend) {
  const auto ckpt = dir.path() / "ckpt";
  std::vector<std::string> argv = {KVQ_TEST_KVQ_EXE,
                                   "make-checkpoint",
                                   ckpt.string(),
                                   "--layers",
                                   "2",
                                   "--heads",
                                   "4",
                                   "--kv-heads",
                                   "2",
                                   "--head-size",
                                   "64",
                                   "--seed",
                                   "3"};
  argv.insert(argv.end(), make_args.begin(), make_args.end());
  const auto made = testing::run_process(argv);
  EXPECT_EQ(made.exit_code, 0) << made.err;
  const auto yaml = dir.write(
      "deploy.yaml", "plugin: {path: '" + plugin + "'}\nbackend: " + backend +
                         "\ncheckpoint: ckpt\nkv_cache: {block_size: 32, num_blocks: 64}\n"
                         "scheduler: {max_num_seqs: 8, max_num_batched_tokens: 256}\n"
                         "workload: {num_prompts: 6, input_len: 100, output_len: 12, seed: 3}\n"
                         "threads: 2\n");
  const auto json_file = dir.path() / "result.json";
  const auto result = testing::run_process({KVQ_TEST_KVQ_EXE, "run", yaml.string(), "--json",
                                            json_file.string(), "--accuracy-every", "2"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  if (result.exit_code != 0) return {};
  return nlohmann::json::parse(testing::read_text(json_file));
}

TEST(MakeCheckpointEndToEnd, C8CheckpointRunsAccurately) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const ScratchDir dir;
  const auto json = make_and_run(dir, {"--mode", "C8"}, testing::ascend_plugin(), "ascend");
  ASSERT_FALSE(json.is_null());
  EXPECT_EQ(json["completed"], 6);
  EXPECT_EQ(json["failed"], 0);
  EXPECT_EQ(json["layer_impl"], "ascend_c8_attention");
  EXPECT_THAT(json["kv_cache_dtype"].get<std::string>(), HasSubstr("int8"));
  EXPECT_EQ(json["model"]["num_layers"], 2);  // from the checkpoint's config.json
  EXPECT_GT(json["steps_by_attention_state"].size(), 1u);
  EXPECT_GT(json["accuracy"]["sampled_steps"].get<int>(), 0);
  EXPECT_GT(json["accuracy"]["cosine"].get<double>(), 0.99);
}

TEST(MakeCheckpointEndToEnd, AsymmetricC8CheckpointRunsAccurately) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  const ScratchDir dir;
  const auto json =
      make_and_run(dir, {"--mode", "C8", "--asymmetric"}, testing::ascend_plugin(), "ascend");
  ASSERT_FALSE(json.is_null());
  EXPECT_EQ(json["failed"], 0);
  EXPECT_GT(json["accuracy"]["cosine"].get<double>(), 0.99);
}

// spec/triton_sim.md §5: per-token-head modes ignore checkpoint scales. An
// fp8 checkpoint's k/v scales served with kv_cache.dtype int8_per_token_head
// give the same output bytes, step for step, as the bare model.
TEST(MakeCheckpointEndToEnd, PerTokenHeadModesIgnoreCheckpointScales) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  const auto made = testing::run_process(
      {KVQ_TEST_KVQ_EXE, "make-checkpoint", (dir.path() / "ckpt").string(), "--mode", "fp8",
       "--layers", "2", "--heads", "4", "--kv-heads", "2", "--head-size", "64", "--seed", "3"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string rest =
      "kv_cache: {dtype: int8_per_token_head, block_size: 16, num_blocks: 64}\n"
      "workload: {num_prompts: 3, input_len: 40, output_len: 6, seed: 3}\nthreads: 1\n";
  const std::string plugin =
      "plugin: {path: '" + testing::triton_plugin() + "'}\nbackend: triton\n";
  const auto dumped = [&](const std::string& name, const std::string& source) {
    RunOptions options{1};
    options.dump_outputs = dir.path() / (name + ".bin");
    const BenchmarkReport r =
        run_benchmark(load_deployment_file(dir.write(name + ".yaml", plugin + source + rest),
                                           DeploymentParseOptions{{}, true}),
                      options);
    EXPECT_EQ(r.completed, 3);
    EXPECT_THAT(r.kv_cache_dtype, ::testing::StartsWith("int8_per_token_head"));
    return testing::read_text(options.dump_outputs);
  };
  const std::string with_scales = dumped("checkpoint", "checkpoint: ckpt\n");
  const std::string bare =
      dumped("model",
             "model: {num_layers: 2, num_heads: 4, num_kv_heads: 2, head_size: 64, dtype: bf16}\n");
  ASSERT_FALSE(bare.empty());
  EXPECT_TRUE(with_scales == bare) << "outputs differ when the checkpoint's scales are present";
}

TEST(MakeCheckpointEndToEnd, Fp8CheckpointRunsOnTritonWithoutAKvCacheDtype) {
  REQUIRE_PLUGIN(testing::triton_plugin());
  const ScratchDir dir;
  const auto json = make_and_run(dir, {"--mode", "fp8"}, testing::triton_plugin(), "triton");
  ASSERT_FALSE(json.is_null());
  EXPECT_EQ(json["failed"], 0);
  EXPECT_THAT(json["kv_cache_dtype"].get<std::string>(), HasSubstr("fp8"));
  // Per-tensor e4m3 (3 mantissa bits) on keys with 10-50x outlier channels
  // costs a few percent whatever the scale: the same deployment in process,
  // bounded by what e4m3 with the checkpoint's scales costs in float64.
  RunOptions options{2};
  options.kv_model = testing::fp8_checkpoint_model(dir.path() / "ckpt", KVQ_DTYPE_BF16);
  const BenchmarkReport report = run_benchmark(
      load_deployment_file(dir.path() / "deploy.yaml", DeploymentParseOptions{{}, true}), options);
  EXPECT_GT(report.accuracy_vs_model.min_row_cosine, 0.999);
  EXPECT_LE(report.accuracy.nmse(), 1.1 * report.kv_model_error.nmse() + 1e-5)
      << "e4m3 with these scales costs nmse " << report.kv_model_error.nmse();
}

TEST(MakeCheckpointEndToEnd, TheShippedC8DeploymentRunsOnAMadeCheckpoint) {
  REQUIRE_PLUGIN(testing::ascend_plugin());
  // deploy/ascend_c8_checkpoint.yaml as shipped, with its checkpoint line
  // pointing into a scratch folder, and a checkpoint made with the defaults
  // its comment gives.
  const ScratchDir dir;
  std::string yaml = testing::read_text(std::filesystem::path(KVQ_SOURCE_DIR) / "deploy" /
                                        "ascend_c8_checkpoint.yaml");
  const std::string line = "checkpoint: ../build/ascend_c8_checkpoint";
  const size_t at = yaml.find(line);
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, line.size(), "checkpoint: ckpt");
  // A shorter workload than the shipped one, to keep the test quick.
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{{"num_prompts: 16", "num_prompts: 4"},
                                                        {"input_len: 256", "input_len: 96"},
                                                        {"output_len: 64", "output_len: 16"}}) {
    const size_t found = yaml.find(from);
    ASSERT_NE(found, std::string::npos) << from;
    yaml.replace(found, from.size(), to);
  }
  const auto made = testing::run_process(
      {KVQ_TEST_KVQ_EXE, "make-checkpoint", (dir.path() / "ckpt").string(), "--mode", "C8"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::filesystem::path exe_dir = std::filesystem::path(KVQ_TEST_KVQ_EXE).parent_path();
  const Deployment deployment =
      load_deployment_file(dir.write("c8.yaml", yaml), DeploymentParseOptions{exe_dir, true});
  const BenchmarkReport report = run_benchmark(deployment, RunOptions{4});
  EXPECT_EQ(report.completed, 4);
  EXPECT_EQ(report.failed, 0);
  EXPECT_EQ(report.layer_impl, "ascend_c8_attention");
  EXPECT_EQ(report.num_layers, 4);
  EXPECT_EQ(report.head_size, 128);
  EXPECT_GT(report.accuracy.cosine(), 0.99);
}

}  // namespace
}  // namespace kvq::host
