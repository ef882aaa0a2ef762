// Cache write (reshape_and_cache) and cache init kernels (spec/triton_sim.md
// §2-§3); launched by cache_write.cu, run on the CPU by the emulator tests.
//
// A write is three operations on the stream: zero the verdict, validate,
// write. The validate kernel records the lowest offending (class, token,
// head, K-before-V) with an atomic max on the inverted order key (max of
// ~key = min of key: deterministic whatever the block order); the write
// kernel reads that key first and writes nothing when it is set, so a
// refused call leaves the cache untouched even though the host learns of it
// only after synchronizing.
//
// One warp per (token, KV head): each row's reduction (absmax or min/max)
// runs across the warp, then each lane codes its elements with the same
// codec functions the CPU test checks against the CPU plugin. Every
// arithmetic step is an IEEE round-to-nearest operation (codecs.cuh), so the
// bytes match the CPU plugin's; cache_write.cu is also compiled with
// --fmad=false as a second guard.
#pragma once

#include "codecs.cuh"
#include "common.cuh"

namespace kvq::cuda::write_kernels {

using namespace codec;
using detail::kFullMask;

constexpr int kWarpsPerBlock = 8;

// Order key: slot errors (class 0) before NaN errors (class 1); then token,
// head, K before V.
__device__ __forceinline__ uint64_t order_key(uint64_t cls, int64_t token, int64_t head,
                                              int is_value) {
  return (cls << 62) | (static_cast<uint64_t>(token) << 26) |
         (static_cast<uint64_t>(head) << 1) | static_cast<uint64_t>(is_value);
}

struct RowPtrs {
  const unsigned char* k;
  const unsigned char* v;
};

__device__ __forceinline__ RowPtrs input_rows(const WriteArgs& a, int64_t t, int64_t h) {
  const int64_t es = a.in_dtype == kDtypeF32 ? 4 : 2;
  RowPtrs r;
  r.k = static_cast<const unsigned char*>(a.key) +
        (t * a.key_stride_token + h * a.key_stride_head) * es;
  r.v = static_cast<const unsigned char*>(a.value) +
        (t * a.value_stride_token + h * a.value_stride_head) * es;
  return r;
}

// True (on every lane) when row[0, n) has a NaN or infinity.
__device__ inline bool row_has_nonfinite(int32_t dtype, const unsigned char* row, int64_t n, int lane) {
  bool bad = false;
  for (int64_t i = lane; i < n; i += 32) bad |= !is_finite(load_element(dtype, row, i));
  return __any_sync(kFullMask, bad);
}

KVQ_KERNEL void validate_kernel(const WriteArgs a, int64_t capacity, bool check_finite) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int64_t hkv = a.layout.num_kv_heads;
  if (row >= a.num_tokens * hkv) return;
  const int64_t t = row / hkv, h = row % hkv;
  const int64_t slot = a.slot_mapping[t];
  unsigned long long* key = reinterpret_cast<unsigned long long*>(&a.verdict->order_key);
  if (slot >= capacity) {
    if (h == 0 && lane == 0) atomicMax(key, ~order_key(0, t, 0, 0));
    return;
  }
  if (slot < 0 || !check_finite) return;
  const RowPtrs r = input_rows(a, t, h);
  if (row_has_nonfinite(a.in_dtype, r.k, a.layout.head_size, lane)) {
    if (lane == 0) atomicMax(key, ~order_key(1, t, h, 0));
    return;  // K before V: the V row of this (token, head) cannot be lower
  }
  if (row_has_nonfinite(a.in_dtype, r.v, a.layout.head_size_v, lane) && lane == 0)
    atomicMax(key, ~order_key(1, t, h, 1));
}

// Expands the order key into the verdict's fields (one thread).
__device__ inline void finalize_verdict(const WriteArgs& a) {
  WriteVerdict* v = a.verdict;
  const uint64_t key = ~v->order_key;
  const int64_t t = static_cast<int64_t>((key >> 26) & ((uint64_t{1} << 36) - 1));
  v->token = t;
  v->slot = a.slot_mapping[t];
  if ((key >> 62) == 0) {
    v->code = 1;
    v->head = 0;
    v->is_value = 0;
    return;
  }
  v->code = 2;
  v->head = static_cast<int64_t>((key >> 1) & ((uint64_t{1} << 25) - 1));
  v->is_value = static_cast<int32_t>(key & 1);
  const RowPtrs r = input_rows(a, t, v->head);
  const unsigned char* row = v->is_value ? r.v : r.k;
  const int64_t n = v->is_value ? a.layout.head_size_v : a.layout.head_size;
  for (int64_t i = 0; i < n; ++i) {
    const float x = load_element(a.in_dtype, row, i);
    if (!is_finite(x)) {
      v->bad_value = x;
      break;
    }
  }
}

// One row, per-token-head int8 / fp8.
template <bool kFp8>
__device__ inline void write_row_pth8(int32_t dtype, const unsigned char* in, int64_t n,
                               unsigned char* out, int lane) {
  float m = 0.0f;
  for (int64_t i = lane; i < n; i += 32) m = fmaxf(m, fabsf(load_element(dtype, in, i)));
  m = detail::warp_max(m);  // exact: max does not round
  const float scale = kFp8 ? fp8_scale(m) : int8_scale(m);
  const float inv = reciprocal(scale);
  for (int64_t i = lane; i < n; i += 32) {
    const float x = load_element(dtype, in, i);
    out[i] = kFp8 ? fp8_code(x, inv) : int8_code(x, inv);
  }
  if (lane == 0) store_f32_bytes(out + n, scale);
}

__device__ inline void write_row_int4(int32_t dtype, const unsigned char* in, int64_t n,
                               unsigned char* out, int lane) {
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = lane; i < n; i += 32) {
    const float x = load_element(dtype, in, i);
    lo = fminf(lo, x);
    hi = fmaxf(hi, x);
  }
  lo = detail::warp_min(lo);
  hi = detail::warp_max(hi);
  if (lo == 0.0f) {
    // The CPU's serial minimum keeps the first of equal values, so a zero
    // minimum has the sign of the row's first zero (it becomes zp's sign).
    int64_t first = n;
    for (int64_t i0 = 0; i0 < n && first == n; i0 += 32) {
      const int64_t i = i0 + lane;
      const bool z = i < n && load_element(dtype, in, i) == 0.0f;
      const unsigned b = __ballot_sync(kFullMask, z);
      if (b != 0) first = i0 + __ffs(b) - 1;
    }
    lo = load_element(dtype, in, first);
  }
  const Int4Params p = int4_params(lo, hi);
  const int64_t bytes = (n + 1) / 2;
  for (int64_t b = lane; b < bytes; b += 32) {
    const uint32_t q0 = int4_code(load_element(dtype, in, 2 * b), p);
    const uint32_t q1 = 2 * b + 1 < n ? int4_code(load_element(dtype, in, 2 * b + 1), p) : 0u;
    out[b] = static_cast<unsigned char>(q0 | (q1 << 4));
  }
  if (lane == 0) {
    store_f32_bytes(out + bytes, p.scale);
    store_f32_bytes(out + bytes + 4, p.zp);
  }
}

__device__ inline void write_row_plain(Codec codec, int32_t dtype, const unsigned char* in, int64_t n,
                                unsigned char* out, float scale, int lane) {
  for (int64_t i = lane; i < n; i += 32) {
    const float x = load_element(dtype, in, i);
    switch (codec) {
      case Codec::kF32: store_f32_bytes(out + 4 * i, x); break;
      case Codec::kBF16: {
        const uint16_t b = float_to_bf16(x);
        out[2 * i] = static_cast<unsigned char>(b);
        out[2 * i + 1] = static_cast<unsigned char>(b >> 8);
        break;
      }
      case Codec::kF16: {
        const uint16_t b = float_to_f16(x);
        out[2 * i] = static_cast<unsigned char>(b);
        out[2 * i + 1] = static_cast<unsigned char>(b >> 8);
        break;
      }
      case Codec::kE4M3: out[i] = float_to_e4m3(div_rn(x, scale)); break;
      case Codec::kE5M2: out[i] = float_to_e5m2(div_rn(x, scale)); break;
      default: break;
    }
  }
}

KVQ_KERNEL void write_kernel(const WriteArgs a, int64_t capacity) {
  if (a.verdict->order_key != 0) {  // validation refused the call: write nothing
    if (blockIdx.x == 0 && threadIdx.x == 0) finalize_verdict(a);
    return;
  }
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const CacheLayout& l = a.layout;
  if (row >= a.num_tokens * l.num_kv_heads) return;
  const int64_t t = row / l.num_kv_heads, h = row % l.num_kv_heads;
  const int64_t slot = a.slot_mapping[t];
  if (slot < 0 || slot >= capacity) return;
  const int64_t block = slot / l.block_size, s = slot % l.block_size;
  unsigned char* kdst = a.cache + block * l.bytes_per_block + (s * l.num_kv_heads + h) * l.row_bytes;
  unsigned char* vdst = kdst + l.block_size * l.num_kv_heads * l.row_bytes;
  const RowPtrs r = input_rows(a, t, h);
  switch (a.codec) {
    case Codec::kInt8Pth:
      write_row_pth8<false>(a.in_dtype, r.k, l.head_size, kdst, lane);
      write_row_pth8<false>(a.in_dtype, r.v, l.head_size_v, vdst, lane);
      break;
    case Codec::kFp8Pth:
      write_row_pth8<true>(a.in_dtype, r.k, l.head_size, kdst, lane);
      write_row_pth8<true>(a.in_dtype, r.v, l.head_size_v, vdst, lane);
      break;
    case Codec::kInt4Pth:
      write_row_int4(a.in_dtype, r.k, l.head_size, kdst, lane);
      write_row_int4(a.in_dtype, r.v, l.head_size_v, vdst, lane);
      break;
    default: {
      float ks = 1.0f, vs = 1.0f;
      if (a.codec == Codec::kE4M3 || a.codec == Codec::kE5M2) {
        ks = a.k_scales[a.num_scales == 1 ? 0 : h];
        vs = a.v_scales[a.num_scales == 1 ? 0 : h];
      }
      write_row_plain(a.codec, a.in_dtype, r.k, l.head_size, kdst, ks, lane);
      write_row_plain(a.codec, a.in_dtype, r.v, l.head_size_v, vdst, vs, lane);
    }
  }
}

// Per-token-head rows of a zeroed cache get scale 1.0 (zero point stays 0).
KVQ_KERNEL void init_scales_kernel(CacheLayout l, unsigned char* cache, int64_t k_off,
                                   int64_t v_off) {
  const int64_t rows_per_plane = l.block_size * l.num_kv_heads;
  const int64_t total = l.num_blocks * 2 * rows_per_plane;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < total;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = (r / rows_per_plane) % 2;  // 0 K, 1 V
    store_f32_bytes(cache + r * l.row_bytes + (plane == 0 ? k_off : v_off), 1.0f);
  }
}

}  // namespace kvq::cuda::write_kernels
