// Shared pieces of the attention kernels: the per-call parameters, the
// tensor-core "kinds" (how a cache codec and query dtype map onto f16 / bf16
// mma operands), PTX wrappers (mma.sync, ldmatrix, cp.async), the 16-byte
// granule copy of cache rows into shared memory, and the row epilogue
// (sinks, normalisation, output / split partials).
#pragma once

#include "attention_params.hpp"
#include "codecs.cuh"
#include "common.cuh"

#include <cstdint>

namespace kvq::cuda::attn {

using detail::kFullMask;

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

// ---- PTX (or, under KVQ_EMU, the emulator's model of it) ----------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
#if defined(KVQ_EMU)
  return ::kvq_emu::smem_offset(p);
#else
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
#endif
}

#if defined(KVQ_EMU)
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  ::kvq_emu::cp_async16(dst, src);
}
__device__ __forceinline__ void cp_async_commit() {
  ::kvq_emu::cp_async_commit();
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  ::kvq_emu::cp_async_wait(N);
}
__device__ __forceinline__ uint32_t lds32(uint32_t a) {
  return ::kvq_emu::lds<uint32_t>(a);
}
__device__ __forceinline__ uint32_t lds16(uint32_t a) {
  return ::kvq_emu::lds<uint16_t>(a);
}
__device__ __forceinline__ uint2 lds64(uint32_t a) {
  return ::kvq_emu::lds<uint2>(a);
}
__device__ __forceinline__ void sts64(uint32_t a, uint32_t x, uint32_t y) {
  ::kvq_emu::sts<uint2>(a, uint2{x, y});
}
__device__ __forceinline__ void sts32(uint32_t a, uint32_t x) {
  ::kvq_emu::sts<uint32_t>(a, x);
}
template <bool kBf16>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  ::kvq_emu::mma16816(kBf16, c, a, b0, b1);
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr) {
  ::kvq_emu::ldmatrix_x4(r, addr, false);
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
  ::kvq_emu::ldmatrix_x4(r, addr, true);
}
#else
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
__device__ __forceinline__ void sts64(uint32_t a, uint32_t x, uint32_t y) {
  asm volatile("st.shared.v2.u32 [%0], {%1, %2};\n" ::"r"(a), "r"(x), "r"(y));
}
__device__ __forceinline__ void sts32(uint32_t a, uint32_t x) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a), "r"(x));
}

// D = A B + D on one warp's fragments (PTX ISA "mma.m16n8k16", f32 accumulators).
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
#endif

// A little-endian fp32 at a 2-byte aligned shared address (int4 rows).
__device__ __forceinline__ float lds_f32_a2(uint32_t a) {
  return __uint_as_float(lds16(a) | (lds16(a + 2) << 16));
}

// Two floats -> one f16x2 / bf16x2 register (lo in the low half), RNE.
template <bool kBf16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
#if defined(KVQ_EMU)
  if constexpr (kBf16)
    return codec::float_to_bf16(lo) | (static_cast<uint32_t>(codec::float_to_bf16(hi)) << 16);
  else
    return codec::float_to_f16(lo) | (static_cast<uint32_t>(codec::float_to_f16(hi)) << 16);
#else
  uint32_t d;
  if constexpr (kBf16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
#endif
}
template <bool kBf16>
__device__ __forceinline__ float2 unpack2(uint32_t x) {
  if constexpr (kBf16)
    return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xFFFF0000u));
  return make_float2(codec::f16_to_float(static_cast<uint16_t>(x)),
                     codec::f16_to_float(static_cast<uint16_t>(x >> 16)));
}
// a - b per f16 half, RNE.
__device__ __forceinline__ uint32_t hsub2(uint32_t a, uint32_t b) {
#if defined(KVQ_EMU)
  const float2 x = unpack2<false>(a), y = unpack2<false>(b);
  return pack2<false>(x.x - y.x, x.y - y.y);
#else
  uint32_t d;
  asm("sub.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
  return d;
#endif
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

// Stores n consecutive output values of one row at `dim` (RNE to the dtype).
__device__ __forceinline__ void store_out(const Params& p, int64_t token, int hq, int dim,
                                          const float* v, int n) {
  unsigned char* row = static_cast<unsigned char*>(p.out) +
                       (token * p.o_st + hq * p.o_sh) * (p.out_dtype == 1 ? 4 : 2);
  if (p.out_dtype == 1) {
    float* o = reinterpret_cast<float*>(row) + dim;
    for (int i = 0; i < n; ++i) o[i] = v[i];
  } else {
    uint16_t* o = reinterpret_cast<uint16_t*>(row) + dim;
    for (int i = 0; i < n; ++i)
      o[i] = p.out_dtype == 3 ? codec::float_to_bf16(v[i]) : codec::float_to_f16(v[i]);
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
