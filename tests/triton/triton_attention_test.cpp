// Attention of libkvq_triton_sim.so on quantized caches through the C ABI
// (spec/triton_sim.md §4, §6): INT4 per-token-head, FP8 per-tensor with a
// bf16 or an fp8 query, and split-KV decode across thread counts, each
// against float64 attention over the dequantized K/V computed in the test.
#include "harness.hpp"
#include "kvq_ref/reference.hpp"
#include "triton_test_util.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace kvq::test::tri {
namespace {

void expect_within(const std::vector<double>& actual, const std::vector<double>& want, double atol,
                   double rtol) {
  ASSERT_EQ(actual.size(), want.size());
  const auto c = kvq::ref::compare(actual, want, atol, rtol);
  EXPECT_EQ(c.non_finite, 0);
  EXPECT_EQ(c.violations, 0) << "worst element " << c.worst_index << " max abs err "
                             << c.max_abs_error << " (atol " << atol << ", rtol " << rtol << ")";
}

// The layers here: 8 query heads on 2 KV heads.
Config attention_config(const std::string& mode) {
  Config c(mode);
  c.num_heads = 8;
  c.num_kv_heads = 2;
  return c;
}

// ---- 2. INT4 per-token-head attention ------------------------------------------

TEST(TritonInt4Attention, MatchesDequantizedAndIsCloseToUnquantized) {
  Plugin p(triton_plugin_path());
  const Config c = attention_config("int4_per_token_head");
  LayerPtr layer = make_layer(p, c);
  PagedInput in;
  in.seqs = {{1, 100}, {7, 40}, {1, 33}, {16, 64}};
  in.seed = 91;
  const PagedRun run = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const Deq deq = [](const std::vector<float>& x, int64_t, bool) {
    return ref_int4_row(x).dequant;
  };
  const std::vector<double> dequantized = reference_attention(c, in.seqs, run, deq);
  expect_within(run.output, dequantized, 1e-2, 1e-2);
  // End to end: what the same quantization costs in float64, and little more.
  const std::vector<double> original = reference_attention(c, in.seqs, run, identity_deq);
  const double cost = kvq::ref::compare(dequantized, original, 0.0, 0.0).nmse;
  EXPECT_LE(kvq::ref::compare(run.output, original, 0.0, 0.0).nmse, 1.1 * cost + 1e-5)
      << "int4 quantization itself costs nmse " << cost;
}

// ---- 7. FP8 per-tensor attention -----------------------------------------------

class Fp8PerTensorAttention : public ::testing::TestWithParam<std::string> {};

TEST_P(Fp8PerTensorAttention, Bf16QueryMatchesDequantized) {
  const int32_t fp8 = GetParam() == "fp8_e5m2" ? KVQ_DTYPE_F8_E5M2 : KVQ_DTYPE_F8_E4M3FN;
  Plugin p(triton_plugin_path());
  const Config c = attention_config(GetParam());
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  PagedInput in;
  in.seqs = {{1, 200}, {9, 60}, {1, 17}, {16, 16}};
  in.seed = 101;
  const PagedRun run = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  // vLLM's tolerance for attention on a quantized cache vs the dequantized one.
  expect_within(run.output,
                reference_attention(c, in.seqs, run, fp8_tensor_deq(fp8, {0.5f}, {0.25f}, true)),
                5e-2, 5e-2);
}

INSTANTIATE_TEST_SUITE_P(Modes, Fp8PerTensorAttention, ::testing::Values("fp8", "fp8_e5m2"));

TEST(TritonFp8QueryAttention, QueryScaleIsApplied) {
  Plugin p(triton_plugin_path());
  const Config c = attention_config("fp8");
  LayerPtr layer = make_layer(p, c);
  // vLLM's test scales.
  ASSERT_EQ(load_scale(p, layer.get(), "q_scale", {0.75f}).code, 0);
  ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  PagedInput in;
  in.seqs = {{1, 150}, {8, 48}, {1, 20}};
  in.query_dtype = KVQ_DTYPE_F8_E4M3FN;
  in.q_stddev = 3.0;  // fp8 codes; the query is code * 0.75
  in.kv_stddev = 1.5;
  in.seed = 111;
  const PagedRun run = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const Deq deq = fp8_tensor_deq(KVQ_DTYPE_F8_E4M3FN, {0.5f}, {0.25f});
  const auto want = reference_attention(c, in.seqs, run, deq, std::vector<double>(8, 0.75));
  expect_within(run.output, want, 1.5e-1, 1.5e-1);
  // The test discriminates: ignoring q_scale (q_scale = 1) is far outside the tolerance.
  const auto ignored = reference_attention(c, in.seqs, run, deq, std::vector<double>(8, 1.0));
  EXPECT_GT(max_abs_diff(want, ignored), 4 * 1.5e-1);
  EXPECT_GT(kvq::ref::compare(run.output, ignored, 1.5e-1, 1.5e-1).violations, 0);
}

// The fp8-query path rounds the numerator's probabilities to e4m3 before P·V
// (vLLM's kernel casts P to the fp8 V's dtype). Rows of at most one key tile,
// so the kernel's running maximum is final from the start, as the reference
// assumes: the plugin must sit far closer to the reference that rounds P than
// to the one that does not.
TEST(TritonFp8QueryAttention, ProbabilitiesAreRoundedToE4m3) {
  Plugin p(triton_plugin_path(), 1);
  const Config c = attention_config("fp8");
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(load_scale(p, layer.get(), "q_scale", {0.75f}).code, 0);
  ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  PagedInput in;
  in.seqs = {{1, 60}, {8, 48}, {1, 20}, {16, 64}};
  in.query_dtype = KVQ_DTYPE_F8_E4M3FN;
  in.q_stddev = 3.0;
  in.kv_stddev = 1.5;
  in.seed = 112;
  const PagedRun run = run_paged(p, layer.get(), c, in);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const Deq deq = fp8_tensor_deq(KVQ_DTYPE_F8_E4M3FN, {0.5f}, {0.25f});
  const std::vector<double> q_scale(8, 0.75);
  const auto rounded = reference_attention(c, in.seqs, run, deq, q_scale, true);
  const auto unrounded = reference_attention(c, in.seqs, run, deq, q_scale, false);
  const double to_rounded = kvq::ref::compare(run.output, rounded, 0.0, 0.0).nmse;
  const double to_unrounded = kvq::ref::compare(run.output, unrounded, 0.0, 0.0).nmse;
  // The two references differ by the rounding itself (NMSE ~1e-3); the
  // plugin differs from the rounding one by bf16 output rounding (~1e-5).
  EXPECT_LT(to_rounded, to_unrounded / 20) << "nmse to the P-rounding reference " << to_rounded
                                           << ", to the unrounded one " << to_unrounded;
  EXPECT_LT(to_rounded, 1e-4);
}

// ---- 8. split-KV decode on a quantized cache -------------------------------------

TEST(TritonSplitKvDecode, ThreadCountsAgreeOnInt8PerTokenHead) {
  Config c = attention_config("int8_per_token_head");
  c.model_dtype = KVQ_DTYPE_F32;  // fp32 output: compare the splits at fp32 rounding
  PagedInput in;
  in.seqs = {{1, 3001}};  // context 3000, one decode token
  in.query_dtype = KVQ_DTYPE_F32;
  in.seed = 121;
  std::vector<std::vector<double>> outputs;
  PagedRun last;
  for (const int threads : {1, 4}) {
    Plugin p(triton_plugin_path(), threads);
    LayerPtr layer = make_layer(p, c);
    last = run_paged(p, layer.get(), c, in);
    ASSERT_EQ(last.status.code, 0) << last.status.message;
    outputs.push_back(last.output);
  }
  double scale = 0.0;
  for (double x : outputs[0]) scale = std::max(scale, std::fabs(x));
  ASSERT_GT(scale, 0.0);
  for (size_t i = 0; i < outputs[0].size(); ++i)
    EXPECT_NEAR(outputs[0][i], outputs[1][i], 1e-5 * scale) << "element " << i;
  const Deq deq = [](const std::vector<float>& x, int64_t, bool) {
    return ref_int8_row(x).dequant;
  };
  const auto want = reference_attention(c, in.seqs, last, deq);
  for (const auto& out : outputs) expect_within(out, want, 1e-4, 1e-4);
}

}  // namespace
}  // namespace kvq::test::tri
