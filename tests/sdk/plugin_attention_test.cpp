// Both plugins' unquantized modes against the float64 reference, through the
// C ABI: prefill, decode and mixed batches, GQA, causal bottom-right masking,
// sliding window, softcap, ALiBi and sinks.
#include "harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

namespace kvq::test {
namespace {

struct Tolerance {
  double atol, rtol;
};
Tolerance tolerance_for(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32: return {2e-5, 2e-5};
    case KVQ_DTYPE_F16: return {2e-3, 1e-2};
    default: return {1.5e-2, 1e-2};  // vLLM's bf16 paged-attention tolerance
  }
}

void expect_close(const BatchResult& r, int32_t dtype) {
  ASSERT_EQ(r.status.code, 0) << r.status.message;
  const Tolerance t = tolerance_for(dtype);
  const auto c = kvq::ref::compare(r.actual, r.reference, t.atol, t.rtol);
  EXPECT_EQ(c.non_finite, 0);
  EXPECT_EQ(c.violations, 0) << "worst element " << c.worst_index << " max abs err "
                             << c.max_abs_error;
  EXPECT_LT(c.nmse, dtype == KVQ_DTYPE_F32 ? 1e-10 : 1e-4);
}

// (plugin, backend) x (mode, model dtype)
using Param = std::tuple<std::string, std::string, int32_t>;
class UnquantizedAttention : public ::testing::TestWithParam<Param> {
 protected:
  std::string backend() const { return std::get<0>(GetParam()); }
  std::string path() const {
    return backend() == "triton" ? triton_plugin_path() : ascend_plugin_path();
  }
  LayerSpec spec() const {
    LayerSpec s;
    s.backend = backend();
    s.mode = std::get<1>(GetParam());
    s.model_dtype = std::get<2>(GetParam());
    return s;
  }
};

TEST_P(UnquantizedAttention, MixedBatchWithGqa) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{1, 70}, {5, 5}, {17, 40}, {1, 1}, {40, 100}};
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

TEST_P(UnquantizedAttention, DecodeOnlyLongContexts) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{1, 523}, {1, 37}, {1, 1011}};
  b.state = KVQ_ATTN_DECODE_ONLY;
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

TEST_P(UnquantizedAttention, PrefillNoCache) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{33, 33}, {7, 7}};
  b.state = KVQ_ATTN_PREFILL_NO_CACHE;
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

TEST_P(UnquantizedAttention, MultiHeadAndSingleKvHead) {
  Plugin p(path());
  for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {5, 1}}) {
    LayerSpec s = spec();
    s.num_heads = hq;
    s.num_kv_heads = hkv;
    BatchSpec b;
    b.seqs = {{1, 50}, {9, 30}};
    expect_close(run_batch(p, s, b), s.model_dtype);
  }
}

TEST_P(UnquantizedAttention, SlidingWindowAndSoftcap) {
  Plugin p(path());
  LayerSpec s = spec();
  s.sliding_window = 16;
  s.softcap = 5.0;
  BatchSpec b;
  b.seqs = {{1, 90}, {20, 60}, {8, 8}};
  expect_close(run_batch(p, s, b), s.model_dtype);
}

TEST_P(UnquantizedAttention, AlibiAndSinks) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{1, 45}, {12, 30}};
  b.alibi = true;
  b.sinks = true;
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

INSTANTIATE_TEST_SUITE_P(Modes, UnquantizedAttention,
                         ::testing::Combine(::testing::Values("triton", "ascend"),
                                            ::testing::Values("bfloat16", "float16", "float32"),
                                            ::testing::Values(KVQ_DTYPE_BF16)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

INSTANTIATE_TEST_SUITE_P(
    ModelDtypes, UnquantizedAttention,
    ::testing::Combine(::testing::Values("triton", "ascend"), ::testing::Values("auto"),
                       ::testing::Values(KVQ_DTYPE_F32, KVQ_DTYPE_F16, KVQ_DTYPE_BF16)),
    [](const auto& info) {
      return std::get<0>(info.param) + "_auto_" + std::to_string(std::get<2>(info.param));
    });

TEST(AscendBackend, PrefillNoCacheAttendsOnTheBatchFloatKv) {
  // The cache is never written: only the batch's own K/V can give the reference.
  Plugin p(ascend_plugin_path());
  LayerSpec s;
  s.backend = "ascend";
  s.mode = "float32";  // cache dtype fp32; model bf16
  BatchSpec b;
  b.seqs = {{24, 24}, {3, 3}};
  b.state = KVQ_ATTN_PREFILL_NO_CACHE;
  b.write_cache = false;
  expect_close(run_batch(p, s, b), KVQ_DTYPE_BF16);
}

TEST(AscendBackend, PrefillNoCacheWithoutBatchKvIsAnError) {
  Plugin p(ascend_plugin_path());
  LayerSpec s;
  s.backend = "ascend";
  BatchSpec b;
  b.seqs = {{4, 4}};
  b.state = KVQ_ATTN_PREFILL_NO_CACHE;
  b.pass_batch_kv = false;
  const BatchResult r = run_batch(p, s, b);
  EXPECT_EQ(r.status.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.status.message.find("key and value"), std::string::npos) << r.status.message;
}

TEST(TritonBackend, InfoNamesTheKernelLevelAndCpuFeatures) {
  Plugin p(triton_plugin_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  ASSERT_EQ(p.take(p.api().get_info(p.instance(), &info)).code, 0);
  EXPECT_TRUE(std::string(info.simd_level) == "portable" ||
              std::string(info.simd_level) == "avx2" || std::string(info.simd_level) == "avx512")
      << info.simd_level;
  EXPECT_STREQ(info.name, "kvq_triton_sim");
  ASSERT_EQ(info.num_backends, 1);
  EXPECT_STREQ(info.backends[0]->name, "triton");
}

TEST(TritonBackend, GeometryRulesAreEnforcedAtLayerCreation) {
  Plugin p(triton_plugin_path());
  LayerSpec s;
  s.backend = "triton";
  s.block_size = 8;
  CallResult r = try_create(p, s);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("multiple of 16"), std::string::npos) << r.message;
  s.block_size = 16;
  s.head_size = 16;
  r = try_create(p, s);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("at least 32"), std::string::npos) << r.message;
  // Per-token-head rows have one layout for K and V (scale at byte head_size).
  s.head_size = 64;
  s.head_size_v = 32;
  for (const char* m : {"int8_per_token_head", "fp8_per_token_head", "int4_per_token_head"}) {
    s.mode = m;
    r = try_create(p, s);
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << m;
    EXPECT_NE(r.message.find("head_size_v 32 must equal head_size 64"), std::string::npos)
        << r.message;
  }
  s.mode = "bfloat16";  // no inline scale: any V head size
  EXPECT_EQ(try_create(p, s).code, 0);
}

TEST(TritonBackend, EveryModeStringParsesAndUnknownOnesAreInvalid) {
  Plugin p(triton_plugin_path());
  LayerSpec s;
  s.backend = "triton";
  for (const char* m : {"int8_per_token_head", "fp8_per_token_head", "int4_per_token_head", "fp8",
                        "fp8_e4m3", "fp8_e5m2", "half", "float", "auto", "bfloat16"}) {
    s.mode = m;
    const CallResult r = try_create(p, s);
    EXPECT_EQ(r.code, 0) << m << ": " << r.message;
  }
  for (const char* m : {"int3", "fp8_bogus", "", "INT8_PER_TOKEN_HEAD"}) {
    s.mode = m;
    const CallResult r = try_create(p, s);
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << m;
    EXPECT_NE(r.message.find("kv_cache_dtype"), std::string::npos) << r.message;
  }
}

TEST(AscendBackend, C8ClassUpgradeIsObservableAndOwnApplyFails) {
  Plugin p(ascend_plugin_path());
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = "ascend";
  c.layer_name = "model.layers.3.self_attn.attn";
  c.kv_cache_dtype = "auto";
  c.model_dtype = KVQ_DTYPE_BF16;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_size = 32;
  c.block_size = 32;
  kvq_layer* layer = nullptr;
  ASSERT_EQ(p.take(p.api().layer_create(p.instance(), &c, &layer)).code, 0);
  kvq_layer_info info{};
  info.struct_size = KVQ_LAYER_INFO_SIZE;
  ASSERT_EQ(p.take(p.api().layer_info(layer, &info)).code, 0);
  EXPECT_STREQ(info.impl_name, "ascend_attention");
  EXPECT_EQ(info.element_dtype, KVQ_DTYPE_BF16);
  EXPECT_EQ(p.take(p.api().scheme_apply(layer)).code, KVQ_ERR_FAILED_PRECONDITION);

  kvq_scheme_args a{};
  a.struct_size = KVQ_SCHEME_ARGS_SIZE;
  a.quant_type = "C8";
  a.layer_type = "attention";
  ASSERT_EQ(p.take(p.api().apply_scheme(layer, &a)).code, 0);
  ASSERT_EQ(p.take(p.api().layer_info(layer, &info)).code, 0);
  EXPECT_STREQ(info.impl_name, "ascend_c8_attention");
  EXPECT_STREQ(info.kv_cache_dtype, "int8");
  EXPECT_STREQ(info.scheme, "C8");
  EXPECT_EQ(info.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(info.num_params, 4);
  kvq_param_info pi{};
  pi.struct_size = KVQ_PARAM_INFO_SIZE;
  ASSERT_EQ(p.take(p.api().param_info(layer, 0, &pi)).code, 0);
  EXPECT_STREQ(pi.name, "model.layers.3.self_attn.attn.k_cache_scale");
  EXPECT_STREQ(pi.loader, "c8_kv_scale");
  EXPECT_EQ(pi.trainable, 0);
  const CallResult own = p.take(p.api().scheme_apply(layer));
  EXPECT_EQ(own.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_EQ(own.message, "C8 KV cache quantization is handled by the attention backend");
  EXPECT_EQ(p.take(p.api().apply_scheme(layer, &a)).code, KVQ_ERR_FAILED_PRECONDITION);
  a.quant_type = "W4A4";
  EXPECT_EQ(p.take(p.api().apply_scheme(layer, &a)).code, KVQ_ERR_NOT_FOUND);
  p.api().layer_destroy(layer);

  // C8 needs a block size that is a multiple of 32; the error names the value.
  c.block_size = 16;
  ASSERT_EQ(p.take(p.api().layer_create(p.instance(), &c, &layer)).code, 0);
  a.quant_type = "C8";
  const CallResult r = p.take(p.api().apply_scheme(layer, &a));
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("16"), std::string::npos) << r.message;
  p.api().layer_destroy(layer);
  // The int8 cache mode is reached only through the C8 scheme.
  c.kv_cache_dtype = "int8";
  EXPECT_EQ(p.take(p.api().layer_create(p.instance(), &c, &layer)).code, KVQ_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace kvq::test
