// plugin_cuda's kernels, their own source, run on the CPU under the SIMT
// emulator (tests/emu): cache init / write compared byte for byte with the
// host codecs, attention (decode, prefill, SIMT fallback, split merge)
// against the float64 reference of kvq_cuda_kernel_check, over every codec,
// head layout and feature. What this cannot show: timing, occupancy, races
// the emulator's interleaving misses, and the PTX-level code (inline asm is
// replaced by the emulator's model of each instruction).
#include "attention_decode.cuh"
#include "attention_plan.hpp"
#include "attention_prefill.cuh"
#include "attention_simt.cuh"
#include "cache_write.cuh"
#include "check_host.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace kvq::cuda {
namespace {

using attn::Kind;
using attn::Params;
using attn::Plan;
using check::CaseSpec;
using check::HostCase;
using check::SeqSpec;
using kvq_emu::Dim3;

// ---- emulated launchers ---------------------------------------------------------------

void emu_cache_init(Codec codec, const CacheLayout& l, std::vector<unsigned char>* cache) {
  cache->assign(static_cast<size_t>(l.num_blocks * l.bytes_per_block), 0);
  if (!detail::per_token_head(codec)) return;
  const int64_t k_off = codec == Codec::kInt4Pth ? (l.head_size + 1) / 2 : l.head_size;
  const int64_t v_off = codec == Codec::kInt4Pth ? (l.head_size_v + 1) / 2 : l.head_size_v;
  unsigned char* c = cache->data();
  kvq_emu::launch(Dim3{4, 1, 1}, Dim3{64, 1, 1}, 0,
                  [&] { write_kernels::init_scales_kernel(l, c, k_off, v_off); });
}

WriteVerdict emu_cache_write(const WriteArgs& a) {
  std::memset(a.verdict, 0, sizeof(WriteVerdict));
  const int64_t rows = a.num_tokens * a.layout.num_kv_heads;
  const auto grid = static_cast<unsigned>((rows + 7) / 8);
  const int64_t capacity = a.layout.num_blocks * a.layout.block_size;
  kvq_emu::launch(Dim3{grid, 1, 1}, Dim3{256, 1, 1}, 0,
                  [&] { write_kernels::validate_kernel(a, capacity, detail::quantized(a.codec)); });
  kvq_emu::launch(Dim3{grid, 1, 1}, Dim3{256, 1, 1}, 0,
                  [&] { write_kernels::write_kernel(a, capacity); });
  return *a.verdict;
}

template <Kind K, int DP>
void run_tc(const Plan& pl, const Params& p, const AttentionArgs& a) {
  const auto dec = static_cast<unsigned>(a.num_seqs * pl.pub.decode_splits * pl.ngroups);
  kvq_emu::launch(Dim3{dec, 1, 1}, Dim3{static_cast<unsigned>(pl.dec_threads), 1, 1},
                  static_cast<size_t>(pl.dec_smem), [&] { attn::decode_kernel<K, DP>(p); });
  if (pl.prefill)
    kvq_emu::launch(Dim3{static_cast<unsigned>(pl.prefill_tiles), static_cast<unsigned>(p.hkv),
                         static_cast<unsigned>(pl.pub.prefill_splits)},
                    Dim3{static_cast<unsigned>(pl.pre_threads), 1, 1},
                    static_cast<size_t>(pl.pre_smem), [&] { attn::prefill_kernel<K, DP>(p); });
}

template <int DP>
void run_dp(const Plan& pl, const Params& p, const AttentionArgs& a) {
  switch (pl.kind) {
    case Kind::kBF16: return run_tc<Kind::kBF16, DP>(pl, p, a);
    case Kind::kF16: return run_tc<Kind::kF16, DP>(pl, p, a);
    case Kind::kI8: return run_tc<Kind::kI8, DP>(pl, p, a);
    case Kind::kP8: return run_tc<Kind::kP8, DP>(pl, p, a);
    case Kind::kI4: return run_tc<Kind::kI4, DP>(pl, p, a);
    case Kind::kE4M3Q: return run_tc<Kind::kE4M3Q, DP>(pl, p, a);
    case Kind::kE5M2Q: return run_tc<Kind::kE5M2Q, DP>(pl, p, a);
    case Kind::kE4M3RB: return run_tc<Kind::kE4M3RB, DP>(pl, p, a);
    case Kind::kE4M3RH: return run_tc<Kind::kE4M3RH, DP>(pl, p, a);
    case Kind::kE5M2RB: return run_tc<Kind::kE5M2RB, DP>(pl, p, a);
    case Kind::kE5M2RH: return run_tc<Kind::kE5M2RH, DP>(pl, p, a);
    default: FAIL() << "kind";
  }
}

// launch_attention, emulated: the same planner (with a given SM count and
// occupancy) and the same kernels.
AttentionPlan emu_attention(const AttentionArgs& a, int num_sms, int occupancy) {
  const Plan pl = attn::make_plan(a, num_sms, [&](const Plan&, bool) { return occupancy; });
  if (pl.pub.error != 0) return pl.pub;
  if (a.verdict != nullptr) std::memset(a.verdict, 0, sizeof(AttentionVerdict));
  const Params p = attn::make_params(a, pl);
  if (pl.simt) {
    kvq_emu::launch(Dim3{static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(p.hq), 1},
                    Dim3{128, 1, 1}, 0, [&] { attn::simt_kernel(p); });
  } else {
    if (pl.dp == 64) run_dp<64>(pl, p, a);
    if (pl.dp == 128) run_dp<128>(pl, p, a);
    if (pl.dp == 256) run_dp<256>(pl, p, a);
    if (pl.pub.decode_splits > 1 || pl.pub.prefill_splits > 1)
      kvq_emu::launch(
          Dim3{static_cast<unsigned>(a.num_tokens * p.hq),
               static_cast<unsigned>((p.dv + attn::kMergeDims - 1) / attn::kMergeDims), 1},
          Dim3{attn::kMergeThreads, 1, 1}, 0, [&] { attn::merge_kernel(p); });
  }
  if (a.verdict != nullptr) kvq_emu::launch(Dim3{}, Dim3{}, 0, [&] { attn::verdict_kernel(p); });
  return pl.pub;
}

// ---- one case ---------------------------------------------------------------------------

void run_case(const CaseSpec& spec, int num_sms, int occupancy, bool eager) {
  SCOPED_TRACE(spec.name + " sms=" + std::to_string(num_sms) + (eager ? " eager" : " deferred"));
  kvq_emu::options().eager_copies = eager;
  const HostCase hc = check::build_case(spec);
  const CacheLayout& l = hc.layout;
  std::vector<unsigned char> cache;
  emu_cache_init(spec.codec, l, &cache);
  kvq_emu::clear_globals();
  kvq_emu::register_global(cache.data(), cache.size());

  WriteVerdict wv{};
  WriteArgs w{};
  w.codec = spec.codec;
  w.layout = l;
  w.in_dtype = spec.model_dtype;
  w.key = hc.key_bytes.data();
  w.value = hc.value_bytes.data();
  w.key_stride_token = w.value_stride_token = hc.kv_stride_token;
  w.key_stride_head = w.value_stride_head = hc.kv_stride_head;
  w.slot_mapping = hc.slots.data();
  w.num_tokens = hc.write_tokens;
  w.cache = cache.data();
  w.k_scales = hc.k_scales.data();
  w.v_scales = hc.v_scales.data();
  w.num_scales = static_cast<int32_t>(hc.k_scales.size());
  w.verdict = &wv;
  ASSERT_EQ(emu_cache_write(w).code, 0);
  ASSERT_EQ(cache, hc.expected_cache) << "cache bytes differ from the host codecs";

  const int64_t oes = check::element_size(spec.model_dtype);
  std::vector<unsigned char> out(
      static_cast<size_t>(std::max<int64_t>(1, hc.num_tokens) * spec.hq * spec.dv * oes), 0xFF);
  AttentionVerdict av{};
  AttentionArgs a{};
  a.codec = spec.codec;
  a.layout = l;
  a.q_dtype = spec.q_dtype;
  a.out_dtype = spec.model_dtype;
  a.num_heads = spec.hq;
  a.query = hc.q_bytes.data();
  a.q_stride_token = hc.q_stride_token;
  a.q_stride_head = hc.q_stride_head;
  a.output = out.data();
  a.o_stride_token = int64_t{spec.hq} * spec.dv;
  a.o_stride_head = spec.dv;
  a.cache = cache.data();
  a.block_table = hc.block_table.data();
  a.block_table_stride = hc.bt_stride;
  a.query_start_loc = hc.qsl.data();
  a.seq_lens = hc.seq_lens.data();
  a.num_seqs = static_cast<int64_t>(spec.seqs.size());
  a.num_tokens = hc.num_tokens;
  for (const SeqSpec& s : spec.seqs) {
    a.max_query_len = std::max<int64_t>(a.max_query_len, s.qlen);
    a.max_seq_len = std::max<int64_t>(a.max_seq_len, s.seq_len);
  }
  a.softmax_scale = hc.softmax_scale;
  a.sliding_window = spec.window;
  a.softcap = spec.softcap;
  a.alibi_slopes = spec.alibi ? hc.alibi.data() : nullptr;
  a.sinks = spec.sinks ? hc.sinks.data() : nullptr;
  a.q_scales = hc.q_scales.data();
  a.num_q_scales = static_cast<int32_t>(hc.q_scales.size());
  a.k_scales = hc.k_scales.data();
  a.v_scales = hc.v_scales.data();
  a.num_kv_scales = static_cast<int32_t>(hc.k_scales.size());
  a.verdict = &av;
  // Plan first (for the workspace), then run.
  const Plan pl0 = attn::make_plan(a, num_sms, [&](const Plan&, bool) { return occupancy; });
  ASSERT_EQ(pl0.pub.error, 0);
  std::vector<float> ws(static_cast<size_t>(pl0.pub.workspace_bytes / 4 + 1), NAN);
  a.workspace = ws.data();
  a.workspace_bytes = pl0.pub.workspace_bytes;
  // Reading the cache outside a registered range fails the emulator.
  const AttentionPlan plan = emu_attention(a, num_sms, occupancy);
  ASSERT_EQ(plan.error, 0);
  EXPECT_EQ(av.code, 0);

  const std::vector<int64_t> rows = check::rows_to_check(hc);
  std::vector<double> ref;
  double vmax = 0.0;
  check::reference(hc, cache, rows, &ref, &vmax);
  const double tol = plan.path == 1 ? 2e-5 : spec.q_dtype == 6 ? 0.1 : 2e-3;
  double max_ratio = 0.0;
  int64_t worst = -1;
  for (size_t ri = 0; ri < rows.size(); ++ri)
    for (int i = 0; i < spec.dv; ++i) {
      const double r = ref[ri * spec.dv + i];
      const double gv = check::output_value(
          spec.model_dtype, &out[static_cast<size_t>((rows[ri] * spec.dv + i) * oes)]);
      const double err = std::isfinite(gv) ? std::fabs(gv - r) : INFINITY;
      const double ratio = err / (tol * vmax + check::ulp_of(spec.model_dtype, r));
      if (!(ratio <= max_ratio)) {
        max_ratio = ratio;
        worst = static_cast<int64_t>(ri * spec.dv + i);
      }
    }
  EXPECT_LE(max_ratio, 1.0) << "path " << plan.path << " dp " << plan.padded_head << " splits "
                            << plan.decode_splits << "/" << plan.prefill_splits << "; worst row "
                            << (worst >= 0 ? rows[worst / spec.dv] : -1) << " dim "
                            << (worst >= 0 ? worst % spec.dv : -1) << " ref "
                            << (worst >= 0 ? ref[static_cast<size_t>(worst)] : 0.0);
  std::printf("[ emu  ] %-40s path=%s dp=%3d splits=%d/%d ratio=%.3f\n", spec.name.c_str(),
              plan.path == 0 ? "tc  " : "simt", plan.padded_head, plan.decode_splits,
              plan.prefill_splits, max_ratio);
}

CaseSpec make(std::string name, Codec c, int hq, int hkv, int d, std::vector<SeqSpec> seqs) {
  CaseSpec s;
  s.name = std::move(name);
  s.codec = c;
  s.hq = hq;
  s.hkv = hkv;
  s.d = s.dv = d;
  s.seqs = std::move(seqs);
  s.seed = static_cast<uint32_t>(std::hash<std::string>{}(s.name) & 0xFFFF);
  return s;
}

// Decodes (one and two tokens), a short chunk and a prefill, 8 query rows or more.
const std::vector<SeqSpec> kMixed = {{1, 150}, {2, 37}, {19, 90}, {1, 17}};

void both_plans(const CaseSpec& s) {
  run_case(s, 132, 2, true);  // many SMs: key splits and the merge
  run_case(s, 1, 1, false);   // one SM: no split, outputs written directly
}

class EmuCodec : public ::testing::TestWithParam<Codec> {};

TEST_P(EmuCodec, MixedBatch8x2d128) {
  both_plans(make(std::string(check::codec_name(GetParam())) + " mixed 8/2 d128", GetParam(), 8, 2,
                  128, kMixed));
}
INSTANTIATE_TEST_SUITE_P(AllCodecs, EmuCodec,
                         ::testing::Values(Codec::kBF16, Codec::kF16, Codec::kF32, Codec::kInt8Pth,
                                           Codec::kFp8Pth, Codec::kInt4Pth, Codec::kE4M3,
                                           Codec::kE5M2));

// Tensor parallelism (issue 16): a rank holding half the heads must split
// the keys as one device holding all of them, or its heads' outputs differ in
// the last bits (the split changes the summation order). The planner sizes
// the splits for plan_kv_heads, the model's KV heads.
AttentionPlan plan_of(const HostCase& hc, int64_t plan_kv_heads) {
  AttentionArgs a{};
  a.codec = hc.spec.codec;
  a.layout = hc.layout;
  a.q_dtype = a.out_dtype = hc.spec.model_dtype;
  a.num_heads = hc.spec.hq;
  a.query = a.output = reinterpret_cast<void*>(uintptr_t{256});  // planned, never read
  a.cache = reinterpret_cast<const unsigned char*>(uintptr_t{256});
  a.block_table = hc.block_table.data();
  a.query_start_loc = hc.qsl.data();
  a.seq_lens = hc.seq_lens.data();
  a.num_seqs = static_cast<int64_t>(hc.spec.seqs.size());
  a.num_tokens = hc.num_tokens;
  for (const SeqSpec& s : hc.spec.seqs) {
    a.max_query_len = std::max<int64_t>(a.max_query_len, s.qlen);
    a.max_seq_len = std::max<int64_t>(a.max_seq_len, s.seq_len);
  }
  a.softmax_scale = 0.125f;
  a.plan_kv_heads = plan_kv_heads;
  // Occupancy that depends on the CTA shape, as the real one does.
  return attn::make_plan(
             a, 132,
             [](const Plan& pl, bool prefill) { return prefill ? 1 : std::max(1, 8 / pl.hc); })
      .pub;
}

TEST(Emu, TensorParallelRanksSplitKeysAsOneDevice) {
  const std::vector<std::vector<SeqSpec>> batches = {
      kMixed, {{1, 4096}}, {{1, 900}, {1, 700}, {1, 1200}}, {{512, 4096}}, {{64, 2048}, {1, 300}}};
  bool differs_without = false;
  for (const auto& seqs : batches) {
    for (Codec c : {Codec::kInt8Pth, Codec::kBF16}) {
      const HostCase whole = check::build_case(make("tp whole", c, 16, 4, 128, seqs));
      const HostCase half = check::build_case(make("tp half", c, 8, 2, 128, seqs));
      const AttentionPlan one = plan_of(whole, 0), rank = plan_of(half, 4);
      ASSERT_EQ(one.error, 0);
      ASSERT_EQ(rank.error, 0);
      EXPECT_EQ(rank.decode_splits, one.decode_splits) << seqs.size() << " sequences";
      EXPECT_EQ(rank.prefill_splits, one.prefill_splits) << seqs.size() << " sequences";
      const AttentionPlan alone = plan_of(half, 0);
      differs_without |=
          alone.decode_splits != one.decode_splits || alone.prefill_splits != one.prefill_splits;
    }
  }
  EXPECT_TRUE(differs_without) << "the batches no longer show why plan_kv_heads exists";
  const HostCase half = check::build_case(make("tp odd", Codec::kBF16, 8, 2, 128, kMixed));
  EXPECT_NE(plan_of(half, 3).error, 0) << "plan_kv_heads must be a multiple of the KV heads";
}

TEST(Emu, Fp8Query) {
  for (Codec c : {Codec::kE4M3, Codec::kE5M2}) {
    CaseSpec s = make(std::string(check::codec_name(c)) + " fp8-query mixed", c, 8, 2, 128, kMixed);
    s.q_dtype = 6;
    both_plans(s);
    s = make(std::string(check::codec_name(c)) + " fp8-query per-head 4/4 d64", c, 4, 4, 64,
             kMixed);
    s.q_dtype = 6;
    s.per_head_scales = true;
    run_case(s, 132, 2, true);
  }
}

TEST(Emu, HeadLayoutsAndSizes) {
  for (Codec c : {Codec::kInt8Pth, Codec::kBF16, Codec::kFp8Pth, Codec::kInt4Pth}) {
    const std::string n = check::codec_name(c);
    run_case(make(n + " 4/4 d64", c, 4, 4, 64, kMixed), 132, 2, true);
    run_case(make(n + " 5/1 d256", c, 5, 1, 256, kMixed), 1, 1, false);
    run_case(make(n + " 16/8 d128 (hc 8)", c, 16, 8, 128, {{1, 70}, {4, 50}}), 132, 2, false);
  }
  run_case(make("int8_pth 24/12 d128 (2 head groups)", Codec::kInt8Pth, 24, 12, 128,
                {{1, 300}, {2, 33}}),
           132, 2, false);
  run_case(make("bf16 16/8 d128 (hc 4)", Codec::kBF16, 16, 8, 128, {{1, 300}, {1, 40}}), 132, 2,
           true);
  run_case(make("int8_pth 16/1 (16 rows: prefill path)", Codec::kInt8Pth, 16, 1, 128, {{1, 99}}),
           132, 2, true);
  run_case(make("bf16 10/2 d256 decodes", Codec::kBF16, 10, 2, 256, {{1, 300}, {1, 33}}), 132, 2,
           true);
}

TEST(Emu, Features) {
  for (Codec c : {Codec::kInt8Pth, Codec::kBF16, Codec::kInt4Pth, Codec::kE4M3, Codec::kFp8Pth}) {
    const std::string n = check::codec_name(c);
    CaseSpec s = make(n + " window16 softcap20", c, 8, 2, 128, kMixed);
    s.window = 16;
    s.softcap = 20.0f;
    both_plans(s);
    s = make(n + " alibi sinks window40", c, 8, 2, 128, kMixed);
    s.alibi = s.sinks = true;
    s.window = 40;
    both_plans(s);
  }
  CaseSpec s = make("e4m3 fp8-query alibi sinks softcap", Codec::kE4M3, 8, 2, 128, kMixed);
  s.q_dtype = 6;
  s.alibi = s.sinks = true;
  s.softcap = 30.0f;
  both_plans(s);
}

TEST(Emu, OddShapesAndDtypes) {
  both_plans(make("int4_pth d36 (scale at byte 18)", Codec::kInt4Pth, 8, 2, 36, kMixed));
  both_plans(make("int8_pth d80 (partial chunk)", Codec::kInt8Pth, 8, 2, 80, kMixed));
  run_case(make("bf16 d33 (simt)", Codec::kBF16, 8, 2, 33, kMixed), 132, 2, true);
  CaseSpec s = make("int8_pth d128 dv64", Codec::kInt8Pth, 8, 2, 128, kMixed);
  s.dv = 64;
  both_plans(s);
  s = make("bf16 d64 dv128", Codec::kBF16, 8, 2, 64, kMixed);
  s.dv = 128;
  both_plans(s);
  s = make("int8_pth f32 model (simt)", Codec::kInt8Pth, 8, 2, 128, kMixed);
  s.model_dtype = s.q_dtype = 1;
  run_case(s, 132, 2, true);
  for (Codec c : {Codec::kF16, Codec::kE4M3, Codec::kE5M2, Codec::kInt8Pth}) {
    s = make(std::string(check::codec_name(c)) + " f16 model", c, 8, 2, 128, kMixed);
    s.model_dtype = s.q_dtype = 2;
    both_plans(s);
  }
  s = make("int8_pth block 32", Codec::kInt8Pth, 8, 2, 128, kMixed);
  s.bs = 32;
  both_plans(s);
  s = make("int8_pth long decode", Codec::kInt8Pth, 8, 2, 128, {{1, 900}, {1, 260}});
  both_plans(s);
}

// Long enough for key splits in both kernels (decode: 128 keys a split at
// least, prefill: 512), so the merge (with sinks) runs.
TEST(Emu, KeySplitsAndMerge) {
  const std::vector<SeqSpec> seqs = {{1, 1300}, {20, 1500}, {2, 700}};
  for (Codec c : {Codec::kInt8Pth, Codec::kBF16, Codec::kInt4Pth}) {
    CaseSpec s =
        make(std::string(check::codec_name(c)) + " splits sinks alibi", c, 8, 2, 128, seqs);
    s.sinks = s.alibi = true;
    both_plans(s);
  }
  CaseSpec s = make("e4m3 fp8-query splits", Codec::kE4M3, 8, 2, 128, seqs);
  s.q_dtype = 6;
  s.sinks = true;
  run_case(s, 132, 2, false);
  s = make("fp8_pth splits window 300", Codec::kFp8Pth, 8, 2, 64, seqs);
  s.window = 300;
  run_case(s, 132, 2, true);
}

TEST(Emu, WriteRefusals) {
  CaseSpec spec = make("refusals", Codec::kInt8Pth, 8, 4, 64, {{1, 40}, {3, 70}});
  const HostCase hc = check::build_case(spec);
  std::vector<unsigned char> cache;
  emu_cache_init(spec.codec, hc.layout, &cache);
  const std::vector<unsigned char> before = cache;
  auto k = hc.key_bytes, v = hc.value_bytes;
  auto put = [&](std::vector<unsigned char>& b, int64_t t, int h, int i, float x) {
    const uint16_t u = codec::float_to_bf16(x);
    std::memcpy(&b[static_cast<size_t>((t * hc.kv_stride_token + h * hc.kv_stride_head + i) * 2)],
                &u, 2);
  };
  put(k, 7, 2, 1, NAN);
  put(v, 7, 1, 5, INFINITY);
  put(k, 11, 0, 0, NAN);
  WriteVerdict wv{};
  WriteArgs w{spec.codec,
              hc.layout,
              3,
              k.data(),
              hc.kv_stride_token,
              hc.kv_stride_head,
              v.data(),
              hc.kv_stride_token,
              hc.kv_stride_head,
              hc.slots.data(),
              hc.write_tokens,
              cache.data(),
              nullptr,
              nullptr,
              1,
              &wv};
  emu_cache_write(w);
  EXPECT_EQ(wv.code, 2);
  EXPECT_EQ(wv.token, 7);
  EXPECT_EQ(wv.head, 1);
  EXPECT_EQ(wv.is_value, 1);
  EXPECT_TRUE(std::isinf(wv.bad_value));
  EXPECT_EQ(cache, before);
  auto slots = hc.slots;
  slots[9] = hc.layout.num_blocks * hc.layout.block_size + 2;
  w.slot_mapping = slots.data();
  emu_cache_write(w);
  EXPECT_EQ(wv.code, 1);
  EXPECT_EQ(wv.token, 9);
  EXPECT_EQ(cache, before);
}

TEST(Emu, BadBlockTableEntry) {
  CaseSpec spec = make("bad block", Codec::kInt8Pth, 8, 2, 128, {{1, 70}, {1, 40}});
  HostCase hc = check::build_case(spec);
  std::vector<unsigned char> cache = hc.expected_cache;
  kvq_emu::clear_globals();
  kvq_emu::register_global(cache.data(), cache.size());
  hc.block_table[hc.bt_stride + 1] =
      static_cast<int32_t>(hc.layout.num_blocks + 5);  // seq 1, entry 1
  std::vector<unsigned char> out(static_cast<size_t>(2 * 8 * 128 * 2));
  AttentionVerdict av{};
  AttentionArgs a{};
  a.codec = spec.codec;
  a.layout = hc.layout;
  a.q_dtype = a.out_dtype = 3;
  a.num_heads = 8;
  a.query = hc.q_bytes.data();
  a.q_stride_token = hc.q_stride_token;
  a.q_stride_head = hc.q_stride_head;
  a.output = out.data();
  a.o_stride_token = 8 * 128;
  a.o_stride_head = 128;
  a.cache = cache.data();
  a.block_table = hc.block_table.data();
  a.block_table_stride = hc.bt_stride;
  a.query_start_loc = hc.qsl.data();
  a.seq_lens = hc.seq_lens.data();
  a.num_seqs = 2;
  a.num_tokens = 2;
  a.max_query_len = 1;
  a.max_seq_len = 70;
  a.softmax_scale = 0.1f;
  a.verdict = &av;
  EXPECT_EQ(emu_attention(a, 1, 1).error, 0);
  EXPECT_EQ(av.code, 3);
  EXPECT_EQ(av.seq, 1);
  EXPECT_EQ(av.index, 1);
  EXPECT_EQ(av.value, hc.layout.num_blocks + 5);
}

}  // namespace
}  // namespace kvq::cuda
