// A key that the causal mask or the sliding window hides from a query row
// must not reach that row, even when its stored K or V is NaN or Inf. The
// kernels work on blocks of four query rows; with one query head per KV head
// those are four different tokens, so at a prefill's causal or window edge a
// key can be visible to some rows of a block and hidden from others. A hidden
// key's weight is 0, and 0 * NaN = NaN: the kernels must skip it, not
// multiply by zero. Only unquantized caches can hold NaN/Inf (quantized
// writes refuse them).
//
// Runs at the process's SIMD level; CTest also runs it with KVQ_SIMD forced
// to every level (tests/sdk/CMakeLists.txt).
#include "harness.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace kvq::test {
namespace {

struct Poison {
  int64_t key;  // position in the sequence
  int kv;       // 0 = K, 1 = V
  int64_t head, element;
  double value;
};

struct EdgeCase {
  std::string mode;
  int32_t model;
  int64_t window;
  std::vector<Poison> poison;
};

// Runs one prefill chunk (8 new tokens over 40 keys, 2 query heads on 2 KV
// heads) and checks every row that cannot see a poisoned key against the
// float64 reference; rows that read a NaN V must be NaN.
void run_edge_case(const EdgeCase& c) {
  Plugin p(triton_plugin_path());
  // A level forced with KVQ_SIMD that this CPU lacks falls back to another:
  // that run would not test the forced level, so it is skipped, saying so.
  if (const char* forced = std::getenv("KVQ_SIMD"); forced != nullptr && *forced != '\0') {
    kvq_plugin_info info{};
    info.struct_size = KVQ_PLUGIN_INFO_SIZE;
    check(p.take(p.api().get_info(p.instance(), &info)), "get_info");
    if (std::string(info.simd_level) != forced)
      GTEST_SKIP() << "KVQ_SIMD=" << forced << " but this CPU has no such level (the plugin runs "
                   << info.simd_level << ")";
  }
  LayerSpec s;
  s.backend = "triton";
  s.mode = c.mode;
  s.model_dtype = c.model;
  s.num_heads = 2;
  s.num_kv_heads = 2;
  s.head_size = 64;
  s.block_size = 16;
  s.sliding_window = c.window;
  LayerPtr layer = make_layer(p, s);
  const std::vector<Seq> seqs = {{8, 40}};
  const int64_t ctx = 32, tokens = 8, sl = 40, d = 64, h = 2;
  std::mt19937_64 rng(11);
  const PagedBatch b = paged_batch(seqs, s.block_size, 1, rng);
  Cache cache(p, layer.get(), b.num_blocks);
  auto [key, value] = random_kv(c.model, {sl, h, d}, 1.0, 21);
  for (const Poison& x : c.poison)
    (x.kv == 0 ? key : value).set((x.key * h + x.head) * d + x.element, x.value);
  check(write_kv(p, layer.get(), key, value, b.slots[0], cache), "cache_write");

  OwnedTensor query = random_tensor(c.model, {tokens, h, d}, 1.0, 31);
  OwnedTensor output(c.model, {tokens, h, d});
  check(forward(p, layer.get(),
                b.forward_args(KVQ_ATTN_CHUNKED_PREFILL, query, cache.tensor(), output)),
        "forward");

  const std::vector<double> ref =
      reference_attention(s, seqs, query.to_doubles(), {key.to_doubles()}, {value.to_doubles()});
  const std::vector<double> out = output.to_doubles();
  const double rel = c.model == KVQ_DTYPE_F32 ? 1e-5 : 1.0 / 128;  // a bf16 ulp and then some
  int64_t checked = 0, nan_rows = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t pos = ctx + t;
    for (int64_t head = 0; head < h; ++head) {
      bool sees_poison = false;
      int64_t nan_element = -1;  // the element of a visible NaN value row
      for (const Poison& x : c.poison) {
        const bool visible =
            x.head == head && x.key <= pos && (c.window == 0 || pos - x.key < c.window);
        sees_poison = sees_poison || visible;
        if (visible && x.kv == 1 && std::isnan(x.value)) nan_element = x.element;
      }
      for (int64_t e = 0; e < d; ++e) {
        const size_t i = static_cast<size_t>((t * h + head) * d + e);
        if (e == nan_element) {
          EXPECT_TRUE(std::isnan(out[i])) << "token " << t << " head " << head;
          ++nan_rows;
        } else if (!sees_poison) {
          ASSERT_TRUE(std::isfinite(out[i])) << "token " << t << " head " << head << " elem " << e;
          EXPECT_NEAR(out[i], ref[i], 1e-6 + rel * std::fabs(ref[i]))
              << "token " << t << " head " << head << " elem " << e;
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 0);
  for (const Poison& x : c.poison)
    if (x.kv == 1 && std::isnan(x.value)) {
      EXPECT_GT(nan_rows, 0) << "some row sees the NaN value";
    }
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Causal edge: key 36 is the 5th new token, visible to tokens 4..7 only, so
// tokens 0..3 (one row block) and 4..7 straddle nothing, but key 34 (token
// 2) splits the block of tokens 0..3.
TEST(MaskedNonFinite, CausalEdgeNanValueFloat32) {
  run_edge_case({"float32", KVQ_DTYPE_F32, 0, {{34, 1, 0, 3, kNaN}, {37, 1, 1, 5, kNaN}}});
}

TEST(MaskedNonFinite, CausalEdgeInfKeyAndValueBf16) {
  run_edge_case({"bfloat16", KVQ_DTYPE_BF16, 0, {{33, 1, 0, 7, kInf}, {38, 0, 1, 9, kInf}}});
}

// Window edge: with a window of 3, key 33 is visible to tokens 1..3 but not
// to token 0, nor to tokens 4..7.
TEST(MaskedNonFinite, WindowEdgeNanValueFloat32) {
  run_edge_case({"float32", KVQ_DTYPE_F32, 3, {{33, 1, 1, 2, kNaN}}});
}

TEST(MaskedNonFinite, WindowEdgeNanKeyBf16) {
  run_edge_case({"bfloat16", KVQ_DTYPE_BF16, 3, {{31, 0, 0, 4, kNaN}, {33, 1, 0, 4, -kInf}}});
}

}  // namespace
}  // namespace kvq::test
