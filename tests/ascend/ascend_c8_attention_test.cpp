// Every Ascend attention state on a C8 layer against a float64 reference
// (spec/ascend.md §6), with non-zero per-channel offsets everywhere. The
// reference reads the int8 codes back from the cache bytes and dequantizes
// them as c8_dequantize (plugin_ascend/src/c8_impl.cpp) documents:
//   k = bf16( bf16(q - bf16(offset)) * bf16(scale) )
// i.e. (q - offset) * scale with every step rounded to bf16, so the write
// path's quantization error cancels and bf16 output tolerances hold. States
// that attend on the batch's float K/V use those model-dtype values instead.
#include "ascend_harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kvq::test::asc {
namespace {

enum class Source { kCache, kFloat };

Config attention_config() {
  Config c;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_size = 32;
  c.block_size = 32;
  return c;
}

// The float64 reference; `source(s)` says where sequence s's keys come from.
std::vector<double> reference(const Config& c, const Scales& s, const std::vector<Seq>& seqs,
                              const C8Run& run, const Cache& cache,
                              const std::function<Source(size_t)>& source) {
  std::vector<std::vector<double>> keys, values;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (source(i) == Source::kFloat) {
      keys.push_back(run.keys[i]);
      values.push_back(run.values[i]);
    } else {
      std::vector<double> k, v;
      dequantized_kv(cache, c, s, run.blocks[i], seqs[i].seq_len, &k, &v);
      keys.push_back(std::move(k));
      values.push_back(std::move(v));
    }
  }
  return reference_attention(c, seqs, run.query, keys, values);
}

void expect_close(const std::vector<double>& actual, const std::vector<double>& want) {
  ASSERT_EQ(actual.size(), want.size());
  const auto cmp = kvq::ref::compare(actual, want, 1e-2, 1e-2);
  EXPECT_EQ(cmp.non_finite, 0);
  EXPECT_EQ(cmp.violations, 0) << "worst element " << cmp.worst_index << " max abs err "
                               << cmp.max_abs_error;
  EXPECT_LT(cmp.nmse, 1e-4);
}

int64_t violations(const std::vector<double>& actual, const std::vector<double>& want) {
  return kvq::ref::compare(actual, want, 1e-2, 1e-2).violations;
}

// Runs `seqs` in `state` and compares with the reference built by `source`.
// Coarse scales (0.08-0.2, codes of a few tens) and offsets up to ±12 keep
// the reference discriminating: reading the other source (cache vs float
// K/V) or dequantizing with the other offset sign, (q + offset) * scale,
// must miss the tolerance, and the test checks that it does.
void check_state(int32_t state, const std::vector<Seq>& seqs,
                 const std::function<Source(size_t)>& source, bool pass_batch_kv = true,
                 uint64_t seed = 1) {
  Plugin p(ascend_plugin_path());
  const Config c = attention_config();
  const Scales s = random_scales(c.num_kv_heads * c.head_size, 1000 + seed, 0.08, 0.2, 12.0);
  LayerPtr layer = make_c8_layer(p, c, s);
  RunOptions o;
  o.state = state;
  o.pass_batch_kv = pass_batch_kv;
  o.seed = seed;
  std::unique_ptr<Cache> cache;
  const C8Run run = run_c8(p, layer.get(), c, seqs, o, &cache);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  EXPECT_EQ(run.supports.code, 0) << run.supports.message;
  expect_close(run.output, reference(c, s, seqs, run, *cache, source));

  const auto swapped = [&](size_t i) {
    return source(i) == Source::kCache ? Source::kFloat : Source::kCache;
  };
  EXPECT_GT(violations(run.output, reference(c, s, seqs, run, *cache, swapped)), 0)
      << "the other K/V source is indistinguishable";
  bool reads_cache = false;
  for (size_t i = 0; i < seqs.size(); ++i) reads_cache |= source(i) == Source::kCache;
  if (reads_cache) {
    Scales plus = s;  // (q - (-offset)) * scale = (q + offset) * scale
    for (auto* v : {&plus.k_offset, &plus.v_offset})
      for (double& x : *v) x = -x;
    EXPECT_GT(violations(run.output, reference(c, plus, seqs, run, *cache, source)), 0)
        << "the offset sign is indistinguishable";
  }
}

Source all_cache(size_t) {
  return Source::kCache;
}

TEST(AscendC8Attention, PrefillNoCacheAttendsOnTheFloatKv) {
  check_state(KVQ_ATTN_PREFILL_NO_CACHE, {{33, 33}, {7, 7}, {64, 64}},
              [](size_t) { return Source::kFloat; });
}

TEST(AscendC8Attention, DecodeOnlyReadsTheInt8Cache) {
  check_state(KVQ_ATTN_DECODE_ONLY, {{1, 70}, {1, 33}, {1, 1}, {1, 128}}, all_cache);
  // Without the batch's K/V too (DecodeOnly reads only the cache).
  check_state(KVQ_ATTN_DECODE_ONLY, {{1, 45}, {1, 96}}, all_cache, false, 2);
}

TEST(AscendC8Attention, PrefillCacheHitGathersAndDequantizes) {
  check_state(KVQ_ATTN_PREFILL_CACHE_HIT, {{17, 40}, {5, 5}, {32, 100}}, all_cache);
}

TEST(AscendC8Attention, SpecDecodingGathersAndDequantizes) {
  check_state(KVQ_ATTN_SPEC_DECODING, {{3, 50}, {2, 2}, {4, 90}, {1, 31}}, all_cache);
}

// Decodes first, then prefills; one prefill has context, so the prefill part
// gathers and dequantizes the whole context (including the chunk just written).
TEST(AscendC8Attention, ChunkedPrefillWithContextReadsTheCache) {
  check_state(KVQ_ATTN_CHUNKED_PREFILL, {{1, 70}, {1, 20}, {17, 40}, {8, 8}}, all_cache);
}

// No prefill has prior context and the float K/V are given: decodes read the
// cache, prefills attend on the batch's float K/V.
TEST(AscendC8Attention, ChunkedPrefillWithoutContextAttendsOnFloatKv) {
  const std::vector<Seq> seqs = {{1, 70}, {1, 33}, {12, 12}, {40, 40}};
  check_state(KVQ_ATTN_CHUNKED_PREFILL, seqs,
              [&](size_t i) { return seqs[i].query_len == 1 ? Source::kCache : Source::kFloat; });
  // Without the float K/V at hand everything comes from the cache.
  check_state(KVQ_ATTN_CHUNKED_PREFILL, seqs, all_cache, false, 3);
}

// ---- errors ---------------------------------------------------------------------------

CallResult run_error(int32_t state, const std::vector<Seq>& seqs, CallResult* supports) {
  Plugin p(ascend_plugin_path());
  const Config c = attention_config();
  LayerPtr layer = make_c8_layer(p, c, random_scales(c.num_kv_heads * c.head_size, 5));
  RunOptions o;
  o.state = state;
  const C8Run run = run_c8(p, layer.get(), c, seqs, o);
  *supports = run.supports;
  return run.status;
}

TEST(AscendC8Attention, PrefillNoCacheWithContextIsInvalid) {
  CallResult supports;
  const CallResult r = run_error(KVQ_ATTN_PREFILL_NO_CACHE, {{8, 8}, {4, 10}}, &supports);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_EQ(supports.code, KVQ_ERR_INVALID_ARGUMENT) << supports.message;
}

TEST(AscendC8Attention, DecodeOnlyWithTwoQueryTokensIsInvalid) {
  CallResult supports;
  const CallResult r = run_error(KVQ_ATTN_DECODE_ONLY, {{1, 10}, {2, 10}}, &supports);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_EQ(supports.code, KVQ_ERR_INVALID_ARGUMENT) << supports.message;
}

TEST(AscendC8Attention, ChunkedPrefillDecodeAfterPrefillIsInvalid) {
  CallResult supports;
  const CallResult r = run_error(KVQ_ATTN_CHUNKED_PREFILL, {{1, 9}, {5, 10}, {1, 10}}, &supports);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_EQ(supports.code, KVQ_ERR_INVALID_ARGUMENT) << supports.message;
}

// A C8 layer whose scales were never loaded (one-element parameters) cannot
// prepare: cache_write and forward fail with FAILED_PRECONDITION naming the layer.
TEST(AscendC8Attention, UnloadedScalesFailNamingTheLayer) {
  Plugin p(ascend_plugin_path());
  Config c = attention_config();
  c.layer_name = "model.layers.7.self_attn.attn";
  for (const bool partly_loaded : {false, true}) {
    SCOPED_TRACE(partly_loaded);
    LayerPtr layer = make_layer(p, c);
    check(apply_c8(p, layer.get()), "apply_scheme C8");
    if (partly_loaded) {  // K loaded, V never
      const Scales s = random_scales(c.num_kv_heads * c.head_size, 6);
      check(load_param(p, layer.get(), full_name(c, "k_cache_scale"), s.k_scale), "load");
      check(load_param(p, layer.get(), full_name(c, "k_cache_offset"), s.k_offset), "load");
    }
    check(process_weights(p, layer.get()), "process_weights");
    for (const int32_t state : {KVQ_ATTN_DECODE_ONLY, KVQ_ATTN_PREFILL_NO_CACHE}) {
      SCOPED_TRACE(state);
      RunOptions o;
      o.state = state;
      const std::vector<Seq> seqs =
          state == KVQ_ATTN_DECODE_ONLY ? std::vector<Seq>{{1, 5}} : std::vector<Seq>{{5, 5}};
      const C8Run written = run_c8(p, layer.get(), c, seqs, o);  // fails at cache_write
      EXPECT_EQ(written.status.code, KVQ_ERR_FAILED_PRECONDITION) << written.status.message;
      EXPECT_NE(written.status.message.find(c.layer_name), std::string::npos)
          << written.status.message;
      o.write_cache = false;
      const C8Run forward = run_c8(p, layer.get(), c, seqs, o);
      EXPECT_EQ(forward.status.code, KVQ_ERR_FAILED_PRECONDITION) << forward.status.message;
      EXPECT_NE(forward.status.message.find(c.layer_name), std::string::npos)
          << forward.status.message;
    }
  }
}

// abi/kvq_abi.h, supports: "NULL when forward would accept exactly these
// arguments ...; else the error forward would return".
TEST(AscendC8Attention, SupportsAgreesWithForwardOnUnloadedScales) {
  Plugin p(ascend_plugin_path());
  const Config c = attention_config();
  LayerPtr layer = make_layer(p, c);
  check(apply_c8(p, layer.get()), "apply_scheme C8");
  RunOptions o;
  o.state = KVQ_ATTN_DECODE_ONLY;
  o.write_cache = false;
  const C8Run run = run_c8(p, layer.get(), c, {{1, 5}}, o);
  ASSERT_EQ(run.status.code, KVQ_ERR_FAILED_PRECONDITION) << run.status.message;
  EXPECT_EQ(run.supports.code, run.status.code) << "supports answered '" << run.supports.message
                                                << "', forward '" << run.status.message << "'";
}

}  // namespace
}  // namespace kvq::test::asc
