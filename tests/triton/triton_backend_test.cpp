// The Triton backend as a host meets it: plugin info, the geometry rules
// checked at layer creation (spec/triton_sim.md §2) and the kv_cache_dtype
// strings it parses (§1).
#include "harness.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kvq::test {
namespace {

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

}  // namespace
}  // namespace kvq::test
