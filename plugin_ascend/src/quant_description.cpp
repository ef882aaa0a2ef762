#include "quant_description.hpp"

#include "kvq_sdk/error.hpp"

#include <nlohmann/json.hpp>

namespace kvq::ascend {
namespace {

using nlohmann::json;

// The string value of `key`, or "" when absent; a non-string is an error.
std::string string_at(const json& j, const std::string& key, std::string_view source) {
  const auto it = j.find(key);
  if (it == j.end()) return "";
  if (!it->is_string())
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "{}: key \"{}\" must be a string, not {}", source, key,
              it->type_name());
  return it->get<std::string>();
}

void expect_value(const std::string& value, const char* known, const std::string& key,
                  std::string_view source) {
  if (!value.empty() && value != known)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "{}: key \"{}\" has unknown quant type \"{}\" (expected \"{}\")", source, key, value,
              known);
}

}  // namespace

std::string select_attention_scheme(std::string_view text, std::string_view source,
                                    std::string_view layer_prefix, std::string_view layer_type) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number overflow
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "{}: not valid JSON: {}", source, e.what());
  }
  if (!j.is_object())
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "{}: the description must be a JSON object", source);

  const std::string fa = string_at(j, "fa_quant_type", source);
  const std::string indexer = string_at(j, "indexer_quant_type", source);
  const std::string layer_indexer_key = std::string(layer_prefix) + ".indexer.quant_type";
  const std::string layer_indexer = string_at(j, layer_indexer_key, source);
  const std::string kv_cache = string_at(j, "kv_cache_type", source);
  const std::string kv_quant = string_at(j, "kv_quant_type", source);
  expect_value(fa, "FAKQuant", "fa_quant_type", source);
  expect_value(indexer, "INT8_DYNAMIC", "indexer_quant_type", source);
  expect_value(layer_indexer, "INT8_DYNAMIC", layer_indexer_key, source);
  expect_value(kv_cache, "C8", "kv_cache_type", source);
  expect_value(kv_quant, "C8", "kv_quant_type", source);
  if (!kv_cache.empty() && !kv_quant.empty() && kv_cache != kv_quant)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "{}: contradictory keys kv_cache_type \"{}\" and kv_quant_type \"{}\"", source,
              kv_cache, kv_quant);
  const bool c8 = !kv_cache.empty() || !kv_quant.empty();
  if (c8 && !fa.empty())
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "{}: contradictory keys: kv_cache_type C8 (GQA int8 cache) and fa_quant_type "
              "FAKQuant (MLA)",
              source);

  if (layer_type != "attention") return "";
  if (!fa.empty()) return "FAKQuant";  // wins over the indexer for the attention scheme
  if (!layer_indexer.empty() || !indexer.empty()) return "INT8_DYNAMIC";
  if (c8) return "C8";
  return "";
}

}  // namespace kvq::ascend
