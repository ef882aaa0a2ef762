#include "indexer_impl.hpp"

#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

namespace kvq::ascend {
namespace {

constexpr uint16_t kF16One = 0x3C00;

bool f16_is_inf(uint16_t bits) {
  return (bits & 0x7C00u) == 0x7C00u;
}

// Elements of a 1-row slice of a tensor as float64 (any float dtype, any stride).
void load_row(const sdk::TensorView& t, const unsigned char* first, int64_t n, int64_t stride,
              double* out) {
  const int64_t step = stride * sdk::dtype_size(t.dtype());
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<double>(sdk::load_float(t.dtype(), first + i * step));
}

bool all_finite(const double* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

// out[j] = fp32( sum_i x[i] * r[i][j] ), the sum in float64 in order of i.
void rotate(const double* x, const std::vector<double>& r, int64_t d, double* acc, float* out) {
  std::fill(acc, acc + d, 0.0);
  for (int64_t i = 0; i < d; ++i) {
    const double xi = x[i];
    const double* ri = r.data() + i * d;
    for (int64_t j = 0; j < d; ++j) acc[j] += xi * ri[j];
  }
  for (int64_t j = 0; j < d; ++j) out[j] = static_cast<float>(acc[j]);
}

// Dynamic symmetric int8 of one rotated row (header comment). Returns the
// fp16 bits of the scale; infinity bits when the scale overflows fp16.
uint16_t quantize_row(const float* x, int64_t d, int8_t* codes) {
  float amax = 0.0f;
  for (int64_t j = 0; j < d; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float s = std::max(amax / 127.0f, kIndexerScaleFloor);
  const uint16_t bits = sdk::float_to_f16(s);
  if (f16_is_inf(bits)) return bits;
  for (int64_t j = 0; j < d; ++j)  // nearbyint: ties to even (default rounding mode)
    codes[j] = static_cast<int8_t>(std::clamp(std::nearbyint(x[j] / s), -127.0f, 127.0f));
  return bits;
}

// The normalised Sylvester Hadamard matrix: H[i][j] = (-1)^popcount(i & j) / sqrt(D).
std::vector<double> hadamard(int64_t d) {
  std::vector<double> h(static_cast<size_t>(d * d));
  const double c = 1.0 / std::sqrt(static_cast<double>(d));
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      h[static_cast<size_t>(i * d + j)] =
          std::popcount(static_cast<uint64_t>(i & j)) % 2 == 0 ? c : -c;
  return h;
}

std::vector<double> matrix_of(const sdk::Layer& layer, const sdk::Param& p, int64_t d) {
  if (p.numel() != d * d)
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "layer {}: {} has shape {}, expected ({}, {})",
              layer.config().layer_name, p.name, p.shape_string(), d, d);
  std::vector<double> m(static_cast<size_t>(d * d));
  for (int64_t i = 0; i < d * d; ++i) {
    m[static_cast<size_t>(i)] = static_cast<double>(p.get(i));
    if (!std::isfinite(m[static_cast<size_t>(i)]))
      sdk::fail(KVQ_ERR_INVALID_ARGUMENT, "layer {}: {}[{}][{}] = {} is not finite",
                layer.config().layer_name, p.name, i / d, i % d, m[static_cast<size_t>(i)]);
  }
  return m;
}

// Why a query token could not be quantized (first failing head).
struct TokenError {
  enum Kind { kNone, kQuery, kWeight, kQueryScale, kWeightedScale } kind = kNone;
  int64_t head = 0;
  float value = 0.0f, scale = 0.0f;
};

}  // namespace

int64_t indexer_row_bytes(int64_t head_dim) {
  return (head_dim + 2 + 3) / 4 * 4;
}

kvq_cache_geometry IndexerImpl::geometry(const sdk::Layer& layer) const {
  const sdk::LayerConfig& c = layer.config();
  kvq_cache_geometry g{};
  g.struct_size = sizeof(g);
  g.layout = KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD;
  g.element_dtype = KVQ_DTYPE_I8;
  g.block_size = c.block_size;
  g.num_kv_heads = c.num_kv_heads;
  g.head_size = c.head_size;
  g.head_size_v = 0;  // keys only: no value rows
  g.row_bytes = indexer_row_bytes(c.head_size);
  g.bytes_per_block = c.block_size * c.num_kv_heads * g.row_bytes;
  g.alignment = 64;
  return g;
}

void IndexerImpl::cache_init(const sdk::Layer&, const sdk::CacheView& cache) const {
  const kvq_cache_geometry& g = cache.geometry();
  std::memset(cache.base(), 0, static_cast<size_t>(cache.num_blocks() * g.bytes_per_block));
  for (int64_t b = 0; b < cache.num_blocks(); ++b)
    for (int64_t s = 0; s < g.block_size; ++s)
      for (int64_t h = 0; h < g.num_kv_heads; ++h)
        std::memcpy(cache.row(b, 0, s, h) + g.head_size, &kF16One, 2);
}

IndexerImpl::Rotation IndexerImpl::resolve(const sdk::Layer& layer) const {
  const sdk::LayerConfig& c = layer.config();
  const int64_t d = c.head_size;
  const sdk::Param& q = layer.param(kIndexerQRot);
  const sdk::Param& k = layer.param(kIndexerKRot);
  Rotation r;
  r.loaded = q.loaded && k.loaded;
  if (r.loaded) {
    r.q = matrix_of(layer, q, d);
    r.k = matrix_of(layer, k, d);
    r.q_bytes = q.bytes;
    r.k_bytes = k.bytes;
    return r;
  }
  if (!std::has_single_bit(static_cast<uint64_t>(d)))
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "INT8_DYNAMIC indexer layer {}: index_head_dim {} is not a power of two, so the "
              "default Hadamard rotation does not exist; load both {} and {}",
              c.layer_name, d, q.name, k.name);
  r.q = hadamard(d);
  r.k = r.q;
  return r;
}

void IndexerImpl::check_unchanged(const sdk::Layer& layer) const {
  const sdk::Param& q = layer.param(kIndexerQRot);
  const sdk::Param& k = layer.param(kIndexerKRot);
  const bool loaded = q.loaded && k.loaded;
  if (loaded != rot_.loaded || (loaded && (q.bytes != rot_.q_bytes || k.bytes != rot_.k_bytes)))
    sdk::fail(KVQ_ERR_FAILED_PRECONDITION,
              "INT8_DYNAMIC indexer layer {}: {} / {} changed after the first cache_write or "
              "forward fixed the rotation ({}); the cached keys were rotated with it",
              layer.config().layer_name, q.name, k.name,
              rot_.loaded ? "the loaded one" : "the default Hadamard");
}

const IndexerImpl::Rotation& IndexerImpl::prepare(sdk::Layer& layer) {
  if (fixed_) {
    check_unchanged(layer);
    return rot_;
  }
  rot_ = resolve(layer);
  fixed_ = true;
  const sdk::Param& q = layer.param(kIndexerQRot);
  const sdk::Param& k = layer.param(kIndexerKRot);
  if (!rot_.loaded && (q.loaded || k.loaded))
    layer.instance().logger().log(
        KVQ_LOG_WARN, fmt::format("INT8_DYNAMIC indexer layer {}: only {} was loaded; using the "
                                  "normalised Hadamard rotation for queries and keys",
                                  layer.config().layer_name, q.loaded ? q.name : k.name));
  return rot_;
}

void IndexerImpl::process_weights(sdk::Layer& layer) {
  if (fixed_)
    check_unchanged(layer);
  else
    resolve(layer);
}

void IndexerImpl::cache_write(sdk::Layer& layer, const sdk::WriteBatch& b) {
  const Rotation& rot = prepare(layer);
  const int64_t d = layer.config().head_size, bs = layer.config().block_size;
  const int64_t n = static_cast<int64_t>(b.slots.size());
  // Quantize everything first: on any error nothing is written.
  std::vector<int8_t> codes(static_cast<size_t>(n * d));
  std::vector<uint16_t> scales(static_cast<size_t>(n));
  std::vector<double> x(static_cast<size_t>(d)), acc(static_cast<size_t>(d));
  std::vector<float> xr(static_cast<size_t>(d));
  for (int64_t t = 0; t < n; ++t) {
    if (b.slots[static_cast<size_t>(t)] < 0) continue;  // padding token
    load_row(b.key, b.key.at({t, 0, 0}), d, b.key.stride(2), x.data());
    if (!all_finite(x.data(), d))
      sdk::fail(KVQ_ERR_NON_FINITE, "key of token {} (head 0) is not finite; nothing written", t);
    rotate(x.data(), rot.k, d, acc.data(), xr.data());
    const uint16_t s = quantize_row(xr.data(), d, codes.data() + t * d);
    if (f16_is_inf(s)) {
      const float amax = *std::max_element(
          xr.begin(), xr.end(), [](float a, float c) { return std::fabs(a) < std::fabs(c); });
      sdk::fail(KVQ_ERR_NON_FINITE,
                "key of token {}: its rotated max |k| = {} needs a scale beyond the fp16 range; "
                "nothing written",
                t, std::fabs(amax));
    }
    scales[static_cast<size_t>(t)] = s;
  }
  for (int64_t t = 0; t < n; ++t) {
    const int64_t slot = b.slots[static_cast<size_t>(t)];
    if (slot < 0) continue;
    unsigned char* row = b.cache.row(slot / bs, 0, slot % bs, 0);
    std::memcpy(row, codes.data() + t * d, static_cast<size_t>(d));
    std::memcpy(row + d, &scales[static_cast<size_t>(t)], 2);
  }
}

sdk::ForwardSpec IndexerImpl::forward_spec(const sdk::Layer& layer) const {
  return {{layer.config().model_dtype}, KVQ_DTYPE_I32, {topk_}, true};
}

void IndexerImpl::check_forward(const sdk::Layer& layer, const sdk::ForwardBatch& b) const {
  const sdk::LayerConfig& c = layer.config();
  if (!b.head_weights.present())
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "INT8_DYNAMIC indexer layer {}: head_weights [T, num_heads = {}] are required",
              c.layer_name, c.num_heads);
  if (b.alibi_slopes.present() || b.sinks.present())
    sdk::fail(KVQ_ERR_INVALID_ARGUMENT,
              "INT8_DYNAMIC indexer layer {}: alibi_slopes and sinks do not apply to the indexer",
              c.layer_name);
  if (fixed_)
    check_unchanged(layer);
  else
    resolve(layer);
}

void IndexerImpl::forward(sdk::Layer& layer, const sdk::ForwardBatch& b) {
  const Rotation& rot = prepare(layer);
  const sdk::LayerConfig& c = layer.config();
  const int64_t d = c.head_size, nh = c.num_heads, bs = c.block_size, nt = b.num_tokens;
  const int threads = std::max(1, layer.instance().num_threads());

  // Phase 1: rotate and quantize every (token, head) query row; weighted scales.
  std::vector<int8_t> qcodes(static_cast<size_t>(nt * nh * d));
  std::vector<double> wq(static_cast<size_t>(nt * nh));
  std::vector<TokenError> errors(static_cast<size_t>(nt));
  std::vector<double> x(static_cast<size_t>(threads * d)), acc(static_cast<size_t>(threads * d));
  std::vector<float> xr(static_cast<size_t>(threads * d));
  const int64_t wes = sdk::dtype_size(b.head_weights.dtype());
  const auto* wbase = static_cast<const unsigned char*>(b.head_weights.data());
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t tid = omp_get_thread_num();
    double* xt = x.data() + tid * d;
    float* xrt = xr.data() + tid * d;
    TokenError& e = errors[static_cast<size_t>(t)];
    for (int64_t h = 0; h < nh && e.kind == TokenError::kNone; ++h) {
      load_row(b.query, b.query.at({t, h, 0}), d, b.query.stride(2), xt);
      const float w = sdk::load_float(
          b.head_weights.dtype(),
          wbase + (t * b.head_weights.stride(0) + h * b.head_weights.stride(1)) * wes);
      if (!all_finite(xt, d)) {
        e = {TokenError::kQuery, h, 0.0f, 0.0f};
        break;
      }
      if (!std::isfinite(w)) {
        e = {TokenError::kWeight, h, w, 0.0f};
        break;
      }
      rotate(xt, rot.q, d, acc.data() + tid * d, xrt);
      const uint16_t sq = quantize_row(xrt, d, qcodes.data() + (t * nh + h) * d);
      if (f16_is_inf(sq)) {
        e = {TokenError::kQueryScale, h, w, 0.0f};
        break;
      }
      const float sqf = sdk::f16_to_float(sq);
      const uint16_t wbits = sdk::float_to_f16(w * sqf);
      if (f16_is_inf(wbits)) {
        e = {TokenError::kWeightedScale, h, w, sqf};
        break;
      }
      wq[static_cast<size_t>(t * nh + h)] = static_cast<double>(sdk::f16_to_float(wbits));
    }
  }
  for (int64_t t = 0; t < nt; ++t) {
    const TokenError& e = errors[static_cast<size_t>(t)];
    switch (e.kind) {
      case TokenError::kNone: continue;
      case TokenError::kQuery:
        sdk::fail(KVQ_ERR_NON_FINITE, "query of token {} head {} is not finite", t, e.head);
      case TokenError::kWeight:
        sdk::fail(KVQ_ERR_NON_FINITE, "head_weights of token {} head {} = {} is not finite", t,
                  e.head, e.value);
      case TokenError::kQueryScale:
        sdk::fail(KVQ_ERR_NON_FINITE,
                  "query of token {} head {}: its rotated max |q| needs a scale beyond the fp16 "
                  "range",
                  t, e.head);
      case TokenError::kWeightedScale:
        sdk::fail(KVQ_ERR_NON_FINITE,
                  "token {} head {}: head weight {} x query scale {} overflows fp16", t, e.head,
                  e.value, e.scale);
    }
  }

  // Phase 2: scores over the visible keys of each query token, then top-k.
  std::vector<int64_t> seq_of(static_cast<size_t>(nt));
  for (size_t s = 0; s < b.seqs.size(); ++s)
    for (int64_t i = 0; i < b.seqs[s].query_len; ++i)
      seq_of[static_cast<size_t>(b.seqs[s].query_start + i)] = static_cast<int64_t>(s);
  const size_t max_keys = static_cast<size_t>(b.max_seq_len);
  std::vector<double> scores(static_cast<size_t>(threads) * max_keys);
  std::vector<int32_t> order(static_cast<size_t>(threads) * max_keys);
  auto* out = static_cast<unsigned char*>(b.output.data());
  const int64_t os0 = b.output.stride(0), os1 = b.output.stride(1);
  const int64_t topk = topk_;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t t = 0; t < nt; ++t) {
    const size_t tid = static_cast<size_t>(omp_get_thread_num());
    const int64_t s = seq_of[static_cast<size_t>(t)];
    const sdk::SequenceSlice& seq = b.seqs[static_cast<size_t>(s)];
    const int64_t n = seq.context_len + (t - seq.query_start) + 1;  // keys 0..pos
    double* sc = scores.data() + tid * max_keys;
    int32_t* idx = order.data() + tid * max_keys;
    const int8_t* q = qcodes.data() + t * nh * d;
    const double* w = wq.data() + t * nh;
    for (int64_t j = 0; j < n; ++j) {
      const unsigned char* row = b.cache.row(b.block(s, j / bs), 0, j % bs, 0);
      const auto* k = reinterpret_cast<const int8_t*>(row);
      uint16_t sk;
      std::memcpy(&sk, row + d, 2);
      double sum = 0.0;
      for (int64_t h = 0; h < nh; ++h) {
        const int8_t* qh = q + h * d;
        int32_t dot = 0;
        for (int64_t x = 0; x < d; ++x) dot += static_cast<int32_t>(qh[x]) * k[x];
        if (dot > 0) sum += w[h] * static_cast<double>(dot);
      }
      sc[j] = static_cast<double>(sdk::f16_to_float(sk)) * sum;
    }
    std::iota(idx, idx + n, 0);
    const int64_t kept = std::min(topk, n);
    std::partial_sort(idx, idx + kept, idx + n, [sc](int32_t a, int32_t c) {
      return sc[a] > sc[c] || (sc[a] == sc[c] && a < c);
    });
    for (int64_t r = 0; r < topk; ++r) {
      const int32_t v = r < kept ? idx[r] : -1;
      std::memcpy(out + (t * os0 + r * os1) * 4, &v, 4);
    }
  }
}

}  // namespace kvq::ascend
