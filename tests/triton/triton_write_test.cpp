// libkvq_triton_sim.so cache writes through the C ABI (spec/triton_sim.md
// §2-§3): per-token-head INT8/FP8/INT4 codes and inline scales against a
// test-side float32 reference of the spec formulas, padding slots, NaN/Inf
// refusal with nothing written, and the cache geometry of every mode.
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

constexpr int64_t kD = 64, kHkv = 2, kBs = 16;

std::string row_name(int64_t token, int64_t head, int kv) {
  return std::string(kv == 0 ? "K" : "V") + " token " + std::to_string(token) + " head " +
         std::to_string(head);
}

// Expects every row of `cache` that no written token maps to to hold the
// fresh-cache bytes: data 0 and (per-token-head) scale 1.0.
void expect_untouched_rows_fresh(const Cache& cache, const std::set<int64_t>& written,
                                 int64_t data_bytes) {
  const kvq_cache_geometry& g = cache.geometry();
  int64_t checked = 0;
  for (int64_t slot = 0; slot < cache.num_blocks() * g.block_size; ++slot) {
    if (written.count(slot) != 0) continue;
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t h = 0; h < g.num_kv_heads; ++h) {
        const unsigned char* row = cache.slot_row(slot, kv, h);
        for (int64_t i = 0; i < data_bytes; ++i)
          ASSERT_EQ(row[i], 0) << "slot " << slot << " kv " << kv << " head " << h << " byte " << i;
        ASSERT_EQ(bits(load_f32(row + data_bytes)), bits(1.0f))
            << "fresh scale of slot " << slot << " kv " << kv << " head " << h;
        ++checked;
      }
  }
  EXPECT_GT(checked, 0);
  EXPECT_EQ(cache.first_changed_guard_byte(), -1) << "a write past the end of the cache";
}

// Expects every row no written token maps to to equal its bytes in `fresh`
// (the cache right after cache_init), and the guard bytes after the cache to
// be as cache_init left them.
void expect_untouched_rows_unchanged(const Cache& cache, const std::vector<unsigned char>& fresh,
                                     const std::vector<unsigned char>& fresh_guard,
                                     const std::set<int64_t>& written) {
  const kvq_cache_geometry& g = cache.geometry();
  const unsigned char* base = cache.row(0, 0, 0, 0);
  for (int64_t slot = 0; slot < cache.num_blocks() * g.block_size; ++slot) {
    if (written.count(slot) != 0) continue;
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t h = 0; h < g.num_kv_heads; ++h) {
        const unsigned char* row = cache.slot_row(slot, kv, h);
        for (int64_t i = 0; i < g.row_bytes; ++i)
          ASSERT_EQ(row[i], fresh[static_cast<size_t>(row - base + i)])
              << "slot " << slot << " kv " << kv << " head " << h << " byte " << i;
      }
  }
  EXPECT_TRUE(cache.guard_bytes() == fresh_guard) << "a write past the end of the cache";
}

// ---- 1. per-token-head INT8 / FP8 ----------------------------------------

class PerTokenHeadWrite : public ::testing::TestWithParam<std::string> {
 protected:
  bool is_int8() const { return GetParam() == "int8_per_token_head"; }
  RefRow reference(const std::vector<float>& x) const {
    return is_int8() ? ref_int8_row(x) : ref_fp8_row(x);
  }
  // A row whose absmax makes scale == 1 and inv == 1 exactly, so that y = x:
  // values that lie exactly halfway between two codes round to the even one.
  // Returns (inputs, the values the stored codes must decode to).
  std::pair<std::vector<double>, std::vector<double>> tie_row() const {
    std::vector<double> in, want;
    if (is_int8()) {
      in = {127, -127, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -2.5, 3.5, -125.5};
      want = {127, -127, 2, -4, 0, -0.0, 2, 126, -2, 4, -126};
      for (int64_t i = static_cast<int64_t>(in.size()); i < kD; ++i) {
        const double base = static_cast<double>(i % 9 - 4);  // ... -4.5 .. 4.5 ties
        in.push_back(base + 0.5);
        want.push_back(round_half_even(base + 0.5));
      }
    } else {
      // e4m3: [2,4) has spacing 0.25, [16,32) spacing 2, [128,256) spacing 16;
      // the smallest subnormal is 2^-9.
      const double sub = std::ldexp(1.0, -9);
      in = {448, -448, 17, -19, 200, 9, 0.5, 2.125, 2.375, 1.5 * sub, 0.5 * sub, -21};
      want = {448, -448, 16, -20, 192, 9, 0.5, 2.0, 2.5, 2 * sub, 0.0, -20};
      while (static_cast<int64_t>(in.size()) < kD) {
        in.push_back(1.0);
        want.push_back(1.0);
      }
    }
    return {in, want};
  }
  double decode(uint8_t code) const {
    return is_int8() ? static_cast<double>(static_cast<int8_t>(code))
                     : kvq::ref::decode_fp8(KVQ_DTYPE_F8_E4M3FN, code);
  }
};

TEST_P(PerTokenHeadWrite, GeometryIsDataPlusInlineScale) {
  Plugin p(triton_plugin_path());
  Config c(GetParam());
  LayerPtr layer = make_layer(p, c);
  const kvq_cache_geometry g = geometry(p, layer.get());
  EXPECT_EQ(g.layout, KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD);
  EXPECT_EQ(g.element_dtype, is_int8() ? KVQ_DTYPE_I8 : KVQ_DTYPE_F8_E4M3FN);
  EXPECT_EQ(g.row_bytes, kD + 4);
  EXPECT_EQ(g.bytes_per_block, 2 * kBs * kHkv * (kD + 4));
}

TEST_P(PerTokenHeadWrite, CodesAndScalesMatchSpecReference) {
  Plugin p(triton_plugin_path());
  Config c(GetParam());
  LayerPtr layer = make_layer(p, c);
  Cache cache(p, layer.get(), 4);
  ASSERT_EQ(cache.geometry().row_bytes, kD + 4);

  // Tokens 4 and 7 are padding; the others land in scattered slots.
  const std::vector<int64_t> slots = {5, 17, 33, 0, -1, 63, 48, -1, 20, 34};
  const auto t_count = static_cast<int64_t>(slots.size());
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {t_count, kHkv, kD}, 1.0, 11);
  // Magnitudes from tiny to large, so scales and x*inv cover a wide range.
  const double factor[] = {1.0, 1.0, 1.0, 1e-3, 5.0, 300.0, 0.02, 1.0, 7e3, 1.0};
  for (int64_t t = 0; t < t_count; ++t)
    for (int64_t h = 0; h < kHkv; ++h)
      for (OwnedTensor* x : {&k, &v}) {
        std::vector<double> r;
        for (float f : row_of(*x, t, h)) r.push_back(f * factor[t]);
        set_row(*x, t, h, r);
      }
  const std::vector<double> zeros(kD, 0.0);
  set_row(k, 1, 0, zeros);  // all-zero heads: scale = 1e-6
  set_row(v, 1, 1, zeros);
  const auto [ties, tie_values] = tie_row();
  for (int64_t h = 0; h < kHkv; ++h) {
    set_row(k, 2, h, ties);
    std::vector<double> neg;
    for (double x : ties) neg.push_back(-x);
    set_row(v, 2, h, neg);
  }

  std::set<int64_t> written;
  write_and_check_rows(
      p, layer.get(), k, v, slots, cache,
      [&](int64_t t, int64_t h, int kv, const std::vector<float>& x, const unsigned char* row) {
        const RefRow want = reference(x);
        for (int64_t i = 0; i < kD; ++i)
          ASSERT_EQ(row[i], want.data[static_cast<size_t>(i)])
              << row_name(t, h, kv) << " element " << i << " x=" << x[static_cast<size_t>(i)]
              << " scale=" << want.scale;
        ASSERT_EQ(bits(load_f32(row + kD)), bits(want.scale))
            << row_name(t, h, kv) << ": stored scale " << load_f32(row + kD) << " want "
            << want.scale;
      },
      &written);
  if (HasFatalFailure()) return;

  // The all-zero heads store the 1e-6 floor and zero codes.
  EXPECT_EQ(bits(load_f32(cache.slot_row(17, 0, 0) + kD)), bits(1e-6f));
  EXPECT_EQ(bits(load_f32(cache.slot_row(17, 1, 1) + kD)), bits(1e-6f));
  // The tie rows: scale exactly 1, and every code is the even neighbour.
  for (int64_t h = 0; h < kHkv; ++h) {
    ASSERT_EQ(load_f32(cache.slot_row(33, 0, h) + kD), 1.0f);
    ASSERT_EQ(load_f32(cache.slot_row(33, 1, h) + kD), 1.0f);
    for (int64_t i = 0; i < kD; ++i) {
      const double want = tie_values[static_cast<size_t>(i)];
      EXPECT_EQ(decode(cache.slot_row(33, 0, h)[i]), want)
          << "K tie element " << i << " input " << ties[static_cast<size_t>(i)];
      EXPECT_EQ(decode(cache.slot_row(33, 1, h)[i]), -want)
          << "V tie element " << i << " input " << -ties[static_cast<size_t>(i)];
    }
  }
  // Clamp limits: the absmax element of a row maps to the largest code.
  EXPECT_EQ(cache.slot_row(33, 0, 0)[0], is_int8() ? 0x7F : 0x7E);
  EXPECT_EQ(cache.slot_row(33, 0, 0)[1], is_int8() ? 0x81 : 0xFE);

  expect_untouched_rows_fresh(cache, written, kD);
}

// Spec §3: inv = 1/scale first, then y = x * inv (two roundings, as vLLM).
// Rows where x * inv and x / scale round to different codes tell the two
// apart. They sit next to a rounding boundary of the code (a tie), so the
// search walks float32 inputs ulp by ulp around boundary * scale (a float32
// model dtype: bf16 inputs are too coarse to land there).
TEST_P(PerTokenHeadWrite, ReciprocalThenMultiply) {
  const float qmax = is_int8() ? 127.0f : 448.0f;
  auto code_of = [&](float y) {
    return is_int8() ? round_half_even(y)
                     : kvq::ref::decode_fp8(
                           KVQ_DTYPE_F8_E4M3FN,
                           kvq::ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, std::clamp(y, -qmax, qmax)));
  };
  // Boundaries between neighbouring codes below qmax: k + 1/2 for int8; for
  // e4m3, the midpoints of [2^e, 2^(e+1)) in steps of 2^(e-3).
  std::vector<double> boundaries;
  if (is_int8()) {
    for (int k = 1; k < 127; ++k) boundaries.push_back(k + 0.5);
  } else {
    for (int e = -5; e < 8; ++e)
      for (int m = 0; m < 8; ++m) boundaries.push_back(std::ldexp(8 + m + 0.5, e - 3));
  }
  std::vector<std::vector<double>> rows;
  for (double a = 1.0; a < 64.0 && rows.size() < 8; a += 0.37) {
    const auto af = static_cast<float>(a);
    const float scale = af * (1.0f / qmax), inv = 1.0f / scale;
    std::vector<double> hits;
    for (double b : boundaries) {
      float x = static_cast<float>(b) * scale;
      for (int step = 0; step < 16 && x < af; ++step, x = std::nextafter(x, 2 * af)) {
        const float by_mul = x * inv, by_div = x / scale;
        if (by_mul != by_div && code_of(by_mul) != code_of(by_div)) hits.push_back(x);
      }
    }
    if (hits.empty()) continue;
    std::vector<double> row = {a, -a};
    while (static_cast<int64_t>(row.size()) < kD) {
      const double x = hits[row.size() % hits.size()];
      row.push_back(row.size() % 2 == 0 ? x : -x);
    }
    rows.push_back(row);
  }
  ASSERT_EQ(rows.size(), 8u) << "the search found too few discriminating rows";

  Plugin p(triton_plugin_path());
  Config c(GetParam());
  c.model_dtype = KVQ_DTYPE_F32;
  LayerPtr layer = make_layer(p, c);
  Cache cache(p, layer.get(), 1);
  OwnedTensor k(KVQ_DTYPE_F32, {2, kHkv, kD}), v(KVQ_DTYPE_F32, {2, kHkv, kD});
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t h = 0; h < kHkv; ++h) {
      set_row(k, t, h, rows[static_cast<size_t>(t * 4 + h * 2)]);
      set_row(v, t, h, rows[static_cast<size_t>(t * 4 + h * 2 + 1)]);
    }
  write_and_check_rows(
      p, layer.get(), k, v, {3, 9}, cache,
      [&](int64_t t, int64_t h, int kv, const std::vector<float>& x, const unsigned char* row) {
        const RefRow want = reference(x);
        for (int64_t i = 0; i < kD; ++i)
          ASSERT_EQ(row[i], want.data[static_cast<size_t>(i)])
              << row_name(t, h, kv) << " element " << i << " x=" << x[static_cast<size_t>(i)]
              << " absmax=" << x[0] << " (x * inv and x / scale round differently here)";
      });
}

// Spec §3: scale = absmax * fp32(1/QMAX), the bits vLLM's kernel stores (its
// absmax / QMAX compiles to that multiply). Rows whose absmax gives a
// different float for an IEEE division tell the two apart.
TEST_P(PerTokenHeadWrite, ScaleIsAbsmaxTimesTheReciprocalConstant) {
  const float qmax = is_int8() ? 127.0f : 448.0f;
  std::vector<float> absmaxes;
  for (double a = 1.0; a < 64.0 && absmaxes.size() < 4; a += std::ldexp(1.0, std::ilogb(a) - 7)) {
    const auto af = static_cast<float>(a);
    if (af * (1.0f / qmax) != af / qmax) absmaxes.push_back(af);
  }
  ASSERT_EQ(absmaxes.size(), 4u) << "the search found too few discriminating absmax values";

  Plugin p(triton_plugin_path());
  Config c(GetParam());
  LayerPtr layer = make_layer(p, c);
  Cache cache(p, layer.get(), 1);
  OwnedTensor k(KVQ_DTYPE_BF16, {2, kHkv, kD}), v(KVQ_DTYPE_BF16, {2, kHkv, kD});
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t h = 0; h < kHkv; ++h) {
      std::vector<double> row(static_cast<size_t>(kD), 0.25);
      row[static_cast<size_t>((t + h) % kD)] = -absmaxes[static_cast<size_t>(t * 2 + h)];
      set_row(k, t, h, row);
      set_row(v, t, h, row);
    }
  write_and_check_rows(
      p, layer.get(), k, v, {5, 11}, cache,
      [&](int64_t t, int64_t h, int kv, const std::vector<float>&, const unsigned char* row) {
        const float a = absmaxes[static_cast<size_t>(t * 2 + h)];
        EXPECT_EQ(bits(load_f32(row + kD)), bits(a * (1.0f / qmax)))
            << row_name(t, h, kv) << " absmax " << a << ": stored " << load_f32(row + kD)
            << ", multiply " << a * (1.0f / qmax) << ", division " << a / qmax;
      });
}

INSTANTIATE_TEST_SUITE_P(Modes, PerTokenHeadWrite,
                         ::testing::Values("int8_per_token_head", "fp8_per_token_head"));

// ---- 2. INT4 per-token-head ------------------------------------------------

TEST(TritonInt4Write, CodesScaleAndZeroPointMatchSpecReference) {
  Plugin p(triton_plugin_path());
  Config c("int4_per_token_head");
  LayerPtr layer = make_layer(p, c);
  Cache cache(p, layer.get(), 3);
  const kvq_cache_geometry& g = cache.geometry();
  ASSERT_EQ(g.row_bytes, kD / 2 + 8);
  ASSERT_EQ(g.bytes_per_block, 2 * kBs * kHkv * (kD / 2 + 8));
  const std::vector<unsigned char> fresh = cache.snapshot(), fresh_guard = cache.guard_bytes();

  const std::vector<int64_t> slots = {3, 40, -1, 16, 1, 47, 22, 30};
  const auto t_count = static_cast<int64_t>(slots.size());
  OwnedTensor k = random_tensor(KVQ_DTYPE_BF16, {t_count, kHkv, kD}, 1.0, 21);
  OwnedTensor v = random_tensor(KVQ_DTYPE_BF16, {t_count, kHkv, kD}, 2.5, 22);
  std::vector<double> tie(kD, 0.0), zp_tie_even(kD, 1.0), zp_tie_odd(kD, 1.0);
  // scale = (6 - -1.5)/15 = 0.5, zp = 3: x/scale + zp = 3.5, 4.5, 2.5, 5.5 -> 4, 4, 2, 6.
  tie[0] = -1.5, tie[1] = 6.0, tie[2] = 0.25, tie[3] = 0.75, tie[4] = -0.25, tie[5] = 1.25;
  // scale 0.5 and -min/scale = 0.5 -> zp 0; then 1.5 -> zp 2 (ties to even).
  zp_tie_even[0] = -0.25, zp_tie_even[1] = 7.25;
  zp_tie_odd[0] = -0.75, zp_tie_odd[1] = 6.75;
  std::vector<double> constant(kD, 0.7), negative(kD), positive(kD);
  for (int64_t i = 0; i < kD; ++i) {
    negative[static_cast<size_t>(i)] = -1.0 - 4.0 * static_cast<double>(i) / kD;  // zp clamps to 15
    positive[static_cast<size_t>(i)] = 1.0 + 4.0 * static_cast<double>(i) / kD;   // zp clamps to 0
  }
  set_row(k, 0, 0, tie);
  set_row(k, 0, 1, zp_tie_even);
  set_row(v, 0, 0, zp_tie_odd);
  set_row(v, 0, 1, constant);
  set_row(k, 1, 0, negative);
  set_row(k, 1, 1, positive);
  set_row(v, 1, 0, std::vector<double>(kD, 0.0));
  set_row(v, 1, 1, std::vector<double>(kD, -3.0));

  std::set<int64_t> written;
  write_and_check_rows(
      p, layer.get(), k, v, slots, cache,
      [&](int64_t t, int64_t h, int kv, const std::vector<float>& x, const unsigned char* row) {
        const RefRow want = ref_int4_row(x);
        for (int64_t i = 0; i < kD / 2; ++i)
          ASSERT_EQ(row[i], want.data[static_cast<size_t>(i)])
              << row_name(t, h, kv) << " byte " << i << " (elements " << 2 * i << ", " << 2 * i + 1
              << ")";
        ASSERT_EQ(bits(load_f32(row + kD / 2)), bits(want.scale)) << row_name(t, h, kv);
        ASSERT_EQ(load_f32(row + kD / 2 + 4), want.zero_point) << row_name(t, h, kv);
      },
      &written);
  if (HasFatalFailure()) return;

  // The hand-worked rows (slot 3 = token 0, slot 40 = token 1).
  auto nibble = [&](int64_t slot, int kv, int64_t h, int64_t i) {
    const unsigned char b = cache.slot_row(slot, kv, h)[i / 2];
    return i % 2 == 0 ? (b & 0x0F) : (b >> 4);  // even index in the low nibble
  };
  auto zp = [&](int64_t slot, int kv, int64_t h) {
    return load_f32(cache.slot_row(slot, kv, h) + kD / 2 + 4);
  };
  const int tie_codes[] = {0, 15, 4, 4, 2, 6, 3};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(nibble(3, 0, 0, i), tie_codes[i]) << "tie element " << i;
  EXPECT_EQ(load_f32(cache.slot_row(3, 0, 0) + kD / 2), 0.5f);
  EXPECT_EQ(zp(3, 0, 0), 3.0f);
  EXPECT_EQ(zp(3, 0, 1), 0.0f);
  EXPECT_EQ(nibble(3, 0, 1, 0), 0);
  EXPECT_EQ(nibble(3, 0, 1, 1), 14);  // 14.5 -> 14
  EXPECT_EQ(zp(3, 1, 0), 2.0f);
  EXPECT_EQ(nibble(3, 1, 0, 1), 15);  // 15.5 -> 16, clamped to 15
  EXPECT_EQ(bits(load_f32(cache.slot_row(3, 1, 1) + kD / 2)), bits(1e-6f));  // constant row
  EXPECT_EQ(zp(40, 0, 0), 15.0f);
  EXPECT_EQ(zp(40, 0, 1), 0.0f);

  // Padding tokens wrote nothing (the fresh bytes themselves: FreshCache below).
  expect_untouched_rows_unchanged(cache, fresh, fresh_guard, written);
}

// ---- 3. NaN / Inf ----------------------------------------------------------

class NonFiniteWrite : public ::testing::TestWithParam<std::string> {};

TEST_P(NonFiniteWrite, RefusedNamingTokenAndHeadAndNothingWritten) {
  Plugin p(triton_plugin_path());
  Config c(GetParam());
  LayerPtr layer = make_layer(p, c);
  if (GetParam().rfind("fp8", 0) == 0 && GetParam() != "fp8_per_token_head") {
    ASSERT_EQ(load_kv_scales(p, layer.get(), 0.5f, 0.25f).code, 0);
  }
  Cache cache(p, layer.get(), 2);
  {
    auto [k, v] = random_kv(KVQ_DTYPE_BF16, {4, kHkv, kD}, 1.0, 31);
    const CallResult r = write_kv(p, layer.get(), k, v, {0, 1, 2, 3}, cache);
    ASSERT_EQ(r.code, 0) << r.message;
  }
  const std::vector<unsigned char> before = cache.snapshot();

  struct Bad {
    bool in_key;
    double value;
  };
  for (const Bad bad : {Bad{true, NAN}, Bad{false, INFINITY}, Bad{true, -INFINITY}}) {
    SCOPED_TRACE(std::string(bad.in_key ? "key " : "value ") + std::to_string(bad.value));
    auto [k, v] = random_kv(KVQ_DTYPE_BF16, {5, kHkv, kD}, 1.0, 33);
    // token 3, head 1, element 5; tokens 0..2 come first and overwrite used slots.
    (bad.in_key ? k : v).set((3 * kHkv + 1) * kD + 5, bad.value);
    const CallResult r = write_kv(p, layer.get(), k, v, {0, 1, 2, 20, 21}, cache);
    EXPECT_EQ(r.code, KVQ_ERR_NON_FINITE) << r.message;
    EXPECT_NE(r.message.find("token 3 head 1"), std::string::npos) << r.message;
    EXPECT_TRUE(cache.snapshot() == before) << "the cache changed on a refused write";
  }
}

// Spec §3: a slot >= num_blocks * block_size is bad input: error, nothing written.
TEST_P(NonFiniteWrite, OutOfRangeSlotRefusedAndNothingWritten) {
  Plugin p(triton_plugin_path());
  Config c(GetParam());
  LayerPtr layer = make_layer(p, c);
  Cache cache(p, layer.get(), 2);
  const std::vector<unsigned char> before = cache.snapshot(), guard = cache.guard_bytes();
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {3, kHkv, kD}, 1.0, 35);
  const CallResult r = write_kv(p, layer.get(), k, v, {0, 1, 2 * kBs}, cache);
  EXPECT_EQ(r.code, KVQ_ERR_OUT_OF_RANGE) << r.message;
  EXPECT_TRUE(cache.snapshot() == before) << "the cache changed on a refused write";
  EXPECT_TRUE(cache.guard_bytes() == guard);
}

INSTANTIATE_TEST_SUITE_P(QuantizedModes, NonFiniteWrite,
                         ::testing::Values("int8_per_token_head", "fp8_per_token_head",
                                           "int4_per_token_head", "fp8", "fp8_e4m3", "fp8_e5m2"));

// ---- 10. fresh cache and geometry ------------------------------------------------

// cache_init (spec §2, ABI cache_init): data zero, every inline scale 1.0,
// and not a byte outside [num_blocks, bytes_per_block].
class FreshCache : public ::testing::TestWithParam<std::string> {};

TEST_P(FreshCache, DataZeroScalesOneAndInBounds) {
  Plugin p(triton_plugin_path());
  Config c(GetParam());
  LayerPtr layer = make_layer(p, c);
  const Cache cache(p, layer.get(), 3);
  const kvq_cache_geometry& g = cache.geometry();
  const bool int4 = GetParam() == "int4_per_token_head";
  const bool pth = GetParam().find("per_token_head") != std::string::npos;
  const int64_t data_bytes = int4 ? kD / 2 : kD * kvq::ref::dtype_size(g.element_dtype);
  EXPECT_EQ(cache.first_changed_guard_byte(), -1)
      << "cache_init wrote past the end of the host's cache buffer";
  int64_t bad_rows = 0;
  std::string first_bad;
  for (int64_t b = 0; b < cache.num_blocks(); ++b)
    for (int kv = 0; kv < 2; ++kv)
      for (int64_t s = 0; s < g.block_size; ++s)
        for (int64_t h = 0; h < g.num_kv_heads; ++h) {
          const unsigned char* row = cache.row(b, kv, s, h);
          bool ok = true;
          for (int64_t i = 0; i < data_bytes; ++i) ok = ok && row[i] == 0;
          if (pth) ok = ok && bits(load_f32(row + data_bytes)) == bits(1.0f);
          if (!ok && bad_rows++ == 0)
            first_bad = "block " + std::to_string(b) + " kv " + std::to_string(kv) + " slot " +
                        std::to_string(s) + " head " + std::to_string(h);
        }
  EXPECT_EQ(bad_rows, 0) << "rows whose data is not zero or scale not 1.0; first: " << first_bad;
}

INSTANTIATE_TEST_SUITE_P(Modes, FreshCache,
                         ::testing::Values("auto", "fp8", "fp8_e5m2", "int8_per_token_head",
                                           "fp8_per_token_head", "int4_per_token_head"));

// ---- geometry ------------------------------------------------------------

TEST(TritonGeometry, HeadSizeMultipleOfFourInPerTokenHeadModes) {
  Plugin p(triton_plugin_path());
  for (const char* mode : {"int8_per_token_head", "fp8_per_token_head", "int4_per_token_head"}) {
    SCOPED_TRACE(mode);
    Config c(mode);
    c.head_size = 36;
    LayerPtr layer(nullptr, p.api().layer_destroy);
    const CallResult ok = create_layer(p, c, &layer);
    ASSERT_EQ(ok.code, 0) << ok.message;
    const kvq_cache_geometry g = geometry(p, layer.get());
    EXPECT_EQ(g.head_size, 36);
    EXPECT_EQ(g.row_bytes, std::string(mode) == "int4_per_token_head" ? 36 / 2 + 8 : 36 + 4);

    c.head_size = 34;
    LayerPtr bad(nullptr, p.api().layer_destroy);
    const CallResult r = create_layer(p, c, &bad);
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << r.message;
    EXPECT_NE(r.message.find("multiple of 4"), std::string::npos) << r.message;
  }
  // The rule is for per-token-head modes only.
  for (const char* mode : {"auto", "fp8", "fp8_e5m2"}) {
    Config c(mode);
    c.head_size = 34;
    LayerPtr layer(nullptr, p.api().layer_destroy);
    const CallResult r = create_layer(p, c, &layer);
    EXPECT_EQ(r.code, 0) << mode << ": " << r.message;
  }
}

TEST(TritonGeometry, BytesPerBlockPerMode) {
  Plugin p(triton_plugin_path());
  const int64_t d = 128, bs = 16, h = 2;
  struct Want {
    const char* mode;
    int32_t element_dtype;
    int64_t row_bytes;
  };
  const Want wants[] = {{"auto", KVQ_DTYPE_BF16, d * 2},
                        {"bfloat16", KVQ_DTYPE_BF16, d * 2},
                        {"fp8", KVQ_DTYPE_F8_E4M3FN, d},
                        {"fp8_e4m3", KVQ_DTYPE_F8_E4M3FN, d},
                        {"fp8_e5m2", KVQ_DTYPE_F8_E5M2, d},
                        {"int8_per_token_head", KVQ_DTYPE_I8, d + 4},
                        {"fp8_per_token_head", KVQ_DTYPE_F8_E4M3FN, d + 4},
                        {"int4_per_token_head", KVQ_DTYPE_U8, d / 2 + 8}};
  int64_t bf16_bytes = 0, pth_bytes = 0;
  for (const Want& w : wants) {
    SCOPED_TRACE(w.mode);
    Config c(w.mode);
    c.head_size = d;
    c.num_kv_heads = h;
    c.block_size = bs;
    LayerPtr layer = make_layer(p, c);
    const kvq_cache_geometry g = geometry(p, layer.get());
    EXPECT_EQ(g.element_dtype, w.element_dtype);
    EXPECT_EQ(g.row_bytes, w.row_bytes);
    EXPECT_EQ(g.bytes_per_block, 2 * bs * h * w.row_bytes);
    if (std::string(w.mode) == "auto") bf16_bytes = g.bytes_per_block;
    if (std::string(w.mode) == "int8_per_token_head") pth_bytes = g.bytes_per_block;
  }
  // ~1.94x the tokens per byte at head size 128: (128 + 4) vs 256 bytes per row.
  EXPECT_EQ(bf16_bytes * 132, pth_bytes * 256);
}

}  // namespace
}  // namespace kvq::test::tri
