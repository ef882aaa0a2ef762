// FP8 per-tensor KV modes of libkvq_triton_sim.so through the C ABI
// (spec/triton_sim.md §1, §3, §5): codes = fp8(x / scale) for e4m3 and real
// e5m2, vLLM's checkpoint-scale rules, per-head scales, calculate_kv_scales,
// and the scheme-registry entries that upgrade an unquantized layer.
#include "harness.hpp"
#include "kvq_ref/reference.hpp"
#include "triton_test_util.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

namespace kvq::test::tri {
namespace {

constexpr int64_t kD = 64, kHq = 4, kHkv = 2;

int32_t fp8_dtype_of(const std::string& mode) {
  return mode == "fp8_e5m2" ? KVQ_DTYPE_F8_E5M2 : KVQ_DTYPE_F8_E4M3FN;
}

// Writes K/V at `slots` and expects every written row to hold
// fp8(x / scale[head]) with the mode's fp8 format, and untouched rows zero.
void write_and_expect_codes(Plugin& p, kvq_layer* layer, Cache& cache, OwnedTensor& k,
                            OwnedTensor& v, const std::vector<int64_t>& slots, int32_t fp8,
                            const std::vector<float>& k_scale, const std::vector<float>& v_scale) {
  ASSERT_EQ(cache.geometry().row_bytes, kD);
  auto scale_for = [](const std::vector<float>& s, int64_t h) {
    return s.size() == 1 ? s[0] : s[static_cast<size_t>(h)];
  };
  write_and_check_rows(
      p, layer, k, v, slots, cache,
      [&](int64_t t, int64_t h, int kv, const std::vector<float>& x, const unsigned char* row) {
        const float s = scale_for(kv == 0 ? k_scale : v_scale, h);
        for (int64_t i = 0; i < kD; ++i)
          ASSERT_EQ(row[i], ref_fp8_tensor_code(fp8, x[static_cast<size_t>(i)], s))
              << (kv == 0 ? "K" : "V") << " token " << t << " head " << h << " element " << i
              << " x=" << x[static_cast<size_t>(i)] << " scale=" << s;
      });
}

Config fp8_config(const std::string& mode) {
  Config c(mode);
  c.num_heads = kHq;
  c.num_kv_heads = kHkv;
  c.head_size = kD;
  return c;
}

// ---- 4. per-tensor write ---------------------------------------------------

class Fp8PerTensorWrite : public ::testing::TestWithParam<std::string> {};

TEST_P(Fp8PerTensorWrite, CodesAreFp8OfXOverScale) {
  const int32_t fp8 = fp8_dtype_of(GetParam());
  Plugin p(triton_plugin_path());
  LayerPtr layer = make_layer(p, fp8_config(GetParam()));
  ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  Cache cache(p, layer.get(), 3);
  EXPECT_EQ(cache.geometry().element_dtype, fp8);

  const std::vector<int64_t> slots = {2, 7, -1, 30, 16, 45};
  OwnedTensor k = random_tensor(KVQ_DTYPE_BF16, {6, kHkv, kD}, 3.0, 41);
  OwnedTensor v = random_tensor(KVQ_DTYPE_BF16, {6, kHkv, kD}, 2.0, 42);
  // x / k_scale = ±1000: saturates to ±448 in e4m3 (0x7E / 0xFE).
  k.set(0, 500.0);
  k.set(1, -500.0);
  // x / scale = 1.125: exact in e4m3 (0x39), a tie between 1.0 and 1.25 in e5m2 (-> 1.0, 0x3C).
  k.set(2, 0.5625);
  v.set(0, 0.28125);
  write_and_expect_codes(p, layer.get(), cache, k, v, slots, fp8, {0.5f}, {0.25f});

  const unsigned char* k0 = cache.slot_row(2, 0, 0);
  const unsigned char* v0 = cache.slot_row(2, 1, 0);
  ASSERT_NE(kvq::ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, 1.125),
            kvq::ref::encode_fp8(KVQ_DTYPE_F8_E5M2, 1.125));
  if (fp8 == KVQ_DTYPE_F8_E4M3FN) {
    EXPECT_EQ(k0[0], 0x7E);
    EXPECT_EQ(k0[1], 0xFE);
    EXPECT_EQ(k0[2], 0x39);
    EXPECT_EQ(v0[0], 0x39);
  } else {
    EXPECT_EQ(kvq::ref::decode_fp8(KVQ_DTYPE_F8_E5M2, k0[0]), 1024.0);  // 1000 -> 1024
    EXPECT_EQ(k0[2], 0x3C);                                             // real e5m2 bits, not e4m3
    EXPECT_EQ(v0[0], 0x3C);
  }
  // Untouched rows stay zero.
  std::set<int64_t> written(slots.begin(), slots.end());
  for (int64_t slot = 0; slot < 3 * 16; ++slot) {
    if (written.count(slot) != 0) continue;
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t h = 0; h < kHkv; ++h)
        for (int64_t i = 0; i < kD; ++i) {
          ASSERT_EQ(cache.slot_row(slot, kv, h)[i], 0) << "slot " << slot;
        }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, Fp8PerTensorWrite,
                         ::testing::Values("fp8", "fp8_e4m3", "fp8_e5m2"));

// ---- 5. scale rules ----------------------------------------------------------

TEST(TritonFp8Scales, NoneLoadedMeansOneWithAWarning) {
  LogSink log;
  Plugin p(triton_plugin_path(), 2, &log);
  LayerPtr layer = make_layer(p, fp8_config("fp8"));
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  EXPECT_EQ(read_scale(p, layer.get(), "k_scale"), std::vector<float>{1.0f});
  EXPECT_EQ(read_scale(p, layer.get(), "v_scale"), std::vector<float>{1.0f});
  Cache cache(p, layer.get(), 2);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {3, kHkv, kD}, 2.0, 51);
  write_and_expect_codes(p, layer.get(), cache, k, v, {0, 5, 17}, KVQ_DTYPE_F8_E4M3FN, {1.0f},
                         {1.0f});
  EXPECT_GE(log.count(KVQ_LOG_WARN), 1) << "no WARN when no k/v scales were loaded";
}

TEST(TritonFp8Scales, NoWarningForE5m2) {
  LogSink log;
  Plugin p(triton_plugin_path(), 2, &log);
  LayerPtr layer = make_layer(p, fp8_config("fp8_e5m2"));
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  Cache cache(p, layer.get(), 2);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {3, kHkv, kD}, 2.0, 53);
  write_and_expect_codes(p, layer.get(), cache, k, v, {0, 5, 17}, KVQ_DTYPE_F8_E5M2, {1.0f},
                         {1.0f});
  EXPECT_EQ(log.count(KVQ_LOG_WARN), 0);
  for (const auto& e : log.entries()) EXPECT_NE(e.level, KVQ_LOG_WARN) << e.message;
}

TEST(TritonFp8Scales, LegacyKvScaleUsedForBoth) {
  Plugin p(triton_plugin_path());
  LayerPtr layer = make_layer(p, fp8_config("fp8"));
  ASSERT_EQ(load_scale(p, layer.get(), "kv_scale", {0.5f}).code, 0);
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  Cache cache(p, layer.get(), 2);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {4, kHkv, kD}, 2.0, 55);
  write_and_expect_codes(p, layer.get(), cache, k, v, {1, 2, 20, 31}, KVQ_DTYPE_F8_E4M3FN, {0.5f},
                         {0.5f});
}

TEST(TritonFp8Scales, MissingQScaleEqualsKScale) {
  Plugin p(triton_plugin_path());
  const Config c = fp8_config("fp8");
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  PagedInput in;
  in.seqs = {{1, 90}, {6, 40}, {1, 17}};
  in.query_dtype = KVQ_DTYPE_F8_E4M3FN;
  in.q_stddev = 4.0;  // codes; dequantized with q_scale = k_scale = 0.5
  in.kv_stddev = 1.5;
  in.seed = 57;
  const PagedRun run = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const Deq deq = fp8_tensor_deq(KVQ_DTYPE_F8_E4M3FN, {0.5f}, {0.25f});
  const auto want = reference_attention(c, in.seqs, run, deq, std::vector<double>(kHq, 0.5));
  const auto cmp = kvq::ref::compare(run.output, want, 1.5e-1, 1.5e-1);
  EXPECT_EQ(cmp.non_finite, 0);
  EXPECT_EQ(cmp.violations, 0) << "max abs err " << cmp.max_abs_error;
  // A plugin that used q_scale = 1 would be far off.
  const auto wrong = reference_attention(c, in.seqs, run, deq, std::vector<double>(kHq, 1.0));
  EXPECT_GT(kvq::ref::compare(run.output, wrong, 1.5e-1, 1.5e-1).violations, 0);
  EXPECT_GT(max_abs_diff(want, wrong), 4 * 1.5e-1);
}

TEST(TritonFp8Scales, NonScalarPerTensorScaleRejected) {
  Plugin p(triton_plugin_path());
  LayerPtr layer = make_layer(p, fp8_config("fp8"));  // num_kv_heads 2, num_heads 4
  for (const char* name : {"k_scale", "v_scale", "kv_scale", "q_scale"}) {
    SCOPED_TRACE(name);
    const CallResult r = load_scale(p, layer.get(), name, {0.5f, 0.5f, 0.5f});
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
    EXPECT_TRUE(r.message.find("[3]") != std::string::npos ||
                r.message.find("(3,)") != std::string::npos)
        << r.message;
  }
  // Nothing was loaded: the scales are still 1.0.
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  EXPECT_EQ(read_scale(p, layer.get(), "k_scale"), std::vector<float>{1.0f});
}

TEST(TritonFp8Scales, PerHeadScalesAppliedPerHead) {
  Plugin p(triton_plugin_path());
  const Config c = fp8_config("fp8");
  LayerPtr layer = make_layer(p, c);
  const std::vector<float> ks = {0.5f, 0.125f}, vs = {0.25f, 2.0f}, qs = {0.75f, 0.5f, 1.0f, 1.5f};
  ASSERT_EQ(load_scale(p, layer.get(), "k_scale", ks).code, 0);
  ASSERT_EQ(load_scale(p, layer.get(), "v_scale", vs).code, 0);
  ASSERT_EQ(load_scale(p, layer.get(), "q_scale", qs).code, 0);
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  EXPECT_EQ(read_scale(p, layer.get(), "k_scale"), ks);
  EXPECT_EQ(read_scale(p, layer.get(), "q_scale"), qs);

  Cache cache(p, layer.get(), 2);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {4, kHkv, kD}, 2.0, 61);
  write_and_expect_codes(p, layer.get(), cache, k, v, {3, 4, 18, 30}, KVQ_DTYPE_F8_E4M3FN, ks, vs);

  // fp8 query: per-head q, k and v scales in the attention output.
  PagedInput in;
  in.seqs = {{1, 70}, {5, 30}};
  in.query_dtype = KVQ_DTYPE_F8_E4M3FN;
  in.q_stddev = 2.0;
  in.seed = 63;
  const PagedRun run = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const Deq deq = fp8_tensor_deq(KVQ_DTYPE_F8_E4M3FN, ks, vs);
  const std::vector<double> q_scale(qs.begin(), qs.end());
  const auto cmp = kvq::ref::compare(run.output, reference_attention(c, in.seqs, run, deq, q_scale),
                                     1.5e-1, 1.5e-1);
  EXPECT_EQ(cmp.non_finite, 0);
  EXPECT_EQ(cmp.violations, 0) << "max abs err " << cmp.max_abs_error;
}

TEST(TritonFp8Scales, ZeroNegativeNonFiniteScalesRejected) {
  Plugin p(triton_plugin_path());
  LayerPtr layer = make_layer(p, fp8_config("fp8"));
  for (const char* name : {"k_scale", "v_scale", "q_scale", "kv_scale"})
    for (const float bad : {0.0f, -0.5f, NAN, INFINITY}) {
      SCOPED_TRACE(std::string(name) + " = " + std::to_string(bad));
      const CallResult r = load_scale(p, layer.get(), name, {bad});
      EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
    }
  // One bad value in a per-head vector.
  const CallResult r = load_scale(p, layer.get(), "k_scale", {0.5f, -1.0f});
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
}

// ---- 6. calculate_kv_scales --------------------------------------------------

TEST(TritonCalculateKvScales, FirstWriteSetsScalesThenFrozen) {
  Plugin p(triton_plugin_path());
  Config c = fp8_config("fp8");
  c.options = {{"calculate_kv_scales", "true"}};
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  Cache cache(p, layer.get(), 4);

  OwnedTensor k = random_tensor(KVQ_DTYPE_BF16, {5, kHkv, kD}, 2.0, 71);
  OwnedTensor v = random_tensor(KVQ_DTYPE_BF16, {5, kHkv, kD}, 3.0, 72);
  float k_max = 0.0f, v_max = 0.0f;
  for (double x : k.to_doubles()) k_max = std::max(k_max, static_cast<float>(std::fabs(x)));
  for (double x : v.to_doubles()) v_max = std::max(v_max, static_cast<float>(std::fabs(x)));
  const float want_k = k_max / 200.0f, want_v = v_max / 100.0f;
  write_and_expect_codes(p, layer.get(), cache, k, v, {0, 1, 2, 3, 4}, KVQ_DTYPE_F8_E4M3FN,
                         {want_k}, {want_v});
  EXPECT_EQ(read_scale(p, layer.get(), "k_scale"), std::vector<float>{want_k});
  EXPECT_EQ(read_scale(p, layer.get(), "v_scale"), std::vector<float>{want_v});

  // A second, larger batch: scales frozen, so its codes saturate.
  OwnedTensor k2 = random_tensor(KVQ_DTYPE_BF16, {3, kHkv, kD}, 20.0, 73);
  OwnedTensor v2 = random_tensor(KVQ_DTYPE_BF16, {3, kHkv, kD}, 30.0, 74);
  write_and_expect_codes(p, layer.get(), cache, k2, v2, {40, 41, 50}, KVQ_DTYPE_F8_E4M3FN, {want_k},
                         {want_v});
  EXPECT_EQ(read_scale(p, layer.get(), "k_scale"), std::vector<float>{want_k});
  EXPECT_EQ(read_scale(p, layer.get(), "v_scale"), std::vector<float>{want_v});
}

// §5: q_scale = max|q| / 200 at the first forward with a float query, then
// frozen like k/v.
TEST(TritonCalculateKvScales, FirstForwardSetsQScaleThenFrozen) {
  Plugin p(triton_plugin_path());
  Config c = fp8_config("fp8");
  c.options = {{"calculate_kv_scales", "true"}};
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(process_weights(p, layer.get()).code, 0);
  PagedInput in;
  in.seqs = {{1, 40}, {6, 30}};
  in.q_stddev = 2.5;
  in.seed = 75;
  const PagedRun first = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(first.status.code, 0) << first.status.message;
  float q_max = 0.0f;
  for (double x : first.query) q_max = std::max(q_max, static_cast<float>(std::fabs(x)));
  ASSERT_GT(q_max, 1.0f);
  const std::vector<float> want_q = {q_max / 200.0f};
  EXPECT_EQ(read_scale(p, layer.get(), "q_scale"), want_q);

  in.q_stddev = 25.0;  // a larger query: the scale stays
  in.seed = 76;
  const PagedRun second = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(second.status.code, 0) << second.status.message;
  EXPECT_EQ(read_scale(p, layer.get(), "q_scale"), want_q);
}

TEST(TritonCalculateKvScales, MalformedOptionRejectedAtCreate) {
  Plugin p(triton_plugin_path());
  Config c = fp8_config("fp8");
  c.options = {{"calculate_kv_scales", "maybe"}};
  LayerPtr layer(nullptr, p.api().layer_destroy);
  const CallResult r = create_layer(p, c, &layer);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_NE(r.message.find("maybe"), std::string::npos) << r.message;
  EXPECT_EQ(layer.get(), nullptr);
}

// ---- 9. schemes ----------------------------------------------------------------

TEST(TritonSchemes, UpgradeAutoLayerToInt8PerTokenHead) {
  Plugin p(triton_plugin_path());
  Config c;  // "auto", bf16
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(geometry(p, layer.get()).element_dtype, KVQ_DTYPE_BF16);
  const CallResult r = apply_scheme(p, layer.get(), "int8_per_token_head");
  ASSERT_EQ(r.code, 0) << r.message;
  const kvq_layer_info info = layer_info(p, layer.get());
  EXPECT_STREQ(info.kv_cache_dtype, "int8_per_token_head");
  EXPECT_STREQ(info.scheme, "int8_per_token_head");
  EXPECT_EQ(info.element_dtype, KVQ_DTYPE_I8);
  const kvq_cache_geometry g = geometry(p, layer.get());
  EXPECT_EQ(g.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(g.row_bytes, c.head_size + 4);

  // The upgraded layer writes int8 per-token-head rows.
  Cache cache(p, layer.get(), 2);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {2, c.num_kv_heads, c.head_size}, 1.0, 81);
  ASSERT_EQ(write_kv(p, layer.get(), k, v, {7, 19}, cache).code, 0);
  const RefRow want = ref_int8_row(row_of(k, 1, 1));
  const unsigned char* row = cache.slot_row(19, 0, 1);
  EXPECT_EQ(std::vector<uint8_t>(row, row + c.head_size), want.data);
  EXPECT_EQ(bits(load_f32(row + c.head_size)), bits(want.scale));

  // A second scheme (or the same again) is refused.
  EXPECT_EQ(apply_scheme(p, layer.get(), "fp8").code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_EQ(apply_scheme(p, layer.get(), "int8_per_token_head").code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_STREQ(layer_info(p, layer.get()).kv_cache_dtype, "int8_per_token_head");
}

TEST(TritonSchemes, Fp8SchemeDeclaresScaleParams) {
  Plugin p(triton_plugin_path());
  LayerPtr layer = make_layer(p, fp8_config("auto"));
  ASSERT_EQ(apply_scheme(p, layer.get(), "fp8").code, 0);
  const kvq_layer_info info = layer_info(p, layer.get());
  EXPECT_STREQ(info.kv_cache_dtype, "fp8");
  EXPECT_EQ(info.element_dtype, KVQ_DTYPE_F8_E4M3FN);
  std::set<std::string> names;
  for (int64_t i = 0; i < info.num_params; ++i) {
    kvq_param_info pi{};
    pi.struct_size = KVQ_PARAM_INFO_SIZE;
    ASSERT_EQ(p.take(p.api().param_info(layer.get(), i, &pi)).code, 0);
    names.insert(pi.name);
    EXPECT_STREQ(pi.loader, "fp8_scale") << pi.name;
    EXPECT_EQ(pi.dtype, KVQ_DTYPE_F32) << pi.name;
  }
  const std::set<std::string> want = {param_name("k_scale"), param_name("v_scale"),
                                      param_name("q_scale"), param_name("kv_scale")};
  EXPECT_EQ(names, want);

  // The declared scales load and are used by the write.
  ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  Cache cache(p, layer.get(), 2);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {2, kHkv, kD}, 2.0, 83);
  write_and_expect_codes(p, layer.get(), cache, k, v, {0, 9}, KVQ_DTYPE_F8_E4M3FN, {0.5f}, {0.25f});
}

TEST(TritonSchemes, GetInfoListsEveryQuantizedMode) {
  Plugin p(triton_plugin_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  ASSERT_EQ(p.take(p.api().get_info(p.instance(), &info)).code, 0);
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const std::string mode : {"fp8", "fp8_e4m3", "fp8_e5m2", "int8_per_token_head",
                                 "fp8_per_token_head", "int4_per_token_head"}) {
    SCOPED_TRACE(mode);
    const kvq_scheme_info* found = nullptr;
    for (int64_t i = 0; i < info.num_schemes; ++i)
      if (mode == info.schemes[i]->quant_type &&
          std::string(info.schemes[i]->layer_type) == "attention")
        found = info.schemes[i];
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(found->supported, 1);
    if (mode.rfind("fp8", 0) == 0 && mode != "fp8_per_token_head") {
      bool k_rule = false, v_rule = false;
      for (int64_t r = 0; r < found->num_name_rules; ++r) {
        const std::string from = found->name_rules[r]->checkpoint_suffix;
        const std::string to = found->name_rules[r]->param_suffix;
        EXPECT_FALSE(from.empty());
        k_rule = k_rule || (ends_with(from, "k_scale") && ends_with(to, ".k_scale"));
        v_rule = v_rule || (ends_with(from, "v_scale") && ends_with(to, ".v_scale"));
      }
      EXPECT_TRUE(k_rule && v_rule) << "fp8 schemes need checkpoint name rules for k/v scales";
    }
    // The backend lists the same mode string.
    bool listed = false;
    for (int64_t b = 0; b < info.num_backends; ++b)
      for (int64_t m = 0; m < info.backends[b]->num_kv_modes; ++m)
        listed = listed || mode == info.backends[b]->kv_modes[m]->name;
    EXPECT_TRUE(listed);
  }
}

TEST(TritonSchemes, PerTokenHeadSchemeOnHeadSize34Rejected) {
  Plugin p(triton_plugin_path());
  Config c;
  c.head_size = 34;
  LayerPtr layer = make_layer(p, c);  // fine unquantized
  const CallResult r = apply_scheme(p, layer.get(), "int8_per_token_head");
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_NE(r.message.find("multiple of 4"), std::string::npos) << r.message;
  EXPECT_EQ(layer_info(p, layer.get()).element_dtype, KVQ_DTYPE_BF16);
  EXPECT_EQ(geometry(p, layer.get()).element_dtype, KVQ_DTYPE_BF16);
}

}  // namespace
}  // namespace kvq::test::tri
