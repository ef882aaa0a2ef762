// FAKQuant (MLA models, int8 latent KV cache; spec/ascend.md §3, §7) through
// the C ABI only, beyond the pinned items (ascend_fakquant_pinned_test.cpp):
// the scheme's rules, the exact bytes of the latent cache write, decode
// attention against a float64 reference built from the same cache bytes, end
// to end against unquantized float64 attention, and the error answers.
// Expectations are computed here in float64 with kvq_ref codecs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ascend_fakquant_support.hpp"

namespace kvq::test::asc {
namespace {

using namespace fakquant;

// ---- the scheme beyond the pinned cases ------------------------------------------------

TEST(AscendFAKQuant, SchemeListedWithNameRulesAndTheInt8LatentMode) {
  Plugin p(ascend_plugin_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  check(p.take(p.api().get_info(p.instance(), &info)), "get_info");
  const kvq_scheme_info* s = nullptr;
  for (int64_t i = 0; i < info.num_schemes; ++i)
    if (std::string(info.schemes[i]->quant_type) == "FAKQuant") s = info.schemes[i];
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s->layer_type, "attention");
  EXPECT_EQ(s->supported, 1);
  // Checkpoint names ...self_attn.fa_k.scale load into the layer ...self_attn.attn.
  std::vector<std::pair<std::string, std::string>> rules;
  for (int64_t r = 0; r < s->num_name_rules; ++r)
    rules.emplace_back(s->name_rules[r]->checkpoint_suffix, s->name_rules[r]->param_suffix);
  EXPECT_EQ(rules.size(), 6u);
  EXPECT_NE(std::find(rules.begin(), rules.end(),
                      std::make_pair(std::string(".self_attn.fa_k.scale"),
                                     std::string(".self_attn.attn.fa_k.scale"))),
            rules.end());
  const kvq_kv_mode_info* mode = nullptr;
  for (int64_t m = 0; m < info.backends[0]->num_kv_modes; ++m)
    if (std::string(info.backends[0]->kv_modes[m]->name) == "int8_latent")
      mode = info.backends[0]->kv_modes[m];
  ASSERT_NE(mode, nullptr);
  EXPECT_EQ(mode->element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(mode->supported, 1);
  EXPECT_EQ(mode->needs_scheme, 1);
  EXPECT_EQ(mode->per_token_head, 0);
}

TEST(AscendFAKQuant, SchemeRefusesNonMlaGeometryNamingTheValues) {
  Plugin p(ascend_plugin_path());
  struct Case {
    int64_t num_kv_heads, head_size, head_size_v;
    const char* needle;
  };
  // lora 32, rope 8: the layer must have 1 KV head, head_size 40, head_size_v 32.
  for (const Case& k : {Case{2, 40, 32, "num_kv_heads 2"}, Case{1, 48, 32, "head_size 48"},
                        Case{1, 40, 40, "head_size_v 40"}}) {
    MlaConfig c;
    c.num_kv_heads = k.num_kv_heads;
    c.head_size = k.head_size;
    c.head_size_v = k.head_size_v;
    LayerPtr layer(nullptr, nullptr);
    check(create_mla(p, c, &layer), "layer_create");
    const CallResult r = apply_fakquant(p, layer.get(), mla_options(c));
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << k.needle;
    EXPECT_NE(r.message.find(k.needle), std::string::npos) << r.message;
    EXPECT_NE(r.message.find(c.layer_name), std::string::npos) << r.message;
    // Nothing changed.
    const kvq_layer_info info = layer_info(p, layer.get());
    EXPECT_STREQ(info.impl_name, "ascend_attention");
    EXPECT_STREQ(info.scheme, "");
    EXPECT_EQ(info.num_params, 0);
  }
}

TEST(AscendFAKQuant, SchemeRefusesNonIntegerOptionsNamingTheKey) {
  Plugin p(ascend_plugin_path());
  const MlaConfig c;
  const Options bad[] = {{{"kv_lora_rank", "abc"}, {"qk_rope_head_dim", "8"}},
                         {{"kv_lora_rank", "32"}, {"qk_rope_head_dim", "1.5"}},
                         {{"kv_lora_rank", "-32"}, {"qk_rope_head_dim", "8"}},
                         {{"kv_lora_rank", ""}, {"qk_rope_head_dim", "8"}}};
  for (const Options& o : bad) {
    LayerPtr layer(nullptr, nullptr);
    check(create_mla(p, c, &layer), "layer_create");
    const CallResult r = apply_fakquant(p, layer.get(), o);
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
    const std::string key = o[0].second == "32" ? "qk_rope_head_dim" : "kv_lora_rank";
    EXPECT_NE(r.message.find(key), std::string::npos) << r.message;
    EXPECT_EQ(layer_info(p, layer.get()).num_params, 0);
  }
}

TEST(AscendFAKQuant, ProcessWeightsNeedsAFiniteNonZeroLoadedKeyScaleAndIsIdempotent) {
  FakFixture f;
  CallResult r = process_weights(f.plugin, f.layer.get());
  EXPECT_EQ(r.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(r.message.find("fa_k.scale"), std::string::npos) << r.message;
  ASSERT_EQ(f.load("fa_k.scale", {0.0}, {1, 1}, KVQ_DTYPE_BF16).code, 0);
  r = process_weights(f.plugin, f.layer.get());
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("fa_k.scale"), std::string::npos) << r.message;
  EXPECT_FALSE(f.find("quant_kscale").has_value());
  ASSERT_EQ(f.load("fa_k.scale", {0.25}, {1, 1}, KVQ_DTYPE_BF16).code, 0);
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  const int64_t n = layer_info(f.plugin, f.layer.get()).num_params;
  EXPECT_EQ(n, 10);
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);  // idempotent
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, n);
  EXPECT_EQ(f.read("quant_kscale"), (std::vector<double>(32, 4.0)));
  EXPECT_EQ(f.read("fak_descale"), (std::vector<double>{0.25}));
}

TEST(AscendFAKQuant, ProcessedScalesAreRequiredBeforeWriteAndForward) {
  FakFixture f;
  ASSERT_EQ(f.load("fa_k.scale", {0.03125}, {1, 1}, KVQ_DTYPE_BF16).code, 0);  // not processed
  Cache cache(f.plugin, f.layer.get(), 4);
  const OwnedTensor key = random_tensor(KVQ_DTYPE_BF16, {2, 1, f.config.hs()}, 1.0, 3);
  const CallResult w = write_keys(f.plugin, f.layer.get(), key, {0, 1}, cache);
  EXPECT_EQ(w.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(w.message.find("FAKQuant scales not processed"), std::string::npos) << w.message;
  EXPECT_NE(w.message.find(f.config.layer_name), std::string::npos) << w.message;
  const MlaRun run = run_mla(f.plugin, f.layer.get(), f.config, {{1, 2}}, {});
  EXPECT_EQ(run.status.code, KVQ_ERR_FAILED_PRECONDITION);  // the cache write
  // forward / supports on a processed-less layer: same answer.
  FakFixture g;
  check(g.load("fa_k.scale", {0.03125}, {1, 1}, KVQ_DTYPE_BF16), "load");
  OwnedTensor q = random_tensor(KVQ_DTYPE_BF16, {1, g.config.num_heads, g.config.hs()}, 1.0, 5);
  OwnedTensor out(KVQ_DTYPE_BF16, {1, g.config.num_heads, g.config.lora});
  OwnedTensor qsl(KVQ_DTYPE_I32, {2}), lens(KVQ_DTYPE_I32, {1}), table(KVQ_DTYPE_I32, {1, 1});
  qsl.set(1, 1);
  lens.set(0, 1);
  Cache gcache(g.plugin, g.layer.get(), 2);
  const client::ForwardArgs args = forward_args(KVQ_ATTN_DECODE_ONLY, q.get(), gcache.tensor(),
                                                qsl.get(), lens.get(), table.get(), out.get());
  const CallResult fw = forward(g.plugin, g.layer.get(), args);
  EXPECT_EQ(fw.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(fw.message.find("FAKQuant scales not processed"), std::string::npos) << fw.message;
  EXPECT_NE(fw.message.find(g.config.layer_name), std::string::npos) << fw.message;
  EXPECT_EQ(supports(g.plugin, g.layer.get(), args).code, KVQ_ERR_FAILED_PRECONDITION);
}

// ---- the latent cache write ---------------------------------------------------------------

TEST(AscendFAKQuant, GeometryIsTheKeysOnlyInt8LatentPlusBf16RopeRow) {
  FakFixture f;
  const kvq_cache_geometry g = geometry(f.plugin, f.layer.get());
  EXPECT_EQ(g.layout, KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD);
  EXPECT_EQ(g.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(g.block_size, f.config.block_size);
  EXPECT_EQ(g.num_kv_heads, 1);
  EXPECT_EQ(g.head_size, f.config.lora + f.config.rope);
  EXPECT_EQ(g.head_size_v, f.config.lora);
  EXPECT_EQ(g.row_bytes, f.config.lora + 2 * f.config.rope);  // no padding
  EXPECT_EQ(g.bytes_per_block, f.config.block_size * g.row_bytes);
}

// Every byte of the cache after writes in each model dtype: the latent as
// saturate(rne(f32(c_kv * quant_kscale))), the rope as bf16, every other
// byte untouched (zero), padding slots skipped, num_tokens honoured.
TEST(AscendFAKQuant, CacheWriteBytesAreExact) {
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    MlaConfig c;
    c.model_dtype = dtype;
    c.lora = 16;
    c.rope = 4;
    c.block_size = 8;
    FakFixture f(c);
    const double k_scale = 2.0;  // quant_kscale 0.5: ties at odd integers
    f.load_k_and_process(k_scale);
    const double qk = ref_quant_kscale(kvq::ref::round_to(dtype, k_scale));
    const int64_t d = c.hs(), t = 7;
    OwnedTensor key = random_tensor(dtype, {t, 1, d}, 40.0, 11 + static_cast<uint64_t>(dtype));
    // Token 0: ties and saturation, written out.
    const double row0[] = {5, 7, -5, -7, 1, 3, 0.5, -0.5, 254, 256, 1000, -255, -256, -1000, 0, 9};
    for (int64_t x = 0; x < c.lora; ++x) key.set(x, row0[x]);
    Cache cache(f.plugin, f.layer.get(), 3);
    const std::vector<int64_t> slots = {3, 17, -1, 8, 0, 23, 9};  // token 2 is padding
    const std::vector<unsigned char> before = cache.snapshot();
    // num_tokens 6: token 6 (slot 9) is not written.
    ASSERT_EQ(write_keys(f.plugin, f.layer.get(), key, slots, cache, 6).code, 0);
    std::vector<unsigned char> expected = before;
    const std::vector<double> k = key.to_doubles();
    const int64_t rb = cache.geometry().row_bytes;
    for (int64_t i = 0; i < 6; ++i) {
      const int64_t slot = slots[static_cast<size_t>(i)];
      if (slot < 0) continue;
      unsigned char* row = expected.data() + slot * rb;
      for (int64_t x = 0; x < c.lora; ++x) {
        const int8_t q = ref_latent(k[static_cast<size_t>(i * d + x)], qk);
        std::memcpy(row + x, &q, 1);
      }
      for (int64_t x = 0; x < c.rope; ++x) {
        const uint16_t bits = bits16(KVQ_DTYPE_BF16, k[static_cast<size_t>(i * d + c.lora + x)]);
        std::memcpy(row + c.lora + 2 * x, &bits, 2);
      }
    }
    const std::vector<unsigned char> after = cache.snapshot();
    ASSERT_EQ(after.size(), expected.size());
    for (size_t b = 0; b < after.size(); ++b)
      ASSERT_EQ(after[b], expected[b])
          << "dtype " << dtype << " byte " << b << " (slot " << static_cast<int64_t>(b) / rb << ")";
    // The hand-written row: 5*0.5=2.5 -> 2, 3.5 -> 4, -2.5 -> -2, -3.5 -> -4,
    // 0.5 -> 0, 1.5 -> 2, 0.25 -> 0, 127 -> 127, 128 -> 127 (saturated), ...
    const auto* r0 = reinterpret_cast<const int8_t*>(after.data() + 3 * rb);
    const std::vector<int> want = {2, 4, -2, -4, 0, 2, 0, 0, 127, 127, 127, -128, -128, -128, 0, 4};
    EXPECT_EQ(std::vector<int>(r0, r0 + c.lora), want) << "dtype " << dtype;
  }
}

TEST(AscendFAKQuant, CacheWriteRefusesNonFiniteNamingTheTokenAndWritesNothing) {
  FakFixture f;
  f.load_k_and_process(0.03125);
  const int64_t d = f.config.hs();
  Cache cache(f.plugin, f.layer.get(), 2);
  const std::vector<unsigned char> before = cache.snapshot();
  struct Case {
    int64_t token, element;
    double value;
  };
  for (const Case& k : {Case{2, 5, NAN}, Case{0, d - 1, INFINITY}, Case{3, 0, -INFINITY}}) {
    OwnedTensor key = random_tensor(KVQ_DTYPE_BF16, {4, 1, d}, 1.0, 21);
    key.set(k.token * d + k.element, k.value);
    const CallResult r = write_keys(f.plugin, f.layer.get(), key, {0, 1, 2, 3}, cache);
    EXPECT_EQ(r.code, KVQ_ERR_NON_FINITE);
    EXPECT_NE(r.message.find("token " + std::to_string(k.token)), std::string::npos) << r.message;
    EXPECT_EQ(cache.snapshot(), before) << "token " << k.token;
  }
  // A non-finite padding token (slot -1) is never read.
  OwnedTensor key = random_tensor(KVQ_DTYPE_BF16, {2, 1, d}, 1.0, 22);
  key.set(d + 3, NAN);
  EXPECT_EQ(write_keys(f.plugin, f.layer.get(), key, {0, -1}, cache).code, 0);
}

// ---- decode attention ----------------------------------------------------------------

// Decode batches on bf16: against float64 attention over the same cache
// bytes with the test-side query quantization, and end to end against
// unquantized float64 attention.
void expect_decode_matches(MlaConfig c, int32_t state, uint64_t seed) {
  FakFixture f(c);
  const double k_scale = kvq::ref::round_to(c.model_dtype, 4.0 / 127.0);  // |c_kv| <= 4
  f.load_k_and_process(k_scale);
  const std::vector<Seq> seqs = {{1, 1}, {1, 17}, {1, 40}, {1, 5}, {1, 33}};
  MlaRunOptions o;
  o.state = state;
  o.seed = seed;
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, seqs, o);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  EXPECT_EQ(run.supports.code, 0) << run.supports.message;
  const double s_k = f.read("fak_descale")[0];
  EXPECT_EQ(s_k, k_scale);
  const std::vector<double> ref = reference_from_cache(c, seqs, run, s_k);
  const kvq::ref::Comparison cmp = kvq::ref::compare(run.output, ref, 2e-2, 2e-2);
  EXPECT_EQ(cmp.non_finite, 0);
  EXPECT_EQ(cmp.violations, 0)
      << "worst index " << cmp.worst_index << ": "
      << run.output[static_cast<size_t>(std::max<int64_t>(cmp.worst_index, 0))] << " vs "
      << ref[static_cast<size_t>(std::max<int64_t>(cmp.worst_index, 0))];
  const kvq::ref::Comparison e2e =
      kvq::ref::compare(run.output, reference_unquantized(c, seqs, run), 1.0, 1.0);
  EXPECT_GT(e2e.cosine, 0.99);
}

TEST(AscendFAKQuant, DecodeOnlyMatchesReferenceFromCacheBytes) {
  MlaConfig c;
  c.num_heads = 8;
  c.lora = 64;
  c.rope = 16;
  expect_decode_matches(c, KVQ_ATTN_DECODE_ONLY, 1);
}

TEST(AscendFAKQuant, ChunkedPrefillAndSpecDecodingOfSingleTokensMatchReference) {
  MlaConfig c;
  c.lora = 32;
  c.rope = 8;
  expect_decode_matches(c, KVQ_ATTN_CHUNKED_PREFILL, 2);
  expect_decode_matches(c, KVQ_ATTN_SPEC_DECODING, 3);
}

TEST(AscendFAKQuant, DecodeUsesTheConfiguredSoftmaxScale) {
  MlaConfig c;
  c.lora = 32;
  c.rope = 8;
  c.block_size = 8;
  c.softmax_scale = 1.0 / std::sqrt(24.0);  // vLLM MLA: 1/sqrt(qk_nope_head_dim + rope)
  expect_decode_matches(c, KVQ_ATTN_DECODE_ONLY, 4);
}

TEST(AscendFAKQuant, DecodeInFloat32AndFloat16MatchesReference) {
  for (const int32_t dtype : {KVQ_DTYPE_F32, KVQ_DTYPE_F16}) {
    MlaConfig c;
    c.model_dtype = dtype;
    c.lora = 48;
    c.rope = 8;
    expect_decode_matches(c, KVQ_ATTN_DECODE_ONLY, 5 + static_cast<uint64_t>(dtype));
  }
}

// max|q_nope| = 0: q_int8 is all zero, the scores are the rope part alone.
TEST(AscendFAKQuant, AllZeroLatentQueryGivesARopeOnlySoftmax) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  FakFixture f(c);
  f.load_k_and_process(0.03125);
  MlaRunOptions o;
  o.zero_q_nope = true;
  o.pe_stddev = 3.0;
  const std::vector<Seq> seqs = {{1, 9}, {1, 20}};
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, seqs, o);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const std::vector<double> ref = reference_from_cache(c, seqs, run, 0.03125);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(run.output[i], ref[i], 1e-5) << i;
}

// ---- batches the MLA decode path does not run -------------------------------------------

TEST(AscendFAKQuant, NonDecodeBatchesAreUnsupportedAndSupportsAgrees) {
  FakFixture f;
  f.load_k_and_process(0.03125);
  struct Case {
    int32_t state;
    std::vector<Seq> seqs;
    int32_t code;
    const char* needle;
  };
  const Case cases[] = {
      {KVQ_ATTN_PREFILL_NO_CACHE, {{4, 4}}, KVQ_ERR_UNSUPPORTED, "PrefillNoCache"},
      {KVQ_ATTN_PREFILL_CACHE_HIT, {{1, 6}}, KVQ_ERR_UNSUPPORTED, "PrefillCacheHit"},
      {KVQ_ATTN_CHUNKED_PREFILL, {{1, 5}, {3, 9}}, KVQ_ERR_UNSUPPORTED, "query_len 3"},
      {KVQ_ATTN_SPEC_DECODING, {{2, 6}}, KVQ_ERR_UNSUPPORTED, "query_len 2"},
      // A DecodeOnly batch with two tokens contradicts its state: malformed.
      {KVQ_ATTN_DECODE_ONLY, {{2, 6}}, KVQ_ERR_INVALID_ARGUMENT, "2 query tokens"},
  };
  for (const Case& k : cases) {
    MlaRunOptions o;
    o.state = k.state;
    const MlaRun run = run_mla(f.plugin, f.layer.get(), f.config, k.seqs, o);
    EXPECT_EQ(run.status.code, k.code) << k.needle << ": " << run.status.message;
    EXPECT_EQ(run.supports.code, run.status.code) << k.needle;
    EXPECT_NE(run.status.message.find(k.needle), std::string::npos) << run.status.message;
  }
}

}  // namespace
}  // namespace kvq::test::asc
