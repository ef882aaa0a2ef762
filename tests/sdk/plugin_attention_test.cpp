// Both plugins' unquantized modes against the float64 reference, through the
// C ABI: prefill, decode and mixed batches, GQA, causal bottom-right masking,
// sliding window, softcap, ALiBi and sinks.
#include "harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>

namespace kvq::test {
namespace {

struct Tolerance {
  double atol, rtol;
};
Tolerance tolerance_for(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32: return {2e-5, 2e-5};
    case KVQ_DTYPE_F16: return {2e-3, 1e-2};
    default: return {1.5e-2, 1e-2};  // vLLM's bf16 paged-attention tolerance
  }
}

void expect_close(const BatchResult& r, int32_t dtype) {
  ASSERT_EQ(r.status.code, 0) << r.status.message;
  const Tolerance t = tolerance_for(dtype);
  const auto c = kvq::ref::compare(r.actual, r.reference, t.atol, t.rtol);
  EXPECT_EQ(c.non_finite, 0);
  EXPECT_EQ(c.violations, 0) << "worst element " << c.worst_index << " max abs err "
                             << c.max_abs_error;
  EXPECT_LT(c.nmse, dtype == KVQ_DTYPE_F32 ? 1e-10 : 1e-4);
}

// (plugin, backend) x (mode, model dtype)
using Param = std::tuple<std::string, std::string, int32_t>;
class UnquantizedAttention : public ::testing::TestWithParam<Param> {
 protected:
  std::string backend() const { return std::get<0>(GetParam()); }
  std::string path() const {
    return backend() == "triton" ? triton_plugin_path() : ascend_plugin_path();
  }
  LayerSpec spec() const {
    LayerSpec s;
    s.backend = backend();
    s.mode = std::get<1>(GetParam());
    s.model_dtype = std::get<2>(GetParam());
    return s;
  }
};

TEST_P(UnquantizedAttention, MixedBatchWithGqa) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{1, 70}, {5, 5}, {17, 40}, {1, 1}, {40, 100}};
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

TEST_P(UnquantizedAttention, DecodeOnlyLongContexts) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{1, 523}, {1, 37}, {1, 1011}};
  b.state = KVQ_ATTN_DECODE_ONLY;
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

TEST_P(UnquantizedAttention, PrefillNoCache) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{33, 33}, {7, 7}};
  b.state = KVQ_ATTN_PREFILL_NO_CACHE;
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

TEST_P(UnquantizedAttention, MultiHeadAndSingleKvHead) {
  Plugin p(path());
  for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {5, 1}}) {
    LayerSpec s = spec();
    s.num_heads = hq;
    s.num_kv_heads = hkv;
    BatchSpec b;
    b.seqs = {{1, 50}, {9, 30}};
    expect_close(run_batch(p, s, b), s.model_dtype);
  }
}

TEST_P(UnquantizedAttention, SlidingWindowAndSoftcap) {
  Plugin p(path());
  LayerSpec s = spec();
  s.sliding_window = 16;
  s.softcap = 5.0;
  BatchSpec b;
  b.seqs = {{1, 90}, {20, 60}, {8, 8}};
  expect_close(run_batch(p, s, b), s.model_dtype);
}

TEST_P(UnquantizedAttention, AlibiAndSinks) {
  Plugin p(path());
  BatchSpec b;
  b.seqs = {{1, 45}, {12, 30}};
  b.alibi = true;
  b.sinks = true;
  expect_close(run_batch(p, spec(), b), spec().model_dtype);
}

INSTANTIATE_TEST_SUITE_P(Modes, UnquantizedAttention,
                         ::testing::Combine(::testing::Values("triton", "ascend"),
                                            ::testing::Values("bfloat16", "float16", "float32"),
                                            ::testing::Values(KVQ_DTYPE_BF16)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

INSTANTIATE_TEST_SUITE_P(
    ModelDtypes, UnquantizedAttention,
    ::testing::Combine(::testing::Values("triton", "ascend"), ::testing::Values("auto"),
                       ::testing::Values(KVQ_DTYPE_F32, KVQ_DTYPE_F16, KVQ_DTYPE_BF16)),
    [](const auto& info) {
      return std::get<0>(info.param) + "_auto_" + std::to_string(std::get<2>(info.param));
    });

TEST(AscendBackend, PrefillNoCacheAttendsOnTheBatchFloatKv) {
  // The cache is never written: only the batch's own K/V can give the reference.
  Plugin p(ascend_plugin_path());
  LayerSpec s;
  s.backend = "ascend";
  s.mode = "float32";  // cache dtype fp32; model bf16
  BatchSpec b;
  b.seqs = {{24, 24}, {3, 3}};
  b.state = KVQ_ATTN_PREFILL_NO_CACHE;
  b.write_cache = false;
  expect_close(run_batch(p, s, b), KVQ_DTYPE_BF16);
}

TEST(AscendBackend, PrefillNoCacheWithoutBatchKvIsAnError) {
  Plugin p(ascend_plugin_path());
  LayerSpec s;
  s.backend = "ascend";
  BatchSpec b;
  b.seqs = {{4, 4}};
  b.state = KVQ_ATTN_PREFILL_NO_CACHE;
  b.pass_batch_kv = false;
  const BatchResult r = run_batch(p, s, b);
  EXPECT_EQ(r.status.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.status.message.find("key and value"), std::string::npos) << r.status.message;
}

}  // namespace
}  // namespace kvq::test
