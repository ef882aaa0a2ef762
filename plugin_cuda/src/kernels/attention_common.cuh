// Shared pieces of the attention kernels: the per-call parameters, the
// tensor-core "kinds" (how a cache codec and query dtype map onto f16 / bf16
// mma operands), PTX wrappers (mma.sync, ldmatrix, cp.async), the 16-byte
// granule copy of cache rows into shared memory, and the row epilogue
// (sinks, normalisation, output / split partials).
#pragma once

#include "codecs.cuh"
#include "common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace kvq::cuda::attn {

using detail::kFullMask;

// ---- kinds ---------------------------------------------------------------------
// A kind fixes the operand types of the tensor-core kernels:
//  QK: f16 (query rows pre-scaled by a power of two so every bf16 / f16 / e4m3
//      query element is exact in f16; keys are exact: int8, e4m3, e5m2,
//      int4 - zp) or bf16 (bf16 caches: bf16 query and keys, exact);
//  PV: f16 P (probabilities, times v_scale / running max of v_scale for
//      per-token-head rows: relative error 2^-12) with exact f16 V codes,
//      or bf16 V with P split into bf16 hi + lo (two mma, error ~2^-17).
enum class Kind : int {
  kBF16 = 0,  // bf16 cache, bf16 query
  kF16,       // f16 cache, f16 / bf16 query
  kI8,        // int8 per-token-head
  kP8,        // fp8 (e4m3) per-token-head
  kI4,        // int4 per-token-head
  kE4M3Q,     // fp8 e4m3 per-tensor, e4m3 query (P quantized to e4m3)
  kE5M2Q,     // fp8 e5m2 per-tensor, e4m3 query
  kE4M3RB,    // fp8 e4m3 per-tensor, bf16 model: K/V = bf16(code * scale)
  kE4M3RH,    // ... f16 model: K/V = f16(code * scale)
  kE5M2RB,
  kE5M2RH,
  kCount
};

constexpr bool qk_bf16(Kind k) {
  return k == Kind::kBF16 || k == Kind::kE4M3RB || k == Kind::kE5M2RB;
}
constexpr bool pv_bf16(Kind k) {
  return qk_bf16(k);
}
constexpr bool per_key_scale(Kind k) {
  return k == Kind::kI8 || k == Kind::kP8 || k == Kind::kI4;
}
constexpr bool fp8_query(Kind k) {
  return k == Kind::kE4M3Q || k == Kind::kE5M2Q;
}
constexpr bool rounded_fp8(Kind k) {
  return k == Kind::kE4M3RB || k == Kind::kE4M3RH || k == Kind::kE5M2RB || k == Kind::kE5M2RH;
}
constexpr bool e4m3_elems(Kind k) {
  return k == Kind::kP8 || k == Kind::kE4M3Q || k == Kind::kE4M3RB || k == Kind::kE4M3RH;
}
constexpr bool e5m2_elems(Kind k) {
  return k == Kind::kE5M2Q || k == Kind::kE5M2RB || k == Kind::kE5M2RH;
}
constexpr bool wide_elems(Kind k) {  // 16-bit cache elements
  return k == Kind::kBF16 || k == Kind::kF16;
}
// e4m3 codes become f16 by moving bits (value / 2^8); the factor goes into
// the per-key / per-tensor scale.
constexpr float k_unit(Kind k) {
  return (k == Kind::kP8 || k == Kind::kE4M3Q) ? 256.0f : 1.0f;
}

// Rows one decode warp handles: the mma's N = 8 (query tokens x GQA group).
constexpr int kDecodeRows = 8;
constexpr int kStageKeys = 16;  // keys per decode pipeline stage (divides block_size)

// ---- kernel shapes (host and device) ------------------------------------------------

template <int DP>
struct DecodeShape {
  static constexpr int kNvs = DP == 256 ? 2 : 1;  // warps per KV head (Dv slices)
  static constexpr int kDvw = DP / kNvs;          // head dims per warp
  static constexpr int kChunksK = DP / 16;        // 16-dim QK chunks
  static constexpr int kChunksV = kDvw / 32;      // 32-dim PV chunks per warp
  static constexpr int kStages = 3;
  static constexpr int kMaxWarps = 8;
};

// Shared-memory bytes of one span (hc rows of one token) and of the CTA.
__host__ __device__ inline int decode_slot_bytes(int hc, int64_t rb) {
  return static_cast<int>(((hc * rb + 15) & ~int64_t{15}) + 16);
}
template <int DP>
inline int decode_smem_bytes(int hc, int64_t rb) {
  return DecodeShape<DP>::kStages * 2 * kStageKeys * decode_slot_bytes(hc, rb);
}

template <int DP>
struct PrefillShape {
  static constexpr int kKt = DP == 256 ? 32 : 64;  // keys per tile
  static constexpr int kNvs = DP == 256 ? 2 : 1;    // warps per 16 rows (Dv slices)
  static constexpr int kDvw = DP / kNvs;
  static constexpr int kRows = 64;
  static constexpr int kWarps = 4 * kNvs;
  static constexpr int kPitch = 2 * DP + 16;  // bytes per tile row (ldmatrix conflict-free)
  static constexpr int kChunksK = DP / 16;
  static constexpr int kNt = kKt / 8;  // 8-key n-tiles per tile
};

__host__ __device__ inline int prefill_slot_bytes(int64_t rb) {
  return static_cast<int>(((rb + 15) & ~int64_t{15}) + 16);
}
template <int DP>
inline int prefill_smem_bytes(int64_t rb) {
  using S = PrefillShape<DP>;
  return 2 * 2 * S::kKt * prefill_slot_bytes(rb)  // raw stages
         + 2 * S::kKt * S::kPitch                 // Kt, Vt
         + 4 * S::kKt * 4;                        // kf, vsc, zpk, zpv
}

// ---- parameters --------------------------------------------------------------------

struct Params {
  const unsigned char* cache;
  const int32_t* block_table;
  int64_t bt_stride, num_blocks;
  const int32_t* qsl;
  const int32_t* seq_lens;
  int num_seqs;
  int64_t num_tokens;
  const void* q;
  int64_t q_st, q_sh;
  int q_dtype;
  void* out;
  int64_t o_st, o_sh;
  int out_dtype;
  int hq, hkv, group, d, dv, bs;
  int64_t rb, bpb, plane;  // row bytes, bytes per block, bytes of one K or V plane
  float softmax_scale;
  int window;
  float softcap;
  const float* alibi;
  const float* sinks;
  const float* q_scales;
  int nqs;
  const float* k_scales;
  const float* v_scales;
  int nkvs;
  float* ws;                  // partial rows of dv + 2 floats: m, l, acc[dv]
  int64_t ws_prefill_base;    // first prefill partial row
  int splits_d, splits_p;     // key splits of decode / prefill work
  int hc, ngroups;            // decode: KV heads per CTA, CTAs per (sequence, split)
  int codec;                  // Codec (fp32 SIMT kernel)
  AttentionVerdict* verdict;
};

// A decode sequence: query_len * group <= kDecodeRows; the rest is prefill.
__device__ __forceinline__ bool is_decode(const Params& p, int qlen) {
  return qlen * p.group <= kDecodeRows;
}

__device__ __forceinline__ int64_t decode_partial_row(const Params& p, int seq, int split, int kvh,
                                                      int r) {
  return ((static_cast<int64_t>(seq) * p.splits_d + split) * p.hkv + kvh) * kDecodeRows + r;
}
__device__ __forceinline__ int64_t prefill_partial_row(const Params& p, int split, int64_t token,
                                                       int hq) {
  return p.ws_prefill_base + (split * p.num_tokens + token) * p.hq + hq;
}

// Key range [lo, hi) that query tokens [i0, i1] (0-based in the chunk) of a
// sequence can see, and this split's share of it in whole tiles of
// `tile` keys aligned to absolute positions.
struct KeyRange {
  int kb, ke;       // this split's keys (may be empty)
  int tile_b, tile_e;
};
__device__ __forceinline__ KeyRange split_range(const Params& p, int ctx, int i0, int i1, int split,
                                                int splits, int tile) {
  const int hi = ctx + i1 + 1;
  const int lo = p.window > 0 ? max(0, ctx + i0 - p.window + 1) : 0;
  const int tb = lo / tile, te = (hi + tile - 1) / tile;
  const int per = (te - tb + splits - 1) / splits;
  KeyRange r;
  r.tile_b = min(te, tb + split * per);
  r.tile_e = min(te, tb + (split + 1) * per);
  r.kb = max(lo, r.tile_b * tile);
  r.ke = min(hi, r.tile_e * tile);
  if (r.ke < r.kb) r.ke = r.kb;
  return r;
}

// Block of key j of `seq`, or -1 (recorded in the verdict) when the table
// entry is out of range.
__device__ __forceinline__ int block_of(const Params& p, int seq, int j) {
  const int64_t idx = j / p.bs;
  const int32_t b = p.block_table[seq * p.bt_stride + idx];
  if (b < 0 || b >= p.num_blocks) {
    if (p.verdict != nullptr) {
      const uint64_t key = (static_cast<uint64_t>(seq) << 32) | static_cast<uint64_t>(idx);
      atomicMax(reinterpret_cast<unsigned long long*>(&p.verdict->order_key), ~key);
    }
    return -1;
  }
  return b;
}

__device__ __forceinline__ int elem_bytes_dev(int dtype) {
  return dtype == 1 ? 4 : (dtype == 6 || dtype == 7) ? 1 : 2;
}

// One query element as float (exact for every supported dtype).
__device__ __forceinline__ float load_q(const Params& p, int64_t token, int hq, int dim) {
  const auto* row = static_cast<const unsigned char*>(p.q) +
                    (token * p.q_st + hq * p.q_sh) * elem_bytes_dev(p.q_dtype);
  return codec::load_element(p.q_dtype, row, dim);
}

// ---- PTX ---------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ uint32_t lds32(uint32_t a) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(a));
  return v;
}
__device__ __forceinline__ uint32_t lds16(uint32_t a) {
  unsigned short v;
  asm volatile("ld.shared.u16 %0, [%1];\n" : "=h"(v) : "r"(a));
  return v;
}
__device__ __forceinline__ uint2 lds64(uint32_t a) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(a));
  return v;
}
// A little-endian fp32 at a 2-byte aligned shared address (int4 rows).
__device__ __forceinline__ float lds_f32_a2(uint32_t a) {
  return __uint_as_float(lds16(a) | (lds16(a + 2) << 16));
}
__device__ __forceinline__ void sts64(uint32_t a, uint32_t x, uint32_t y) {
  asm volatile("st.shared.v2.u32 [%0], {%1, %2};\n" ::"r"(a), "r"(x), "r"(y));
}
__device__ __forceinline__ void sts32(uint32_t a, uint32_t x) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a), "r"(x));
}

template <bool kBf16>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  if constexpr (kBf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// Two floats -> one f16x2 / bf16x2 register (lo in the low half), RNE.
template <bool kBf16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t d;
  if constexpr (kBf16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
}
template <bool kBf16>
__device__ __forceinline__ float2 unpack2(uint32_t x) {
  if constexpr (kBf16)
    return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xFFFF0000u));
  __half2 h;
  memcpy(&h, &x, 4);
  return __half22float2(h);
}
__device__ __forceinline__ uint32_t hsub2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("sub.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
}

// ---- element pairs -> f16x2 / bf16x2 -------------------------------------------------
// `x` holds two 8-bit codes in bytes 0 and 1 (the others are ignored).

// int8: x already xor 0x80 per byte; 0x64XX as f16 is 1024 + XX, minus 1152.
__device__ __forceinline__ uint32_t i8pair_to_f16(uint32_t x) {
  return hsub2(__byte_perm(x, 0x64646464u, 0x5140), 0x64806480u);
}
// e4m3 -> f16 bits with value / 2^8 (exact; the NaN code reads as 480 / 2^8).
__device__ __forceinline__ uint32_t e4m3pair_to_f16(uint32_t x) {
  const uint32_t h = __byte_perm(x, 0u, 0x1404);  // code << 8 in each half
  return (h & 0x80008000u) | ((h >> 1) & 0x3F803F80u);
}
// e5m2 is the top byte of f16: exact.
__device__ __forceinline__ uint32_t e5m2pair_to_f16(uint32_t x) {
  return __byte_perm(x, 0u, 0x1404);
}

// Exact float value of code byte `b` (for the rounded fp8 kinds).
template <Kind K>
__device__ __forceinline__ float fp8_value(uint32_t b) {
  if constexpr (e4m3_elems(K))
    return codec::e4m3_to_float(static_cast<uint8_t>(b));
  else
    return codec::e5m2_to_float(static_cast<uint8_t>(b));
}

// Two 8-bit codes (bytes 0, 1 of x) of an 8-bit kind as one mma register.
// scale: the per-tensor scale of the rounded fp8 kinds (K/V = round(code * s)).
template <Kind K>
__device__ __forceinline__ uint32_t codes_to_reg(uint32_t x, float scale) {
  if constexpr (K == Kind::kI8) {
    return i8pair_to_f16(x ^ 0x80808080u);
  } else if constexpr (K == Kind::kP8 || K == Kind::kE4M3Q) {
    return e4m3pair_to_f16(x);
  } else if constexpr (K == Kind::kE5M2Q) {
    return e5m2pair_to_f16(x);
  } else {
    static_assert(rounded_fp8(K));
    const float a = codec::mul_rn(fp8_value<K>(x & 0xFFu), scale);
    const float b = codec::mul_rn(fp8_value<K>((x >> 8) & 0xFFu), scale);
    return pack2<qk_bf16(K)>(a, b);
  }
}

// int4 nibble pairs: 16-bit lanes of y hold nibbles; lane value n -> n - zp.
// zp2 = f16x2 of (1024 + zp_lo, 1024 + zp_hi).
__device__ __forceinline__ uint32_t nib_to_f16(uint32_t y, int shift, uint32_t zp2) {
  return hsub2(((y >> shift) & 0x000F000Fu) | 0x64006400u, zp2);
}

// ---- epilogue ------------------------------------------------------------------------

// Stores n consecutive output values (n = 2 or 4) of one row at `dim`.
__device__ __forceinline__ void store_out(const Params& p, int64_t token, int hq, int dim,
                                          const float* v, int n) {
  unsigned char* row = static_cast<unsigned char*>(p.out) +
                       (token * p.o_st + hq * p.o_sh) * (p.out_dtype == 1 ? 4 : 2);
  if (p.out_dtype == 1) {
    float* o = reinterpret_cast<float*>(row) + dim;
    for (int i = 0; i < n; ++i) o[i] = v[i];
  } else if (p.out_dtype == 3) {
    auto* o = reinterpret_cast<__nv_bfloat16*>(row) + dim;
    for (int i = 0; i < n; ++i) o[i] = __float2bfloat16_rn(v[i]);
  } else {
    auto* o = reinterpret_cast<__half*>(row) + dim;
    for (int i = 0; i < n; ++i) o[i] = __float2half_rn(v[i]);
  }
}

// Final (m, l) of a row with the sink folded in: the factor that turns the
// row's accumulator (relative to m) into the output. 0 for a row that saw no
// key and has no sink.
__device__ __forceinline__ float output_factor(const Params& p, int hq, float m, float l) {
  if (p.sinks != nullptr) {
    const float sink = p.sinks[hq];
    const float mf = fmaxf(m, sink);
    const float em = m == -INFINITY ? 0.0f : __expf(m - mf);
    const float lf = l * em + __expf(sink - mf);
    return em / lf;
  }
  return l > 0.0f ? 1.0f / l : 0.0f;
}

// Row-invariant per-call numbers.
__device__ __forceinline__ float kv_scale(const float* s, int n, int kvh) {
  return s == nullptr ? 1.0f : s[n == 1 ? 0 : kvh];
}

}  // namespace kvq::cuda::attn
