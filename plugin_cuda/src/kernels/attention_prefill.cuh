// Prefill attention on tensor cores (FlashAttention-2 structure): sequences
// whose query_len * GQA group exceeds 8.
//
// A CTA owns 64 query rows of one KV head (rows = (token, q head of the
// group) pairs, token-major, so all heads of a group share every key tile)
// and walks the key range in tiles of kKt keys:
//   raw rows --cp.async (2 stages)--> shared --dequantize once per CTA-->
//   f16 / bf16 tiles Kt, Vt --ldmatrix--> m16n8k16 mma (4 warps x 16 rows)
// int8 / e4m3 / e5m2 / int4-zp codes are exact in f16, so the tiles hold the
// codes and the per-key scales go to the fp32 scores (K) and into P (V:
// P' = p * v_scale / running max, kept in f16 range). Scores, softmax and
// accumulators are fp32.
#pragma once

#include "attention_common.cuh"

namespace kvq::cuda::attn {

// Which (sequence, 64-row tile) CTA `bx` owns: the tiles of prefill
// sequences in order. Every thread returns the same; seq = -1 past the end.
__device__ __forceinline__ void find_tile(const Params& p, int bx, int* seq_out, int* tile_out) {
  __shared__ int s_seq, s_tile, s_warp[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (threadIdx.x == 0) s_seq = -1;
  __syncthreads();
  int carry = 0;
  for (int base = 0; base < p.num_seqs; base += blockDim.x) {
    const int i = base + threadIdx.x;
    int n = 0;
    if (i < p.num_seqs) {
      const int ql = p.qsl[i + 1] - p.qsl[i];
      if (ql > 0 && !is_decode(p, ql)) n = (ql * p.group + 63) / 64;
    }
    int incl = n;  // inclusive scan over the block
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(kFullMask, incl, o);
      if (lane >= o) incl += y;
    }
    if (lane == 31) s_warp[warp] = incl;
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < nw; ++w) {
      before += w < warp ? s_warp[w] : 0;
      total += s_warp[w];
    }
    incl += before;
    if (n > 0 && bx >= carry + incl - n && bx < carry + incl) {
      s_seq = i;
      s_tile = bx - (carry + incl - n);
    }
    carry += total;
    __syncthreads();
    if (s_seq >= 0 || carry > bx) break;
  }
  *seq_out = s_seq;
  *tile_out = s_tile;
}

template <Kind K, int DP>
__global__ void __launch_bounds__(PrefillShape<DP>::kWarps * 32, 1)
    prefill_kernel(const Params p) {
  using S = PrefillShape<DP>;
  constexpr bool kQkBf = qk_bf16(K), kPvBf = pv_bf16(K);
  constexpr int kKt = S::kKt;
  KVQ_DYNAMIC_SMEM(smem);

  int seq, tile;
  find_tile(p, blockIdx.x, &seq, &tile);
  if (seq < 0) return;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wr = warp / S::kNvs, vsl = warp % S::kNvs;
  const int qs = p.qsl[seq], qlen = p.qsl[seq + 1] - qs;
  const int seq_len = p.seq_lens[seq], ctx = seq_len - qlen;
  const int nrows = qlen * p.group;
  const int row0 = tile * S::kRows;
  const int i0 = row0 / p.group, i1 = min(qlen - 1, (row0 + S::kRows - 1) / p.group);
  const KeyRange kr = split_range(p, ctx, i0, i1, split, p.splits_p, kKt);
  const int rb = static_cast<int>(p.rb);
  const int slot = prefill_slot_bytes(p.rb);
  const uint32_t sraw = smem_addr(smem);
  const uint32_t skt = sraw + 2 * 2 * kKt * slot, svt = skt + kKt * S::kPitch;
  float* s_kf = reinterpret_cast<float*>(smem + 2 * 2 * kKt * slot + 2 * kKt * S::kPitch);
  float* s_vsc = s_kf + kKt;
  float* s_zpk = s_vsc + kKt;
  float* s_zpv = s_zpk + kKt;
  int* s_off = reinterpret_cast<int*>(s_zpv + kKt);  // row address mod 16, -1 off range
  const float ks_tensor = kv_scale(p.k_scales, p.nkvs, kvh);
  const float vs_tensor = kv_scale(p.v_scales, p.nkvs, kvh);

  // ---- this warp's rows g, g+8 of its 16 ----
  int pos[2], hqr[2];
  int64_t tokr[2];
  float slope[2] = {0.0f, 0.0f}, rs[2];
  bool rvalid[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = row0 + 16 * wr + g + 8 * i;
    rvalid[i] = r < nrows;
    const int rr = rvalid[i] ? r : nrows - 1;
    tokr[i] = qs + rr / p.group;
    hqr[i] = kvh * p.group + rr % p.group;
    pos[i] = ctx + rr / p.group;
    if (p.alibi != nullptr) slope[i] = p.alibi[hqr[i]];
  }
  // Q fragments (natural layout), per-row power-of-two prescale for f16.
  uint32_t qa[S::kChunksK][4];
  {
    float qv[2][S::kChunksK][4];
    float mx[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int c = 0; c < S::kChunksK; ++c)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int dim = 16 * c + 2 * t + (e & 1) + 8 * (e >> 1);
          qv[i][c][e] = rvalid[i] && dim < p.d ? load_q(p, tokr[i], hqr[i], dim) : 0.0f;
          mx[i] = fmaxf(mx[i], fabsf(qv[i][c][e]));
        }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(kFullMask, mx[i], 1));
      mx[i] = fmaxf(mx[i], __shfl_xor_sync(kFullMask, mx[i], 2));
      int e2;
      frexpf(mx[i], &e2);
      const float f = kQkBf || !(mx[i] > 0.0f) || !codec::is_finite(mx[i])
                          ? 1.0f
                          : ldexpf(1.0f, min(120, max(-120, 15 - e2)));
      float qscale = 1.0f;
      if constexpr (fp8_query(K)) qscale = p.q_scales[p.nqs == 1 ? 0 : hqr[i]];
      rs[i] = p.softmax_scale * qscale / f;
#pragma unroll
      for (int c = 0; c < S::kChunksK; ++c) {
        qa[c][i] = pack2<kQkBf>(qv[i][c][0] * f, qv[i][c][1] * f);
        qa[c][2 + i] = pack2<kQkBf>(qv[i][c][2] * f, qv[i][c][3] * f);
      }
    }
  }
  const int min_pos = __reduce_min_sync(kFullMask, rvalid[0] ? pos[0] : INT32_MAX);
  const int max_pos = __reduce_max_sync(kFullMask, max(pos[0], pos[1]));

  float o[S::kDvw / 8][4];
#pragma unroll
  for (int n = 0; n < S::kDvw / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float s_run = per_key_scale(K) ? 0.0f : 1.0f;

  // Global address mod 16 of key j's row (smem keeps it).
  auto row_off = [&](int j) -> int {
    return static_cast<int>(
        ((static_cast<int64_t>(j % p.bs) * p.hkv + kvh) * p.rb +
         static_cast<int64_t>(reinterpret_cast<uintptr_t>(p.cache))) & 15);
  };
  auto issue = [&](int s) {
    const int j0 = (kr.tile_b + s) * kKt;
    const uint32_t buf = sraw + (s & 1) * 2 * kKt * slot;
    for (int sp = threadIdx.x; sp < 2 * kKt; sp += blockDim.x) {
      const int k = sp % kKt, plane = sp / kKt, j = j0 + k;
      if (j < kr.kb || j >= kr.ke) continue;
      const int blk = block_of(p, seq, j);
      if (blk < 0) continue;
      const unsigned char* src =
          p.cache + blk * p.bpb + plane * p.plane + (static_cast<int64_t>(j % p.bs) * p.hkv + kvh) * p.rb;
      const int off = static_cast<int>(reinterpret_cast<uintptr_t>(src) & 15);
      const int ngr = (off + rb + 15) >> 4;
      for (int gi = 0; gi < ngr; ++gi) cp_async16(buf + sp * slot + 16 * gi, src - off + 16 * gi);
    }
  };

  const int ntile = kr.tile_e - kr.tile_b;
  issue(0);
  cp_async_commit();
  if (1 < ntile) issue(1);
  cp_async_commit();

#pragma unroll 1
  for (int s = 0; s < ntile; ++s) {
    const int j0 = (kr.tile_b + s) * kKt;
    const uint32_t buf = sraw + (s & 1) * 2 * kKt * slot;
    cp_async_wait<1>();
    __syncthreads();
    // ---- per-key scalars (and each row's address mod 16) ----
    if (threadIdx.x < kKt) {
      const int k = threadIdx.x, j = j0 + k;
      const bool valid = j >= kr.kb && j < kr.ke;
      const int off = row_off(j);
      const uint32_t kr0 = buf + k * slot + off, vr0 = buf + (kKt + k) * slot + off;
      float kf = ks_tensor * k_unit(K), vsc = 1.0f, zk = 0.0f, zv = 0.0f;
      if constexpr (rounded_fp8(K) || wide_elems(K)) kf = 1.0f;
      if constexpr (K == Kind::kI4) {
        if (valid) {
          kf = lds_f32_a2(kr0 + p.d / 2);
          zk = lds_f32_a2(kr0 + p.d / 2 + 4);
          vsc = lds_f32_a2(vr0 + p.dv / 2);
          zv = lds_f32_a2(vr0 + p.dv / 2 + 4);
        }
      } else if constexpr (per_key_scale(K)) {
        if (valid) {
          kf = __uint_as_float(lds32(kr0 + p.d)) * k_unit(K);
          vsc = __uint_as_float(lds32(vr0 + p.dv));
        }
      }
      s_kf[k] = valid ? kf : 0.0f;
      s_vsc[k] = valid ? vsc : 0.0f;
      s_zpk[k] = zk;
      s_zpv[k] = zv;
      s_off[k] = valid ? off : -1;
    }
    __syncthreads();
    // ---- dequantize: one warp per raw row, lanes over 4-dim groups ----
    for (int rw = warp; rw < 2 * kKt; rw += S::kWarps) {
      const int plane = rw / kKt, k = rw % kKt, off = s_off[k];
      const int lim = plane ? p.dv : p.d;
      const uint32_t src = buf + rw * slot + off;
      const uint32_t dst = (plane ? svt : skt) + k * S::kPitch;
      uint32_t z2 = 0u;
      if constexpr (K == Kind::kI4) {
        const float z = plane ? s_zpv[k] : s_zpk[k];
        z2 = pack2<false>(1024.0f + z, 1024.0f + z);
      }
#pragma unroll
      for (int q4 = lane; q4 < DP / 4; q4 += 32) {
        uint32_t x = 0u, y = 0u;  // keys off the range and dims past D stay 0
        if (off >= 0 && 4 * q4 < lim) {
          if constexpr (wide_elems(K)) {
            const uint2 w = lds64(src + 8 * q4);
            x = w.x;
            y = w.y;
          } else if constexpr (K == Kind::kI4) {
            const uint32_t w = lds16(src + 2 * q4);
            x = nib_to_f16((w & 0xFu) | ((w << 12) & 0xF0000u), 0, z2);
            y = nib_to_f16(((w >> 8) & 0xFu) | ((w << 4) & 0xF0000u), 0, z2);
          } else {
            const uint32_t w = lds32(src + 4 * q4);
            const float sc = plane ? vs_tensor : ks_tensor;
            x = codes_to_reg<K>(w, sc);
            y = codes_to_reg<K>(w >> 16, sc);
          }
        }
        sts64(dst + 8 * q4, x, y);
      }
    }
    __syncthreads();
    if (s + 2 < ntile) issue(s + 2);
    cp_async_commit();

    // ---- S = Q K^T for this warp's 16 rows ----
    float sc[S::kNt][4];
#pragma unroll
    for (int j = 0; j < S::kNt; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
#pragma unroll
    for (int c = 0; c < S::kChunksK; ++c) {
      if (16 * c >= p.d) break;
#pragma unroll
      for (int j = 0; j < S::kNt; j += 2) {
        const int mi = lane >> 3, r = lane & 7;
        uint32_t b[4];
        ldmatrix_x4(b, skt + (8 * j + 8 * (mi >> 1) + r) * S::kPitch + 2 * (16 * c + 8 * (mi & 1)));
        mma16816<kQkBf>(sc[j], qa[c], b[0], b[1]);
        mma16816<kQkBf>(sc[j + 1], qa[c], b[2], b[3]);
      }
    }
    // ---- scale, softcap, ALiBi, mask ----
    const bool full = j0 >= kr.kb && j0 + kKt <= kr.ke && j0 + kKt - 1 <= min_pos &&
                      (p.window <= 0 || max_pos - j0 < p.window);
#pragma unroll
    for (int j = 0; j < S::kNt; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1, key = 8 * j + 2 * t + (e & 1), jj = j0 + key;
        float v = sc[j][e] * s_kf[key] * rs[i];
        if (p.softcap > 0.0f) v = p.softcap * tanhf(v / p.softcap);
        v += slope[i] * static_cast<float>(jj - ctx);
        if (!full) {
          const bool vis = jj >= kr.kb && jj < kr.ke && jj <= pos[i] &&
                           (p.window <= 0 || pos[i] - jj < p.window);
          if (!vis) v = -INFINITY;
        }
        sc[j][e] = v;
      }
    // ---- online softmax (rows g, g+8; a quad shares a row) ----
    float fo[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float tm = -INFINITY;
#pragma unroll
      for (int j = 0; j < S::kNt; ++j) tm = fmaxf(tm, fmaxf(sc[j][2 * i], sc[j][2 * i + 1]));
      tm = fmaxf(tm, __shfl_xor_sync(kFullMask, tm, 1));
      tm = fmaxf(tm, __shfl_xor_sync(kFullMask, tm, 2));
      const float mn = fmaxf(m[i], tm);
      const float mu = mn == -INFINITY ? 0.0f : mn;
      fo[i] = __expf(m[i] - mu);
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < S::kNt; ++j) {
        sc[j][2 * i] = __expf(sc[j][2 * i] - mu);
        sc[j][2 * i + 1] = __expf(sc[j][2 * i + 1] - mu);
        sum += sc[j][2 * i] + sc[j][2 * i + 1];
      }
      l[i] = l[i] * fo[i] + sum;
      m[i] = mn;
    }
    float vinv = 1.0f;
    if constexpr (per_key_scale(K)) {
      float vm = fmaxf(s_vsc[lane], kKt > 32 ? s_vsc[lane + 32] : 0.0f);
      for (int o2 = 16; o2 > 0; o2 >>= 1) vm = fmaxf(vm, __shfl_xor_sync(kFullMask, vm, o2));
      const float sn = fmaxf(s_run, vm);
      vinv = sn > 0.0f ? 1.0f / sn : 0.0f;
      fo[0] *= s_run * vinv;
      fo[1] *= s_run * vinv;
      s_run = sn;
    }
    if (__any_sync(kFullMask, fo[0] != 1.0f || fo[1] != 1.0f)) {
#pragma unroll
      for (int n = 0; n < S::kDvw / 8; ++n) {
        o[n][0] *= fo[0];
        o[n][1] *= fo[0];
        o[n][2] *= fo[1];
        o[n][3] *= fo[1];
      }
    }
    // ---- O += P' V, 16 keys at a time ----
#pragma unroll
    for (int kc = 0; kc < kKt / 16; ++kc) {
      float pv[2][4];  // [n-tile 2kc, 2kc+1][e]
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = 16 * kc + 8 * h + 2 * t + (e & 1);
          float v = sc[2 * kc + h][e];
          if constexpr (per_key_scale(K)) v *= s_vsc[key] * vinv;
          if constexpr (fp8_query(K)) v = codec::e4m3_to_float(codec::float_to_e4m3(v));
          pv[h][e] = v;
        }
      uint32_t pa[2][4];
      pa[0][0] = pack2<kPvBf>(pv[0][0], pv[0][1]);
      pa[0][1] = pack2<kPvBf>(pv[0][2], pv[0][3]);
      pa[0][2] = pack2<kPvBf>(pv[1][0], pv[1][1]);
      pa[0][3] = pack2<kPvBf>(pv[1][2], pv[1][3]);
      if constexpr (kPvBf) {
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          const float2 h = unpack2<true>(pa[0][x]);
          const float* src = &pv[x >> 1][(x & 1) * 2];
          pa[1][x] = pack2<true>(src[0] - h.x, src[1] - h.y);
        }
      }
#pragma unroll
      for (int n = 0; n < S::kDvw / 8; n += 2) {
        const int dv0 = vsl * S::kDvw + 8 * n;
        if (dv0 >= p.dv) break;
        const int mi = lane >> 3, r = lane & 7;
        uint32_t b[4];
        ldmatrix_x4_trans(b, svt + (16 * kc + 8 * (mi & 1) + r) * S::kPitch +
                                 2 * (dv0 + 8 * (mi >> 1)));
        mma16816<kPvBf>(o[n], pa[0], b[0], b[1]);
        mma16816<kPvBf>(o[n + 1], pa[0], b[2], b[3]);
        if constexpr (kPvBf) {
          mma16816<true>(o[n], pa[1], b[0], b[1]);
          mma16816<true>(o[n + 1], pa[1], b[2], b[3]);
        }
      }
    }
  }

  // ---- epilogue ----
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(kFullMask, l[i], 1);
    l[i] += __shfl_xor_sync(kFullMask, l[i], 2);
  }
  float vf = (per_key_scale(K) ? s_run : 1.0f) * k_unit(K);
  if constexpr (fp8_query(K)) vf *= vs_tensor;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!rvalid[i]) continue;
    if (p.splits_p == 1) {
      const float f = output_factor(p, hqr[i], m[i], l[i]) * vf;
#pragma unroll
      for (int n = 0; n < S::kDvw / 8; ++n) {
        const int dim = vsl * S::kDvw + 8 * n + 2 * t;
        if (dim >= p.dv) break;
        const float v[2] = {o[n][2 * i] * f, o[n][2 * i + 1] * f};
        store_out(p, tokr[i], hqr[i], dim, v, 2);
      }
    } else {
      float* row = p.ws + prefill_partial_row(p, split, tokr[i], hqr[i]) * partial_row_floats(p.dv);
      if (t == 0 && vsl == 0) {
        row[0] = m[i];
        row[1] = l[i];
      }
#pragma unroll
      for (int n = 0; n < S::kDvw / 8; ++n) {
        const int dim = vsl * S::kDvw + 8 * n + 2 * t;
        if (dim >= p.dv) break;
        *reinterpret_cast<float2*>(row + 4 + dim) = make_float2(o[n][2 * i] * vf, o[n][2 * i + 1] * vf);
      }
    }
  }
}

}  // namespace kvq::cuda::attn
