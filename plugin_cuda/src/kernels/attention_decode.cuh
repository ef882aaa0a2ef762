// Decode attention on tensor cores: sequences whose query_len * GQA group is
// at most 8 (single-token decodes; short speculative chunks).
//
// Memory first: a decode reads every cached K/V byte once, so the kernel is
// built around moving the cache at full bandwidth.
//  - One CTA reads a (sequence, key split, group of hc KV heads). The K (or
//    V) rows of one token and hc consecutive KV heads are one contiguous
//    span (all heads: 16-byte aligned), copied with 16-byte cp.async into
//    shared memory, 16 tokens per stage, kStages stages in flight. Rows are
//    never loaded byte by byte from global memory (vLLM's slow int8 path).
//  - One warp per KV head (per half of Dv when Dv > 128) computes on its
//    rows straight from shared memory, dequantizing in registers, and all
//    query heads of the GQA group share each loaded row.
//  - Few long sequences: the key range is split over ~all SMs (fixed split
//    count for given shapes: deterministic) and merged by merge_kernel.
//
// Math on m16n8k16 mma with the roles transposed (keys / head dims are M,
// query rows are N = 8), so a warp's accumulators hold only real rows:
//   S^T[16 keys][8 rows]  = K[16 keys][16 dims] . Q^T[16 dims][8 rows]
//   O^T[16 dims][8 rows] += V^T[16 dims][16 keys] . P^T[16 keys][8 rows]
// Each lane reads 4 consecutive bytes (dims) of a row per 16-dim chunk: the
// k index of the QK mma is permuted (lane quad t owns dims 4t..4t+3 of the
// chunk), and Q^T uses the same permutation. For PV, lane (g, t) loads dims
// 4g..4g+3 of keys 2t, 2t+1, 2t+8, 2t+9 and byte-permutes them into V^T
// fragments: O^T row m of 16-dim tile 2c + tau is head dim 32c + 4(m%8) +
// 2 tau + m/8. P^T comes from S^T's accumulators through 4 shuffles.
#pragma once

#include "attention_common.cuh"

namespace kvq::cuda::attn {

// 2^k putting max|q| of a row in [2^14, 2^15): bf16, f16 and e4m3 query
// elements then convert to f16 exactly (except those 2^29 below the max).
__device__ __forceinline__ float q_prescale(float mx) {
  if (!(mx > 0.0f) || !codec::is_finite(mx)) return 1.0f;
  int e;
  frexpf(mx, &e);
  return ldexpf(1.0f, min(120, max(-120, 15 - e)));
}

template <Kind K, int DP>
__global__ void __launch_bounds__(256, 2) decode_kernel(const Params p) {
  using S = DecodeShape<DP>;
  constexpr bool kQkBf = qk_bf16(K), kPvBf = pv_bf16(K);
  KVQ_DYNAMIC_SMEM(smem);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int grp = blockIdx.x % p.ngroups;
  const int split = (blockIdx.x / p.ngroups) % p.splits_d;
  const int seq = blockIdx.x / (p.ngroups * p.splits_d);
  const int qs = p.qsl[seq], qlen = p.qsl[seq + 1] - qs;
  if (qlen <= 0 || !is_decode(p, qlen)) return;
  const int seq_len = p.seq_lens[seq], ctx = seq_len - qlen;
  const KeyRange kr = split_range(p, ctx, 0, qlen - 1, split, p.splits_d, kStageKeys);
  const int h0 = grp * p.hc, hcn = min(p.hc, p.hkv - h0);
  const int hl = warp / S::kNvs, vsl = warp % S::kNvs, kvh = h0 + hl;
  const bool active = hl < hcn;
  const int nrows = qlen * p.group;
  const int rb = static_cast<int>(p.rb);
  const int slot = decode_slot_bytes(p.hc, p.rb);
  const int stage_bytes = 2 * kStageKeys * slot;
  const uint32_t sbase = smem_addr(smem);

  // ---- query rows as Q^T fragments (row g of the N = 8 rows) ----
  uint32_t qf[S::kChunksK][2];
  float rs_g;  // softmax_scale * q_scale / prescale of row g
  {
    const int r = g;
    const bool rv = active && r < nrows;
    const int64_t tok = qs + (rv ? r / p.group : 0);
    const int hq = kvh * p.group + r % p.group;
    float qv[S::kChunksK][4];
    float mx = 0.0f;
#pragma unroll
    for (int c = 0; c < S::kChunksK; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int dim = 16 * c + 4 * t + e;
        qv[c][e] = rv && dim < p.d ? load_q(p, tok, hq, dim) : 0.0f;
        mx = fmaxf(mx, fabsf(qv[c][e]));
      }
    mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
    const float f = kQkBf ? 1.0f : q_prescale(mx);
#pragma unroll
    for (int c = 0; c < S::kChunksK; ++c) {
      qf[c][0] = pack2<kQkBf>(qv[c][0] * f, qv[c][1] * f);
      qf[c][1] = pack2<kQkBf>(qv[c][2] * f, qv[c][3] * f);
    }
    float qscale = 1.0f;
    if constexpr (fp8_query(K)) qscale = rv ? p.q_scales[p.nqs == 1 ? 0 : hq] : 1.0f;
    rs_g = p.softmax_scale * qscale / f;
  }

  // ---- the two S^T / O^T rows of this lane: 2t and 2t + 1 ----
  float rs[2], slope[2] = {0.0f, 0.0f};
  int pos[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = 2 * t + i;
    rs[i] = __shfl_sync(kFullMask, rs_g, 4 * r);
    pos[i] = min(ctx + r / p.group, seq_len - 1);
    if (p.alibi != nullptr && active) slope[i] = p.alibi[kvh * p.group + r % p.group];
  }
  const float ks_tensor = active ? kv_scale(p.k_scales, p.nkvs, kvh) : 1.0f;
  const float vs_tensor = active ? kv_scale(p.v_scales, p.nkvs, kvh) : 1.0f;

  float o[2 * S::kChunksV][4];
#pragma unroll
  for (int i = 0; i < 2 * S::kChunksV; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float s_run = per_key_scale(K) ? 0.0f : 1.0f;  // running max of V row scales

  // ---- stage loads ----
  const int ntile = kr.tile_e - kr.tile_b;
  auto issue = [&](int s) {
    const int j0 = (kr.tile_b + s) * kStageKeys;
    const int blk = block_of(p, seq, j0);
    if (blk < 0) return;
    const unsigned char* base =
        p.cache + blk * p.bpb + (static_cast<int64_t>(j0 % p.bs) * p.hkv + h0) * p.rb;
    const uint32_t buf = sbase + (s % S::kStages) * stage_bytes;
    for (int sp = warp; sp < 2 * kStageKeys; sp += nwarps) {
      const unsigned char* src = base + (sp >> 4) * p.plane + (sp & 15) * p.hkv * p.rb;
      const int off = static_cast<int>(reinterpret_cast<uintptr_t>(src) & 15);
      const int ngr = (off + hcn * rb + 15) >> 4;
      const unsigned char* a0 = src - off;
      for (int gi = lane; gi < ngr; gi += 32) cp_async16(buf + sp * slot + 16 * gi, a0 + 16 * gi);
    }
  };

  // Shared address of key k's row (K plane 0, V plane 1) in stage buffer
  // `buf`: spans keep their global address mod 16, which is
  // ((slot0 + k) * hkv * rb + h0 * rb + cache) mod 16.
  const int tok_mod = static_cast<int>((p.hkv * p.rb) & 15);
  const int base_mod =
      static_cast<int>((h0 * p.rb + static_cast<int64_t>(reinterpret_cast<uintptr_t>(p.cache))) & 15);
  auto row_addr = [&](uint32_t buf, int plane, int slot0, int k) -> uint32_t {
    const int off = ((slot0 + k) * tok_mod + base_mod) & 15;
    return buf + (plane * kStageKeys + k) * slot + off + hl * rb;
  };

  auto compute = [&](int s) {
    const int j0 = (kr.tile_b + s) * kStageKeys;
    const int slot0 = j0 % p.bs;
    const uint32_t buf = sbase + (s % S::kStages) * stage_bytes;
    const int ka = g, kb8 = g + 8;  // this lane's S^T keys
    const uint32_t krow0 = row_addr(buf, 0, slot0, ka), krow1 = row_addr(buf, 0, slot0, kb8);
    const bool kv0 = j0 + ka >= kr.kb && j0 + ka < kr.ke;
    const bool kv1 = j0 + kb8 >= kr.kb && j0 + kb8 < kr.ke;
    // PV keys of this lane: 2t, 2t+1, 2t+8, 2t+9
    uint32_t vrow[4];
    bool vv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int k = 2 * t + (i & 1) + (i >> 1) * 8;
      vrow[i] = row_addr(buf, 1, slot0, k);
      vv[i] = j0 + k >= kr.kb && j0 + k < kr.ke;
    }

    // Per-key factors: kf (score), vsc (P'), K / V zero points (int4).
    float kf[2] = {ks_tensor * k_unit(K), ks_tensor * k_unit(K)}, vsc[2] = {1.0f, 1.0f};
    if constexpr (rounded_fp8(K) || wide_elems(K)) kf[0] = kf[1] = 1.0f;
    uint32_t zpk[2] = {0u, 0u}, zpv[2] = {0u, 0u};
    if constexpr (per_key_scale(K)) {
      const int kso = K == Kind::kI4 ? p.d / 2 : p.d, vso = K == Kind::kI4 ? p.dv / 2 : p.dv;
      if constexpr (K == Kind::kI4) {
        kf[0] = kv0 ? lds_f32_a2(krow0 + kso) : 0.0f;
        kf[1] = kv1 ? lds_f32_a2(krow1 + kso) : 0.0f;
        const float z0 = kv0 ? lds_f32_a2(krow0 + kso + 4) : 0.0f;
        const float z1 = kv1 ? lds_f32_a2(krow1 + kso + 4) : 0.0f;
        zpk[0] = pack2<false>(1024.0f + z0, 1024.0f + z0);
        zpk[1] = pack2<false>(1024.0f + z1, 1024.0f + z1);
        const uint32_t r0 = row_addr(buf, 1, slot0, ka), r1 = row_addr(buf, 1, slot0, kb8);
        vsc[0] = kv0 ? lds_f32_a2(r0 + vso) : 0.0f;
        vsc[1] = kv1 ? lds_f32_a2(r1 + vso) : 0.0f;
        float zv[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) zv[i] = vv[i] ? lds_f32_a2(vrow[i] + vso + 4) : 0.0f;
        zpv[0] = pack2<false>(1024.0f + zv[0], 1024.0f + zv[1]);
        zpv[1] = pack2<false>(1024.0f + zv[2], 1024.0f + zv[3]);
      } else {
        kf[0] = kv0 ? __uint_as_float(lds32(krow0 + kso)) * k_unit(K) : 0.0f;
        kf[1] = kv1 ? __uint_as_float(lds32(krow1 + kso)) * k_unit(K) : 0.0f;
        vsc[0] = kv0 ? __uint_as_float(lds32(row_addr(buf, 1, slot0, ka) + vso)) : 0.0f;
        vsc[1] = kv1 ? __uint_as_float(lds32(row_addr(buf, 1, slot0, kb8) + vso)) : 0.0f;
      }
    }

    // ---- S^T = K . Q^T ----
    float sacc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < S::kChunksK; ++c) {
      if (16 * c >= p.d) break;
      uint32_t a[4];
      if constexpr (wide_elems(K)) {
        const uint2 w0 = lds64(krow0 + 2 * (16 * c + 4 * t));
        const uint2 w1 = lds64(krow1 + 2 * (16 * c + 4 * t));
        a[0] = w0.x;
        a[1] = w1.x;
        a[2] = w0.y;
        a[3] = w1.y;
      } else if constexpr (K == Kind::kI4) {
        const uint32_t w0 = lds16(krow0 + 8 * c + 2 * t), w1 = lds16(krow1 + 8 * c + 2 * t);
        a[0] = nib_to_f16((w0 & 0xFu) | ((w0 << 12) & 0xF0000u), 0, zpk[0]);
        a[1] = nib_to_f16((w1 & 0xFu) | ((w1 << 12) & 0xF0000u), 0, zpk[1]);
        a[2] = nib_to_f16(((w0 >> 8) & 0xFu) | ((w0 << 4) & 0xF0000u), 0, zpk[0]);
        a[3] = nib_to_f16(((w1 >> 8) & 0xFu) | ((w1 << 4) & 0xF0000u), 0, zpk[1]);
      } else {
        const uint32_t w0 = lds32(krow0 + 16 * c + 4 * t), w1 = lds32(krow1 + 16 * c + 4 * t);
        a[0] = codes_to_reg<K>(w0, ks_tensor);
        a[1] = codes_to_reg<K>(w1, ks_tensor);
        a[2] = codes_to_reg<K>(w0 >> 16, ks_tensor);
        a[3] = codes_to_reg<K>(w1 >> 16, ks_tensor);
      }
      if (16 * c + 4 * t >= p.d) a[0] = a[1] = a[2] = a[3] = 0u;  // past D: no garbage * 0
      mma16816<kQkBf>(sacc, a, qf[c][0], qf[c][1]);
    }

    // ---- scores: sc[key a/b][row 2t / 2t+1] ----
    float sc[2][2];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int j = j0 + (kk ? kb8 : ka);
        float v = sacc[2 * kk + i] * kf[kk] * rs[i];
        if (p.softcap > 0.0f) v = p.softcap * tanhf(v / p.softcap);
        v += slope[i] * static_cast<float>(j - ctx);
        const bool vis = (kk ? kv1 : kv0) && j <= pos[i] && (p.window <= 0 || pos[i] - j < p.window);
        sc[kk][i] = vis ? v : -INFINITY;
      }

    // ---- online softmax over the 16 keys (lanes with equal t share rows) ----
    float pr[2][2], fo[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float tm = fmaxf(sc[0][i], sc[1][i]);
      tm = fmaxf(tm, __shfl_xor_sync(kFullMask, tm, 4));
      tm = fmaxf(tm, __shfl_xor_sync(kFullMask, tm, 8));
      tm = fmaxf(tm, __shfl_xor_sync(kFullMask, tm, 16));
      const float mn = fmaxf(m[i], tm);
      const float mu = mn == -INFINITY ? 0.0f : mn;
      const float al = __expf(m[i] - mu);
      pr[0][i] = __expf(sc[0][i] - mu);
      pr[1][i] = __expf(sc[1][i] - mu);
      l[i] = l[i] * al + pr[0][i] + pr[1][i];
      m[i] = mn;
      fo[i] = al;
    }
    float vr[2] = {1.0f, 1.0f};
    if constexpr (per_key_scale(K)) {
      float vm = fmaxf(vsc[0], vsc[1]);
      vm = fmaxf(vm, __shfl_xor_sync(kFullMask, vm, 4));
      vm = fmaxf(vm, __shfl_xor_sync(kFullMask, vm, 8));
      vm = fmaxf(vm, __shfl_xor_sync(kFullMask, vm, 16));
      const float sn = fmaxf(s_run, vm);
      const float inv = sn > 0.0f ? 1.0f / sn : 0.0f;
      vr[0] = vsc[0] * inv;
      vr[1] = vsc[1] * inv;
      fo[0] *= s_run * inv;
      fo[1] *= s_run * inv;
      s_run = sn;
    }
    if (__any_sync(kFullMask, fo[0] != 1.0f || fo[1] != 1.0f)) {
#pragma unroll
      for (int i = 0; i < 2 * S::kChunksV; ++i) {
        o[i][0] *= fo[0];
        o[i][1] *= fo[1];
        o[i][2] *= fo[0];
        o[i][3] *= fo[1];
      }
    }
    // P' = p * v-factor (per-token-head), e4m3(p) (fp8 query) or p; 0 off range.
#pragma unroll
    for (int kk = 0; kk < 2; ++kk)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float v = pr[kk][i] * vr[kk];
        if constexpr (fp8_query(K)) v = codec::e4m3_to_float(codec::float_to_e4m3(v));
        pr[kk][i] = (kk ? kv1 : kv0) ? v : 0.0f;
      }

    // ---- P^T fragments: lane (g, t) needs row g, keys 2t, 2t+1, 2t+8, 2t+9 ----
    uint32_t pb[2][2];  // [hi / lo part][b0, b1]
    {
      // even row 2t: (key g, key g+8); odd row 2t+1 likewise
      uint32_t ev[2], ov[2];
      ev[0] = pack2<kPvBf>(pr[0][0], pr[1][0]);
      ov[0] = pack2<kPvBf>(pr[0][1], pr[1][1]);
      if constexpr (kPvBf) {  // bf16 P: hi + lo parts, residuals exact in fp32
        const float2 eh = unpack2<true>(ev[0]), oh = unpack2<true>(ov[0]);
        ev[1] = pack2<true>(pr[0][0] - eh.x, pr[1][0] - eh.y);
        ov[1] = pack2<true>(pr[0][1] - oh.x, pr[1][1] - oh.y);
      }
      const int la = 4 * (2 * t) + (g >> 1), lb = 4 * (2 * t + 1) + (g >> 1);
      const bool odd = g & 1;
#pragma unroll
      for (int part = 0; part < (kPvBf ? 2 : 1); ++part) {
        const uint32_t ea = __shfl_sync(kFullMask, ev[part], la);
        const uint32_t oa = __shfl_sync(kFullMask, ov[part], la);
        const uint32_t eb = __shfl_sync(kFullMask, ev[part], lb);
        const uint32_t ob = __shfl_sync(kFullMask, ov[part], lb);
        const uint32_t xa = odd ? oa : ea, xb = odd ? ob : eb;  // (key 2t|2t+1, +8) of row g
        pb[part][0] = __byte_perm(xa, xb, 0x5410);
        pb[part][1] = __byte_perm(xa, xb, 0x7632);
      }
    }

    // ---- O^T += V^T . P^T ----
#pragma unroll
    for (int c = 0; c < S::kChunksV; ++c) {
      const int dd = vsl * S::kDvw + 32 * c + 4 * g;  // this lane's 4 dims
      if (vsl * S::kDvw + 32 * c >= p.dv) break;
      // this lane's 4 dims of keys 2t, 2t+1, 2t+8, 2t+9 (zero off the key range)
      uint32_t w[4][2] = {};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (wide_elems(K)) {
          const uint2 x = lds64(vrow[i] + 2 * dd);
          w[i][0] = vv[i] ? x.x : 0u;
          w[i][1] = vv[i] ? x.y : 0u;
        } else if constexpr (K == Kind::kI4) {
          w[i][0] = vv[i] ? lds16(vrow[i] + dd / 2) : 0u;
        } else {
          w[i][0] = vv[i] ? lds32(vrow[i] + dd) : 0u;
        }
      }
#pragma unroll
      for (int tau = 0; tau < 2; ++tau) {
        uint32_t a[4];
        if constexpr (wide_elems(K)) {
          a[0] = __byte_perm(w[0][tau], w[1][tau], 0x5410);
          a[1] = __byte_perm(w[0][tau], w[1][tau], 0x7632);
          a[2] = __byte_perm(w[2][tau], w[3][tau], 0x5410);
          a[3] = __byte_perm(w[2][tau], w[3][tau], 0x7632);
        } else if constexpr (K == Kind::kI4) {
          const uint32_t y0 = w[0][0] | (w[1][0] << 16), y1 = w[2][0] | (w[3][0] << 16);
          a[0] = nib_to_f16(y0, 8 * tau, zpv[0]);
          a[1] = nib_to_f16(y0, 8 * tau + 4, zpv[0]);
          a[2] = nib_to_f16(y1, 8 * tau, zpv[1]);
          a[3] = nib_to_f16(y1, 8 * tau + 4, zpv[1]);
        } else {
          const uint32_t sel = tau ? 0x7362u : 0x5140u;
          const uint32_t x0 = __byte_perm(w[0][0], w[1][0], sel);
          const uint32_t x1 = __byte_perm(w[2][0], w[3][0], sel);
          a[0] = codes_to_reg<K>(x0, vs_tensor);
          a[1] = codes_to_reg<K>(x0 >> 16, vs_tensor);
          a[2] = codes_to_reg<K>(x1, vs_tensor);
          a[3] = codes_to_reg<K>(x1 >> 16, vs_tensor);
        }
        mma16816<kPvBf>(o[2 * c + tau], a, pb[0][0], pb[0][1]);
        if constexpr (kPvBf) mma16816<true>(o[2 * c + tau], a, pb[1][0], pb[1][1]);
      }
    }
  };

  // ---- pipeline: kStages - 1 stages ahead ----
#pragma unroll 1
  for (int s = 0; s < S::kStages - 1; ++s) {
    if (s < ntile) issue(s);
    cp_async_commit();
  }
#pragma unroll 1
  for (int s = 0; s < ntile; ++s) {
    if (s + S::kStages - 1 < ntile) issue(s + S::kStages - 1);
    cp_async_commit();
    cp_async_wait<S::kStages - 1>();
    __syncthreads();
    if (active) compute(s);
    __syncthreads();
  }
  if (!active) return;

  // ---- epilogue: rows 2t, 2t+1 ----
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(kFullMask, l[i], 4);
    l[i] += __shfl_xor_sync(kFullMask, l[i], 8);
    l[i] += __shfl_xor_sync(kFullMask, l[i], 16);
  }
  // V codes were read as value / k_unit (e4m3 bit move); per-token-head P'
  // was divided by the running scale; fp8 queries apply v_scale at the end.
  float vf = (per_key_scale(K) ? s_run : 1.0f) * k_unit(K);
  if constexpr (fp8_query(K)) vf *= vs_tensor;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = 2 * t + i;
    if (r >= nrows) continue;
    const int64_t tok = qs + r / p.group;
    const int hq = kvh * p.group + r % p.group;
    if (p.splits_d == 1) {
      const float f = output_factor(p, hq, m[i], l[i]) * vf;
#pragma unroll
      for (int c = 0; c < S::kChunksV; ++c) {
        const int dd = vsl * S::kDvw + 32 * c + 4 * g;
        if (dd >= p.dv) continue;
        const float v[4] = {o[2 * c][i] * f, o[2 * c][2 + i] * f, o[2 * c + 1][i] * f,
                            o[2 * c + 1][2 + i] * f};
        store_out(p, tok, hq, dd, v, 4);
      }
    } else {
      float* row = p.ws + decode_partial_row(p, seq, split, kvh, r) * partial_row_floats(p.dv);
      if (g == 0 && vsl == 0) {
        row[0] = m[i];
        row[1] = l[i];
      }
#pragma unroll
      for (int c = 0; c < S::kChunksV; ++c) {
        const int dd = vsl * S::kDvw + 32 * c + 4 * g;
        if (dd >= p.dv) continue;
        *reinterpret_cast<float4*>(row + 4 + dd) =
            make_float4(o[2 * c][i] * vf, o[2 * c][2 + i] * vf, o[2 * c + 1][i] * vf,
                        o[2 * c + 1][2 + i] * vf);
      }
    }
  }
}

}  // namespace kvq::cuda::attn
