// Bad quantization descriptions (quant_model_description.json), read by the
// Ascend plugin's select_scheme hook through the ABI: malformed JSON, unknown
// quant types, wrong value types, contradictory keys, NULL arguments. Each
// row: the code, the message naming the file and the key, and no scheme
// chosen (the out pointer is left NULL).
#include <functional>

#include "bad_input.hpp"
#include "harness.hpp"

namespace kvq::bad_input {
namespace {

constexpr const char* kSource = "/ckpt/quant_model_description.json";
constexpr const char* kPrefix = "model.layers.3.self_attn";

struct DescriptionRow {
  std::string name;
  std::string text;
  int32_t code;
  std::vector<std::string> message;
  bool null_text = false, null_prefix = false;
};
void PrintTo(const DescriptionRow& row, std::ostream* os) {
  *os << row.name;
}

test::Plugin& ascend() {
  static test::Plugin plugin(test::ascend_plugin_path(), 1);
  return plugin;
}

const std::vector<DescriptionRow>& rows() {
  static const std::vector<DescriptionRow> kRows = {
      {"DescriptionTruncatedJson",
       R"({"kv_cache_type": "C8",)",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "not valid JSON"}},
      {"DescriptionEmptyText", "", KVQ_ERR_INVALID_ARGUMENT, {kSource, "not valid JSON"}},
      {"DescriptionBinaryGarbage",
       std::string("\x00\xff\xfe{", 4),
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "not valid JSON"}},
      {"DescriptionInvalidUtf8InAString",
       "{\"kv_cache_type\": \"C\xc3\x28\"}",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "not valid JSON"}},
      // Found by fuzz_quant_description: a number too large for a double made
      // nlohmann throw out_of_range, which surfaced as INTERNAL.
      {"DescriptionNumberOverflow",
       R"({"kv_cache_type": "C8", "group_size": 555e666667})",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "not valid JSON", "number overflow"}},
      {"DescriptionIsAnArray",
       "[1, 2]",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "the description must be a JSON object"}},
      {"DescriptionIsAString",
       R"("C8")",
       KVQ_ERR_INVALID_ARGUMENT,
       {"the description must be a JSON object"}},
      {"UnknownKvCacheType",
       R"({"kv_cache_type": "C4"})",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "key \"kv_cache_type\" has unknown quant type \"C4\" (expected \"C8\")"}},
      {"UnknownFaQuantType",
       R"({"fa_quant_type": "FP4"})",
       KVQ_ERR_INVALID_ARGUMENT,
       {"key \"fa_quant_type\" has unknown quant type \"FP4\" (expected \"FAKQuant\")"}},
      {"UnknownLayerIndexerType",
       R"({"model.layers.3.self_attn.indexer.quant_type": "INT4"})",
       KVQ_ERR_INVALID_ARGUMENT,
       {"key \"model.layers.3.self_attn.indexer.quant_type\" has unknown quant type \"INT4\""}},
      {"QuantTypeIsANumber",
       R"({"kv_quant_type": 8})",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "key \"kv_quant_type\" must be a string, not number"}},
      {"QuantTypeIsAnObject",
       R"({"indexer_quant_type": {"type": "INT8_DYNAMIC"}})",
       KVQ_ERR_INVALID_ARGUMENT,
       {"key \"indexer_quant_type\" must be a string, not object"}},
      {"ContradictoryC8AndFakQuant",
       R"({"kv_cache_type": "C8", "fa_quant_type": "FAKQuant"})",
       KVQ_ERR_INVALID_ARGUMENT,
       {kSource, "contradictory keys: kv_cache_type C8 (GQA int8 cache) and fa_quant_type"}},
      {"ContradictoryKvQuantAndFakQuant",
       R"({"kv_quant_type": "C8", "fa_quant_type": "FAKQuant", "indexer_quant_type": "INT8_DYNAMIC"})",
       KVQ_ERR_INVALID_ARGUMENT,
       {"contradictory keys"}},
      {"DescriptionNull", "", KVQ_ERR_INVALID_ARGUMENT, {"description is NULL"}, true},
      {"LayerPrefixNull", "{}", KVQ_ERR_INVALID_ARGUMENT, {"layer_prefix is NULL"}, false, true},
  };
  return kRows;
}

class DescriptionRowTest : public ::testing::TestWithParam<DescriptionRow> {};

TEST_P(DescriptionRowTest, IsRefusedNamingTheFileAndNoSchemeIsChosen) {
  const DescriptionRow& row = GetParam();
  test::Plugin& p = ascend();
  const char* chosen = nullptr;
  const test::CallResult r = p.take(
      p.api().select_scheme(p.instance(), row.null_text ? nullptr : row.text.c_str(), kSource,
                            row.null_prefix ? nullptr : kPrefix, "attention", &chosen));
  EXPECT_EQ(r.code, row.code) << r.message;
  expect_message(r.message, row.message);
  EXPECT_EQ(chosen, nullptr);
}

INSTANTIATE_TEST_SUITE_P(QuantDescription, DescriptionRowTest, ::testing::ValuesIn(rows()),
                         RowName());

// The same plugin still answers a good description after all the bad ones.
TEST(DescriptionRowBaseline, AGoodDescriptionStillSelectsC8) {
  test::Plugin& p = ascend();
  const char* chosen = nullptr;
  const test::CallResult r = p.take(p.api().select_scheme(
      p.instance(), R"({"kv_cache_type": "C8"})", kSource, kPrefix, "attention", &chosen));
  ASSERT_EQ(r.code, 0) << r.message;
  EXPECT_STREQ(chosen, "C8");
}

}  // namespace
}  // namespace kvq::bad_input
