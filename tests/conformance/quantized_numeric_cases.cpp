// Quantized numeric layer: every quantized KV mode a backend claims
// (int8/fp8/int4 per-token-head, fp8 per-tensor) and the C8 scheme, checked
// the way the numeric layer checks the unquantized modes, plus the two things
// only a quantized mode has:
//   write path  every stored byte (codes, inline scales, zero points) equals
//               an IEEE reference written here from the specs
//               (triton_sim.md §3, ascend.md §5), not from plugin code;
//   read path   the output equals float64 attention over the values the
//               suite itself decodes from the stored bytes (tight), and
//               float64 attention over the unquantized inputs within vLLM's
//               end-to-end limit (triton_sim.md §6).
// Batches: vLLM's sequence sets over scattered blocks with padding rows, GQA
// 8/2 and 5/1, head 64 and 128; C8 runs every attention state.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"
#include "kvq_ref/reference.hpp"
#include "verdict.hpp"

namespace kvq::conform {
namespace {

constexpr uint64_t kSeed = 0x6B7671'0003ull;
constexpr double kFp8KScale = 0.5, kFp8VScale = 0.25;  // fp8 per-tensor k_scale / v_scale

// ---------------------------------------------------------------- modes

enum class Codec { kInt8PerTokenHead, kFp8PerTokenHead, kInt4PerTokenHead, kFp8PerTensor, kC8 };

struct QuantMode {
  const char* name;  // kv_cache_dtype string; "C8" for the scheme
  Codec codec;
  int32_t element_dtype;  // what the cache stores
  double e2e_nmse;        // vLLM's end-to-end limit (triton_sim.md §6)
};

const QuantMode kModes[] = {
    {"int8_per_token_head", Codec::kInt8PerTokenHead, KVQ_DTYPE_I8, 1e-2},
    {"fp8_per_token_head", Codec::kFp8PerTokenHead, KVQ_DTYPE_F8_E4M3FN, 1e-2},
    {"int4_per_token_head", Codec::kInt4PerTokenHead, KVQ_DTYPE_U8, 5e-2},
    {"fp8", Codec::kFp8PerTensor, KVQ_DTYPE_F8_E4M3FN, 1e-2},
    {"fp8_e4m3", Codec::kFp8PerTensor, KVQ_DTYPE_F8_E4M3FN, 1e-2},
    {"fp8_e5m2", Codec::kFp8PerTensor, KVQ_DTYPE_F8_E5M2, 1e-2},
};
const QuantMode kC8 = {"C8", Codec::kC8, KVQ_DTYPE_I8, 1e-2};

bool per_token_head(Codec c) {
  return c == Codec::kInt8PerTokenHead || c == Codec::kFp8PerTokenHead ||
         c == Codec::kInt4PerTokenHead;
}

// ------------------------------------------------------------ fp8 codec

// kvq::ref::encode_fp8, made fast enough for a million elements: the nearest
// code by binary search over the finite values, and the reference itself for
// every tie and every value at or beyond the largest finite one (the only
// places where the rounding rule, rather than distance, decides).
class Fp8Codec {
 public:
  explicit Fp8Codec(int32_t dtype) : dtype_(dtype) {
    for (int c = 0; c < 256; ++c) {
      decoded_[static_cast<size_t>(c)] = kvq::ref::decode_fp8(dtype, static_cast<uint8_t>(c));
      const double v = decoded_[static_cast<size_t>(c)];
      if (c < 0x80 && std::isfinite(v)) positive_.push_back({v, static_cast<uint8_t>(c)});
    }
    std::sort(positive_.begin(), positive_.end());
    max_ = positive_.back().first;
  }

  // `tie` is set when x lies halfway between two codes (or beyond max).
  uint8_t encode(double x, bool* tie = nullptr) const {
    const double a = std::fabs(x);
    if (!(a < max_)) {
      if (tie) *tie = true;
      return kvq::ref::encode_fp8(dtype_, x);
    }
    const auto hi =
        std::lower_bound(positive_.begin(), positive_.end(), std::make_pair(a, uint8_t{0}));
    uint8_t code = hi->second;
    if (hi->first != a) {
      const auto lo = hi - 1;
      const double below = a - lo->first, above = hi->first - a;
      if (below == above) {
        if (tie) *tie = true;
        return kvq::ref::encode_fp8(dtype_, x);
      }
      code = below < above ? lo->second : hi->second;
    }
    return static_cast<uint8_t>(std::signbit(x) ? code | 0x80 : code);
  }
  double decode(uint8_t code) const { return decoded_[code]; }
  double max() const { return max_; }
  // Midpoints between adjacent non-negative finite values, smallest first.
  std::vector<double> midpoints() const {
    std::vector<double> m;
    for (size_t i = 1; i < positive_.size(); ++i)
      m.push_back((positive_[i - 1].first + positive_[i].first) / 2);
    return m;
  }

 private:
  int32_t dtype_;
  std::array<double, 256> decoded_{};
  std::vector<std::pair<double, uint8_t>> positive_;
  double max_ = 0;
};

double bf16(double x) {
  return kvq::ref::round_to(KVQ_DTYPE_BF16, x);
}

// ------------------------------------------------------------ row codec

struct CodecStats {
  int64_t ties = 0;     // elements rounded from exactly halfway
  int64_t clamped = 0;  // elements clamped / saturated to the code range
};

// The spec's write path and its inverse for one (K|V, head) row of a layer.
class RowCodec {
 public:
  RowCodec(const QuantMode& mode, int64_t head_size)
      : mode_(mode),
        d_(head_size),
        fp8_(mode.codec == Codec::kFp8PerTensor ? mode.element_dtype : KVQ_DTYPE_F8_E4M3FN) {}

  // fp8 per-tensor scales and the C8 per-channel scales/offsets as loaded (fp32).
  double tensor_scale[2] = {1.0, 1.0};
  std::vector<float> channel_scale[2], channel_offset[2];

  const QuantMode& mode() const { return mode_; }
  const Fp8Codec& fp8() const { return fp8_; }

  // Bytes of a row's codes (int4: the packed nibbles).
  int64_t code_bytes() const { return mode_.codec == Codec::kInt4PerTokenHead ? (d_ + 1) / 2 : d_; }
  // Bytes of a row the spec defines (the rest of row_bytes is padding).
  int64_t content_bytes() const {
    switch (mode_.codec) {
      case Codec::kInt8PerTokenHead:
      case Codec::kFp8PerTokenHead: return d_ + 4;
      case Codec::kInt4PerTokenHead: return (d_ + 1) / 2 + 8;
      default: return d_;
    }
  }

  std::string byte_name(int64_t byte) const {
    const int64_t codes = code_bytes();
    if (byte < codes)
      return mode_.codec == Codec::kInt4PerTokenHead
                 ? "nibbles of elements " + std::to_string(2 * byte) + "," +
                       std::to_string(2 * byte + 1)
                 : "element " + std::to_string(byte);
    return byte < codes + 4 ? "scale" : "zero point";
  }

  void encode(int kv, int64_t head, const double* x, unsigned char* out, CodecStats& st) const {
    switch (mode_.codec) {
      case Codec::kInt8PerTokenHead:
      case Codec::kFp8PerTokenHead: return encode_symmetric(x, out, st);
      case Codec::kInt4PerTokenHead: return encode_int4(x, out, st);
      case Codec::kFp8PerTensor: {
        // q = fp8(x / scale), RNE, saturating (triton_sim.md §3).
        const float s = static_cast<float>(tensor_scale[kv]);
        for (int64_t i = 0; i < d_; ++i) {
          const float y = static_cast<float>(x[i]) / s;
          bool tie = false;
          out[i] = fp8_.encode(y, &tie);
          st.ties += tie && std::fabs(y) < fp8_.max();
          st.clamped += std::fabs(y) > fp8_.max();
        }
        return;
      }
      case Codec::kC8: {
        // ascend.md §5, every operation rounded to bf16.
        for (int64_t i = 0; i < d_; ++i) {
          const size_t c = static_cast<size_t>(head * d_ + i);
          const double inv = bf16(1.0f / channel_scale[kv][c]);
          const double off = bf16(channel_offset[kv][c]);
          double t = bf16(bf16(x[i]) * inv);
          t = bf16(t + off);
          st.ties += t - std::floor(t) == 0.5;
          const double q = std::clamp(std::nearbyint(t), -128.0, 127.0);
          st.clamped += q != std::nearbyint(t);
          out[i] = static_cast<unsigned char>(static_cast<int8_t>(q));
        }
        return;
      }
    }
  }

  void decode(int kv, int64_t head, const unsigned char* row, double* out) const {
    switch (mode_.codec) {
      case Codec::kInt8PerTokenHead:
      case Codec::kFp8PerTokenHead: {
        const double scale = load_f32(row + d_);
        for (int64_t i = 0; i < d_; ++i) {
          const double q = mode_.codec == Codec::kInt8PerTokenHead
                               ? static_cast<double>(static_cast<int8_t>(row[i]))
                               : fp8_.decode(row[i]);
          out[i] = q * scale;
        }
        return;
      }
      case Codec::kInt4PerTokenHead: {
        const int64_t n = (d_ + 1) / 2;
        const double scale = load_f32(row + n), zp = load_f32(row + n + 4);
        for (int64_t i = 0; i < d_; ++i) {
          const int q = (row[i / 2] >> (4 * (i % 2))) & 0xF;
          out[i] = (q - zp) * scale;
        }
        return;
      }
      case Codec::kFp8PerTensor:
        // Dequantized, then rounded to the (bf16) query dtype as vLLM does.
        for (int64_t i = 0; i < d_; ++i) out[i] = bf16(fp8_.decode(row[i]) * tensor_scale[kv]);
        return;
      case Codec::kC8:
        for (int64_t i = 0; i < d_; ++i) {
          const size_t c = static_cast<size_t>(head * d_ + i);
          const double off = bf16(channel_offset[kv][c]), scale = bf16(channel_scale[kv][c]);
          out[i] = bf16(bf16(static_cast<int8_t>(row[i]) - off) * scale);
        }
        return;
    }
  }

 private:
  static double load_f32(const unsigned char* p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  static void store_f32(unsigned char* p, float f) { std::memcpy(p, &f, 4); }

  // triton_sim.md §3, float32 throughout: scale = max(absmax * fp32(1/QMAX), 1e-6),
  // inv = 1/scale, y = x*inv; int8 RNE clamped, fp8 e4m3 of clamp(y, ±448).
  void encode_symmetric(const double* x, unsigned char* out, CodecStats& st) const {
    const bool int8 = mode_.codec == Codec::kInt8PerTokenHead;
    const float inv_qmax = int8 ? 1.0f / 127.0f : 1.0f / 448.0f;  // a multiply, as vLLM
    float absmax = 0.0f;
    for (int64_t i = 0; i < d_; ++i) absmax = std::max(absmax, std::fabs(static_cast<float>(x[i])));
    const float scale = std::max(absmax * inv_qmax, 1e-6f);
    const float inv = 1.0f / scale;
    for (int64_t i = 0; i < d_; ++i) {
      const float y = static_cast<float>(x[i]) * inv;
      if (int8) {
        const float r = std::nearbyint(y);
        const float q = std::clamp(r, -128.0f, 127.0f);
        st.ties += y - std::floor(y) == 0.5f;
        st.clamped += q != r;
        out[i] = static_cast<unsigned char>(static_cast<int8_t>(q));
      } else {
        const float c = std::clamp(y, -448.0f, 448.0f);
        bool tie = false;
        out[i] = fp8_.encode(c, &tie);
        st.ties += tie && std::fabs(c) < 448.0f;
        st.clamped += c != y;
      }
    }
    store_f32(out + d_, scale);
  }

  // triton_sim.md §3 (last paragraph), float32: scale = max((max-min)/15,
  // 1e-6), zp = clamp(rne(-min/scale), 0, 15), q = clamp(rne(x/scale + zp),
  // 0, 15); nibbles (even index low), then fp32 scale, then fp32 zero point.
  void encode_int4(const double* x, unsigned char* out, CodecStats& st) const {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int64_t i = 0; i < d_; ++i) {
      lo = std::min(lo, static_cast<float>(x[i]));
      hi = std::max(hi, static_cast<float>(x[i]));
    }
    const float scale = std::max((hi - lo) / 15.0f, 1e-6f);
    const float zr = -lo / scale;
    const float zp = std::clamp(std::nearbyint(zr), 0.0f, 15.0f);
    st.ties += zr - std::floor(zr) == 0.5f;
    st.clamped += zp != std::nearbyint(zr);
    const int64_t n = (d_ + 1) / 2;
    std::memset(out, 0, static_cast<size_t>(n));
    for (int64_t i = 0; i < d_; ++i) {
      const float y = static_cast<float>(x[i]) / scale + zp;
      const float r = std::nearbyint(y);
      const float q = std::clamp(r, 0.0f, 15.0f);
      st.ties += y - std::floor(y) == 0.5f;
      st.clamped += q != r;
      out[i / 2] = static_cast<unsigned char>(out[i / 2] | (static_cast<int>(q) << (4 * (i % 2))));
    }
    store_f32(out + n, scale);
    store_f32(out + n + 4, zp);
  }

  QuantMode mode_;
  int64_t d_;
  Fp8Codec fp8_;
};

// ------------------------------------------------------------ the layer

struct QuantLayer {
  Instance instance;
  Layer layer;
  kvq_cache_geometry geometry{};
};

struct LayerSpec {
  int64_t num_heads, num_kv_heads, head_size;
  int64_t sliding_window = 0;
  double softcap = 0.0;
};

// Creates the layer as a host would for `mode`, loads the scales the mode
// needs (fp8 per-tensor: k 0.5 / v 0.25; C8: random per-channel scales in
// 0.01..0.05 and non-zero offsets in -3..3) and fills `codec` with them.
QuantLayer prepare_layer(const kvq_plugin_api* api, const char* backend, const QuantMode& mode,
                         const LayerSpec& spec, int64_t block_size, RowCodec& codec,
                         uint64_t seed) {
  const bool c8 = mode.codec == Codec::kC8;
  const bool optional = spec.sliding_window != 0 || spec.softcap != 0.0;
  kvq_layer_config config =
      layer_config(backend, c8 ? "auto" : mode.name, KVQ_DTYPE_BF16, spec.num_heads,
                   spec.num_kv_heads, spec.head_size, block_size);
  config.sliding_window = spec.sliding_window;
  config.softcap = spec.softcap;
  QuantLayer q;
  q.instance = negotiate(api);
  q.layer = create_layer(api, q.instance.get(), config, optional);

  if (c8) {
    kvq_scheme_args scheme{};
    scheme.struct_size = KVQ_SCHEME_ARGS_SIZE;
    scheme.quant_type = "C8";
    scheme.layer_type = "attention";
    require_ok(Error(api, api->apply_scheme(q.layer.get(), &scheme)), "apply_scheme C8");
    Rng rng(seed ^ 0xC8C8ull);
    const auto n = static_cast<size_t>(spec.num_kv_heads * spec.head_size);
    for (int kv = 0; kv < 2; ++kv) {
      codec.channel_scale[kv].resize(n);
      codec.channel_offset[kv].resize(n);
      for (size_t c = 0; c < n; ++c) {
        codec.channel_scale[kv][c] = static_cast<float>(rng.uniform(0.01, 0.05));
        // Non-zero offsets; every 8th a half-integer, so a zero input ties.
        double off = rng.uniform(0.25, 3.0) * (rng.below(2) ? 1 : -1);
        if (c % 8 == 3) off = std::floor(off) + 0.5;
        codec.channel_offset[kv][c] = static_cast<float>(off);
      }
    }
    const char* names[2][2] = {{"k_cache_scale", "k_cache_offset"},
                               {"v_cache_scale", "v_cache_offset"}};
    for (int kv = 0; kv < 2; ++kv) {
      const std::vector<double> s(codec.channel_scale[kv].begin(), codec.channel_scale[kv].end());
      const std::vector<double> o(codec.channel_offset[kv].begin(), codec.channel_offset[kv].end());
      HostTensor scale = HostTensor::from_doubles(KVQ_DTYPE_F32, {static_cast<int64_t>(n)}, s);
      HostTensor offset = HostTensor::from_doubles(KVQ_DTYPE_F32, {static_cast<int64_t>(n)}, o);
      load_param(api, q.layer.get(), names[kv][0], scale.tensor());
      load_param(api, q.layer.get(), names[kv][1], offset.tensor());
    }
  } else if (mode.codec == Codec::kFp8PerTensor) {
    codec.tensor_scale[0] = kFp8KScale;
    codec.tensor_scale[1] = kFp8VScale;
    HostTensor k = HostTensor::from_doubles(KVQ_DTYPE_F32, {1}, {kFp8KScale});
    HostTensor v = HostTensor::from_doubles(KVQ_DTYPE_F32, {1}, {kFp8VScale});
    load_param(api, q.layer.get(), "k_scale", k.tensor());
    load_param(api, q.layer.get(), "v_scale", v.tensor());
  }
  require_ok(Error(api, api->process_weights(q.layer.get())), "process_weights");

  q.geometry = cache_geometry(api, q.layer.get());
  const kvq_cache_geometry& g = q.geometry;
  const int64_t min_row = mode.codec == Codec::kInt4PerTokenHead ? codec.content_bytes() : -1;
  std::string problems = check_geometry(g, spec.num_kv_heads, spec.head_size, block_size, min_row);
  if (g.row_bytes < codec.content_bytes())
    problems += (problems.empty() ? "cache geometry: " : "; ") + std::string("row_bytes ") +
                std::to_string(g.row_bytes) + " < " + std::to_string(codec.content_bytes()) +
                " the mode's row needs";
  if (g.element_dtype != mode.element_dtype)
    problems += (problems.empty() ? "cache geometry: " : "; ") + std::string("element dtype ") +
                std::to_string(g.element_dtype) + ", expected " +
                std::to_string(mode.element_dtype);
  if (!problems.empty()) throw CaseFailure(problems);
  return q;
}

// ------------------------------------------------------------ write check

struct WriteCheck {
  int64_t rows = 0, mismatches = 0;
  std::string first;
  CodecStats stats;

  std::string summary() const {
    return std::to_string(rows - mismatches) + "/" + std::to_string(rows) + " rows exact (" +
           std::to_string(stats.ties) + " ties, " + std::to_string(stats.clamped) + " clamped)";
  }
};

unsigned char* row_at(HostTensor& cache, const kvq_cache_geometry& g, int64_t slot, int kv,
                      int64_t head) {
  const int64_t block = slot / g.block_size, in_block = slot % g.block_size;
  return cache.bytes() +
         ((block * 2 + kv) * g.block_size + in_block) * g.num_kv_heads * g.row_bytes +
         head * g.row_bytes;
}

// Compares every row that cache_write(key, value, slots) must have stored
// with the reference's bytes.
void check_rows(const RowCodec& codec, const kvq_cache_geometry& g, HostTensor& cache,
                const HostTensor& key, const HostTensor& value, const HostTensor& slots,
                WriteCheck& out) {
  const std::vector<double> slot = slots.to_doubles();
  const int64_t hkv = g.num_kv_heads, d = g.head_size, n = codec.content_bytes();
  std::vector<unsigned char> want(static_cast<size_t>(n));
  for (int kv = 0; kv < 2; ++kv) {
    const std::vector<double> x = (kv ? value : key).to_doubles();
    for (size_t t = 0; t < slot.size(); ++t) {
      if (slot[t] < 0) continue;
      for (int64_t h = 0; h < hkv; ++h) {
        codec.encode(
            kv, h,
            &x[(t * static_cast<size_t>(hkv) + static_cast<size_t>(h)) * static_cast<size_t>(d)],
            want.data(), out.stats);
        const unsigned char* got = row_at(cache, g, static_cast<int64_t>(slot[t]), kv, h);
        ++out.rows;
        if (std::memcmp(got, want.data(), want.size()) == 0) continue;
        if (++out.mismatches > 1) continue;
        int64_t b = 0;
        while (got[b] == want[static_cast<size_t>(b)]) ++b;
        out.first = std::string(kv ? "V" : "K") + " token " + std::to_string(t) + " (slot " +
                    std::to_string(static_cast<int64_t>(slot[t])) + ") head " + std::to_string(h) +
                    " byte " + std::to_string(b) + " (" + codec.byte_name(b) +
                    "): " + hex_byte(got[b]) + " want " + hex_byte(want[static_cast<size_t>(b)]);
        const int64_t codes = codec.code_bytes();
        if (b >= codes) {
          const int64_t at = codes + (b - codes) / 4 * 4;  // the float holding byte b
          float gv, wv;
          std::memcpy(&gv, got + at, 4);
          std::memcpy(&wv, want.data() + at, 4);
          out.first += " (" + short_number(gv) + " want " + short_number(wv) + ")";
        }
      }
    }
  }
}

// ------------------------------------------------------------ edge rows

// Token rows (num_kv_heads * head_size values each, bf16-exact) that put the
// write path at its rounding ties, clamp limits and scale floors, per codec
// and K|V.
std::vector<std::vector<double>> edge_rows(const RowCodec& codec, int kv, int64_t num_kv_heads,
                                           int64_t head_size, Rng& rng) {
  const auto d = static_cast<size_t>(head_size);
  const size_t width = d * static_cast<size_t>(num_kv_heads);
  std::vector<double> heads;  // head rows, packed into token rows at the end
  // A head row: `given`, then more(i) up to head_size.
  auto head_row = [&](std::vector<double> given, auto more) {
    for (size_t i = given.size(); i < d; ++i) given.push_back(more(i));
    given.resize(d);
    heads.insert(heads.end(), given.begin(), given.end());
  };
  auto sign = [](size_t i) { return i % 2 ? -1.0 : 1.0; };
  auto zero = [](size_t) { return 0.0; };

  switch (codec.mode().codec) {
    case Codec::kInt8PerTokenHead:
      // absmax 127: scale exactly 1, y == x, every .5 a tie.
      head_row({127, -127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, 64.5, -100.5},
               [&](size_t i) { return sign(i) * (static_cast<double>(rng.below(120)) + 0.5); });
      // The negative end sets the scale: it must store -127.
      head_row({-3.0}, [&](size_t) { return rng.uniform(-2.9, 2.9); });
      head_row({3.0}, zero);  // one-hot
      break;
    case Codec::kFp8PerTokenHead: {
      // absmax 448: scale exactly 1, y == x; the midpoints of e4m3 are ties.
      const std::vector<double> mid = codec.fp8().midpoints();
      for (size_t start = 0; start < mid.size(); start += d - 2) {
        std::vector<double> row = {448, -448};
        for (size_t i = start; i < mid.size() && row.size() < d; ++i)
          row.push_back(sign(i) * mid[i]);
        head_row(row, [&](size_t) { return rng.uniform(-448, 448); });
      }
      head_row({-5.0}, [&](size_t) { return rng.uniform(-5, 5); });
      break;
    }
    case Codec::kInt4PerTokenHead:
      // min 0, max 15: scale 1, zp 0; .5 ties.
      head_row({0, 15, 0.5, 1.5, 2.5, 14.5, 7.5, 8.5},
               [](size_t i) { return static_cast<double>(i % 15) + (i % 3 ? 0.5 : 0.0); });
      // min -7.5, max 7.5: zp = rne(7.5) = 8 (a tie); 7.5 -> 15.5 -> 16, clamped to 15.
      head_row({-7.5, 7.5, -6.5, 0.5, 6.5, -0.5},
               [](size_t i) { return static_cast<double>(i % 15) - 7.0; });
      // All positive: zp clamps to 0 and x = 18 to 15.
      head_row({3, 18, 17.5, 16, 15.5, 15},
               [](size_t i) { return 3.0 + static_cast<double>(i % 16); });
      // All negative: zp clamps to 15 and x = -18 to 0.
      head_row({-18, -3, -17.5, -16}, [](size_t i) { return -3.0 - static_cast<double>(i % 16); });
      head_row({}, [](size_t) { return 2.0; });  // constant: the 1e-6 scale floor
      break;
    case Codec::kFp8PerTensor: {
      // Midpoints of adjacent codes times the scale are ties; max * scale is
      // the largest code, and anything beyond (even the tie just above max)
      // saturates to it.
      const double s = codec.tensor_scale[kv], max = codec.fp8().max();
      const std::vector<double> mid = codec.fp8().midpoints();
      const double half_step = max - mid.back();
      for (size_t start = 0; start < mid.size(); start += d - 6) {
        std::vector<double> row = {max * s,           -max * s,      (max + half_step) * s,
                                   -1.0625 * max * s, 1.5 * max * s, -4 * max * s};
        for (size_t i = start; i < mid.size() && row.size() < d; ++i)
          row.push_back(sign(i) * mid[i] * s);
        head_row(row, [&](size_t) { return rng.uniform(-max * s, max * s); });
      }
      break;
    }
    case Codec::kC8: break;  // per channel: token rows below
  }
  // Rows every codec sees: zeros (the scale floor; C8: the offset alone),
  // values below the 1e-6 floor, a plain and a wide random row.
  head_row({}, zero);
  head_row({}, [&](size_t) { return rng.uniform(-1e-4, 1e-4); });
  head_row({}, [&](size_t) { return rng.uniform(-1.0, 1.0); });
  head_row({}, [&](size_t) { return rng.uniform(-100.0, 100.0); });
  while (heads.size() % width != 0) heads.push_back(rng.uniform(-1.0, 1.0));

  std::vector<std::vector<double>> tokens;
  for (size_t at = 0; at < heads.size(); at += width)
    tokens.emplace_back(heads.begin() + static_cast<ptrdiff_t>(at),
                        heads.begin() + static_cast<ptrdiff_t>(at + width));
  if (codec.mode().codec == Codec::kC8) {
    // Per channel c: targets t = k + 0.5 (ties) and the clamp limits, solved
    // back to x through the channel's bf16 inverse scale and offset (the bf16
    // chain may move them a little), and values far beyond the limits.
    auto target_row = [&](auto target_of) {
      std::vector<double> row(width);
      for (size_t c = 0; c < width; ++c) {
        const double inv = bf16(1.0f / codec.channel_scale[kv][c]);
        const double off = bf16(codec.channel_offset[kv][c]);
        row[c] = (target_of(c) - off) / inv;
      }
      return row;
    };
    tokens.push_back(target_row([&](size_t) { return static_cast<double>(rng.below(120)) + 0.5; }));
    tokens.push_back(
        target_row([&](size_t) { return -static_cast<double>(rng.below(120)) - 0.5; }));
    tokens.push_back(target_row([](size_t c) { return c % 2 ? 127.5 : -128.5; }));
    tokens.push_back(target_row([](size_t c) { return c % 2 ? 127.0 : -128.0; }));
    tokens.push_back(target_row([&](size_t c) { return sign(c) * 400.0; }));
  }
  for (auto& row : tokens)
    for (double& x : row) x = bf16(x);
  return tokens;
}

// write_edges: rows at the ties and limits, written to random slots around a
// padding row, byte-compared; rows never written must keep cache_init's bytes.
Outcome run_write_edges(const kvq_plugin_api* api, const char* backend, const QuantMode& mode,
                        int64_t block_size) {
  const LayerSpec spec{4, 2, 64};
  RowCodec codec(mode, spec.head_size);
  QuantLayer q = prepare_layer(api, backend, mode, spec, block_size, codec, kSeed);
  Rng rng(kSeed + 11);
  const std::vector<std::vector<double>> rows[2] = {
      edge_rows(codec, 0, spec.num_kv_heads, spec.head_size, rng),
      edge_rows(codec, 1, spec.num_kv_heads, spec.head_size, rng)};
  const auto data_tokens = static_cast<int64_t>(std::max(rows[0].size(), rows[1].size()));
  const int64_t tokens = data_tokens + 1;  // and one padding row in the middle
  const int64_t num_blocks = (tokens + block_size - 1) / block_size + 2;

  std::vector<int64_t> order(static_cast<size_t>(num_blocks * block_size));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  for (size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);

  const auto width = static_cast<size_t>(spec.num_kv_heads * spec.head_size);
  std::vector<double> values[2];
  std::vector<int64_t> slots;
  for (int64_t t = 0, next = 0; t < tokens; ++t) {
    const bool padding = t == tokens / 2;
    slots.push_back(padding ? -1 : order[static_cast<size_t>(t)]);
    for (int kv = 0; kv < 2; ++kv) {
      if (padding) {
        values[kv].insert(values[kv].end(), width, kv ? -1000.0 : 1000.0);
        continue;
      }
      const auto& row = rows[kv][static_cast<size_t>(next) % rows[kv].size()];
      values[kv].insert(values[kv].end(), row.begin(), row.end());
    }
    next += padding ? 0 : 1;
  }
  const std::vector<int64_t> shape = {tokens, spec.num_kv_heads, spec.head_size};
  HostTensor key = HostTensor::from_doubles(KVQ_DTYPE_BF16, shape, values[0]);
  HostTensor value = HostTensor::from_doubles(KVQ_DTYPE_BF16, shape, values[1]);
  HostTensor slot_tensor = HostTensor::from_ints(KVQ_DTYPE_I64, {tokens}, slots);

  HostTensor cache = allocate_cache(api, q.layer.get(), q.geometry, num_blocks);
  // cache_init: codes zero and, per token-head, an inline scale of 1.0.
  int64_t bad_init = 0;
  std::string first_bad_init;
  for (int64_t s = 0; s < num_blocks * block_size; ++s)
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t h = 0; h < spec.num_kv_heads; ++h) {
        const unsigned char* row = row_at(cache, q.geometry, s, kv, h);
        bool ok =
            std::all_of(row, row + codec.code_bytes(), [](unsigned char c) { return c == 0; });
        if (per_token_head(mode.codec)) {
          float scale;
          std::memcpy(&scale, row + codec.code_bytes(), 4);
          ok = ok && scale == 1.0f;
        }
        if (!ok && bad_init++ == 0)
          first_bad_init =
              "slot " + std::to_string(s) + (kv ? " V" : " K") + " head " + std::to_string(h);
      }
  const std::vector<unsigned char> before(cache.bytes(), cache.bytes() + cache.byte_size());
  require_ok(write_cache(api, q.layer.get(), key, value, slot_tensor, cache), "cache_write");
  if (!cache.guards_intact()) return fail("cache_write overwrote the cache's guard bytes");

  WriteCheck check;
  check_rows(codec, q.geometry, cache, key, value, slot_tensor, check);

  // Every row of a slot not written keeps its initial bytes.
  std::vector<bool> written(order.size(), false);
  for (int64_t s : slots)
    if (s >= 0) written[static_cast<size_t>(s)] = true;
  int64_t touched = 0;
  std::string first_touched;
  for (int64_t s = 0; s < num_blocks * block_size; ++s) {
    if (written[static_cast<size_t>(s)]) continue;
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t h = 0; h < spec.num_kv_heads; ++h) {
        const unsigned char* now = row_at(cache, q.geometry, s, kv, h);
        const unsigned char* was = before.data() + (now - cache.bytes());
        if (std::memcmp(now, was, static_cast<size_t>(q.geometry.row_bytes)) != 0 && touched++ == 0)
          first_touched =
              "slot " + std::to_string(s) + (kv ? " V" : " K") + " head " + std::to_string(h);
      }
  }
  std::string detail = check.summary();
  if (check.mismatches > 0) detail += "; first: " + check.first;
  if (touched > 0)
    detail += "; " + std::to_string(touched) + " rows never written changed (first " +
              first_touched + ")";
  if (bad_init > 0)
    detail += std::string("; cache_init left ") + std::to_string(bad_init) +
              " rows without zero codes" + (per_token_head(mode.codec) ? " and scale 1.0" : "") +
              " (first " + first_bad_init + ")";
  return check.mismatches == 0 && touched == 0 && bad_init == 0 ? pass(detail) : fail(detail);
}

// ------------------------------------------------------------ attention

struct AttnCase {
  const char* name;
  int64_t num_heads, num_kv_heads, head_size;
  std::vector<SeqShape> seqs;
  int32_t state = 0;  // 0: the engine's choice (derive_attention_state)
  int64_t sliding_window = 0;
  double softcap = 0.0;
};

// Per sequence: [seq_len][Hkv][D] values decoded from the stored rows.
void dequantize(const RowCodec& codec, const kvq_cache_geometry& g, HostTensor& cache,
                const ForwardBatch& batch, const std::vector<int32_t>& seq_lens,
                std::vector<std::vector<double>> out[2]) {
  const std::vector<double> table = batch.block_table.to_doubles();
  const auto width = static_cast<size_t>(batch.block_table.shape()[1]);
  const int64_t hkv = g.num_kv_heads, d = g.head_size, bs = g.block_size;
  for (int kv = 0; kv < 2; ++kv) {
    out[kv].assign(seq_lens.size(), {});
    for (size_t s = 0; s < seq_lens.size(); ++s) {
      out[kv][s].resize(static_cast<size_t>(seq_lens[s] * hkv * d));
      for (int64_t pos = 0; pos < seq_lens[s]; ++pos) {
        const auto block = static_cast<int64_t>(table[s * width + static_cast<size_t>(pos / bs)]);
        for (int64_t h = 0; h < hkv; ++h)
          codec.decode(kv, h, row_at(cache, g, block * bs + pos % bs, kv, h),
                       &out[kv][s][static_cast<size_t>((pos * hkv + h) * d)]);
      }
    }
  }
}

Outcome run_attention(const kvq_plugin_api* api, const char* backend, const QuantMode& mode,
                      int64_t block_size, const AttnCase& ac, uint64_t seed) {
  const auto t_start = std::chrono::steady_clock::now();
  const LayerSpec spec{ac.num_heads, ac.num_kv_heads, ac.head_size, ac.sliding_window, ac.softcap};
  const bool optional = ac.sliding_window != 0 || ac.softcap != 0.0;
  RowCodec codec(mode, ac.head_size);
  QuantLayer q = prepare_layer(api, backend, mode, spec, block_size, codec, seed);

  RandomBatch r = make_random_batch(
      {KVQ_DTYPE_BF16, ac.num_heads, ac.num_kv_heads, ac.head_size, block_size}, ac.seqs, seed, 3);
  HostTensor cache = allocate_cache(api, q.layer.get(), q.geometry, r.num_blocks);
  require_ok(
      write_cache(api, q.layer.get(), r.context_key, r.context_value, r.context_slots, cache),
      "cache_write (context and padding rows)");
  require_ok(write_cache(api, q.layer.get(), r.batch.key, r.batch.value, r.new_slots, cache),
             "cache_write (new tokens)");
  if (!cache.guards_intact()) return fail("cache_write overwrote the cache's guard bytes");

  WriteCheck write;
  check_rows(codec, q.geometry, cache, r.context_key, r.context_value, r.context_slots, write);
  check_rows(codec, q.geometry, cache, r.batch.key, r.batch.value, r.new_slots, write);

  const int32_t state = ac.state ? ac.state : derive_attention_state(r.query_start_loc, r.seq_lens);
  forward_checked(api, q.layer.get(), r.batch, cache, state, optional);
  const std::vector<double> actual = r.batch.output.to_doubles();

  // Which sequences attend on the batch's float K/V (ascend.md §6): all in
  // PrefillNoCache; in ChunkedPrefill the prefill part (after the leading
  // decodes) when none of its requests has context. Everything else reads
  // the cache.
  const size_t num_seqs = r.seq_lens.size();
  std::vector<bool> on_float(num_seqs, false);
  if (mode.codec == Codec::kC8 && state == KVQ_ATTN_PREFILL_NO_CACHE)
    on_float.assign(num_seqs, true);
  if (mode.codec == Codec::kC8 && state == KVQ_ATTN_CHUNKED_PREFILL) {
    size_t first_prefill = 0;
    while (first_prefill < num_seqs &&
           r.query_start_loc[first_prefill + 1] - r.query_start_loc[first_prefill] == 1)
      ++first_prefill;
    bool no_context = true;
    for (size_t s = first_prefill; s < num_seqs; ++s)
      no_context = no_context && r.query_start_loc[s + 1] - r.query_start_loc[s] == r.seq_lens[s];
    for (size_t s = first_prefill; s < num_seqs; ++s) on_float[s] = no_context;
  }
  std::vector<std::vector<double>> dq[2];
  dequantize(codec, q.geometry, cache, r.batch, r.seq_lens, dq);
  for (size_t s = 0; s < num_seqs; ++s)
    if (on_float[s]) {
      dq[0][s] = r.keys[s];
      dq[1][s] = r.values[s];
    }

  kvq::ref::AttentionProblem problem;
  problem.num_heads = ac.num_heads;
  problem.num_kv_heads = ac.num_kv_heads;
  problem.head_size = ac.head_size;
  problem.query_start_loc = r.query_start_loc;
  problem.seq_lens = r.seq_lens;
  problem.sliding_window = ac.sliding_window;
  problem.softcap = ac.softcap;
  const Verdict read = judge_output(actual, kvq::ref::attention(problem, r.query, dq[0], dq[1]),
                                    r.batch.output.shape(), {1e-2, 1e-2, 1e-4});
  const Verdict e2e = judge_output(actual, kvq::ref::attention(problem, r.query, r.keys, r.values),
                                   r.batch.output.shape(),
                                   {std::numeric_limits<double>::infinity(), 0.0, mode.e2e_nmse});

  int64_t floats = 0;
  for (bool f : on_float) floats += f;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::string detail = "write: " + write.summary();
  if (write.mismatches > 0) detail += ", first: " + write.first;
  detail += "; read path" +
            (floats ? " (" + std::to_string(floats) + " of " + std::to_string(num_seqs) +
                          " sequences on float K/V)"
                    : std::string()) +
            ": " + read.detail + "; end-to-end: " + e2e.detail + " (limit " +
            short_number(mode.e2e_nmse) + "); " + short_number(seconds) + " s";
  return write.mismatches == 0 && read.ok && e2e.ok ? pass(detail) : fail(detail);
}

// vLLM's sequence sets (triton_sim.md §6); decodes first.
const std::vector<SeqShape> kMixed = {{1, 1328}, {5, 18}, {129, 463}};
const std::vector<SeqShape> kDecodes = {{1, 523}, {1, 37}, {1, 2011}};

// Per mode: one full mixed shape and one decode shape (alternating GQA and
// head size between modes so the matrix is covered across them), and the
// sliding-window / softcap shapes.
std::vector<AttnCase> cases_for_mode(size_t index) {
  const bool even = index % 2 == 0;
  return {
      even ? AttnCase{"gqa8x2_d128_mixed", 8, 2, 128, kMixed}
           : AttnCase{"gqa5x1_d128_mixed", 5, 1, 128, kMixed},
      even ? AttnCase{"gqa5x1_d64_decode", 5, 1, 64, kDecodes}
           : AttnCase{"gqa8x2_d64_decode", 8, 2, 64, kDecodes},
      AttnCase{"gqa8x2_d64_mixed_window128", 8, 2, 64, kMixed, 0, 128, 0.0},
      AttnCase{"gqa5x1_d64_decode_softcap50", 5, 1, 64, kDecodes, 0, 0, 50.0},
  };
}

// C8: every attention state (ascend.md §6).
std::vector<AttnCase> c8_cases() {
  return {
      {"PrefillNoCache_gqa8x2_d128",
       8,
       2,
       128,
       {{18, 18}, {129, 129}, {77, 77}},
       KVQ_ATTN_PREFILL_NO_CACHE},
      {"DecodeOnly_gqa5x1_d64", 5, 1, 64, kDecodes, KVQ_ATTN_DECODE_ONLY},
      {"PrefillCacheHit_gqa8x2_d64",
       8,
       2,
       64,
       {{5, 18}, {129, 463}, {64, 300}},
       KVQ_ATTN_PREFILL_CACHE_HIT},
      {"SpecDecoding_gqa5x1_d128",
       5,
       1,
       128,
       {{2, 523}, {3, 37}, {4, 1328}},
       KVQ_ATTN_SPEC_DECODING},
      {"ChunkedPrefill_gqa8x2_d128", 8, 2, 128, kMixed, KVQ_ATTN_CHUNKED_PREFILL},
      {"ChunkedPrefill_no_context_gqa8x2_d64",
       8,
       2,
       64,
       {{1, 1328}, {1, 37}, {18, 18}, {129, 129}},
       KVQ_ATTN_CHUNKED_PREFILL},
      {"ChunkedPrefill_gqa8x2_d64_window128", 8, 2, 64, kMixed, KVQ_ATTN_CHUNKED_PREFILL, 128},
      {"DecodeOnly_gqa5x1_d64_softcap50", 5, 1, 64, kDecodes, KVQ_ATTN_DECODE_ONLY, 0, 50.0},
  };
}

void run_mode(CaseLog& log, const Plugin& plugin, const char* backend, const QuantMode& mode,
              int64_t block_size, const std::vector<AttnCase>& cases) {
  const std::string prefix = std::string("numeric.") + backend + "." + mode.name + ".";
  log.run(prefix + "write_edges",
          [&] { return run_write_edges(plugin.api, backend, mode, block_size); });
  uint64_t seed = kSeed;
  for (const AttnCase& ac : cases) {
    seed += 0x1000;
    log.run(prefix + ac.name,
            [&] { return run_attention(plugin.api, backend, mode, block_size, ac, seed); });
  }
}

}  // namespace

void run_quantized_numeric_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info) {
  for (int64_t b = 0; b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    if (!backend || !backend->name) continue;
    size_t index = 0;
    for (const QuantMode& mode : kModes) {
      const kvq_kv_mode_info* m = find_mode(*backend, mode.name);
      if (!m || !m->supported) continue;
      // The mode's own flag decides how its rows are laid out.
      if (static_cast<bool>(m->per_token_head) != per_token_head(mode.codec)) {
        log.report(std::string("numeric.") + backend->name + "." + mode.name + ".mode_info",
                   fail(std::string("per_token_head = ") + std::to_string(m->per_token_head) +
                        ", the spec says " + (per_token_head(mode.codec) ? "1" : "0")));
        continue;
      }
      run_mode(log, plugin, backend->name, mode, 16, cases_for_mode(index++));
    }
  }
  const kvq_scheme_info* c8 = find_scheme(info, "C8", "attention");
  if (c8 && c8->supported && info.num_backends >= 1 && info.backends[0] && info.backends[0]->name)
    run_mode(log, plugin, info.backends[0]->name, kC8, 32, c8_cases());
}

}  // namespace kvq::conform
