// launch_attention: argument checks, the plan (which kernels, how many key
// splits: a pure function of the shapes and num_sms, so results are
// deterministic) and the launches.
//
// Kernels of one call, in stream order:
//   decode_kernel   sequences with query_len * group <= 8 (exit otherwise)
//   prefill_kernel  the others (only when max_query_len * group > 8)
//   merge_kernel    when either used more than one key split
// or simt_kernel alone for what the tensor-core kernels do not take.
#include "attention_launch.hpp"

#include <algorithm>

namespace kvq::cuda {
namespace {

using attn::Kind;
using attn::Params;
using attn::TcLaunch;
using attn::TcOp;

constexpr int kDecodeStageBudget = 40 * 1024;  // bytes of one decode stage (K + V, 16 tokens)
constexpr int kDecodeMinKeysPerSplit = 128;
constexpr int kPrefillMinKeysPerSplit = 512;
constexpr int kMaxSplits = 256;

constexpr int kF16 = 2, kBF16 = 3, kE4M3 = 6;

struct Plan {
  AttentionPlan pub{};
  bool simt = false;
  Kind kind = Kind::kBF16;
  int dp = 0;
  int hc = 1, ngroups = 1;
  int dec_threads = 0, dec_smem = 0;
  int pre_threads = 0, pre_smem = 0;
  bool prefill = false;
  int64_t prefill_tiles = 0;  // grid.x upper bound of the prefill kernel
  int64_t ws_prefill_base = 0;
};

// The tensor-core kind for a codec and query / output dtypes; false: SIMT.
bool select_kind(const AttentionArgs& a, Kind* k) {
  const int q = a.q_dtype, o = a.out_dtype;
  switch (a.codec) {
    case Codec::kBF16:
      *k = Kind::kBF16;
      return q == kBF16;
    case Codec::kF16:
      *k = Kind::kF16;
      return q == kF16 || q == kBF16;
    case Codec::kInt8Pth:
      *k = Kind::kI8;
      return q == kF16 || q == kBF16;
    case Codec::kFp8Pth:
      *k = Kind::kP8;
      return q == kF16 || q == kBF16;
    case Codec::kInt4Pth:
      *k = Kind::kI4;
      return q == kF16 || q == kBF16;
    case Codec::kE4M3:
    case Codec::kE5M2: {
      const bool e4 = a.codec == Codec::kE4M3;
      if (q == kE4M3) {
        *k = e4 ? Kind::kE4M3Q : Kind::kE5M2Q;
        return true;
      }
      if (q == kBF16 && o == kBF16) {
        *k = e4 ? Kind::kE4M3RB : Kind::kE5M2RB;
        return true;
      }
      if (q == kF16 && o == kF16) {
        *k = e4 ? Kind::kE4M3RH : Kind::kE5M2RH;
        return true;
      }
      return false;
    }
    default: return false;
  }
}

template <int DP>
int run_dp(Kind k, const Params& p, const TcLaunch& l) {
  switch (k) {
    case Kind::kBF16: return attn::run_tc<Kind::kBF16, DP>(p, l);
    case Kind::kF16: return attn::run_tc<Kind::kF16, DP>(p, l);
    case Kind::kI8: return attn::run_tc<Kind::kI8, DP>(p, l);
    case Kind::kP8: return attn::run_tc<Kind::kP8, DP>(p, l);
    case Kind::kI4: return attn::run_tc<Kind::kI4, DP>(p, l);
    case Kind::kE4M3Q: return attn::run_tc<Kind::kE4M3Q, DP>(p, l);
    case Kind::kE5M2Q: return attn::run_tc<Kind::kE5M2Q, DP>(p, l);
    case Kind::kE4M3RB: return attn::run_tc<Kind::kE4M3RB, DP>(p, l);
    case Kind::kE4M3RH: return attn::run_tc<Kind::kE4M3RH, DP>(p, l);
    case Kind::kE5M2RB: return attn::run_tc<Kind::kE5M2RB, DP>(p, l);
    case Kind::kE5M2RH: return attn::run_tc<Kind::kE5M2RH, DP>(p, l);
    default: return cudaErrorInvalidValue;
  }
}
int run(const Plan& pl, const Params& p, const TcLaunch& l) {
  switch (pl.dp) {
    case 64: return run_dp<64>(pl.kind, p, l);
    case 128: return run_dp<128>(pl.kind, p, l);
    default: return run_dp<256>(pl.kind, p, l);
  }
}

int occupancy(const Plan& pl, TcOp op, int threads, int smem) {
  int occ = 0;
  Params dummy{};
  const TcLaunch l{op, dim3(1), threads, smem, nullptr, &occ};
  if (run(pl, dummy, l) != 0) return 1;
  return std::max(occ, 1);
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int check_args(const AttentionArgs& a) {
  const CacheLayout& l = a.layout;
  if (!detail::layout_ok(a.codec, l)) return cudaErrorInvalidValue;
  if (a.num_heads <= 0 || a.num_heads % l.num_kv_heads != 0) return cudaErrorInvalidValue;
  if (!detail::is_model_dtype(a.out_dtype)) return cudaErrorInvalidValue;
  const bool fp8_tensor = a.codec == Codec::kE4M3 || a.codec == Codec::kE5M2;
  if (!(detail::is_model_dtype(a.q_dtype) || (a.q_dtype == kE4M3 && fp8_tensor)))
    return cudaErrorInvalidValue;
  if (a.num_seqs < 0 || a.num_tokens < 0 || a.max_query_len < 0 || a.max_seq_len < 0 ||
      a.num_tokens > INT32_MAX || a.max_seq_len > INT32_MAX || a.num_seqs > INT32_MAX)
    return cudaErrorInvalidValue;
  if (a.num_tokens > 0 &&
      (a.query == nullptr || a.output == nullptr || a.cache == nullptr ||
       a.block_table == nullptr || a.query_start_loc == nullptr || a.seq_lens == nullptr))
    return cudaErrorInvalidValue;
  if (fp8_tensor && (a.k_scales == nullptr || a.v_scales == nullptr ||
                     (a.num_kv_scales != 1 && a.num_kv_scales != l.num_kv_heads)))
    return cudaErrorInvalidValue;
  if (a.q_dtype == kE4M3 &&
      (a.q_scales == nullptr || (a.num_q_scales != 1 && a.num_q_scales != a.num_heads)))
    return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(a.cache) % 16 != 0) return cudaErrorMisalignedAddress;
  if (!(a.softmax_scale > 0.0f) || a.softcap < 0.0f || a.sliding_window < 0)
    return cudaErrorInvalidValue;
  return 0;
}

Plan make_plan(const AttentionArgs& a, int num_sms) {
  Plan pl;
  AttentionPlan& pub = pl.pub;
  pub.decode_splits = pub.prefill_splits = 1;
  if ((pub.error = check_args(a)) != 0) return pl;
  const CacheLayout& l = a.layout;
  const int64_t d = l.head_size, dv = l.head_size_v, hkv = l.num_kv_heads;
  const int64_t group = a.num_heads / hkv;
  const bool tc_ok = select_kind(a, &pl.kind) && d % 4 == 0 && dv % 4 == 0 && d <= 256 &&
                     dv <= 256 && group <= 1024;
  if (!tc_ok) {
    pl.simt = true;
    pub.path = 1;
    if (d > attn::simt_max_head_size() || dv > attn::simt_max_head_size())
      pub.error = cudaErrorInvalidValue;
    return pl;
  }
  pub.path = 0;
  const int64_t m = std::max(d, dv);
  pl.dp = m <= 64 ? 64 : m <= 128 ? 128 : 256;
  pub.padded_head = pl.dp;
  num_sms = std::max(num_sms, 1);

  // Decode: the largest group of KV heads whose 16-token stage fits the budget.
  const int nvs = pl.dp == 256 ? 2 : 1;
  pl.hc = 1;
  for (int hc = static_cast<int>(std::min<int64_t>(hkv, 8 / nvs)); hc >= 1; --hc) {
    if (2 * attn::kStageKeys * attn::decode_slot_bytes(hc, l.row_bytes) <= kDecodeStageBudget) {
      pl.hc = hc;
      break;
    }
  }
  pl.ngroups = static_cast<int>(ceil_div(hkv, pl.hc));
  pl.dec_threads = 32 * pl.hc * nvs;
  pl.dec_smem = 3 * 2 * attn::kStageKeys * attn::decode_slot_bytes(pl.hc, l.row_bytes);
  pub.heads_per_cta = pl.hc;
  const int64_t key_span =
      a.sliding_window > 0 ? std::min<int64_t>(a.max_seq_len, a.sliding_window + a.max_query_len)
                           : a.max_seq_len;
  if (a.num_seqs > 0) {
    const int occ = occupancy(pl, TcOp::kDecodeOccupancy, pl.dec_threads, pl.dec_smem);
    const int64_t units = a.num_seqs * pl.ngroups;
    const int64_t cap = std::max<int64_t>(1, key_span / kDecodeMinKeysPerSplit);
    pub.decode_splits = static_cast<int32_t>(
        std::clamp<int64_t>(int64_t{num_sms} * occ / units, 1, std::min<int64_t>(cap, kMaxSplits)));
  }

  // Prefill: when some sequence may have query_len * group > 8.
  pl.prefill = a.max_query_len * group > attn::kDecodeRows;
  if (pl.prefill) {
    pl.pre_threads = 32 * 4 * nvs;
    pl.pre_smem = pl.dp == 64    ? attn::prefill_smem_bytes<64>(l.row_bytes)
                  : pl.dp == 128 ? attn::prefill_smem_bytes<128>(l.row_bytes)
                                 : attn::prefill_smem_bytes<256>(l.row_bytes);
    const int64_t qmin = attn::kDecodeRows / group + 1;  // shortest prefill query
    const int64_t pmax = std::min<int64_t>(a.num_seqs, a.num_tokens / qmin);
    pl.prefill_tiles = a.num_tokens * group / 64 + pmax + 1;
    const int occ = occupancy(pl, TcOp::kPrefillOccupancy, pl.pre_threads, pl.pre_smem);
    const int64_t est = std::max<int64_t>(1, ceil_div(a.num_tokens * group, 64)) * hkv;
    const int64_t cap = std::max<int64_t>(1, key_span / kPrefillMinKeysPerSplit);
    pub.prefill_splits = static_cast<int32_t>(
        std::clamp<int64_t>(int64_t{num_sms} * occ / est, 1, std::min<int64_t>(cap, kMaxSplits)));
  }

  const int64_t dec_rows =
      pub.decode_splits > 1 ? a.num_seqs * pub.decode_splits * hkv * attn::kDecodeRows : 0;
  const int64_t pre_rows =
      pl.prefill && pub.prefill_splits > 1 ? pub.prefill_splits * a.num_tokens * a.num_heads : 0;
  pl.ws_prefill_base = dec_rows;
  pub.workspace_bytes = (dec_rows + pre_rows) * (dv + 2) * static_cast<int64_t>(sizeof(float));
  return pl;
}

Params make_params(const AttentionArgs& a, const Plan& pl) {
  const CacheLayout& l = a.layout;
  Params p{};
  p.cache = a.cache;
  p.block_table = a.block_table;
  p.bt_stride = a.block_table_stride;
  p.num_blocks = l.num_blocks;
  p.qsl = a.query_start_loc;
  p.seq_lens = a.seq_lens;
  p.num_seqs = static_cast<int>(a.num_seqs);
  p.num_tokens = a.num_tokens;
  p.q = a.query;
  p.q_st = a.q_stride_token;
  p.q_sh = a.q_stride_head;
  p.q_dtype = a.q_dtype;
  p.out = a.output;
  p.o_st = a.o_stride_token;
  p.o_sh = a.o_stride_head;
  p.out_dtype = a.out_dtype;
  p.hq = static_cast<int>(a.num_heads);
  p.hkv = static_cast<int>(l.num_kv_heads);
  p.group = p.hq / p.hkv;
  p.d = static_cast<int>(l.head_size);
  p.dv = static_cast<int>(l.head_size_v);
  p.bs = static_cast<int>(l.block_size);
  p.rb = l.row_bytes;
  p.bpb = l.bytes_per_block;
  p.plane = l.block_size * l.num_kv_heads * l.row_bytes;
  p.softmax_scale = a.softmax_scale;
  p.window = static_cast<int>(std::min<int64_t>(a.sliding_window, INT32_MAX));
  p.softcap = a.softcap;
  p.alibi = a.alibi_slopes;
  p.sinks = a.sinks;
  const bool fp8_tensor = a.codec == Codec::kE4M3 || a.codec == Codec::kE5M2;
  p.q_scales = a.q_dtype == kE4M3 ? a.q_scales : nullptr;
  p.nqs = a.num_q_scales;
  p.k_scales = fp8_tensor ? a.k_scales : nullptr;
  p.v_scales = fp8_tensor ? a.v_scales : nullptr;
  p.nkvs = a.num_kv_scales;
  p.ws = a.workspace;
  p.ws_prefill_base = pl.ws_prefill_base;
  p.splits_d = pl.pub.decode_splits;
  p.splits_p = pl.pub.prefill_splits;
  p.hc = pl.hc;
  p.ngroups = pl.ngroups;
  p.codec = static_cast<int>(a.codec);
  p.verdict = a.verdict;
  return p;
}

}  // namespace

AttentionPlan attention_plan(const AttentionArgs& a, int num_sms) {
  return make_plan(a, num_sms).pub;
}

int64_t attention_workspace_bytes(const AttentionArgs& a, int num_sms) {
  return make_plan(a, num_sms).pub.workspace_bytes;
}

int launch_attention(const AttentionArgs& a, int num_sms, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const Plan pl = make_plan(a, num_sms);
  if (pl.pub.error != 0) return pl.pub.error;
  if (pl.pub.workspace_bytes > 0 && (a.workspace == nullptr || a.workspace_bytes < pl.pub.workspace_bytes))
    return cudaErrorInvalidValue;
  if (a.verdict != nullptr)
    if (const cudaError_t e = cudaMemsetAsync(a.verdict, 0, sizeof(AttentionVerdict), stream); e)
      return e;
  if (a.num_tokens == 0 || a.num_seqs == 0) return 0;
  const Params p = make_params(a, pl);
  if (pl.simt) return attn::launch_simt(p, stream);

  const int64_t dec_grid = a.num_seqs * pl.pub.decode_splits * pl.ngroups;
  if (dec_grid > INT32_MAX || pl.prefill_tiles > INT32_MAX) return cudaErrorInvalidValue;
  const TcLaunch dec{TcOp::kDecode, dim3(static_cast<unsigned>(dec_grid)), pl.dec_threads,
                     pl.dec_smem, stream, nullptr};
  if (const int e = run(pl, p, dec)) return e;
  if (pl.prefill) {
    const TcLaunch pre{TcOp::kPrefill,
                       dim3(static_cast<unsigned>(pl.prefill_tiles), p.hkv, pl.pub.prefill_splits),
                       pl.pre_threads, pl.pre_smem, stream, nullptr};
    if (const int e = run(pl, p, pre)) return e;
  }
  if (pl.pub.decode_splits > 1 || pl.pub.prefill_splits > 1) return attn::launch_merge(p, stream);
  return 0;
}

}  // namespace kvq::cuda
