// The Ascend backend's class upgrade as a host observes it through the ABI:
// a plain attention layer becomes ascend_c8_attention when the C8 scheme is
// applied (spec/ascend.md §1), with its parameters and refusals.
#include "harness.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kvq::test {
namespace {

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
