// `kvq make-checkpoint --mode FAKQuant | INT8_DYNAMIC`: the checkpoint is
// made into a scratch folder, re-opened with Checkpoint, loaded into real
// ascend layers through select_scheme / apply_scheme / the plugin's weight
// loaders, and every loaded parameter (read back with param_read) equals
// the value the test recomputes from the activation generator in float64
// (FAKQuant scales) or from the documented rotation (INT8_DYNAMIC). `kvq
// run` on such a checkpoint refuses, naming what it does not support.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <kvq_abi.h>

#include <bit>
#include <cmath>
#include <kvq_ref/reference.hpp>
#include <nlohmann/json.hpp>
#include <random>

#include "kvq_engine/activation_generator.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/host_tensor.hpp"
#include "kvq_engine/make_checkpoint.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_files/errors.hpp"
#include "test_support.hpp"

namespace kvq::host {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ScratchDir;

#define REQUIRE_ASCEND() \
  if (testing::ascend_plugin().empty()) GTEST_SKIP() << "this build has no ascend plugin"

constexpr int64_t kLayers = 2;
constexpr int64_t kBlockSize = 32;
constexpr uint64_t kSeed = 11;
constexpr int64_t kCalibrationTokens = 512;

// FAKQuant geometry: 4 query heads over one latent of 64 + a rope part of 32.
constexpr int64_t kMlaHeads = 4;
constexpr int64_t kLora = 64;
constexpr int64_t kRope = 32;

// INT8_DYNAMIC geometry: 8 indexer heads of 64 channels, top 16.
constexpr int64_t kIndexerHeads = 8;
constexpr int64_t kIndexDim = 64;
constexpr int64_t kIndexTopk = 16;

// The parameter `name` of `layer` read back as float64, whatever its dtype.
std::vector<double> read_param(const Layer& layer, const std::string& name) {
  for (const ParamInfo& p : layer.params()) {
    if (p.name != name) continue;
    int64_t count = 1;
    for (const int64_t d : p.shape) count *= d;
    HostTensor t(p.dtype, {count});
    layer.param_read(name, t.view());
    std::vector<double> out;
    for (int64_t i = 0; i < count; ++i) out.push_back(ref::load(p.dtype, t.data(), i));
    return out;
  }
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

ParamInfo param_info(const Layer& layer, const std::string& name) {
  for (ParamInfo& p : layer.params()) {
    if (p.name == name) return p;
  }
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

// The calibration sample as make_checkpoint.hpp defines it, one head at a
// time (the generator's fill(), not the fill_token() the writer uses).
template <typename Visit>
void for_each_sample_head(const ActivationGenerator& g, Projection p, int64_t layer, int64_t head,
                          Visit&& visit) {
  std::vector<float> values(static_cast<size_t>(g.width(p)));
  for (int64_t i = 0; i < kCalibrationTokens; ++i) {
    const uint64_t content = kCalibrationContent + static_cast<uint64_t>(i % kCalibrationTexts);
    g.fill(p, content, i * kCalibrationPositions / kCalibrationTokens, layer, head, values);
    visit(values);
  }
}

// A scale as make_checkpoint.hpp says it is stored: max / 127 in float64,
// then float32, then the model dtype (bf16 here).
double stored_scale(double amax) {
  return ref::round_to(KVQ_DTYPE_BF16, static_cast<float>(amax / 127.0));
}

class MakeCheckpointModesTest : public ::testing::Test {
 protected:
  Checkpoint make(const MakeCheckpointOptions& options) {
    make_checkpoint(dir_.path() / options.mode, options);
    return Checkpoint::open(dir_.path() / options.mode);
  }
  ScratchDir dir_;
};

MakeCheckpointOptions fakquant_options() {
  MakeCheckpointOptions o;
  o.mode = "FAKQuant";
  o.num_layers = kLayers;
  o.num_heads = kMlaHeads;
  o.num_kv_heads = 1;
  o.kv_lora_rank = kLora;
  o.qk_rope_head_dim = kRope;
  o.head_size = kLora + kRope;
  o.seed = kSeed;
  o.calibration_tokens = kCalibrationTokens;
  return o;
}

MakeCheckpointOptions indexer_options() {
  MakeCheckpointOptions o;
  o.mode = "INT8_DYNAMIC";
  o.num_layers = kLayers;
  o.num_heads = kIndexerHeads;
  o.num_kv_heads = 1;
  o.head_size = kIndexDim;
  o.index_topk = kIndexTopk;
  o.seed = kSeed;
  return o;
}

TEST_F(MakeCheckpointModesTest, FakQuantLoadsTheCalibratedLatentAndQueryScales) {
  REQUIRE_ASCEND();
  const Checkpoint checkpoint = make(fakquant_options());
  const CheckpointConfig& c = checkpoint.config();
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_size, kLora + kRope);
  EXPECT_EQ(c.kv_lora_rank, kLora);
  EXPECT_EQ(c.qk_rope_head_dim, kRope);
  EXPECT_EQ(c.head_size_v(), kLora);
  const auto description = nlohmann::json::parse(*checkpoint.description());
  EXPECT_EQ(description["fa_quant_type"], "FAKQuant");
  EXPECT_EQ(description["model.layers.1.self_attn.fa_k.scale"], "FAQuant");

  // The generator the header describes: one latent KV head, V = the latent.
  const ActivationGenerator generator(kSeed,
                                      ActivationShape{kLayers, kMlaHeads, 1, kLora + kRope, kLora});
  const Plugin plugin = open_plugin(testing::ascend_plugin());
  for (int64_t l = 0; l < kLayers; ++l) {
    LoadedLayer loaded =
        create_checkpoint_layer(plugin, checkpoint, l, {"ascend", "", kBlockSize, 0, 1});
    const LayerInfo info = loaded.layer.info();
    EXPECT_EQ(info.scheme, "FAKQuant");
    EXPECT_EQ(info.impl_name, "ascend_mla_fakquant");
    EXPECT_EQ(info.kv_cache_dtype, "int8_latent");
    EXPECT_EQ(loaded.report.loaded_params.size(), 6u);
    EXPECT_TRUE(loaded.report.dropped_tensors.empty());
    EXPECT_TRUE(loaded.report.unloaded_parameters.empty());

    double latent_max = 0.0;
    for_each_sample_head(generator, Projection::kValue, l, 0, [&](const std::vector<float>& v) {
      for (const float x : v) latent_max = std::max(latent_max, std::fabs(double{x}));
    });
    std::vector<double> q_expected;
    for (int64_t h = 0; h < kMlaHeads; ++h) {
      double m = 0.0;
      for_each_sample_head(generator, Projection::kQuery, l, h, [&](const std::vector<float>& q) {
        for (int64_t x = 0; x < kLora; ++x) m = std::max(m, std::fabs(double{q[x]}));
      });
      q_expected.push_back(stored_scale(m));
    }
    const double k_expected = stored_scale(latent_max);
    ASSERT_GT(k_expected, 0.0);

    const std::string attn = "model.layers." + std::to_string(l) + ".self_attn.attn.";
    EXPECT_EQ(read_param(loaded.layer, attn + "fa_q.scale"), q_expected);
    EXPECT_EQ(read_param(loaded.layer, attn + "fa_k.scale"), std::vector{k_expected});
    EXPECT_EQ(read_param(loaded.layer, attn + "fa_v.scale"), std::vector{k_expected});
    EXPECT_EQ(read_param(loaded.layer, attn + "fa_q.offset"), std::vector<double>(kMlaHeads, 0.0));
    EXPECT_EQ(read_param(loaded.layer, attn + "fa_k.offset"), std::vector{0.0});
    EXPECT_EQ(param_info(loaded.layer, attn + "fa_q.scale").shape,
              (std::vector<int64_t>{kMlaHeads, 1}));
    EXPECT_EQ(param_info(loaded.layer, attn + "fa_k.scale").dtype, KVQ_DTYPE_BF16);
    EXPECT_EQ(param_info(loaded.layer, attn + "fa_k.offset").dtype, KVQ_DTYPE_I8);
    // process_weights derived them from the loaded fa_k (float32 division).
    EXPECT_EQ(read_param(loaded.layer, attn + "fak_descale"), std::vector{k_expected});
    const double inverse = 1.0f / static_cast<float>(k_expected);
    EXPECT_EQ(read_param(loaded.layer, attn + "quant_kscale"), std::vector<double>(kLora, inverse));
    // The latent fits the int8 range: the calibrated scale maps the sample's
    // largest latent onto 127 (up to the bf16 rounding of the scale).
    EXPECT_NEAR(latent_max * inverse, 127.0, 127.0 / 128.0);
  }
}

TEST_F(MakeCheckpointModesTest, Int8DynamicLoadsTheSeededHadamardRotations) {
  REQUIRE_ASCEND();
  const Checkpoint checkpoint = make(indexer_options());
  EXPECT_EQ(checkpoint.config().index_topk, kIndexTopk);
  EXPECT_EQ(checkpoint.config().index_head_dim, kIndexDim);
  const auto description = nlohmann::json::parse(*checkpoint.description());
  EXPECT_EQ(description["indexer_quant_type"], "INT8_DYNAMIC");
  EXPECT_EQ(description["model.layers.0.self_attn.indexer.quant_type"], "INT8_DYNAMIC");

  const Plugin plugin = open_plugin(testing::ascend_plugin());
  std::vector<std::vector<double>> rotations;
  for (int64_t l = 0; l < kLayers; ++l) {
    LoadedLayer loaded =
        create_checkpoint_layer(plugin, checkpoint, l, {"ascend", "", kBlockSize, 0, 1});
    const LayerInfo info = loaded.layer.info();
    EXPECT_EQ(info.scheme, "INT8_DYNAMIC");
    EXPECT_EQ(info.impl_name, "ascend_int8_indexer");
    EXPECT_EQ(info.kv_cache_dtype, "int8_indexer");
    EXPECT_EQ(loaded.report.loaded_params.size(), 2u);
    EXPECT_TRUE(loaded.report.unloaded_parameters.empty());

    // The documented rotation, recomputed: row signs from mt19937_64.
    std::mt19937_64 bits(kSeed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(l + 1)));
    std::vector<double> expected;
    for (int64_t i = 0; i < kIndexDim; ++i) {
      const double sign = (bits() >> 63) != 0 ? -1.0 : 1.0;
      for (int64_t j = 0; j < kIndexDim; ++j) {
        const double h = std::popcount(static_cast<uint64_t>(i & j)) % 2 ? -1.0 : 1.0;
        expected.push_back(static_cast<float>(sign * h / std::sqrt(double{kIndexDim})));
      }
    }
    const std::string attn = "model.layers." + std::to_string(l) + ".self_attn.attn.";
    const std::vector<double> q_rot = read_param(loaded.layer, attn + "indexer.q_rot");
    EXPECT_EQ(q_rot, expected);
    EXPECT_EQ(read_param(loaded.layer, attn + "indexer.k_rot"), expected);
    EXPECT_EQ(param_info(loaded.layer, attn + "indexer.q_rot").shape,
              (std::vector<int64_t>{kIndexDim, kIndexDim}));
    // Orthogonal: R R^T = I (so q.k is unchanged by the shared rotation).
    double worst = 0.0;
    for (int64_t i = 0; i < kIndexDim; ++i) {
      for (int64_t j = 0; j < kIndexDim; ++j) {
        double dot = 0.0;
        for (int64_t k = 0; k < kIndexDim; ++k)
          dot += q_rot[i * kIndexDim + k] * q_rot[j * kIndexDim + k];
        worst = std::max(worst, std::fabs(dot - (i == j ? 1.0 : 0.0)));
      }
    }
    EXPECT_LT(worst, 1e-6);
    rotations.push_back(q_rot);
  }
  EXPECT_NE(rotations[0], rotations[1]);  // seeded per layer
}

TEST_F(MakeCheckpointModesTest, InconsistentShapesAreRefused) {
  MakeCheckpointOptions fak = fakquant_options();
  fak.num_kv_heads = 2;
  EXPECT_THAT([&] { make_checkpoint(dir_.path() / "a", fak); },
              ::testing::ThrowsMessage<Error>(HasSubstr("--mode FAKQuant needs --kv-heads 1")));
  fak = fakquant_options();
  fak.head_size = 100;
  EXPECT_THAT([&] { make_checkpoint(dir_.path() / "b", fak); },
              ::testing::ThrowsMessage<Error>(HasSubstr("--head-size = --kv-lora-rank + "
                                                        "--qk-rope-head-dim = 64 + 32 = 96, got "
                                                        "100")));
  MakeCheckpointOptions indexer = indexer_options();
  indexer.head_size = 96;
  EXPECT_THAT([&] { make_checkpoint(dir_.path() / "c", indexer); },
              ::testing::ThrowsMessage<Error>(HasSubstr("power-of-two --head-size")));
}

// ---- the command line and kvq run ---------------------------------------------

testing::ProcessResult kvq(std::vector<std::string> args) {
  args.insert(args.begin(), KVQ_TEST_KVQ_EXE);
  return testing::run_process(args);
}

// kvq run on a deployment naming the checkpoint `ckpt` in `dir`.
testing::ProcessResult run_on_checkpoint(const ScratchDir& dir) {
  const auto yaml = dir.write(
      "deploy.yaml", "plugin: {path: '" + testing::ascend_plugin() +
                         "'}\nbackend: ascend\ncheckpoint: ckpt\n"
                         "kv_cache: {block_size: 32, num_blocks: 16}\n"
                         "workload: {num_prompts: 2, input_len: 16, output_len: 2, seed: 11}\n"
                         "threads: 1\n");
  return kvq({"run", yaml.string()});
}

TEST(MakeCheckpointModesEndToEnd, KvqRunRefusesAFakQuantCheckpointNamingWhatIsUnsupported) {
  REQUIRE_ASCEND();
  const ScratchDir dir;
  // CLI defaults for FAKQuant: one KV head, head size = kv_lora_rank + rope.
  const auto made =
      kvq({"make-checkpoint", (dir.path() / "ckpt").string(), "--mode", "FAKQuant", "--layers", "2",
           "--heads", "4", "--kv-lora-rank", "64", "--qk-rope-head-dim", "32",
           "--calibration-tokens", "256", "--seed", "11"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const Checkpoint checkpoint = Checkpoint::open(dir.path() / "ckpt");
  EXPECT_EQ(checkpoint.config().num_kv_heads, 1);
  EXPECT_EQ(checkpoint.config().head_size, 96);

  const auto run = run_on_checkpoint(dir);
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_THAT(run.err, AllOf(HasSubstr("not supported: scheme FAKQuant"),
                             HasSubstr("'ascend_mla_fakquant'"), HasSubstr("'int8_latent'"),
                             HasSubstr("kvq run drives standard attention layers only"),
                             HasSubstr("deploy.yaml: line 3")));
  EXPECT_THAT(run.out, Not(HasSubstr("Successful requests")));
}

TEST(MakeCheckpointModesEndToEnd, KvqRunRefusesAnInt8DynamicCheckpointNamingWhatIsUnsupported) {
  REQUIRE_ASCEND();
  const ScratchDir dir;
  const auto made =
      kvq({"make-checkpoint", (dir.path() / "ckpt").string(), "--mode", "INT8_DYNAMIC", "--layers",
           "2", "--heads", "8", "--head-size", "64", "--index-topk", "16", "--seed", "11"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(Checkpoint::open(dir.path() / "ckpt").config().num_kv_heads, 1);

  const auto run = run_on_checkpoint(dir);
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_THAT(run.err, AllOf(HasSubstr("not supported: scheme INT8_DYNAMIC"),
                             HasSubstr("'ascend_int8_indexer'"), HasSubstr("'int8_indexer'"),
                             HasSubstr("kvq run drives standard attention layers only")));
}

TEST(MakeCheckpointModesEndToEnd, TheCommandLineChecksTheMlaAndIndexerShapes) {
  const ScratchDir dir;
  const auto kv_heads = kvq(
      {"make-checkpoint", (dir.path() / "a").string(), "--mode", "FAKQuant", "--kv-heads", "2"});
  EXPECT_EQ(kv_heads.exit_code, 1);
  EXPECT_THAT(kv_heads.err, HasSubstr("--mode FAKQuant needs --kv-heads 1"));
  const auto head = kvq({"make-checkpoint", (dir.path() / "b").string(), "--mode", "INT8_DYNAMIC",
                         "--head-size", "96"});
  EXPECT_EQ(head.exit_code, 1);
  EXPECT_THAT(head.err, HasSubstr("power-of-two --head-size"));
  const auto unknown = kvq({"make-checkpoint", (dir.path() / "c").string(), "--mode", "C4"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("--mode: C4 not in {C8,fp8,FAKQuant,INT8_DYNAMIC}"));
}

}  // namespace
}  // namespace kvq::host
