// The attention kernels' plain-C++ side: the tensor-core "kinds" (how a
// cache codec and query dtype map onto f16 / bf16 mma operands), the kernel
// shapes and shared-memory sizes, and the per-call parameter block. Included
// by the planner (host C++) and by the kernels.
#pragma once

#include "codecs.cuh"
#include "kernels.hpp"

#include <cstdint>

namespace kvq::cuda::attn {

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

// A split partial row: m, l, 2 pad floats, then Dv accumulators (16-byte
// aligned for vector stores and loads), padded to a multiple of 4 floats.
KVQ_HD int64_t partial_row_floats(int64_t dv) {
  return 4 + (dv + 3) / 4 * 4;
}

// The fp32 SIMT kernel's largest head sizes; the merge kernel's largest split count.
constexpr int kSimtMaxD = 512;
constexpr int kMergeMaxSplits = 1024;

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
KVQ_HD int decode_slot_bytes(int hc, int64_t rb) {
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

KVQ_HD int prefill_slot_bytes(int64_t rb) {
  return static_cast<int>(((rb + 15) & ~int64_t{15}) + 16);
}
template <int DP>
inline int prefill_smem_bytes(int64_t rb) {
  using S = PrefillShape<DP>;
  return 2 * 2 * S::kKt * prefill_slot_bytes(rb)  // raw stages
         + 2 * S::kKt * S::kPitch                 // Kt, Vt
         + 5 * S::kKt * 4;                        // kf, vsc, zpk, zpv, row offsets
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

}  // namespace kvq::cuda::attn
