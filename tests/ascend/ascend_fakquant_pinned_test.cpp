// FAKQuant (MLA models, int8 latent KV cache; spec/ascend.md §3, §7): the
// FA-quant loader and FAKQuant scheme behaviours pinned by vllm-ascend's unit
// tests (§9 items 1-16, one test each), through the C ABI only. Expectations
// are computed here in float64 with kvq_ref codecs; no plugin code is reused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ascend_fakquant_support.hpp"

namespace kvq::test::asc {
namespace {

using namespace fakquant;

// ---- FA-quant loader (_fa_quant_weight_loader), items 1-7 ---------------------

TEST(AscendFAKQuantPinned, FaQuantLoader_01_OneElementFloatParamIsFilledAndStaysFloat32) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;  // the scales are float32
  FakFixture f(c);
  ASSERT_EQ(f.info("fa_k.scale").dtype, KVQ_DTYPE_F32);
  ASSERT_EQ(f.load("fa_k.scale", {5.0}, {1}, KVQ_DTYPE_F32).code, 0);  // [5.0] into (1, 1)
  const kvq_param_info info = f.info("fa_k.scale");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{1, 1}));  // filled, not re-shaped
  EXPECT_EQ(info.loaded, 1);
  EXPECT_EQ(f.read("fa_k.scale"), (std::vector<double>{5.0}));
}

TEST(AscendFAKQuantPinned, FaQuantLoader_02_OneElementIntParamTakesAScalarInt) {
  FakFixture f;
  ASSERT_EQ(f.info("fa_k.offset").dtype, KVQ_DTYPE_I8);
  ASSERT_EQ(f.load("fa_k.offset", {10}, {1}, KVQ_DTYPE_I32).code, 0);  // int [10]
  const kvq_param_info info = f.info("fa_k.offset");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_I8);  // the parameter keeps its integer dtype
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(f.read("fa_k.offset"), (std::vector<double>{10}));
  // A 0-d scalar fills too.
  ASSERT_EQ(f.load("fa_v.offset", {-7}, {}, KVQ_DTYPE_I32).code, 0);
  EXPECT_EQ(f.read("fa_v.offset"), (std::vector<double>{-7}));
}

// TP 4: a (2, 1) parameter (2 heads per rank) loads rank `rank`'s rows of an
// (8, 1) checkpoint tensor holding 10 * row + 0.5.
void expect_tp4_rows(int32_t rank, std::vector<double> rows) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  c.num_heads = 2;
  FakFixture f(c);
  ASSERT_EQ(shape_of(f.info("fa_q.scale")), (std::vector<int64_t>{2, 1}));
  std::vector<double> full, offsets;
  for (int i = 0; i < 8; ++i) {
    full.push_back(10.0 * i + 0.5);
    offsets.push_back(i - 4);
  }
  ASSERT_EQ(f.load("fa_q.scale", full, {8, 1}, KVQ_DTYPE_F32, rank, 4).code, 0);
  ASSERT_EQ(f.load("fa_q.offset", offsets, {8, 1}, KVQ_DTYPE_I8, rank, 4).code, 0);
  EXPECT_EQ(shape_of(f.info("fa_q.scale")), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(f.read("fa_q.scale"), (std::vector<double>{full[static_cast<size_t>(rows[0])],
                                                       full[static_cast<size_t>(rows[1])]}));
  EXPECT_EQ(f.read("fa_q.offset"), (std::vector<double>{rows[0] - 4, rows[1] - 4}));
}

TEST(AscendFAKQuantPinned, FaQuantLoader_03_Tp4Rank0TakesRows0To1) {
  expect_tp4_rows(0, {0, 1});
}

TEST(AscendFAKQuantPinned, FaQuantLoader_04_Tp4Rank2TakesRows4To5) {
  expect_tp4_rows(2, {4, 5});
}

TEST(AscendFAKQuantPinned, FaQuantLoader_05_Tp4Rank3TakesRows6To7) {
  expect_tp4_rows(3, {6, 7});
}

TEST(AscendFAKQuantPinned, FaQuantLoader_06_ShardShapeMismatchFailsNamingShapesAndTp) {
  MlaConfig c;
  c.num_heads = 2;
  FakFixture f(c);
  const std::vector<double> before = f.read("fa_q.scale");
  // (8, 5) at TP 4: the rank's shard (2, 5) is not the parameter's (2, 1).
  const CallResult r =
      f.load("fa_q.scale", std::vector<double>(40, 1.0), {8, 5}, KVQ_DTYPE_BF16, 1, 4);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("Attempted to load weight"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("into parameter"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("Attempted to load weight ([2, 5]) into parameter ([2, 1]) when TP "
                           "is (4)"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find(f.name("fa_q.scale")), std::string::npos) << r.message;
  // (12, 1) at TP 4: shard (3, 1).
  const CallResult r2 =
      f.load("fa_q.offset", std::vector<double>(12, 1.0), {12, 1}, KVQ_DTYPE_I8, 0, 4);
  EXPECT_EQ(r2.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r2.message.find("Attempted to load weight ([3, 1]) into parameter ([2, 1]) when TP "
                            "is (4)"),
            std::string::npos)
      << r2.message;
  // A failed load leaves the parameter as it was.
  EXPECT_EQ(f.read("fa_q.scale"), before);
  EXPECT_EQ(f.info("fa_q.scale").loaded, 0);
}

TEST(AscendFAKQuantPinned, FaQuantLoader_07_Tp1Fp16OnesIntoFp32Param) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  FakFixture f(c);
  const std::vector<double> ones(static_cast<size_t>(c.num_heads), 1.0);
  ASSERT_EQ(f.load("fa_q.scale", ones, {c.num_heads, 1}, KVQ_DTYPE_F16, 0, 1).code, 0);
  const kvq_param_info info = f.info("fa_q.scale");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{c.num_heads, 1}));
  EXPECT_EQ(f.read("fa_q.scale"), ones);
}

// ---- FAKQuant scheme (the method), items 8-16 ---------------------------------------
// kv_lora_rank is observable as quant_kscale's shape [1, kv_lora_rank] after
// processing; qk_rope_head_dim as the cache row (kv_lora_rank int8 + 2 *
// qk_rope_head_dim bf16 bytes). Without kv_lora_rank the scheme still
// declares its parameters and processes, but the MLA cache answers UNSUPPORTED.

// {quant_kscale shape, row_bytes} after applying `options` and processing.
std::pair<std::vector<int64_t>, int64_t> lora_and_row(FakFixture& f) {
  f.load_k_and_process(0.5);
  return {shape_of(f.info("quant_kscale")), geometry(f.plugin, f.layer.get()).row_bytes};
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_08_KvLoraRankAndRopeComeFromTheOptions) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c, Options{{"kv_lora_rank", "4"}, {"qk_rope_head_dim", "2"}});
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(row, 4 + 2 * 2);
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {});
  EXPECT_EQ(run.status.code, 0) << run.status.message;
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_09_MissingKvLoraRankDefaultsToZero) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c, Options{{"qk_rope_head_dim", "2"}});
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(row, 2 * 2);
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {});
  EXPECT_EQ(run.status.code, KVQ_ERR_UNSUPPORTED);  // the cache write
  EXPECT_NE(run.status.message.find("kv_lora_rank is 0"), std::string::npos) << run.status.message;
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_10_MissingRopeHeadDimDefaultsToZero) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 0;  // head_size 4 == kv_lora_rank + 0
  FakFixture f(c, Options{{"kv_lora_rank", "4"}});
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(row, 4);  // no rope bytes
  EXPECT_EQ(run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {}).status.code, 0);
  // The default shows in the geometry rule too: a layer sized for rope 2
  // (head_size 6) refuses kv_lora_rank 4 without qk_rope_head_dim.
  Plugin p(ascend_plugin_path());
  MlaConfig c6;
  c6.lora = 4;
  c6.rope = 2;
  LayerPtr layer(nullptr, nullptr);
  check(create_mla(p, c6, &layer), "layer_create");
  const CallResult r = apply_fakquant(p, layer.get(), {{"kv_lora_rank", "4"}});
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("4 + 0 = 4"), std::string::npos) << r.message;
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_11_BothMissingDefaultToZero) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c, Options{{"unrelated_key", "7"}});  // unknown keys are ignored
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(row, 0);
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, 10);  // declared and derived
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {});
  EXPECT_EQ(run.status.code, KVQ_ERR_UNSUPPORTED);
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_12_CreateWeightsAddsFaQFaKFaV) {
  Plugin p(ascend_plugin_path());
  const MlaConfig c;
  LayerPtr layer(nullptr, nullptr);
  check(create_mla(p, c, &layer), "layer_create");
  const kvq_layer_info before = layer_info(p, layer.get());
  EXPECT_STREQ(before.impl_name, "ascend_attention");
  EXPECT_EQ(before.num_params, 0);
  ASSERT_EQ(apply_fakquant(p, layer.get(), mla_options(c)).code, 0);
  const kvq_layer_info after = layer_info(p, layer.get());
  EXPECT_EQ(after.num_params, 6);
  for (const char* local : kFaParams)
    EXPECT_TRUE(find_param(p, layer.get(), full_name(c, local)).has_value()) << local;
  // The class upgrade to the MLA latent-cache implementation.
  EXPECT_STREQ(after.impl_name, "ascend_mla_fakquant");
  EXPECT_STREQ(after.kv_cache_dtype, "int8_latent");
  EXPECT_STREQ(after.scheme, "FAKQuant");
  EXPECT_EQ(after.element_dtype, KVQ_DTYPE_I8);
  // Applied twice -> FAILED_PRECONDITION.
  EXPECT_EQ(apply_fakquant(p, layer.get(), mla_options(c)).code, KVQ_ERR_FAILED_PRECONDITION);
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_13_ShapesWith32HeadsAnd1KvHead) {
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    MlaConfig c;
    c.num_heads = 32;
    c.model_dtype = dtype;
    FakFixture f(c);
    EXPECT_EQ(shape_of(f.info("fa_q.scale")), (std::vector<int64_t>{32, 1}));
    EXPECT_EQ(shape_of(f.info("fa_q.offset")), (std::vector<int64_t>{32, 1}));
    for (const char* local : {"fa_k.scale", "fa_k.offset", "fa_v.scale", "fa_v.offset"})
      EXPECT_EQ(shape_of(f.info(local)), (std::vector<int64_t>{1, 1})) << local;
    for (const char* local : {"fa_q.scale", "fa_k.scale", "fa_v.scale"})
      EXPECT_EQ(f.info(local).dtype, dtype) << local;  // the model dtype
    for (const char* local : {"fa_q.offset", "fa_k.offset", "fa_v.offset"})
      EXPECT_EQ(f.info(local).dtype, KVQ_DTYPE_I8) << local;
  }
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_14_BoundToFaQuantLoaderNotTrainableOffsetsInt8) {
  FakFixture f;
  for (const char* local : kFaParams) {
    const kvq_param_info info = f.info(local);
    EXPECT_STREQ(info.loader, "fa_quant") << local;
    EXPECT_EQ(info.trainable, 0) << local;
    EXPECT_EQ(info.derived, 0) << local;
    EXPECT_EQ(info.loaded, 0) << local;
    if (std::string(local).ends_with("offset")) {
      EXPECT_EQ(info.dtype, KVQ_DTYPE_I8) << local;
    }
  }
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_15_QuantKscaleFromScale2IsHalfRepeated) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F16;  // fa_k.scale is fp16
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c);
  ASSERT_EQ(f.load("fa_k.scale", {2.0}, {1, 1}, KVQ_DTYPE_F16).code, 0);  // [[2.0]]
  ASSERT_EQ(f.load("fa_k.offset", {1}, {1, 1}, KVQ_DTYPE_I8).code, 0);    // [[1]]
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  const kvq_param_info q = f.info("quant_kscale");
  EXPECT_EQ(shape_of(q), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(q.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(f.read("quant_kscale"), (std::vector<double>(4, 0.5)));
  EXPECT_EQ(f.read("fak_descale"), (std::vector<double>{2.0}));
  EXPECT_EQ(f.read("fak_descale_reciprocal"), (std::vector<double>{0.5}));
  EXPECT_EQ(f.read("fak_offset"), (std::vector<double>{1}));
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_16_CreateLoadRandomProcess) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F16;
  c.num_heads = 8;
  FakFixture f(c);
  std::mt19937_64 rng(16);
  std::uniform_real_distribution<double> scale(0.01, 0.1);
  std::uniform_int_distribution<int> offset(-20, 20);
  std::vector<std::vector<double>> values;
  for (const char* local : kFaParams) {
    const kvq_param_info info = f.info(local);
    const std::vector<int64_t> shape = shape_of(info);
    std::vector<double> v;
    for (int64_t i = 0; i < shape[0]; ++i)
      v.push_back(info.dtype == KVQ_DTYPE_I8 ? offset(rng)
                                             : kvq::ref::round_to(info.dtype, scale(rng)));
    ASSERT_EQ(f.load(local, v, shape, info.dtype, 0, 1).code, 0) << local;
    values.push_back(v);
  }
  for (size_t i = 0; i < std::size(kFaParams); ++i) {
    EXPECT_EQ(f.read(kFaParams[i]), values[i]) << kFaParams[i];  // values equal
    EXPECT_EQ(f.info(kFaParams[i]).loaded, 1) << kFaParams[i];
  }
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  const double k_scale = values[2][0], k_offset = values[3][0];
  for (const char* local :
       {"fak_descale", "fak_descale_reciprocal", "fak_offset", "quant_kscale"}) {
    const std::optional<kvq_param_info> info = f.find(local);
    ASSERT_TRUE(info.has_value()) << local;
    EXPECT_EQ(info->derived, 1) << local;
    EXPECT_STREQ(info->loader, "") << local;
    EXPECT_EQ(info->trainable, 0) << local;
  }
  EXPECT_EQ(f.info("fak_descale").dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(f.info("fak_descale")), (std::vector<int64_t>{1}));
  EXPECT_EQ(f.read("fak_descale"), (std::vector<double>{k_scale}));
  EXPECT_EQ(f.read("fak_descale_reciprocal"), (std::vector<double>{ref_quant_kscale(k_scale)}));
  EXPECT_EQ(f.info("fak_offset").dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(f.read("fak_offset"), (std::vector<double>{k_offset}));
  EXPECT_EQ(f.read("quant_kscale"),
            (std::vector<double>(static_cast<size_t>(c.lora), ref_quant_kscale(k_scale))));
}

}  // namespace
}  // namespace kvq::test::asc
