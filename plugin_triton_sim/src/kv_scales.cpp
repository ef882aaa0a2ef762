#include "kv_scales.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <cmath>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>

namespace kvq::triton {
namespace {

constexpr const char* kNames[] = {"k_scale", "v_scale", "q_scale", "kv_scale"};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::vector<float> values(const sdk::Param& p) {
  std::vector<float> v(static_cast<size_t>(p.numel()));
  for (int64_t i = 0; i < p.numel(); ++i) v[static_cast<size_t>(i)] = p.get(i);
  return v;
}

void store(sdk::Param& p, const std::vector<float>& v) {
  p.reshape({static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) p.set(static_cast<int64_t>(i), v[i]);
}

}  // namespace

void KvScales::declare(sdk::Layer& layer) {
  const int32_t roles[] = {KVQ_PARAM_ROLE_K_SCALE, KVQ_PARAM_ROLE_V_SCALE, KVQ_PARAM_ROLE_Q_SCALE,
                           KVQ_PARAM_ROLE_KV_SCALE};
  for (size_t i = 0; i < std::size(kNames); ++i) {
    const std::string_view name = kNames[i];
    sdk::Param p;
    p.name = std::string(name);
    p.loader = "fp8_scale";
    p.role = roles[i];
    p.load_shapes = name == "q_scale"    ? "[] | [1] | [num_heads]"
                    : name == "kv_scale" ? "[] | [1]"
                                         : "[] | [1] | [num_kv_heads]";
    p.dtype = KVQ_DTYPE_F32;
    p.reshape({1});
    p.set(0, 1.0f);
    layer.declare(std::move(p));
  }
}

void KvScales::load(sdk::Param& param, const sdk::TensorView& loaded, const sdk::LayerConfig& c,
                    int32_t, int32_t) {
  const bool is_q = ends_with(param.name, ".q_scale") || param.name == "q_scale";
  const int64_t per_head = is_q ? c.num_heads : c.num_kv_heads;
  const int64_t n = loaded.numel();
  if (n != 1 && n != per_head)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "scale {}: loaded shape {} is neither a scalar (per-tensor fp8) nor one value per "
              "{} head ({})",
              param.name, loaded.shape_string(), is_q ? "attention" : "KV", per_head);
  if (!loaded.contiguous())
    sdk::fail(KVQ_ERR_UNSUPPORTED, "scale {}: loaded tensor is not contiguous", param.name);
  if (!sdk::is_model_dtype(loaded.dtype()))
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "scale {}: dtype {}; a scale is F32, F16 or BF16",
              param.name, sdk::dtype_name(loaded.dtype()));
  std::vector<float> v(static_cast<size_t>(n));
  const int64_t es = sdk::dtype_size(loaded.dtype());
  for (int64_t i = 0; i < n; ++i) {
    const float x =
        sdk::load_float(loaded.dtype(), static_cast<const unsigned char*>(loaded.data()) + i * es);
    // A subnormal scale turns every value into the largest fp8 code (x /
    // scale overflows): no calibration produces one.
    if (!std::isfinite(x) || x < std::numeric_limits<float>::min())
      sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
                "scale {}[{}] = {} must be finite and at least {} (a normal float > 0)", param.name,
                i, x, std::numeric_limits<float>::min());
    v[static_cast<size_t>(i)] = x;
  }
  store(param, v);
}

void KvScales::resolve(sdk::Layer& layer, bool is_e5m2) {
  if (resolved_) return;
  const sdk::Param& k = layer.param("k_scale");
  const sdk::Param& v = layer.param("v_scale");
  const sdk::Param& q = layer.param("q_scale");
  const sdk::Param& kv = layer.param("kv_scale");
  const auto& log = layer.instance().logger();
  if (k.loaded || v.loaded) {
    k_ = k.loaded ? values(k) : (kv.loaded ? values(kv) : std::vector<float>{1.0f});
    v_ = v.loaded ? values(v) : (kv.loaded ? values(kv) : std::vector<float>{1.0f});
    if (!k.loaded || !v.loaded)
      log.log(KVQ_LOG_WARN,
              fmt::format("{}: only one of k_scale / v_scale was loaded; the other is {}",
                          layer.config().layer_name, kv.loaded ? "kv_scale" : "1.0"));
  } else if (kv.loaded) {
    k_ = v_ = values(kv);  // legacy checkpoints: one scale for both
  } else {
    k_ = v_ = {1.0f};
    if (!is_e5m2 && !kv_calibrated_)
      log.log(KVQ_LOG_WARN,
              fmt::format("{}: no k/v scales in the checkpoint; using 1.0 (accuracy may suffer)",
                          layer.config().layer_name));
  }
  if (q.loaded) {
    q_ = values(q);
  } else if (k_.size() == 1) {
    q_ = k_;  // a missing q_scale equals k_scale
  } else {
    const int64_t group = layer.config().num_heads / layer.config().num_kv_heads;
    q_.assign(static_cast<size_t>(layer.config().num_heads), 1.0f);
    for (int64_t h = 0; h < layer.config().num_heads; ++h)
      q_[static_cast<size_t>(h)] = k_[static_cast<size_t>(h / group)];
  }
  resolved_ = true;
}

void KvScales::calibrate_kv(sdk::Layer& layer, float k_absmax, float v_absmax) {
  k_ = {std::max(k_absmax / 200.0f, 1e-6f)};
  v_ = {std::max(v_absmax / 100.0f, 1e-6f)};
  if (!q_calibrated_) q_ = k_;
  store(layer.param("k_scale"), k_);
  store(layer.param("v_scale"), v_);
  kv_calibrated_ = resolved_ = true;
}

void KvScales::calibrate_q(sdk::Layer& layer, float q_absmax) {
  q_ = {std::max(q_absmax / 200.0f, 1e-6f)};
  store(layer.param("q_scale"), q_);
  q_calibrated_ = true;
}

}  // namespace kvq::triton
