#include "kv_modes.hpp"

#include "kvq_sdk/error.hpp"
#include "kvq_sdk/unquantized.hpp"

namespace kvq::triton {

std::vector<sdk::ModeDefinition> modes() {
  std::vector<sdk::ModeDefinition> m = sdk::unquantized_modes();
  // name, description, stored element, supported, per-token-head, needs a scheme
  m.push_back({"fp8", "fp8 e4m3fn, per-tensor k/v scales (same as fp8_e4m3)", KVQ_DTYPE_F8_E4M3FN,
               true, false, false});
  m.push_back(
      {"fp8_e4m3", "fp8 e4m3fn, per-tensor k/v scales", KVQ_DTYPE_F8_E4M3FN, true, false, false});
  m.push_back({"fp8_e5m2", "fp8 e5m2 (real e5m2 bits), per-tensor k/v scales", KVQ_DTYPE_F8_E5M2,
               true, false, false});
  m.push_back({"int8_per_token_head", "int8, dynamic fp32 scale per (token, head) stored inline",
               KVQ_DTYPE_I8, true, true, false});
  m.push_back({"fp8_per_token_head", "fp8 e4m3fn, dynamic fp32 scale per (token, head) inline",
               KVQ_DTYPE_F8_E4M3FN, true, true, false});
  m.push_back({"int4_per_token_head",
               "asymmetric int4 per (token, head): nibbles, then fp32 scale and zero point",
               KVQ_DTYPE_U8, true, true, false});
  return m;
}

KvMode kind_of(const sdk::ModeDefinition& m) {
  if (m.name == "int8_per_token_head") return KvMode::kInt8PerTokenHead;
  if (m.name == "fp8_per_token_head") return KvMode::kFp8PerTokenHead;
  if (m.name == "int4_per_token_head") return KvMode::kInt4PerTokenHead;
  if (m.name.rfind("fp8", 0) == 0) return KvMode::kFp8PerTensor;
  return KvMode::kNone;
}

std::string resolve_mode(std::string_view s) {
  if (s == "int8_per_token_head" || s == "fp8_per_token_head" || s == "int4_per_token_head")
    return std::string(s);
  if (s.substr(0, 3) == "fp8") {
    if (s == "fp8" || s == "fp8_e4m3" || s == "fp8_e5m2") return std::string(s);
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "kv_cache_dtype '{}' is an fp8 variant this backend does not know (fp8, fp8_e4m3, "
              "fp8_e5m2)",
              s);
  }
  const std::string plain = sdk::unquantized_mode_name(s);
  if (!plain.empty()) return plain;
  sdk::fail(
      KVQ_ERR_INVALID_ARGUMENT,
      "unknown kv_cache_dtype '{}'; expected auto, bfloat16, float16, float32, half, float, "
      "fp8, fp8_e4m3, fp8_e5m2, int8_per_token_head, fp8_per_token_head or int4_per_token_head",
      s);
}

void validate_geometry(const sdk::LayerConfig& c, const sdk::ModeDefinition& mode) {
  if (c.block_size % 16 != 0)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "block_size {} must be a multiple of 16", c.block_size);
  if (c.head_size < 32)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "head_size {} must be at least 32", c.head_size);
  if (mode.per_token_head && c.head_size % 4 != 0)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "head_size {} must be a multiple of 4 in per-token-head mode {}", c.head_size,
              mode.name);
  // vLLM's per-token-head layout has one row size, head_size + 4, for K and
  // V, with the scale at byte head_size of every row (spec §2): a different
  // V head size has no defined place for its scale.
  if (mode.per_token_head && c.head_size_v != c.head_size)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "head_size_v {} must equal head_size {} in per-token-head mode {} (one row layout "
              "for K and V)",
              c.head_size_v, c.head_size, mode.name);
}

}  // namespace kvq::triton
