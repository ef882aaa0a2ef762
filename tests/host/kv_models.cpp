#include "kv_models.hpp"

#include <kvq_abi.h>
#include <kvq_ref/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>

#include "kvq_files/safetensors.hpp"

namespace kvq::host::testing {

KvRowModel per_token_head_model(const std::string& mode) {
  const bool int8 = mode == "int8_per_token_head";
  if (!int8 && mode != "fp8_per_token_head")
    throw std::invalid_argument("no per-token-head model for " + mode);
  return [int8](Projection, int64_t, int64_t, std::span<double> row) {
    float absmax = 0.0f;
    for (double x : row) absmax = std::max(absmax, std::fabs(static_cast<float>(x)));
    const float scale = std::max(absmax * (int8 ? 1.0f / 127.0f : 1.0f / 448.0f), 1e-6f);
    const float inv = 1.0f / scale;
    for (double& x : row) {
      const float y = static_cast<float>(x) * inv;
      const double code =
          int8 ? std::clamp(static_cast<double>(std::nearbyint(y)), -128.0, 127.0)
               : kvq::ref::round_to(KVQ_DTYPE_F8_E4M3FN, std::clamp(y, -448.0f, 448.0f));
      x = code * static_cast<double>(scale);
    }
  };
}

KvRowModel int4_per_token_head_model() {
  return [](Projection, int64_t, int64_t, std::span<double> row) {
    float lo = static_cast<float>(row[0]), hi = lo;
    for (double x : row) {
      lo = std::min(lo, static_cast<float>(x));
      hi = std::max(hi, static_cast<float>(x));
    }
    const float scale = std::max((hi - lo) / 15.0f, 1e-6f);
    const float zp = std::clamp(std::nearbyint(-lo / scale), 0.0f, 15.0f);
    for (double& x : row) {
      const float q = std::clamp(std::nearbyint(static_cast<float>(x) / scale + zp), 0.0f, 15.0f);
      x = (static_cast<double>(q) - zp) * static_cast<double>(scale);
    }
  };
}

KvRowModel fp8_checkpoint_model(const std::filesystem::path& checkpoint, int32_t model_dtype) {
  const SafetensorsFile file = SafetensorsFile::open(checkpoint / "model.safetensors");
  // (layer, is_value) -> scale, from model.layers.N.self_attn.{k,v}_scale.
  std::map<std::pair<int64_t, bool>, float> scales;
  for (const SafetensorsTensor& t : file.tensors()) {
    int64_t layer = -1;
    char which = 0;
    if (std::sscanf(t.name.c_str(), "model.layers.%ld.self_attn.%c_scale", &layer, &which) != 2)
      continue;
    float s;
    std::memcpy(&s, t.data, 4);
    scales[{layer, which == 'v'}] = s;
  }
  if (scales.empty()) throw std::invalid_argument("no k/v scales in " + checkpoint.string());
  return
      [scales, model_dtype](Projection projection, int64_t layer, int64_t, std::span<double> row) {
        const float s = scales.at({layer, projection == Projection::kValue});
        for (double& x : row) {
          const double code = kvq::ref::round_to(KVQ_DTYPE_F8_E4M3FN, static_cast<float>(x) / s);
          x = kvq::ref::round_to(model_dtype, code * static_cast<double>(s));
        }
      };
}

}  // namespace kvq::host::testing
