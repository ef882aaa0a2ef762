// The C8 write path bit-exact against a bf16-emulating reference written here
// (spec/ascend.md §5), through cache_write and the int8 cache bytes:
//   inv = bf16(1.0f / scale), off = bf16(offset)        per channel h*D + d
//   t = bf16(bf16(x) * inv); t = bf16(t + off); q = clamp(rne(t), -128, 127)
// with every bf16 rounding done by kvq_ref::round_to(KVQ_DTYPE_BF16, ...).
#include "ascend_harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kvq::test::asc {
namespace {

constexpr unsigned char kPattern = 0x5A;

// Expects the codes of token t of key/value at `slot` to equal the reference.
void expect_token_codes(const Cache& cache, const Config& c, const Scales& s,
                        const OwnedTensor& key, const OwnedTensor& value, int64_t t, int64_t slot) {
  const std::vector<double> k = key.to_doubles(), v = value.to_doubles();
  for (int64_t h = 0; h < c.num_kv_heads; ++h)
    for (int64_t d = 0; d < c.head_size; ++d) {
      const size_t ch = static_cast<size_t>(h * c.head_size + d);
      const size_t i = static_cast<size_t>((t * c.num_kv_heads + h) * c.head_size + d);
      ASSERT_EQ(cache.code(slot, 0, h, d),
                ref_quantize(k[i], ref_channel(s.k_scale[ch], s.k_offset[ch])))
          << "K token " << t << " head " << h << " d " << d << " x " << k[i];
      ASSERT_EQ(cache.code(slot, 1, h, d),
                ref_quantize(v[i], ref_channel(s.v_scale[ch], s.v_offset[ch])))
          << "V token " << t << " head " << h << " d " << d << " x " << v[i];
    }
}

void fill_pattern(Cache& cache) {
  std::memset(cache.data(), kPattern, static_cast<size_t>(cache.size()));
}

// True when every K and V byte of `slot` still holds the fill pattern.
bool slot_untouched(const Cache& cache, const Config& c, int64_t slot) {
  for (int kv = 0; kv < 2; ++kv)
    for (int64_t h = 0; h < c.num_kv_heads; ++h)
      for (int64_t d = 0; d < c.head_size; ++d)
        if (static_cast<unsigned char>(cache.code(slot, kv, h, d)) != kPattern) return false;
  return true;
}

TEST(AscendC8Quantize, BitExactOnRandomInputsWithPerChannelScalesAndOffsets) {
  Plugin p(ascend_plugin_path());
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    SCOPED_TRACE(dtype);
    Config c;
    c.model_dtype = dtype;
    c.num_heads = 8;
    c.num_kv_heads = 4;
    c.head_size = 16;
    const int64_t channels = c.num_kv_heads * c.head_size, tokens = 96;
    // Small scales and offsets up to ±20 make both ends saturate sometimes.
    const Scales s = random_scales(channels, 100 + static_cast<uint64_t>(dtype), 0.01, 0.05, 20.0);
    for (double o : s.k_offset) ASSERT_NE(o, 0.0);
    LayerPtr layer = make_c8_layer(p, c, s);
    Cache cache(p, layer.get(), 4);
    auto [k, v] = random_kv(dtype, {tokens, c.num_kv_heads, c.head_size}, 1.5, 7);
    // A few exact ties on the bf16 grid and tiny values around zero.
    for (int64_t i = 0; i < 64; ++i) {
      k.set(i * 37 % k.numel(),
            (i % 2 ? -1.0 : 1.0) * std::ldexp(1.0, -20 + static_cast<int>(i % 9)));
      v.set(i * 41 % v.numel(), static_cast<double>(i % 7) * 0.015625);
    }
    std::vector<int64_t> slots(static_cast<size_t>(tokens));
    std::mt19937_64 rng(9);
    for (int64_t t = 0; t < tokens; ++t) slots[static_cast<size_t>(t)] = t;
    std::shuffle(slots.begin(), slots.end(), rng);
    ASSERT_EQ(write_kv(p, layer.get(), k, v, slots, cache).code, 0);
    int64_t hi = 0, lo = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      expect_token_codes(cache, c, s, k, v, t, slots[static_cast<size_t>(t)]);
      if (HasFatalFailure()) return;
      for (int64_t h = 0; h < c.num_kv_heads; ++h)
        for (int64_t d = 0; d < c.head_size; ++d) {
          const int8_t q = cache.code(slots[static_cast<size_t>(t)], 0, h, d);
          hi += q == 127;
          lo += q == -128;
        }
    }
    // The emulation matters: quantizing in float32 without the bf16 steps
    // (rne(x * (1/scale) + offset)) disagrees with the reference somewhere.
    int64_t single_rounding_differs = 0;
    const std::vector<double> kd = k.to_doubles();
    for (int64_t i = 0; i < k.numel(); ++i) {
      const size_t ch = static_cast<size_t>(i % channels);
      const float y = static_cast<float>(kd[static_cast<size_t>(i)]) *
                          (1.0f / static_cast<float>(s.k_scale[ch])) +
                      static_cast<float>(s.k_offset[ch]);
      const double naive = std::clamp(static_cast<double>(std::nearbyint(y)), -128.0, 127.0);
      single_rounding_differs += naive != ref_quantize(kd[static_cast<size_t>(i)],
                                                       ref_channel(s.k_scale[ch], s.k_offset[ch]));
    }
    EXPECT_GT(single_rounding_differs, 0);
    EXPECT_GT(hi, 0) << "the inputs never saturated at +127";
    EXPECT_GT(lo, 0) << "the inputs never saturated at -128";
  }
}

// bf16 has a 0.5 grid in [64, 128): x * inv = 100.6875 in float becomes 100.5
// in bf16, then rounds half-to-even to 100 (a single rounding would give 101).
TEST(AscendC8Quantize, DoubleRoundingOnTheBf16Grid) {
  const float scale = 1.0f / 2.25f;
  const RefChannel ch = ref_channel(scale, 0.0);
  ASSERT_EQ(ch.inv, 2.25);
  ASSERT_EQ(44.75f * 2.25f, 100.6875f);
  ASSERT_EQ(std::nearbyint(44.75 * 2.25), 101.0);  // what one rounding would give
  ASSERT_EQ(ref_quantize(44.75, ch), 100);
  ASSERT_EQ(ref_quantize(-44.75, ch), -100);
  // With offset 0.125: bf16(100.5 + 0.125) = 100.5 -> 100 (exactly 100.8125 -> 101).
  ASSERT_EQ(ref_quantize(44.75, ref_channel(scale, 0.125)), 100);

  Plugin p(ascend_plugin_path());
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F32}) {
    SCOPED_TRACE(dtype);
    Config c;
    c.model_dtype = dtype;
    const int64_t channels = c.num_kv_heads * c.head_size;
    // K: offset 0; V: offset 0.125.
    const Scales s{std::vector<double>(static_cast<size_t>(channels), scale),
                   std::vector<double>(static_cast<size_t>(channels), 0.0),
                   std::vector<double>(static_cast<size_t>(channels), scale),
                   std::vector<double>(static_cast<size_t>(channels), 0.125)};
    LayerPtr layer = make_c8_layer(p, c, s);
    Cache cache(p, layer.get(), 1);
    OwnedTensor x(dtype, {2, c.num_kv_heads, c.head_size});
    for (int64_t i = 0; i < x.numel(); ++i) x.set(i, i < x.numel() / 2 ? 44.75 : -44.75);
    ASSERT_EQ(write_kv(p, layer.get(), x, x, {0, 1}, cache).code, 0);
    for (int64_t h = 0; h < c.num_kv_heads; ++h)
      for (int64_t d = 0; d < c.head_size; ++d) {
        EXPECT_EQ(cache.code(0, 0, h, d), 100);
        EXPECT_EQ(cache.code(1, 0, h, d), -100);
        EXPECT_EQ(cache.code(0, 1, h, d), 100);
        // -100.5 + 0.125 = -100.375 -> bf16 -100.5 -> -100 (even)
        EXPECT_EQ(cache.code(1, 1, h, d), ref_quantize(-44.75, ref_channel(scale, 0.125)));
        EXPECT_EQ(cache.code(1, 1, h, d), -100);
      }
  }
}

// A C8 layer of the default config with random scales (`seed`), a cache of
// `blocks` blocks whose bytes all hold kPattern, and random K/V of `tokens`
// tokens (seeds seed + 1, seed + 2).
struct PatternedWrite {
  Plugin p{ascend_plugin_path()};
  const Config c;
  const Scales s;
  LayerPtr layer;
  Cache cache;
  const std::pair<OwnedTensor, OwnedTensor> kv;
  PatternedWrite(uint64_t seed, int64_t blocks, int64_t tokens)
      : s(random_scales(c.num_kv_heads * c.head_size, seed)),
        layer(make_c8_layer(p, c, s)),
        cache(p, layer.get(), blocks),
        kv(random_kv(c.model_dtype, {tokens, c.num_kv_heads, c.head_size}, 1.0, seed + 1)) {
    fill_pattern(cache);
  }
  CallResult write(const std::vector<int64_t>& slots, int64_t num_tokens = 0) {
    return write_kv(p, layer.get(), kv.first, kv.second, slots, cache, num_tokens);
  }
  void expect_token_codes(int64_t t, int64_t slot) const {
    asc::expect_token_codes(cache, c, s, kv.first, kv.second, t, slot);
  }
};

TEST(AscendC8Quantize, NegativeSlotWritesNothing) {
  PatternedWrite f(11, 2, 5);
  ASSERT_EQ(f.write({3, -1, 40, -7, 0}).code, 0);
  f.expect_token_codes(0, 3);
  f.expect_token_codes(2, 40);
  f.expect_token_codes(4, 0);
  for (int64_t slot = 0; slot < 64; ++slot) {
    if (slot != 3 && slot != 40 && slot != 0) {
      EXPECT_TRUE(slot_untouched(f.cache, f.c, slot)) << "slot " << slot;
    }
  }
}

TEST(AscendC8Quantize, NumTokensWritesOnlyTheFirstRows) {
  PatternedWrite f(14, 1, 8);
  ASSERT_EQ(f.write({0, 1, 2, 3, 4, 5, 6, 7}, 5).code, 0);
  for (int64_t t = 0; t < 5; ++t) f.expect_token_codes(t, t);
  for (int64_t slot = 5; slot < 32; ++slot)
    EXPECT_TRUE(slot_untouched(f.cache, f.c, slot)) << "slot " << slot;
}

// spec §5: the C8 cache needs block_size % 32 == 0; the error names the value.
TEST(AscendC8Quantize, BlockSizeMustBeAMultipleOf32) {
  Plugin p(ascend_plugin_path());
  Config c;
  c.block_size = 48;
  LayerPtr layer = make_layer(p, c);
  const CallResult r = apply_c8(p, layer.get());
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
  EXPECT_NE(r.message.find("48"), std::string::npos) << r.message;
  EXPECT_STREQ(layer_info(p, layer.get()).impl_name, "ascend_attention");  // not upgraded
}

// abi/kvq_abi.h, cache_write: "Validates everything first: on any error
// nothing is written (... NaN/Inf in a quantized mode -> NON_FINITE naming
// token and head)". The C8 int8 cache is a quantized mode.
TEST(AscendC8Quantize, NonFiniteInputIsRejectedAndNothingWritten) {
  Plugin p(ascend_plugin_path());
  const Config c;
  LayerPtr layer = make_c8_layer(p, c, random_scales(c.num_kv_heads * c.head_size, 17));
  for (const double bad : {static_cast<double>(NAN), static_cast<double>(INFINITY)}) {
    SCOPED_TRACE(bad);
    Cache cache(p, layer.get(), 1);
    fill_pattern(cache);
    auto [k, v] = random_kv(c.model_dtype, {3, c.num_kv_heads, c.head_size}, 1.0, 18);
    k.set((2 * c.num_kv_heads + 1) * c.head_size + 3, bad);  // token 2, head 1
    const CallResult r = write_kv(p, layer.get(), k, v, {0, 1, 2}, cache);
    EXPECT_EQ(r.code, KVQ_ERR_NON_FINITE) << r.message;
    for (int64_t slot = 0; slot < 3; ++slot)
      EXPECT_TRUE(slot_untouched(cache, c, slot)) << "slot " << slot;
  }
}

}  // namespace
}  // namespace kvq::test::asc
