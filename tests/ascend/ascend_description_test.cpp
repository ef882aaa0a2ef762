// quant_model_description.json scheme selection through the ABI's optional
// select_scheme hook (spec/ascend.md §2, §7, §8): the real key names, the
// order of precedence, and clear errors naming the file and the key.
#include "harness.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kvq::test {
namespace {

struct Selection {
  CallResult status;
  std::string quant_type;
};

Selection select(Plugin& p, const std::string& json,
                 const char* prefix = "model.layers.0.self_attn",
                 const char* layer_type = "attention") {
  Selection s;
  const char* out = nullptr;
  EXPECT_TRUE(KVQ_API_HAS(&p.api(), select_scheme));
  s.status = p.take(p.api().select_scheme(
      p.instance(), json.c_str(), "/ckpt/quant_model_description.json", prefix, layer_type, &out));
  if (s.status.code == 0) s.quant_type = out;
  return s;
}

TEST(AscendDescription, KvCacheTypeC8MakesEveryAttentionLayerC8) {
  Plugin p(ascend_plugin_path());
  const std::string d = R"({"model_quant_type": "W8A8", "version": "1.0.0", "kv_cache_type": "C8",
    "model.layers.0.self_attn.k_proj.kv_cache_scale": "C8",
    "model.layers.0.self_attn.k_proj.weight": "W8A8"})";
  EXPECT_EQ(select(p, d, "model.layers.0.self_attn").quant_type, "C8");
  EXPECT_EQ(select(p, d, "model.layers.63.self_attn").quant_type, "C8");
  EXPECT_EQ(select(p, d, "model.layers.0.mlp", "linear").quant_type, "");
  // Some exporters write kv_quant_type instead.
  EXPECT_EQ(select(p, R"({"kv_quant_type": "C8"})").quant_type, "C8");
}

TEST(AscendDescription, NoKvKeysMeansNoScheme) {
  Plugin p(ascend_plugin_path());
  EXPECT_EQ(select(p, R"({"model_quant_type": "W8A8", "x.weight": "FLOAT"})").quant_type, "");
}

TEST(AscendDescription, FaKQuantWinsOverTheIndexer) {
  Plugin p(ascend_plugin_path());
  const std::string both = R"({"fa_quant_type": "FAKQuant", "indexer_quant_type": "INT8_DYNAMIC",
    "model.layers.0.self_attn.indexer.quant_type": "INT8_DYNAMIC"})";
  EXPECT_EQ(select(p, both).quant_type, "FAKQuant");
  EXPECT_EQ(select(p, R"({"indexer_quant_type": "INT8_DYNAMIC"})").quant_type, "INT8_DYNAMIC");
  EXPECT_EQ(
      select(p, R"({"model.layers.0.self_attn.indexer.quant_type": "INT8_DYNAMIC"})").quant_type,
      "INT8_DYNAMIC");
}

TEST(AscendDescription, MalformedJsonNamesTheFile) {
  Plugin p(ascend_plugin_path());
  const Selection s = select(p, R"({"kv_cache_type": "C8",)");
  EXPECT_EQ(s.status.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.status.message.find("/ckpt/quant_model_description.json"), std::string::npos)
      << s.status.message;
  EXPECT_NE(s.status.message.find("not valid JSON"), std::string::npos) << s.status.message;
  EXPECT_EQ(select(p, "[1, 2]").status.code, KVQ_ERR_INVALID_ARGUMENT);
}

TEST(AscendDescription, UnknownQuantTypeNamesTheKey) {
  Plugin p(ascend_plugin_path());
  for (const char* key : {"kv_cache_type", "fa_quant_type", "indexer_quant_type"}) {
    const Selection s = select(p, std::string(R"({")") + key + R"(": "C4"})");
    EXPECT_EQ(s.status.code, KVQ_ERR_INVALID_ARGUMENT) << key;
    EXPECT_NE(s.status.message.find(key), std::string::npos) << s.status.message;
    EXPECT_NE(s.status.message.find("\"C4\""), std::string::npos) << s.status.message;
    EXPECT_NE(s.status.message.find("quant_model_description.json"), std::string::npos);
  }
  const Selection wrong_type = select(p, R"({"kv_cache_type": 8})");
  EXPECT_EQ(wrong_type.status.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(wrong_type.status.message.find("must be a string"), std::string::npos);
}

TEST(AscendDescription, ContradictoryKeysAreRefused) {
  Plugin p(ascend_plugin_path());
  Selection s = select(p, R"({"kv_cache_type": "C8", "fa_quant_type": "FAKQuant"})");
  EXPECT_EQ(s.status.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.status.message.find("contradictory"), std::string::npos) << s.status.message;
}

TEST(AscendDescription, NullArgumentsAreInvalid) {
  Plugin p(ascend_plugin_path());
  const char* out = nullptr;
  EXPECT_EQ(p.take(p.api().select_scheme(p.instance(), nullptr, "f", "model.layers.0.self_attn",
                                         "attention", &out))
                .code,
            KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(p.take(p.api().select_scheme(p.instance(), "{}", "f", "model.layers.0.self_attn",
                                         "attention", nullptr))
                .code,
            KVQ_ERR_INVALID_ARGUMENT);
}

TEST(TritonDescription, PluginsWithoutDescriptionsAnswerUnsupported) {
  Plugin p(triton_plugin_path());
  const char* out = nullptr;
  EXPECT_EQ(p.take(p.api().select_scheme(p.instance(), "{}", "f", "model.layers.0.self_attn",
                                         "attention", &out))
                .code,
            KVQ_ERR_UNSUPPORTED);
}

}  // namespace
}  // namespace kvq::test
