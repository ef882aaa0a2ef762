#include "kvq_host/dtype.hpp"

#include <fmt/format.h>
#include <kvq_abi.h>

namespace kvq::host {

std::optional<ModelDtype> parse_model_dtype(std::string_view text) {
  if (text == "bf16") return ModelDtype::kBf16;
  if (text == "fp16") return ModelDtype::kFp16;
  if (text == "fp32") return ModelDtype::kFp32;
  return std::nullopt;
}

std::string_view model_dtype_name(ModelDtype dtype) {
  switch (dtype) {
    case ModelDtype::kBf16: return "bf16";
    case ModelDtype::kFp16: return "fp16";
    case ModelDtype::kFp32: return "fp32";
  }
  return "?";
}

int32_t abi_dtype(ModelDtype dtype) {
  switch (dtype) {
    case ModelDtype::kBf16: return KVQ_DTYPE_BF16;
    case ModelDtype::kFp16: return KVQ_DTYPE_F16;
    case ModelDtype::kFp32: return KVQ_DTYPE_F32;
  }
  return 0;
}

int64_t abi_dtype_size(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32: return 4;
    case KVQ_DTYPE_F16: return 2;
    case KVQ_DTYPE_BF16: return 2;
    case KVQ_DTYPE_I8: return 1;
    case KVQ_DTYPE_U8: return 1;
    case KVQ_DTYPE_F8_E4M3FN: return 1;
    case KVQ_DTYPE_F8_E5M2: return 1;
    case KVQ_DTYPE_I32: return 4;
    case KVQ_DTYPE_I64: return 8;
    case KVQ_DTYPE_F64: return 8;
    default: return 0;
  }
}

std::string abi_dtype_name(int32_t dtype) {
  switch (dtype) {
    case 0: return "model dtype";
    case KVQ_DTYPE_F32: return "fp32";
    case KVQ_DTYPE_F16: return "fp16";
    case KVQ_DTYPE_BF16: return "bf16";
    case KVQ_DTYPE_I8: return "int8";
    case KVQ_DTYPE_U8: return "uint8";
    case KVQ_DTYPE_F8_E4M3FN: return "fp8_e4m3fn";
    case KVQ_DTYPE_F8_E5M2: return "fp8_e5m2";
    case KVQ_DTYPE_I32: return "int32";
    case KVQ_DTYPE_I64: return "int64";
    case KVQ_DTYPE_F64: return "fp64";
    default: return fmt::format("dtype_{}", dtype);
  }
}

}  // namespace kvq::host
