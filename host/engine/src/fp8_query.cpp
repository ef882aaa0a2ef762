#include "kvq_engine/fp8_query.hpp"

#include <fmt/format.h>
#include <kvq_abi.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "kvq_engine/float_codec.hpp"
#include "kvq_engine/host_tensor.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {

uint8_t encode_e4m3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  const double a = std::min(std::fabs(static_cast<double>(value)), 448.0);
  // Every step below is exact in double, so nearbyint (ties to even) rounds
  // the true value once.
  if (a < 0x1.0p-6) {  // subnormal: steps of 2^-9 (a result of 8 is the smallest normal)
    return static_cast<uint8_t>(sign | static_cast<uint8_t>(std::nearbyint(a * 512.0)));
  }
  int exp = 0;
  const double fraction = std::frexp(a, &exp);  // a = fraction * 2^exp, fraction in [0.5, 1)
  int e = exp - 1;                              // a in [2^e, 2^(e+1)), e in [-6, 8]
  auto m = static_cast<int>(std::nearbyint((fraction * 2.0 - 1.0) * 8.0));
  if (m == 8) {  // rounded up to the next power of two (never past 448: a <= 448)
    m = 0;
    ++e;
  }
  return static_cast<uint8_t>(sign | ((e + 7) << 3) | m);
}

Fp8Query Fp8Query::for_layer(const Layer& layer, int64_t num_heads, int64_t num_kv_heads) {
  std::map<std::string, ParamInfo> params;
  for (auto& p : layer.params()) params.emplace(p.name, std::move(p));
  // The first loaded scale in vLLM's fallback order.
  const ParamInfo* chosen = nullptr;
  for (const char* local : {"q_scale", "k_scale", "kv_scale"}) {
    const auto it = params.find(layer.name() + "." + local);
    if (it == params.end()) {
      if (std::string_view(local) == "q_scale") {
        throw Error(fmt::format(
            "kv_cache.query_dtype fp8: layer {} has no q_scale parameter, so its KV cache mode "
            "takes no fp8 query (use an fp8 per-tensor mode such as kv_cache.dtype fp8)",
            layer.name()));
      }
      continue;
    }
    if (it->second.loaded) {
      chosen = &it->second;
      break;
    }
  }
  Fp8Query out;
  out.scales_.assign(static_cast<size_t>(num_heads), 1.0f);
  if (chosen == nullptr) return out;
  int64_t count = 1;
  for (const int64_t d : chosen->shape) count *= d;
  HostTensor values(KVQ_DTYPE_F32, {count});
  layer.param_read(chosen->name, values.view());
  const float* v = values.as<float>();
  if (count != 1 && count != num_heads && count != num_kv_heads) {
    throw Error(fmt::format("layer {}: {} holds {} values, not 1, {} or {}", layer.name(),
                            chosen->name, count, num_heads, num_kv_heads));
  }
  const int64_t group = num_heads / num_kv_heads;
  for (int64_t h = 0; h < num_heads; ++h) {
    // A scalar, one per query head (q_scale) or one per KV head (k/kv_scale).
    const int64_t i = count == 1 ? 0 : count == num_heads ? h : h / group;
    out.scales_[static_cast<size_t>(h)] = v[i];
  }
  return out;
}

void Fp8Query::quantize(const PluginTensor& query, PluginTensor& out) const {
  const kvq_tensor& q = query.host_view();
  const int64_t tokens = q.shape[0], heads = q.shape[1], d = q.shape[2];
  out.reshape(KVQ_DTYPE_F8_E4M3FN, {tokens, heads, d});
  std::vector<double> row(static_cast<size_t>(d));
  auto* dst = out.as<uint8_t>();
  const std::byte* src = query.host();
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t at = (t * heads + h) * d;
      decode_to_doubles(q.dtype, src + at * query.element_size(), row);
      const float scale = scales_[static_cast<size_t>(h)];
      for (int64_t x = 0; x < d; ++x) {
        dst[at + x] = encode_e4m3(static_cast<float>(row[static_cast<size_t>(x)]) / scale);
      }
    }
  }
  out.upload();
}

}  // namespace kvq::host
