#include "kvq_files/dtype.hpp"

#include <fmt/format.h>
#include <kvq_abi_names.h>

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
  return kvq_dtype_size(dtype);
}

std::string abi_dtype_name(int32_t dtype) {
  if (dtype == 0) return "model dtype";
  const std::string_view name = kvq_dtype_name(dtype);
  if (name == "?") return fmt::format("dtype_{}", dtype);
  return std::string(name);
}

}  // namespace kvq::host
