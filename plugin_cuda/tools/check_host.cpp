// Host side of kvq_cuda_kernel_check (see check_host.hpp). The expected cache
// bytes come from the __host__ __device__ codecs that kvq_cuda_codecs_test
// proves byte-identical to the CPU plugin's; the attention reference decodes
// the downloaded cache with the spec's rules and computes in double.
#include "check_host.hpp"

#include "codecs.cuh"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>

namespace kvq::cuda::check {

namespace cc = codec;

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::kF32: return "f32";
    case Codec::kBF16: return "bf16";
    case Codec::kF16: return "f16";
    case Codec::kE4M3: return "fp8_e4m3";
    case Codec::kE5M2: return "fp8_e5m2";
    case Codec::kInt8Pth: return "int8_pth";
    case Codec::kFp8Pth: return "fp8_pth";
    case Codec::kInt4Pth: return "int4_pth";
  }
  return "?";
}

int64_t element_size(int dtype) {
  return dtype == 1 ? 4 : (dtype == 6 || dtype == 7) ? 1 : 2;
}

namespace {

// Stores v as `dtype` (RNE) and returns the stored value.
float store_model(int dtype, float v, unsigned char* p) {
  if (dtype == 1) {
    std::memcpy(p, &v, 4);
    return v;
  }
  const uint16_t b = dtype == 3 ? cc::float_to_bf16(v) : cc::float_to_f16(v);
  std::memcpy(p, &b, 2);
  return dtype == 3 ? cc::bf16_to_float(b) : cc::f16_to_float(b);
}

unsigned char* row_ptr(const CacheLayout& l, std::vector<unsigned char>& c, int64_t slot,
                       int plane, int64_t head) {
  const int64_t b = slot / l.block_size, s = slot % l.block_size;
  return c.data() + b * l.bytes_per_block + ((plane * l.block_size + s) * l.num_kv_heads + head) * l.row_bytes;
}
const unsigned char* row_ptr(const CacheLayout& l, const std::vector<unsigned char>& c,
                             int64_t slot, int plane, int64_t head) {
  return row_ptr(l, const_cast<std::vector<unsigned char>&>(c), slot, plane, head);
}

// Writes one row as the CPU plugin does.
void write_row(Codec codec, const float* x, int64_t n, float scale, unsigned char* row) {
  switch (codec) {
    case Codec::kInt8Pth: cc::quantize_row_int8(x, n, row); return;
    case Codec::kFp8Pth: cc::quantize_row_fp8(x, n, row); return;
    case Codec::kInt4Pth: cc::quantize_row_int4(x, n, row); return;
    case Codec::kE4M3:
      for (int64_t i = 0; i < n; ++i) row[i] = cc::float_to_e4m3(cc::div_rn(x[i], scale));
      return;
    case Codec::kE5M2:
      for (int64_t i = 0; i < n; ++i) row[i] = cc::float_to_e5m2(cc::div_rn(x[i], scale));
      return;
    case Codec::kF32: std::memcpy(row, x, static_cast<size_t>(n) * 4); return;
    case Codec::kBF16:
    case Codec::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t b = codec == Codec::kBF16 ? cc::float_to_bf16(x[i]) : cc::float_to_f16(x[i]);
        std::memcpy(row + 2 * i, &b, 2);
      }
      return;
  }
}

// Cheap normal-ish numbers (Irwin-Hall of 4 uniforms): the benchmark-sized
// cases draw hundreds of millions of values.
struct FastRng {
  uint64_t s;
  explicit FastRng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  float normal() {
    const uint64_t x = next();
    const float sum = static_cast<float>((x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) +
                                         (x >> 48)) * (1.0f / 65536.0f);
    return (sum - 2.0f) * 1.7320508f;
  }
};

bool per_token_head(Codec c) {
  return c == Codec::kInt8Pth || c == Codec::kFp8Pth || c == Codec::kInt4Pth;
}

}  // namespace

HostCase build_case(const CaseSpec& spec) {
  HostCase hc;
  hc.spec = spec;
  std::mt19937 rng(spec.seed);
  FastRng fast(spec.seed);
  CacheLayout& l = hc.layout;
  l.block_size = spec.bs;
  l.num_kv_heads = spec.hkv;
  l.head_size = spec.d;
  l.head_size_v = spec.dv;
  l.row_bytes = expected_row_bytes(spec.codec, spec.d, spec.dv);
  l.bytes_per_block = 2 * l.block_size * l.num_kv_heads * l.row_bytes;

  // Block table: every sequence's blocks drawn from a shuffled pool.
  int64_t max_blocks = 0, total_blocks = 0;
  for (const SeqSpec& s : spec.seqs) {
    const int64_t nb = (s.seq_len + spec.bs - 1) / spec.bs;
    max_blocks = std::max(max_blocks, nb);
    total_blocks += nb;
  }
  l.num_blocks = total_blocks + 3;
  hc.bt_stride = max_blocks + 1;
  std::vector<int32_t> pool(static_cast<size_t>(l.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  hc.block_table.assign(spec.seqs.size() * static_cast<size_t>(hc.bt_stride), -1);
  size_t next = 0;
  hc.qsl.push_back(0);
  for (size_t s = 0; s < spec.seqs.size(); ++s) {
    const int64_t nb = (spec.seqs[s].seq_len + spec.bs - 1) / spec.bs;
    for (int64_t b = 0; b < nb; ++b) hc.block_table[s * hc.bt_stride + b] = pool[next++];
    hc.qsl.push_back(hc.qsl.back() + spec.seqs[s].qlen);
    hc.seq_lens.push_back(spec.seqs[s].seq_len);
  }
  hc.num_tokens = hc.qsl.back();

  // Scales (fp8 per-tensor): vLLM's test uses q 0.75, k 0.5, v 0.25.
  const int ns = spec.per_head_scales ? spec.hkv : 1;
  for (int i = 0; i < ns; ++i) {
    hc.k_scales.push_back(0.5f * (1.0f + 0.25f * i));
    hc.v_scales.push_back(0.25f * (1.0f + 0.5f * i));
  }
  for (int i = 0; i < (spec.per_head_scales ? spec.hq : 1); ++i)
    hc.q_scales.push_back(0.75f * (1.0f + 0.125f * i));

  // K/V inputs: every key of every sequence (+ padding tokens every 97th
  // row), per-(token, head) magnitudes over 2^-3 .. 2^3 and rare outliers.
  const int64_t pad = 4;
  hc.kv_stride_head = std::max(spec.d, spec.dv) + pad;
  hc.kv_stride_token = spec.hkv * hc.kv_stride_head + pad;
  std::vector<int64_t> slots;
  for (size_t s = 0; s < spec.seqs.size(); ++s)
    for (int j = 0; j < spec.seqs[s].seq_len; ++j) {
      if (slots.size() % 97 == 5) slots.push_back(-1);
      const int32_t blk = hc.block_table[s * hc.bt_stride + j / spec.bs];
      slots.push_back(int64_t{blk} * spec.bs + j % spec.bs);
    }
  hc.slots = slots;
  hc.write_tokens = static_cast<int64_t>(slots.size());
  const int64_t es = element_size(spec.model_dtype);
  const auto n_el = static_cast<size_t>(hc.write_tokens * hc.kv_stride_token);
  hc.key_bytes.assign(n_el * es, 0);
  hc.value_bytes.assign(n_el * es, 0);
  hc.key_f.assign(n_el, 0.0f);
  hc.value_f.assign(n_el, 0.0f);
  for (int64_t t = 0; t < hc.write_tokens; ++t)
    for (int h = 0; h < spec.hkv; ++h)
      for (int plane = 0; plane < 2; ++plane) {
        const float mag = std::ldexp(1.0f, static_cast<int>(fast.next() % 7) - 3);
        const int n = plane ? spec.dv : spec.d;
        for (int i = 0; i < n; ++i) {
          float x = fast.normal() * mag;
          if (fast.next() % 500 == 0) x *= 20.0f;
          if (plane == 0 && i % 16 == 3) x += 0.5f * mag;  // a bias, so scores vary
          const int64_t e = t * hc.kv_stride_token + h * hc.kv_stride_head + i;
          auto& bytes = plane ? hc.value_bytes : hc.key_bytes;
          auto& f = plane ? hc.value_f : hc.key_f;
          f[static_cast<size_t>(e)] = store_model(spec.model_dtype, x, &bytes[static_cast<size_t>(e * es)]);
        }
      }

  // Expected cache: init (zero, per-token-head scales 1 / int4 zp 0), then the rows.
  hc.expected_cache.assign(static_cast<size_t>(l.num_blocks * l.bytes_per_block), 0);
  if (per_token_head(spec.codec)) {
    const float one = 1.0f;
    for (int64_t slot = 0; slot < l.num_blocks * l.block_size; ++slot)
      for (int plane = 0; plane < 2; ++plane)
        for (int h = 0; h < spec.hkv; ++h) {
          const int n = plane ? spec.dv : spec.d;
          const int64_t off = spec.codec == Codec::kInt4Pth ? (n + 1) / 2 : n;
          std::memcpy(row_ptr(l, hc.expected_cache, slot, plane, h) + off, &one, 4);
        }
  }
  for (int64_t t = 0; t < hc.write_tokens; ++t) {
    if (slots[static_cast<size_t>(t)] < 0) continue;
    for (int h = 0; h < spec.hkv; ++h) {
      const float* k = &hc.key_f[static_cast<size_t>(t * hc.kv_stride_token + h * hc.kv_stride_head)];
      const float* v = &hc.value_f[static_cast<size_t>(t * hc.kv_stride_token + h * hc.kv_stride_head)];
      const float ks = hc.k_scales[spec.per_head_scales ? h : 0];
      const float vs = hc.v_scales[spec.per_head_scales ? h : 0];
      write_row(spec.codec, k, spec.d, ks, row_ptr(l, hc.expected_cache, slots[t], 0, h));
      write_row(spec.codec, v, spec.dv, vs, row_ptr(l, hc.expected_cache, slots[t], 1, h));
    }
  }

  // Queries (strided), e4m3 codes for an fp8 query.
  hc.q_stride_head = spec.d + 2;
  hc.q_stride_token = spec.hq * hc.q_stride_head + 6;
  const int64_t qes = element_size(spec.q_dtype);
  const auto nq = static_cast<size_t>(std::max<int64_t>(1, hc.num_tokens) * hc.q_stride_token);
  hc.q_bytes.assign(nq * qes, 0);
  hc.q_f.assign(nq, 0.0f);
  for (int64_t t = 0; t < hc.num_tokens; ++t)
    for (int h = 0; h < spec.hq; ++h)
      for (int i = 0; i < spec.d; ++i) {
        const int64_t e = t * hc.q_stride_token + h * hc.q_stride_head + i;
        float x = fast.normal() * 1.5f;
        if (spec.q_dtype == 6) {
          const uint8_t c = cc::float_to_e4m3(x / hc.q_scales[spec.per_head_scales ? h : 0] * 0.5f);
          hc.q_bytes[static_cast<size_t>(e)] = c;
          hc.q_f[static_cast<size_t>(e)] = cc::e4m3_to_float(c);
        } else {
          hc.q_f[static_cast<size_t>(e)] = store_model(spec.q_dtype, x, &hc.q_bytes[static_cast<size_t>(e * qes)]);
        }
      }
  hc.softmax_scale = 1.0f / std::sqrt(static_cast<float>(spec.d));
  for (int h = 0; h < spec.hq; ++h) {
    hc.alibi.push_back(std::exp2(-8.0f * (h + 1) / spec.hq));
    hc.sinks.push_back(fast.normal() * 2.0f);
  }
  return hc;
}

std::vector<int64_t> rows_to_check(const HostCase& hc) {
  std::vector<int64_t> rows;
  const int hq = hc.spec.hq;
  if (hc.spec.sample_rows <= 0 || hc.spec.sample_rows >= hc.num_tokens) {
    for (int64_t r = 0; r < hc.num_tokens * hq; ++r) rows.push_back(r);
    return rows;
  }
  std::mt19937 rng(hc.spec.seed + 17);
  std::vector<int64_t> toks(static_cast<size_t>(hc.num_tokens));
  std::iota(toks.begin(), toks.end(), 0);
  std::shuffle(toks.begin(), toks.end(), rng);
  toks.resize(static_cast<size_t>(hc.spec.sample_rows));
  toks.push_back(hc.num_tokens - 1);  // always the last token (most keys)
  std::sort(toks.begin(), toks.end());
  toks.erase(std::unique(toks.begin(), toks.end()), toks.end());
  for (int64_t t : toks)
    for (int h = 0; h < hq; ++h) rows.push_back(t * hq + h);
  return rows;
}

namespace {

// Element i of a cache row as the spec dequantizes it (double), for a
// query of `q_dtype` and model dtype `out`.
double kv_value(const CaseSpec& s, const unsigned char* row, int plane, int i, float tscale) {
  const int n = plane ? s.dv : s.d;
  switch (s.codec) {
    case Codec::kF32: return cc::load_f32_bytes(row + 4 * i);
    case Codec::kBF16: return cc::bf16_to_float(static_cast<uint16_t>(row[2 * i] | (row[2 * i + 1] << 8)));
    case Codec::kF16: return cc::f16_to_float(static_cast<uint16_t>(row[2 * i] | (row[2 * i + 1] << 8)));
    case Codec::kE4M3:
    case Codec::kE5M2: {
      const float v = s.codec == Codec::kE4M3 ? cc::e4m3_to_float(row[i]) : cc::e5m2_to_float(row[i]);
      if (s.q_dtype == 6) return v;  // raw; scales in the score / at the end
      const float x = v * tscale;     // fp32 product, then the model dtype (spec §4)
      if (s.model_dtype == 3) return cc::bf16_to_float(cc::float_to_bf16(x));
      if (s.model_dtype == 2) return cc::f16_to_float(cc::float_to_f16(x));
      return x;
    }
    case Codec::kInt8Pth:
      return static_cast<double>(static_cast<int8_t>(row[i])) * cc::load_f32_bytes(row + n);
    case Codec::kFp8Pth: return static_cast<double>(cc::e4m3_to_float(row[i])) * cc::load_f32_bytes(row + n);
    case Codec::kInt4Pth: {
      const int nb = (n + 1) / 2;
      const unsigned q = (i & 1) ? (row[i / 2] >> 4) : (row[i / 2] & 0xFu);
      return (static_cast<double>(q) - cc::load_f32_bytes(row + nb + 4)) * cc::load_f32_bytes(row + nb);
    }
  }
  return 0.0;
}

}  // namespace

void reference(const HostCase& hc, const std::vector<unsigned char>& cache,
               const std::vector<int64_t>& rows, std::vector<double>* out, double* vmax) {
  const CaseSpec& s = hc.spec;
  const CacheLayout& l = hc.layout;
  const int group = s.hq / s.hkv;
  const bool fp8q = s.q_dtype == 6;
  out->assign(rows.size() * static_cast<size_t>(s.dv), 0.0);
  const unsigned nthreads = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
  std::vector<double> vmaxes(nthreads, 0.0);
  auto work = [&](unsigned tid) {
    std::vector<double> q(static_cast<size_t>(s.d)), sc, acc(static_cast<size_t>(s.dv));
    std::vector<int> keys;
    for (size_t ri = tid; ri < rows.size(); ri += nthreads) {
      const int64_t token = rows[ri] / s.hq;
      const int h = static_cast<int>(rows[ri] % s.hq), kvh = h / group;
      size_t seq = 0;
      while (hc.qsl[seq + 1] <= token) ++seq;
      const int qlen = hc.qsl[seq + 1] - hc.qsl[seq];
      const int ctx = hc.seq_lens[seq] - qlen;
      const int pos = ctx + static_cast<int>(token - hc.qsl[seq]);
      const int lo = s.window > 0 ? std::max(0, pos - s.window + 1) : 0;
      const float ks = hc.k_scales[s.per_head_scales ? kvh : 0];
      const float vs = hc.v_scales[s.per_head_scales ? kvh : 0];
      const double qs = fp8q ? hc.q_scales[s.per_head_scales ? h : 0] : 1.0;
      for (int i = 0; i < s.d; ++i)
        q[static_cast<size_t>(i)] = hc.q_f[static_cast<size_t>(token * hc.q_stride_token + h * hc.q_stride_head + i)];
      sc.clear();
      keys.clear();
      double m = -INFINITY;
      for (int j = lo; j <= pos; ++j) {
        const int64_t slot = int64_t{hc.block_table[seq * hc.bt_stride + j / s.bs]} * s.bs + j % s.bs;
        const unsigned char* kr = row_ptr(l, cache, slot, 0, kvh);
        double dot = 0.0;
        for (int i = 0; i < s.d; ++i) dot += q[static_cast<size_t>(i)] * kv_value(s, kr, 0, i, ks);
        double v = dot * hc.softmax_scale * qs * (fp8q ? ks : 1.0);
        if (s.softcap > 0.0f) v = s.softcap * std::tanh(v / s.softcap);
        if (s.alibi) v += static_cast<double>(hc.alibi[static_cast<size_t>(h)]) * (j - ctx);
        sc.push_back(v);
        keys.push_back(j);
        m = std::max(m, v);
      }
      const double sink = s.sinks ? hc.sinks[static_cast<size_t>(h)] : -INFINITY;
      m = std::max(m, sink);
      double lsum = s.sinks ? std::exp(sink - m) : 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (size_t k = 0; k < keys.size(); ++k) {
        const int j = keys[k];
        const int64_t slot = int64_t{hc.block_table[seq * hc.bt_stride + j / s.bs]} * s.bs + j % s.bs;
        const unsigned char* vr = row_ptr(l, cache, slot, 1, kvh);
        double pj = std::exp(sc[k] - m);
        lsum += pj;
        if (fp8q) pj = cc::e4m3_to_float(cc::float_to_e4m3(static_cast<float>(pj)));
        for (int i = 0; i < s.dv; ++i) {
          const double vv = kv_value(s, vr, 1, i, vs) * (fp8q ? vs : 1.0);
          acc[static_cast<size_t>(i)] += pj * vv;
          vmaxes[tid] = std::max(vmaxes[tid], std::fabs(vv));
        }
      }
      for (int i = 0; i < s.dv; ++i)
        (*out)[ri * s.dv + i] = lsum > 0.0 ? acc[static_cast<size_t>(i)] / lsum : 0.0;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < nthreads; ++t) pool.emplace_back(work, t);
  for (auto& th : pool) th.join();
  *vmax = *std::max_element(vmaxes.begin(), vmaxes.end());
}

double output_value(int dtype, const unsigned char* p) {
  if (dtype == 1) return cc::load_f32_bytes(p);
  const auto b = static_cast<uint16_t>(p[0] | (p[1] << 8));
  return dtype == 3 ? cc::bf16_to_float(b) : cc::f16_to_float(b);
}

double ulp_of(int dtype, double x) {
  const double a = std::max(std::fabs(x), 1e-30);
  const int e = static_cast<int>(std::floor(std::log2(a)));
  return std::ldexp(1.0, e - (dtype == 1 ? 23 : dtype == 3 ? 7 : 10));
}

}  // namespace kvq::cuda::check
