// The KV-cache modes of vLLM's Triton attention backend, keyed by the user's
// kv_cache_dtype string exactly as spec/triton_sim.md §1 parses it.
#pragma once

#include "kvq_sdk/plugin.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace kvq::triton {

enum class KvMode { kNone, kFp8PerTensor, kInt8PerTokenHead, kFp8PerTokenHead, kInt4PerTokenHead };
KvMode kind_of(const sdk::ModeDefinition& mode);

std::vector<sdk::ModeDefinition> modes();
// spec §1 parse order: the per-token-head names, then any "fp8*" string
// (per-tensor), then the unquantized names. Unknown -> INVALID_ARGUMENT.
std::string resolve_mode(std::string_view kv_cache_dtype);
// spec §2: block_size multiple of 16, head_size >= 32, and a multiple of 4
// in per-token-head modes.
void validate_geometry(const sdk::LayerConfig& config, const sdk::ModeDefinition& mode);

}  // namespace kvq::triton
