// The fp32 SIMT attention kernel and the split merge kernel (launched by
// attention_simt.cu; run on the CPU by the emulator tests).
//
// simt_kernel is the general path: every codec, fp32 queries and caches, head
// sizes that are not multiples of 4 or exceed 256 (up to 512), any dtype
// mix. It decodes each element exactly as the CPU plugin does (fp8 per-tensor
// K/V rounded to the model dtype for a 16-bit query) and computes in fp32.
// One CTA per (query token, query head), four warps over interleaved keys,
// lanes over head dims; no shared tiles and no split: correct, not fast.
//
// merge_kernel combines key-split partials (m, l, acc) of the tensor-core
// kernels in a fixed order (deterministic).
#pragma once

#include "attention_common.cuh"

namespace kvq::cuda::attn {


constexpr int kSimtWarps = 4;

__device__ __forceinline__ int find_seq(const Params& p, int64_t token) {
  int lo = 0, hi = p.num_seqs - 1;  // last seq with qsl[seq] <= token
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.qsl[mid] <= token)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Element i of a K (plane 0) or V (plane 1) row as the CPU plugin decodes it.
// fp8 per-tensor with an fp8 query: the raw code value (scales applied by
// the caller); with a 16-bit query: fp8 * scale rounded to the model dtype.
__device__ inline float kv_element(const Params& p, const unsigned char* row, int plane, int i,
                            float tensor_scale, bool fp8q) {
  const auto codec = static_cast<Codec>(p.codec);
  const int n = plane ? p.dv : p.d;
  switch (codec) {
    case Codec::kF32: return codec::load_f32_bytes(row + 4 * i);
    case Codec::kBF16: return codec::bf16_to_float(static_cast<uint16_t>(row[2 * i] | (row[2 * i + 1] << 8)));
    case Codec::kF16: return codec::f16_to_float(static_cast<uint16_t>(row[2 * i] | (row[2 * i + 1] << 8)));
    case Codec::kE4M3:
    case Codec::kE5M2: {
      const float v = codec == Codec::kE4M3 ? codec::e4m3_to_float(row[i]) : codec::e5m2_to_float(row[i]);
      if (fp8q) return v;
      const float x = v * tensor_scale;
      if (p.out_dtype == 3) return codec::bf16_to_float(codec::float_to_bf16(x));
      if (p.out_dtype == 2) return codec::f16_to_float(codec::float_to_f16(x));
      return x;
    }
    case Codec::kInt8Pth:
      return static_cast<float>(static_cast<int8_t>(row[i])) * codec::load_f32_bytes(row + n);
    case Codec::kFp8Pth: return codec::e4m3_to_float(row[i]) * codec::load_f32_bytes(row + n);
    case Codec::kInt4Pth: {
      const int nb = (n + 1) / 2;
      const unsigned q = (i & 1) ? (row[i / 2] >> 4) : (row[i / 2] & 0xFu);
      return (static_cast<float>(q) - codec::load_f32_bytes(row + nb + 4)) *
             codec::load_f32_bytes(row + nb);
    }
  }
  return 0.0f;
}

KVQ_KERNEL void __launch_bounds__(kSimtWarps * 32) simt_kernel(const Params p) {
  __shared__ float s_q[kSimtMaxD];
  __shared__ float s_m[kSimtWarps], s_l[kSimtWarps];
  __shared__ float s_acc[kSimtWarps][kSimtMaxD];
  const int64_t token = blockIdx.x;
  const int hq = blockIdx.y, kvh = hq / p.group;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int seq = find_seq(p, token);
  const int qs = p.qsl[seq], qlen = p.qsl[seq + 1] - qs;
  const int seq_len = p.seq_lens[seq], ctx = seq_len - qlen;
  const int pos = ctx + static_cast<int>(token - qs);
  const bool fp8q = p.q_dtype == 6;
  const float ks = kv_scale(p.k_scales, p.nkvs, kvh), vs = kv_scale(p.v_scales, p.nkvs, kvh);
  const float qscale = fp8q ? p.q_scales[p.nqs == 1 ? 0 : hq] : 1.0f;
  // The CPU folds softmax_scale * q_scale into q; fp8 rows: the K scale into the dot.
  const float kfac = fp8q ? ks : 1.0f;
  for (int i = threadIdx.x; i < p.d; i += blockDim.x)
    s_q[i] = load_q(p, token, hq, i) * (p.softmax_scale * qscale);
  __syncthreads();

  constexpr int kPer = kSimtMaxD / 32;
  float acc[kPer];
#pragma unroll
  for (int x = 0; x < kPer; ++x) acc[x] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const int lo = p.window > 0 ? max(0, pos - p.window + 1) : 0;
  for (int j = lo + warp; j <= pos; j += kSimtWarps) {
    const int blk = block_of(p, seq, j);
    if (blk < 0) continue;
    const unsigned char* krow =
        p.cache + blk * p.bpb + (static_cast<int64_t>(j % p.bs) * p.hkv + kvh) * p.rb;
    const unsigned char* vrow = krow + p.plane;
    float dot = 0.0f;
    for (int i = lane; i < p.d; i += 32) dot += s_q[i] * kv_element(p, krow, 0, i, ks, fp8q);
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(kFullMask, dot, o);
    float s = dot * kfac;
    if (p.softcap > 0.0f) s = p.softcap * tanhf(s / p.softcap);
    if (p.alibi != nullptr) s += p.alibi[hq] * static_cast<float>(j - ctx);
    const float mn = fmaxf(m, s);
    const float f = __expf(m - mn);
    float pj = __expf(s - mn);
    l = l * f + pj;
    m = mn;
    if (fp8q) pj = codec::e4m3_to_float(codec::float_to_e4m3(pj));
#pragma unroll
    for (int x = 0; x < kPer; ++x) {
      const int i = lane + 32 * x;
      if (i < p.dv) acc[x] = acc[x] * f + pj * kv_element(p, vrow, 1, i, vs, fp8q);
    }
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int x = 0; x < kPer; ++x)
    if (lane + 32 * x < p.dv) s_acc[warp][lane + 32 * x] = acc[x];
  __syncthreads();
  float mf = -INFINITY;
  for (int w = 0; w < kSimtWarps; ++w) mf = fmaxf(mf, s_m[w]);
  float lf = 0.0f, wgt[kSimtWarps];
  for (int w = 0; w < kSimtWarps; ++w) {
    wgt[w] = s_m[w] == -INFINITY ? 0.0f : __expf(s_m[w] - mf);
    lf += s_l[w] * wgt[w];
  }
  const float factor = output_factor(p, hq, mf, lf) * (fp8q ? vs : 1.0f);
  for (int i = threadIdx.x; i < p.dv; i += blockDim.x) {
    float v = 0.0f;
    for (int w = 0; w < kSimtWarps; ++w) v += s_acc[w][i] * wgt[w];
    v *= factor;
    store_out(p, token, hq, i, &v, 1);
  }
}

// Grid (token * Hq, ceil(Dv / 32)), 128 threads: 8 lanes of 4 dims (one
// float4 each) x 16 groups of splits, so each thread has few loads and many
// are in flight; partial sums are added in a fixed order (deterministic).
constexpr int kMergeThreads = 128, kMergeDims = 32, kMergeGroups = kMergeThreads / (kMergeDims / 4);

KVQ_KERNEL void __launch_bounds__(kMergeThreads) merge_kernel(const Params p) {
  __shared__ float s_w[kMergeMaxSplits];
  __shared__ float s_red[kMergeThreads];
  __shared__ float4 s_acc[kMergeGroups][kMergeDims / 4];
  const int tid = threadIdx.x;
  const int64_t token = blockIdx.x / p.hq;
  const int hq = static_cast<int>(blockIdx.x % p.hq), kvh = hq / p.group;
  const int seq = find_seq(p, token);
  const int qs = p.qsl[seq], qlen = p.qsl[seq + 1] - qs;
  const bool dec = is_decode(p, qlen);
  const int splits = dec ? p.splits_d : p.splits_p;
  if (splits == 1) return;  // written by the attention kernel itself
  const int r = static_cast<int>(token - qs) * p.group + hq % p.group;
  const int64_t rf = partial_row_floats(p.dv);
  auto row = [&](int s) -> const float* {
    const int64_t pr = dec ? decode_partial_row(p, seq, s, kvh, r) : prefill_partial_row(p, s, token, hq);
    return p.ws + pr * rf;
  };
  // max of the split maxima and the sink
  float mx = -INFINITY;
  for (int s = tid; s < splits; s += kMergeThreads) mx = fmaxf(mx, row(s)[0]);
  s_red[tid] = mx;
  __syncthreads();
  for (int w = kMergeThreads / 2; w > 0; w >>= 1) {
    if (tid < w) s_red[tid] = fmaxf(s_red[tid], s_red[tid + w]);
    __syncthreads();
  }
  const float sink = p.sinks != nullptr ? p.sinks[hq] : -INFINITY;
  const float mf = fmaxf(s_red[0], sink);
  __syncthreads();
  // weights and the denominator (fixed tree order)
  float part = 0.0f;
  for (int s = tid; s < splits; s += kMergeThreads) {
    const float* pr = row(s);
    const float w = pr[0] == -INFINITY ? 0.0f : __expf(pr[0] - mf);
    s_w[s] = w;
    part += w * pr[1];
  }
  s_red[tid] = part;
  __syncthreads();
  for (int w = kMergeThreads / 2; w > 0; w >>= 1) {
    if (tid < w) s_red[tid] += s_red[tid + w];
    __syncthreads();
  }
  float lf = s_red[0];
  if (p.sinks != nullptr) lf += __expf(sink - mf);
  const float inv = lf > 0.0f ? 1.0f / lf : 0.0f;
  // accumulators: lane dq owns dims 4dq..4dq+3 of this CTA's 32; group sg
  // the splits sg, sg + 16, ...
  const int dq = tid % (kMergeDims / 4), sg = tid / (kMergeDims / 4);
  const int dim = blockIdx.y * kMergeDims + 4 * dq;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (dim < p.dv) {
#pragma unroll 4
    for (int s = sg; s < splits; s += kMergeGroups) {
      const float w = s_w[s];
      if (w == 0.0f) continue;  // empty split: its accumulators are not read
      const float4 x = *reinterpret_cast<const float4*>(row(s) + 4 + dim);
      acc.x += w * x.x;
      acc.y += w * x.y;
      acc.z += w * x.z;
      acc.w += w * x.w;
    }
  }
  s_acc[sg][dq] = acc;
  __syncthreads();
  if (tid < kMergeDims / 4 && dim < p.dv) {
    float4 v = s_acc[0][tid];
    for (int g2 = 1; g2 < kMergeGroups; ++g2) {
      const float4 x = s_acc[g2][tid];
      v.x += x.x;
      v.y += x.y;
      v.z += x.z;
      v.w += x.w;
    }
    const float out[4] = {v.x * inv, v.y * inv, v.z * inv, v.w * inv};
    store_out(p, token, hq, dim, out, 4);
  }
}

// Expands the attention verdict's order key (lowest bad (seq, entry)) into
// its fields; one thread, after the attention kernels.
KVQ_KERNEL void verdict_kernel(const Params p) {
  AttentionVerdict* v = p.verdict;
  if (v->order_key == 0) return;
  const uint64_t key = ~v->order_key;
  v->code = 3;
  v->seq = static_cast<int64_t>(key >> 32);
  v->index = static_cast<int64_t>(key & 0xFFFFFFFFu);
  v->value = p.block_table[v->seq * p.bt_stride + v->index];
}

}  // namespace kvq::cuda::attn
