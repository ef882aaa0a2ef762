// The attention plan (see attention_plan.hpp).
#include "attention_plan.hpp"

#include "layout.hpp"

#include <algorithm>
#include <cstdint>

namespace kvq::cuda::attn {
namespace {

constexpr int kDecodeStageBudget = 40 * 1024;  // bytes of one decode stage (K + V, 16 tokens)
constexpr int kDecodeMinKeysPerSplit = 128;
constexpr int kPrefillMinKeysPerSplit = 512;
constexpr int kMaxSplits = 256;

constexpr int kF16 = 2, kBF16 = 3, kE4M3 = 6;
// cudaError_t values (this file includes no CUDA header).
constexpr int kErrInvalidValue = 1, kErrMisalignedAddress = 716;

// The tensor-core kind for a codec and query / output dtypes; false: SIMT.
bool select_kind(const AttentionArgs& a, Kind* k) {
  const int q = a.q_dtype, o = a.out_dtype;
  switch (a.codec) {
    case Codec::kBF16: *k = Kind::kBF16; return q == kBF16;
    case Codec::kF16: *k = Kind::kF16; return q == kF16 || q == kBF16;
    case Codec::kInt8Pth: *k = Kind::kI8; return q == kF16 || q == kBF16;
    case Codec::kFp8Pth: *k = Kind::kP8; return q == kF16 || q == kBF16;
    case Codec::kInt4Pth: *k = Kind::kI4; return q == kF16 || q == kBF16;
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

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int check_args(const AttentionArgs& a) {
  const CacheLayout& l = a.layout;
  if (!detail::layout_ok(a.codec, l)) return kErrInvalidValue;
  if (a.num_heads <= 0 || a.num_heads % l.num_kv_heads != 0) return kErrInvalidValue;
  if (!detail::is_model_dtype(a.out_dtype)) return kErrInvalidValue;
  const bool fp8_tensor = a.codec == Codec::kE4M3 || a.codec == Codec::kE5M2;
  if (!(detail::is_model_dtype(a.q_dtype) || (a.q_dtype == kE4M3 && fp8_tensor)))
    return kErrInvalidValue;
  if (a.num_seqs < 0 || a.num_tokens < 0 || a.max_query_len < 0 || a.max_seq_len < 0 ||
      a.num_tokens > INT32_MAX || a.max_seq_len > INT32_MAX || a.num_seqs > INT32_MAX)
    return kErrInvalidValue;
  if (a.num_tokens > 0 &&
      (a.query == nullptr || a.output == nullptr || a.cache == nullptr ||
       a.block_table == nullptr || a.query_start_loc == nullptr || a.seq_lens == nullptr))
    return kErrInvalidValue;
  if (fp8_tensor && (a.k_scales == nullptr || a.v_scales == nullptr ||
                     (a.num_kv_scales != 1 && a.num_kv_scales != l.num_kv_heads)))
    return kErrInvalidValue;
  if (a.q_dtype == kE4M3 &&
      (a.q_scales == nullptr || (a.num_q_scales != 1 && a.num_q_scales != a.num_heads)))
    return kErrInvalidValue;
  if (a.plan_kv_heads < 0 || (a.plan_kv_heads > 0 && a.plan_kv_heads % l.num_kv_heads != 0))
    return kErrInvalidValue;
  if (reinterpret_cast<uintptr_t>(a.cache) % 16 != 0) return kErrMisalignedAddress;
  if (!(a.softmax_scale > 0.0f) || a.softcap < 0.0f || a.sliding_window < 0)
    return kErrInvalidValue;
  return 0;
}

}  // namespace

Plan make_plan(const AttentionArgs& a, int num_sms, const OccupancyFn& occupancy) {
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
    if (d > kSimtMaxD || dv > kSimtMaxD) pub.error = kErrInvalidValue;
    return pl;
  }
  pub.path = 0;
  const int64_t m = std::max(d, dv);
  pl.dp = m <= 64 ? 64 : m <= 128 ? 128 : 256;
  pub.padded_head = pl.dp;
  num_sms = std::max(num_sms, 1);

  // Decode: the largest divisor of the KV heads (even CTAs) whose 16-token
  // stage fits the budget.
  const int nvs = pl.dp == 256 ? 2 : 1;
  const auto decode_shape = [&](int64_t kv_heads, Plan* into) {
    into->hc = 1;
    for (int hc = static_cast<int>(std::min<int64_t>(kv_heads, 8 / nvs)); hc >= 1; --hc) {
      if (kv_heads % hc == 0 &&
          2 * kStageKeys * decode_slot_bytes(hc, l.row_bytes) <= kDecodeStageBudget) {
        into->hc = hc;
        break;
      }
    }
    into->ngroups = static_cast<int>(ceil_div(kv_heads, into->hc));
    into->dec_threads = 32 * into->hc * nvs;
    into->dec_smem = 3 * 2 * kStageKeys * decode_slot_bytes(into->hc, l.row_bytes);
  };
  decode_shape(hkv, &pl);
  pub.heads_per_cta = pl.hc;
  // The split counts are sized for the model's KV heads (plan_kv_heads), not
  // this rank's share: splitting changes the summation order, so a rank must
  // split as one device holding every head would (same bytes per head).
  const int64_t hkv_plan = a.plan_kv_heads > 0 ? a.plan_kv_heads : hkv;
  Plan sizing = pl;
  decode_shape(hkv_plan, &sizing);
  const int64_t key_span =
      a.sliding_window > 0 ? std::min<int64_t>(a.max_seq_len, a.sliding_window + a.max_query_len)
                           : a.max_seq_len;
  if (a.num_seqs > 0) {
    const int occ = std::max(1, occupancy(sizing, false));
    const int64_t units = a.num_seqs * sizing.ngroups;
    const int64_t cap = std::max<int64_t>(1, key_span / kDecodeMinKeysPerSplit);
    pub.decode_splits = static_cast<int32_t>(
        std::clamp<int64_t>(int64_t{num_sms} * occ / units, 1, std::min<int64_t>(cap, kMaxSplits)));
  }

  // Prefill: when some sequence may have query_len * group > 8.
  pl.prefill = a.max_query_len * group > kDecodeRows;
  if (pl.prefill) {
    pl.pre_threads = 32 * 4 * nvs;
    pl.pre_smem = pl.dp == 64    ? prefill_smem_bytes<64>(l.row_bytes)
                  : pl.dp == 128 ? prefill_smem_bytes<128>(l.row_bytes)
                                 : prefill_smem_bytes<256>(l.row_bytes);
    const int64_t qmin = kDecodeRows / group + 1;  // shortest prefill query
    const int64_t pmax = std::min<int64_t>(a.num_seqs, a.num_tokens / qmin);
    pl.prefill_tiles = a.num_tokens * group / 64 + pmax + 1;
    const int occ = std::max(1, occupancy(pl, true));
    const int64_t est = std::max<int64_t>(1, ceil_div(a.num_tokens * group, 64)) * hkv_plan;
    const int64_t cap = std::max<int64_t>(1, key_span / kPrefillMinKeysPerSplit);
    pub.prefill_splits = static_cast<int32_t>(
        std::clamp<int64_t>(int64_t{num_sms} * occ / est, 1, std::min<int64_t>(cap, kMaxSplits)));
  }

  const int64_t dec_rows =
      pub.decode_splits > 1 ? a.num_seqs * pub.decode_splits * hkv * kDecodeRows : 0;
  const int64_t pre_rows =
      pl.prefill && pub.prefill_splits > 1 ? pub.prefill_splits * a.num_tokens * a.num_heads : 0;
  pl.ws_prefill_base = dec_rows;
  pub.workspace_bytes =
      (dec_rows + pre_rows) * partial_row_floats(dv) * static_cast<int64_t>(sizeof(float));
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

}  // namespace kvq::cuda::attn
