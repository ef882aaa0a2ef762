// The block-streaming decode path (plugin_sdk/src/decode_kernel_impl.inc and
// decode_codecs.inc) against float64 attention over the K/V the cache holds,
// read back from the cache bytes (so only the read path is under test), for
// every mode it reads: bf16, int8/fp8/int4 per-token-head, Ascend C8 with
// symmetric and with offset channels. The shapes are those its loops treat
// apart: GQA groups of 1 to 8 rows (row blocks of 4, 2 and 1), head sizes 64
// to 256, blocks of 16 and 32, contexts ending mid-block and mid-step, key
// ranges split across threads (segments starting mid-block), and ALiBi,
// softcap, sliding window and sinks. Outputs are fp32, so the tolerance is
// fp32 accumulation error. CTest runs it once per SIMD level (KVQ_SIMD), so
// each level's codecs are checked.
#include "ascend_harness.hpp"
#include "harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kvq::test {
namespace {

struct Shape {
  int64_t hq, hkv, d, block;
};

struct Features {
  bool alibi = false, sinks = false;
  double softcap = 0.0;
  int64_t window = 0;
};

// Sequences of one decode token each: a short one (less than a step), one
// ending mid-block, and long ones that split across threads.
const std::vector<Seq> kSeqs = {{1, 7}, {1, 50}, {1, 1201}, {1, 700}};

// A level forced with KVQ_SIMD that this CPU lacks falls back to another:
// that run would not test the forced level's codecs, so the test is skipped,
// saying so. Empty when the forced level (or none) runs.
std::string forced_level_missing() {
  const char* forced = std::getenv("KVQ_SIMD");
  if (forced == nullptr || *forced == '\0') return {};
  Plugin p(triton_plugin_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  check(p.take(p.api().get_info(p.instance(), &info)), "get_info");
  if (std::string(info.simd_level) == forced) return {};
  return std::string("KVQ_SIMD=") + forced + " but this CPU has no such level (the plugin runs " +
         info.simd_level + ")";
}

#define KVQ_SKIP_IF_LEVEL_MISSING() \
  if (const std::string why = forced_level_missing(); !why.empty()) GTEST_SKIP() << why

float f32_at(const unsigned char* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// Element x of a stored row as the mode defines its value, in float64.
double stored(const std::string& mode, const unsigned char* row, int64_t d, int64_t x) {
  if (mode == "bfloat16") return kvq::ref::load(KVQ_DTYPE_BF16, row, x);
  if (mode == "int8_per_token_head")
    return kvq::ref::load(KVQ_DTYPE_I8, row, x) * double{f32_at(row + d)};
  if (mode == "fp8_per_token_head")
    return kvq::ref::load(KVQ_DTYPE_F8_E4M3FN, row, x) * double{f32_at(row + d)};
  // int4: nibbles (even element low), then fp32 scale and zero point; the
  // value is (code - zero_point) * scale in float32, as the mode defines it.
  const unsigned code = x % 2 == 0 ? (row[x / 2] & 0x0Fu) : (row[x / 2] >> 4);
  const int64_t at = (d + 1) / 2;
  return double{(static_cast<float>(code) - f32_at(row + at + 4)) * f32_at(row + at)};
}

struct Outputs {
  std::vector<double> out, ref;
};

kvq::ref::AttentionProblem problem(const Shape& s, const Features& f, const std::vector<Seq>& seqs,
                                   const std::vector<float>& slopes,
                                   const std::vector<float>& sinks) {
  kvq::ref::AttentionProblem prob;
  prob.num_heads = s.hq;
  prob.num_kv_heads = s.hkv;
  prob.head_size = s.d;
  prob.query_start_loc = {0};
  for (const Seq& q : seqs) {
    prob.query_start_loc.push_back(prob.query_start_loc.back() + static_cast<int32_t>(q.query_len));
    prob.seq_lens.push_back(static_cast<int32_t>(q.seq_len));
  }
  prob.sliding_window = f.window;
  prob.softcap = f.softcap;
  if (f.alibi) prob.alibi_slopes.assign(slopes.begin(), slopes.end());
  if (f.sinks) prob.sinks.assign(sinks.begin(), sinks.end());
  return prob;
}

// A Triton layer of `mode` (fp32 model dtype), written and run on kSeqs.
Outputs run_triton(const std::string& mode, const Shape& s, const Features& f, int threads) {
  Plugin p(triton_plugin_path(), threads);
  LayerSpec spec;
  spec.backend = "triton";
  spec.mode = mode;
  spec.model_dtype = KVQ_DTYPE_F32;
  spec.num_heads = s.hq;
  spec.num_kv_heads = s.hkv;
  spec.head_size = s.d;
  spec.block_size = s.block;
  spec.softcap = f.softcap;
  spec.sliding_window = f.window;
  LayerPtr layer = make_layer(p, spec);
  std::mt19937_64 rng(17);
  const PagedBatch b = paged_batch(kSeqs, s.block, 2, rng);
  Cache cache(p, layer.get(), b.num_blocks);
  std::vector<std::vector<double>> keys, values;
  for (size_t i = 0; i < kSeqs.size(); ++i) {
    const int64_t len = kSeqs[i].seq_len;
    const auto [k, v] = random_kv(KVQ_DTYPE_F32, {len, s.hkv, s.d}, 1.0, 100 + i);
    check(write_kv(p, layer.get(), k, v, b.slots[i], cache), "cache_write " + mode);
    std::vector<double> kr, vr;
    for (int64_t j = 0; j < len; ++j)
      for (int64_t h = 0; h < s.hkv; ++h)
        for (int kv = 0; kv < 2; ++kv) {
          const unsigned char* row = cache.slot_row(b.slots[i][static_cast<size_t>(j)], kv, h);
          for (int64_t x = 0; x < s.d; ++x) (kv ? vr : kr).push_back(stored(mode, row, s.d, x));
        }
    keys.push_back(std::move(kr));
    values.push_back(std::move(vr));
  }
  OwnedTensor query = random_tensor(KVQ_DTYPE_F32, {b.total_q, s.hq, s.d}, 1.0, 7);
  OwnedTensor output(KVQ_DTYPE_F32, {b.total_q, s.hq, s.d});
  std::vector<float> slopes, sinks;
  for (int64_t h = 0; h < s.hq; ++h) {
    slopes.push_back(-0.03f * static_cast<float>(h + 1));
    sinks.push_back(0.4f * static_cast<float>(h % 3));
  }
  const kvq_tensor ta = tensor_view(slopes.data(), KVQ_DTYPE_F32, {s.hq});
  const kvq_tensor ts = tensor_view(sinks.data(), KVQ_DTYPE_F32, {s.hq});
  auto args = b.forward_args(KVQ_ATTN_DECODE_ONLY, query, cache.tensor(), output);
  args.alibi_slopes(f.alibi ? &ta : nullptr).sinks(f.sinks ? &ts : nullptr);
  const kvq_forward_args a = args.c_struct();
  check(p.take(p.api().forward(layer.get(), &a)), "forward " + mode);
  return {output.to_doubles(), kvq::ref::attention(problem(s, f, kSeqs, slopes, sinks),
                                                   query.to_doubles(), keys, values)};
}

// fp32 accumulation over up to 1201 keys (and the fp32 row factors): 2e-5.
// ALiBi biases of a few hundred carry their fp32 rounding (2^-24 of the
// bias) into the scores: 5e-5 there (the tile kernel misses 2e-5 as well).
void expect_fp32_close(const Outputs& r, double tol = 2e-5) {
  const auto cmp = kvq::ref::compare(r.out, r.ref, tol, tol);
  EXPECT_EQ(cmp.non_finite, 0);
  EXPECT_EQ(cmp.violations, 0) << "worst " << cmp.worst_index << " max abs err "
                               << cmp.max_abs_error;
}

const std::vector<Shape> kShapes = {
    {32, 8, 128, 32},  // the benchmark's shape: groups of 4
    {15, 3, 64, 16},   // groups of 5: a block of 4 and one of 1
    {16, 2, 256, 16},  // groups of 8, the widest head
    {6, 2, 128, 32},   // groups of 3: blocks of 2 and 1
    {4, 4, 64, 32},    // no GQA: one row per KV head
};

class DecodeStream : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeStream, ShapesAndThreads) {
  KVQ_SKIP_IF_LEVEL_MISSING();
  for (const Shape& s : kShapes)
    for (int threads : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << s.hq << "/" << s.hkv << " d " << s.d << " block "
                                        << s.block << " threads " << threads);
      expect_fp32_close(run_triton(GetParam(), s, {}, threads));
    }
}

TEST_P(DecodeStream, AlibiSinksSoftcapWindow) {
  KVQ_SKIP_IF_LEVEL_MISSING();
  Features f;
  f.alibi = f.sinks = true;
  f.softcap = 20.0;
  f.window = 333;
  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    expect_fp32_close(run_triton(GetParam(), {32, 8, 128, 32}, f, threads), 5e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, DecodeStream,
                         ::testing::Values("bfloat16", "int8_per_token_head", "fp8_per_token_head",
                                           "int4_per_token_head"));

// Ascend C8 decodes (DecodeOnly) with symmetric channels (the one-rounding
// codec) and with offsets (the two-rounding one), fp32 outputs.
void check_c8(const asc::Scales& scales, int threads) {
  Plugin p(ascend_plugin_path(), threads);
  asc::Config c;
  c.model_dtype = KVQ_DTYPE_F32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_size = 128;
  c.block_size = 32;
  LayerPtr layer = asc::make_c8_layer(p, c, scales);
  asc::RunOptions o;
  o.state = KVQ_ATTN_DECODE_ONLY;
  std::unique_ptr<Cache> cache;
  const std::vector<Seq> seqs = kSeqs;
  const asc::C8Run run = asc::run_c8(p, layer.get(), c, seqs, o, &cache);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  std::vector<std::vector<double>> keys, values;
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<double> k, v;
    asc::dequantized_kv(*cache, c, scales, run.blocks[i], seqs[i].seq_len, &k, &v);
    keys.push_back(std::move(k));
    values.push_back(std::move(v));
  }
  expect_fp32_close({run.output, reference_attention(c, seqs, run.query, keys, values)});
}

TEST(DecodeStreamC8, SymmetricChannels) {
  KVQ_SKIP_IF_LEVEL_MISSING();
  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    asc::Scales s = asc::random_scales(8 * 128, 31, 0.01, 0.03);
    for (auto* o : {&s.k_offset, &s.v_offset}) std::fill(o->begin(), o->end(), 0.0);
    check_c8(s, threads);
  }
}

TEST(DecodeStreamC8, OffsetChannels) {
  KVQ_SKIP_IF_LEVEL_MISSING();
  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    check_c8(asc::random_scales(8 * 128, 32, 0.02, 0.06, 6.0), threads);
  }
}

}  // namespace
}  // namespace kvq::test
