// The C8 behaviours pinned by vllm-ascend's unit tests (spec/ascend.md §9,
// items 17-32 and the closing sentence), one test each, through the C ABI:
// the C8 scale loader, the C8 scheme ("method") and the C8 backend helpers.
#include "ascend_harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kvq::test::asc {
namespace {

std::vector<double> arange(int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0.0);
  return v;
}

// A layer with the C8 scheme applied (no scales loaded yet).
struct C8Fixture {
  Plugin plugin{ascend_plugin_path()};
  Config config;
  LayerPtr layer{nullptr, nullptr};
  explicit C8Fixture(Config c = {}) : config(std::move(c)) {
    layer = make_layer(plugin, config);
    check(apply_c8(plugin, layer.get()), "apply_scheme C8");
  }
  std::string name(const std::string& local) const { return full_name(config, local); }
  // Loads the C8 vectors `s` and processes the weights; throws on an error.
  void prepare(const Scales& s) {
    check(load_scales(plugin, layer.get(), config, s), "load");
    check(process_weights(plugin, layer.get()), "process_weights");
  }
  kvq_param_info info(const std::string& local) {
    return param_info(plugin, layer.get(), name(local));
  }
};

// ---- C8 loader (_c8_kv_scale_weight_loader) ---------------------------------------

TEST(AscendC8Pinned, C8Loader_17_CopiesInPlace) {
  C8Fixture f;
  const std::string k = f.name("k_cache_scale");
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), k, {1, 1, 1, 1}).code, 0);  // ones(4)
  ASSERT_EQ(shape_of(f.info("k_cache_scale")), (std::vector<int64_t>{4}));
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), k, {1, 2, 3, 4}).code, 0);
  const kvq_param_info info = f.info("k_cache_scale");
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{4}));
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(info.loaded, 1);
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), k), (std::vector<double>{1, 2, 3, 4}));
}

TEST(AscendC8Pinned, C8Loader_18_OneElementParamTakesTheLoadedShape) {
  C8Fixture f;
  ASSERT_EQ(shape_of(f.info("v_cache_scale")), (std::vector<int64_t>{1}));  // ones(1)
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), f.name("v_cache_scale"), arange(8)).code, 0);
  const kvq_param_info info = f.info("v_cache_scale");
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{8}));  // re-created as (8,)
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("v_cache_scale")), arange(8));
}

TEST(AscendC8Pinned, C8Loader_19_SizeOneDimsAreSqueezed) {
  C8Fixture f;
  const std::string k = f.name("k_cache_offset");
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), k, {1, 1, 1, 1}).code, 0);  // ones(4)
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), k, arange(4), {1, 4}).code, 0);
  EXPECT_EQ(shape_of(f.info("k_cache_offset")), (std::vector<int64_t>{4}));  // stays (4,)
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), k), arange(4));
}

TEST(AscendC8Pinned, C8Loader_20_Fp16IntoFp32StaysFp32) {
  C8Fixture f;
  const std::string k = f.name("k_cache_scale");
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), k, {1, 1, 1, 1}).code, 0);  // fp32 ones(4)
  const std::vector<double> halves = {0.5, 1.25, -2.0, 3.001953125};        // exact in fp16
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), k, halves, {4}, KVQ_DTYPE_F16).code, 0);
  const kvq_param_info info = f.info("k_cache_scale");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{4}));
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), k), halves);
  // A re-created parameter keeps fp32 too.
  ASSERT_EQ(
      load_param(f.plugin, f.layer.get(), f.name("v_cache_scale"), halves, {4}, KVQ_DTYPE_F16).code,
      0);
  EXPECT_EQ(f.info("v_cache_scale").dtype, KVQ_DTYPE_F32);
}

// ---- C8 method (the scheme) ---------------------------------------------------------

TEST(AscendC8Pinned, C8Method_21_CacheDtypeBecomesInt8) {
  Plugin p(ascend_plugin_path());
  const Config c;
  LayerPtr layer = make_layer(p, c);
  const kvq_layer_info before = layer_info(p, layer.get());
  EXPECT_STREQ(before.impl_name, "ascend_attention");
  EXPECT_EQ(before.element_dtype, KVQ_DTYPE_BF16);
  EXPECT_STREQ(before.scheme, "");
  ASSERT_EQ(apply_c8(p, layer.get()).code, 0);
  const kvq_layer_info after = layer_info(p, layer.get());
  EXPECT_STREQ(after.impl_name, "ascend_c8_attention");  // the class upgrade
  EXPECT_STREQ(after.kv_cache_dtype, "int8");
  EXPECT_STREQ(after.scheme, "C8");
  EXPECT_EQ(after.element_dtype, KVQ_DTYPE_I8);
  const kvq_cache_geometry g = geometry(p, layer.get());
  EXPECT_EQ(g.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(g.row_bytes, c.head_size);  // [blocks, bs, N_kv, D] int8, no inline scale
  EXPECT_EQ(g.bytes_per_block, 2 * c.block_size * c.num_kv_heads * c.head_size);
}

TEST(AscendC8Pinned, C8Method_22_FourParamsNotTrainable) {
  C8Fixture f;
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, 4);
  for (const char* local : kC8Params) {
    SCOPED_TRACE(local);
    const kvq_param_info info = f.info(local);
    EXPECT_EQ(info.trainable, 0);
    EXPECT_EQ(info.derived, 0);
    EXPECT_EQ(info.loaded, 0);
    EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
    EXPECT_EQ(shape_of(info), (std::vector<int64_t>{1}));
  }
}

TEST(AscendC8Pinned, C8Method_23_ScalesOneOffsetsZeroInitially) {
  C8Fixture f;
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("k_cache_scale")),
            (std::vector<double>{1.0}));
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("v_cache_scale")),
            (std::vector<double>{1.0}));
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("k_cache_offset")),
            (std::vector<double>{0.0}));
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("v_cache_offset")),
            (std::vector<double>{0.0}));
}

TEST(AscendC8Pinned, C8Method_24_AllBoundToTheC8Loader) {
  C8Fixture f;
  for (const char* local : kC8Params) EXPECT_STREQ(f.info(local).loader, "c8_kv_scale") << local;
}

TEST(AscendC8Pinned, C8Method_25_LoadedMatrixIsFlattenedAfterProcessing) {
  C8Fixture f;
  const std::vector<double> v = {0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4};
  ASSERT_EQ(load_param(f.plugin, f.layer.get(), f.name("k_cache_scale"), v, {2, 4}).code, 0);
  EXPECT_EQ(shape_of(f.info("k_cache_scale")), (std::vector<int64_t>{2, 4}));
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  EXPECT_EQ(shape_of(f.info("k_cache_scale")), (std::vector<int64_t>{8}));
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("k_cache_scale")), v);
  // process_weights is idempotent.
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  EXPECT_EQ(shape_of(f.info("k_cache_scale")), (std::vector<int64_t>{8}));
}

TEST(AscendC8Pinned, C8Method_26_SchemeApplyFails) {
  C8Fixture f;
  ASSERT_TRUE(KVQ_API_HAS(&f.plugin.api(), scheme_apply));
  const CallResult r = f.plugin.take(f.plugin.api().scheme_apply(f.layer.get()));
  EXPECT_EQ(r.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(r.message.find("C8 KV cache quantization is handled by the attention backend"),
            std::string::npos)
      << r.message;
}

// ---- C8 backend helpers: 4 KV heads x head 8, TP rank 0 of 1 ----------------------

constexpr int64_t kHeads = 4, kDim = 8, kChannels = kHeads * kDim;

TEST(AscendC8Pinned, C8Helpers_27_PreparingDerivesAntiquantParams) {
  C8Fixture f;
  const Scales s = random_scales(kChannels, 27);
  f.prepare(s);
  // Lazy: nothing derived until the first cache_write / forward.
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, 4);
  for (const char* local : kAntiquantParams)
    EXPECT_FALSE(find_param(f.plugin, f.layer.get(), f.name(local))) << local;

  Cache cache(f.plugin, f.layer.get(), 1);
  const auto [k, v] = random_kv(KVQ_DTYPE_BF16, {2, kHeads, kDim}, 1.0, 1);
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), k, v, {0, 1}, cache).code, 0);
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, 8);
  for (const char* local : kAntiquantParams) {
    const auto info = find_param(f.plugin, f.layer.get(), f.name(local));
    ASSERT_TRUE(info) << local;
    EXPECT_EQ(info->derived, 1) << local;
    EXPECT_STREQ(info->loader, "") << local;
    EXPECT_EQ(info->trainable, 0) << local;
  }
  // Idempotent: a second write declares nothing more.
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), k, v, {2, 3}, cache).code, 0);
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, 8);

  // A forward prepares too (here on a second layer, before any cache_write).
  C8Fixture g;
  g.prepare(s);
  RunOptions o;
  o.state = KVQ_ATTN_DECODE_ONLY;
  o.write_cache = false;
  ASSERT_EQ(run_c8(g.plugin, g.layer.get(), g.config, {{1, 5}}, o).status.code, 0);
  EXPECT_EQ(layer_info(g.plugin, g.layer.get()).num_params, 8);
  for (const char* local : kAntiquantParams)
    EXPECT_TRUE(find_param(g.plugin, g.layer.get(), g.name(local))) << local;
}

TEST(AscendC8Pinned, C8Helpers_28_RawScaleChangeAfterPreparingIsIgnored) {
  C8Fixture f;
  const Scales s = random_scales(kChannels, 28);
  f.prepare(s);
  Cache cache(f.plugin, f.layer.get(), 1);
  const auto [k, v] = random_kv(KVQ_DTYPE_BF16, {4, kHeads, kDim}, 1.0, 3);
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), k, v, {0, 1, 2, 3}, cache).code, 0);
  const std::vector<double> prepared =
      read_param(f.plugin, f.layer.get(), f.name("antiquant_key_scale"));
  const std::vector<unsigned char> first = cache.snapshot();

  ASSERT_EQ(load_param(f.plugin, f.layer.get(), f.name("k_cache_scale"),
                       std::vector<double>(kChannels, 99.0))
                .code,
            0);
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("k_cache_scale")),
            std::vector<double>(kChannels, 99.0));  // the raw parameter did change
  EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name("antiquant_key_scale")), prepared);
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), k, v, {0, 1, 2, 3}, cache).code, 0);
  EXPECT_EQ(cache.snapshot(), first);  // same codes: the scale 99 is not used
}

TEST(AscendC8Pinned, C8Helpers_29_AntiquantShapeAndDtype) {
  C8Fixture f;
  const Scales s = random_scales(kChannels, 29);
  f.prepare(s);
  Cache cache(f.plugin, f.layer.get(), 1);
  const OwnedTensor kv = random_tensor(KVQ_DTYPE_BF16, {1, kHeads, kDim}, 1.0, 5);
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), kv, kv, {0}, cache).code, 0);
  const std::vector<double>* expected[] = {&s.k_scale, &s.k_offset, &s.v_scale, &s.v_offset};
  for (int i = 0; i < 4; ++i) {
    const char* local = kAntiquantParams[i];
    SCOPED_TRACE(local);
    const kvq_param_info info = f.info(local);
    EXPECT_EQ(shape_of(info), (std::vector<int64_t>{1, kHeads, 1, kDim}));  // BNSD
    EXPECT_EQ(info.dtype, KVQ_DTYPE_BF16);
    std::vector<double> want;
    for (double x : *expected[i]) want.push_back(bf16(x));
    EXPECT_EQ(read_param(f.plugin, f.layer.get(), f.name(local)), want);
  }
}

TEST(AscendC8Pinned, C8Helpers_30_QuantizingZerosGivesInt8Zeros) {
  C8Fixture f;
  f.prepare(uniform_scales(kChannels, 0.05, 0.0));
  Cache cache(f.plugin, f.layer.get(), 1);
  std::memset(cache.data(), 0x5A, static_cast<size_t>(cache.size()));  // not zero before
  const OwnedTensor zeros(KVQ_DTYPE_BF16, {6, kHeads, kDim});          // [6, 4, 8]
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), zeros, zeros, {0, 1, 2, 3, 4, 5}, cache).code, 0);
  for (int64_t t = 0; t < 6; ++t)
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t h = 0; h < kHeads; ++h)
        for (int64_t d = 0; d < kDim; ++d)
          ASSERT_EQ(cache.code(t, kv, h, d), 0) << t << " " << kv << " " << h << " " << d;
  EXPECT_EQ(cache.code(6, 0, 0, 0), 0x5A);  // slot 6 untouched
}

TEST(AscendC8Pinned, C8Helpers_31_Scale2Offset0MapsFourToTwo) {
  C8Fixture f;
  f.prepare(uniform_scales(kChannels, 2.0, 0.0));
  Cache cache(f.plugin, f.layer.get(), 1);
  const OwnedTensor four = filled_tensor(KVQ_DTYPE_BF16, {1, kHeads, kDim}, 4.0);
  ASSERT_EQ(write_kv(f.plugin, f.layer.get(), four, four, {3}, cache).code, 0);
  for (int kv = 0; kv < 2; ++kv)
    for (int64_t h = 0; h < kHeads; ++h)
      for (int64_t d = 0; d < kDim; ++d) EXPECT_EQ(cache.code(3, kv, h, d), 2);
}

// Dequantizing with scale 1, offset 0 is the identity: attention over a cache
// filled directly with int8 codes equals float64 attention over those integers.
TEST(AscendC8Pinned, C8Helpers_32_DequantIdentityOnAPagedInt8Cache) {
  Config c;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_size = 4;
  c.block_size = 32;
  C8Fixture f(c);
  f.prepare(uniform_scales(8, 1.0, 0.0));
  Cache cache(f.plugin, f.layer.get(), 2);  // 2 blocks x 32 slots x (2 heads x 4)
  std::mt19937_64 rng(32);
  std::uniform_int_distribution<int> code(-128, 127);
  // keys[s] / values[s]: [32][2][4], sequence s owns block s.
  std::vector<std::vector<double>> keys(2), values(2);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t slot = 0; slot < 32; ++slot)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t d = 0; d < 4; ++d) {
          const auto k = static_cast<int8_t>(code(rng)), v = static_cast<int8_t>(code(rng));
          cache.set_code(b, 0, slot, h, d, k);
          cache.set_code(b, 1, slot, h, d, v);
          keys[static_cast<size_t>(b)].push_back(k);
          values[static_cast<size_t>(b)].push_back(v);
        }
  OwnedTensor table(KVQ_DTYPE_I32, {2, 1});
  table.set(0, 0);
  table.set(1, 1);
  OwnedTensor lens(KVQ_DTYPE_I32, {2});
  lens.set(0, 32);
  lens.set(1, 32);
  for (const auto& [state, qlens] :
       {std::pair<int32_t, std::vector<int64_t>>{KVQ_ATTN_DECODE_ONLY, {1, 1}},
        {KVQ_ATTN_PREFILL_CACHE_HIT, {5, 32}}}) {
    SCOPED_TRACE(state);
    const int64_t t = qlens[0] + qlens[1];
    OwnedTensor qsl(KVQ_DTYPE_I32, {3});
    qsl.set(1, static_cast<double>(qlens[0]));
    qsl.set(2, static_cast<double>(t));
    // Small queries keep the softmax over the large integer keys soft.
    const OwnedTensor query = random_tensor(KVQ_DTYPE_BF16, {t, 4, 4}, 0.02, 320 + state);
    OwnedTensor out = filled_tensor(KVQ_DTYPE_BF16, {t, 4, 4}, NAN);
    const CallResult r = forward(f.plugin, f.layer.get(),
                                 forward_args(state, query.get(), cache.tensor(), qsl.get(),
                                              lens.get(), table.get(), out.get()));
    ASSERT_EQ(r.code, 0) << r.message;
    const std::vector<double> want =
        reference_attention(c, {{qlens[0], 32}, {qlens[1], 32}}, query.to_doubles(), keys, values);
    const auto cmp = kvq::ref::compare(out.to_doubles(), want, 1e-2, 1e-2);
    EXPECT_EQ(cmp.non_finite, 0);
    EXPECT_EQ(cmp.violations, 0) << "worst " << cmp.worst_index << " max abs " << cmp.max_abs_error;
  }
}

// The description {"kv_cache_type": "C8"} makes every attention layer C8; a
// host does that by applying the C8 scheme to each layer.
TEST(AscendC8Pinned, C8Description_EveryAttentionLayerBecomesC8) {
  Plugin p(ascend_plugin_path());
  std::vector<LayerPtr> layers;
  for (int i = 0; i < 4; ++i) {
    Config c;
    c.layer_name = "model.layers." + std::to_string(i) + ".self_attn.attn";
    layers.push_back(make_layer(p, c));
    ASSERT_EQ(apply_c8(p, layers.back().get()).code, 0) << i;
  }
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    const kvq_layer_info info = layer_info(p, layers[static_cast<size_t>(i)].get());
    EXPECT_STREQ(info.impl_name, "ascend_c8_attention");
    EXPECT_STREQ(info.kv_cache_dtype, "int8");
    EXPECT_STREQ(info.scheme, "C8");
    EXPECT_EQ(info.element_dtype, KVQ_DTYPE_I8);
    EXPECT_EQ(info.num_params, 4);
    Config c;
    c.layer_name = "model.layers." + std::to_string(i) + ".self_attn.attn";
    EXPECT_TRUE(find_param(p, layers[static_cast<size_t>(i)].get(), full_name(c, "k_cache_scale")));
  }
}

}  // namespace
}  // namespace kvq::test::asc
