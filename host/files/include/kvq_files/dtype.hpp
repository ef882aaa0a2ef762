// Model dtypes as the deployment names them, and ABI dtype names for display.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvq::host {

// The dtype of the model's activations (query, key, value, output).
enum class ModelDtype { kBf16, kFp16, kFp32 };

// "bf16" | "fp16" | "fp32" (the deployment's spelling); nullopt otherwise.
std::optional<ModelDtype> parse_model_dtype(std::string_view text);
std::string_view model_dtype_name(ModelDtype dtype);
int32_t abi_dtype(ModelDtype dtype);  // KVQ_DTYPE_BF16 / F16 / F32

// Bytes of one element of a KVQ_DTYPE_*; 0 for an unknown dtype (kvq_abi_names.h).
int64_t abi_dtype_size(int32_t dtype);
// kvq_abi_names.h's "BF16", "I8", "F8_E4M3", ...; "model dtype" for 0;
// "dtype_N" if unknown.
std::string abi_dtype_name(int32_t dtype);

}  // namespace kvq::host
