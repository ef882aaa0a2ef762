// The GPU plugin's codecs and row quantizers (plugin_cuda/src/kernels/codecs.cuh,
// __host__ __device__) run here on the host against the CPU plugin's own
// functions: the cache bytes the GPU writes must be the CPU plugin's bytes
// (spec/cuda.md "Numerics"). The GPU writer uses exactly these functions per
// element; kvq_cuda_kernel_check compares the device's bytes with them.
//
// KVQ_EXHAUSTIVE=1 in the environment also sweeps all 2^32 floats through the
// fp8 / bf16 / fp16 encoders (about a minute per encoder on one core).
#include "codecs.cuh"

#include "per_token_head.hpp"

#include "kvq_sdk/dtype.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

namespace cc = kvq::cuda::codec;
namespace sdk = kvq::sdk;

float bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t ubits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

bool exhaustive() {
  const char* e = std::getenv("KVQ_EXHAUSTIVE");
  return e != nullptr && std::strcmp(e, "1") == 0;
}

// Structured float inputs: every sign/exponent/top-mantissa pattern (all 2^16
// upper halves) with several lower halves, so every binade, the specials,
// subnormals and values next to rounding boundaries all occur.
template <class F>
void for_structured_floats(F&& f) {
  static const uint32_t lows[] = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1234, 0xC000};
  for (uint32_t hi = 0; hi < 0x10000; ++hi)
    for (uint32_t lo : lows) f(bits((hi << 16) | lo));
}

// Midpoints between consecutive codes of a format and their neighbours: the
// ties (round half to even) and the values one or two ulps to either side.
template <class F>
void for_code_boundaries(float (*decode)(uint8_t), F&& f) {
  std::vector<float> vals;
  for (int c = 0; c < 256; ++c) {
    const float v = decode(static_cast<uint8_t>(c));
    if (std::isfinite(v) && v >= 0.0f) vals.push_back(v);
  }
  std::sort(vals.begin(), vals.end());
  for (size_t i = 0; i + 1 < vals.size(); ++i) {
    const float mid = static_cast<float>((static_cast<double>(vals[i]) + vals[i + 1]) / 2.0);
    float x = mid;
    for (int k = 0; k < 3; ++k) x = std::nextafter(x, 0.0f);
    for (int k = 0; k < 7; ++k, x = std::nextafter(x, INFINITY)) {
      f(x);
      f(-x);
    }
  }
  // Saturation and the largest values.
  for (float x : {447.0f, 448.0f, 449.0f, 463.9f, 464.0f, 464.1f, 480.0f, 1e6f, 57343.0f,
                  57344.0f, 57345.0f, 61439.0f, 61440.0f, 61441.0f, 65504.0f, 65519.0f, 65520.0f,
                  1e30f, INFINITY}) {
    f(x);
    f(-x);
  }
}

// Compares an encoder with the SDK's on inputs (NaN inputs included).
template <class A, class B>
void check_encoder(const char* name, A&& ours, B&& theirs, float (*decode)(uint8_t)) {
  int64_t bad = 0, n = 0;
  const auto one = [&](float x) {
    ++n;
    if (ours(x) != theirs(x) && bad++ < 10)
      ADD_FAILURE() << name << "(" << x << " = 0x" << std::hex << ubits(x) << std::dec
                    << "): ours " << int(ours(x)) << " sdk " << int(theirs(x));
  };
  for_structured_floats(one);
  if (decode != nullptr) for_code_boundaries(decode, one);
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000000; ++i) one(bits(static_cast<uint32_t>(rng())));
  if (exhaustive())
    for (uint64_t u = 0; u < (uint64_t{1} << 32); ++u) one(bits(static_cast<uint32_t>(u)));
  EXPECT_EQ(bad, 0) << name << ": " << bad << " of " << n << " inputs differ";
}

float sdk_e4m3_dec(uint8_t c) {
  return sdk::e4m3_to_float(c);
}
float sdk_e5m2_dec(uint8_t c) {
  return sdk::e5m2_to_float(c);
}

TEST(CudaCodecs, E4M3EncodeMatchesSdk) {
  check_encoder("e4m3", cc::float_to_e4m3, sdk::float_to_e4m3, sdk_e4m3_dec);
}
TEST(CudaCodecs, E5M2EncodeMatchesSdk) {
  check_encoder("e5m2", cc::float_to_e5m2, sdk::float_to_e5m2, sdk_e5m2_dec);
}
TEST(CudaCodecs, Bf16EncodeMatchesSdk) {
  check_encoder("bf16", cc::float_to_bf16, sdk::float_to_bf16, nullptr);
}
TEST(CudaCodecs, F16EncodeMatchesSdk) {
  check_encoder("f16", cc::float_to_f16, sdk::float_to_f16, nullptr);
}

// NaN codes decode to some NaN on both sides; everything else to equal bits.
void expect_same_value(float ours, float theirs, int code, const char* name) {
  if (std::isnan(theirs))
    EXPECT_TRUE(std::isnan(ours)) << name << " code " << code;
  else
    EXPECT_EQ(ubits(ours), ubits(theirs)) << name << " code " << code;
}

TEST(CudaCodecs, DecodersMatchSdk) {
  for (int c = 0; c < 256; ++c) {
    expect_same_value(cc::e4m3_to_float(static_cast<uint8_t>(c)),
                      sdk::e4m3_to_float(static_cast<uint8_t>(c)), c, "e4m3");
    expect_same_value(cc::e5m2_to_float(static_cast<uint8_t>(c)),
                      sdk::e5m2_to_float(static_cast<uint8_t>(c)), c, "e5m2");
  }
  for (int c = 0; c < 65536; ++c) {
    expect_same_value(cc::f16_to_float(static_cast<uint16_t>(c)),
                      sdk::f16_to_float(static_cast<uint16_t>(c)), c, "f16");
    expect_same_value(cc::bf16_to_float(static_cast<uint16_t>(c)),
                      sdk::bf16_to_float(static_cast<uint16_t>(c)), c, "bf16");
  }
  // Round trips: every finite code encodes back to itself.
  for (int c = 0; c < 256; ++c) {
    const auto u = static_cast<uint8_t>(c);
    if (std::isfinite(cc::e4m3_to_float(u))) {
      EXPECT_EQ(cc::float_to_e4m3(cc::e4m3_to_float(u)), u);
    }
    if (std::isfinite(cc::e5m2_to_float(u))) {
      EXPECT_EQ(cc::float_to_e5m2(cc::e5m2_to_float(u)), u);
    }
  }
}

// ---- rows -------------------------------------------------------------------------

// Rows that exercise the quantizers' corner cases.
std::vector<std::vector<float>> test_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-254, 254);
  std::vector<std::vector<float>> rows;
  const auto add = [&](auto gen) {
    std::vector<float> r(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i)] = gen(i);
    rows.push_back(std::move(r));
  };
  for (int k = 0; k < 300; ++k) {
    const float mag = std::ldexp(1.0f, k % 40 - 20);
    add([&](int64_t) { return normal(rng) * mag; });                              // random
    add([&](int64_t) { return sdk::round_bf16(normal(rng) * mag); });             // bf16 inputs
    add([&](int64_t i) { return i == 0 ? 127.0f : 0.5f * small(rng); });           // int8 ties
    add([&](int64_t i) { return i == 1 ? -448.0f : 0.5f * small(rng) * 1.75f; });  // fp8 ties
    add([&](int64_t) { return normal(rng) * (rng() % 2 ? 1e6f : 1e-3f); });       // mixed scales
    add([&](int64_t) { return std::abs(normal(rng)) * mag; });                     // one-sided
    add([&](int64_t) { return -std::abs(normal(rng)) * mag; });
    add([&](int64_t i) { return static_cast<float>(i % 16) * mag; });            // int4 exact
    add([&](int64_t i) { return (static_cast<float>(i % 16) + 0.5f) * mag; });   // int4 ties
  }
  add([](int64_t) { return 0.0f; });                                   // all zero
  add([](int64_t) { return -0.0f; });                                  // all -0
  add([](int64_t i) { return i % 2 ? 0.0f : -0.0f; });                 // -0 first
  add([](int64_t i) { return i % 2 ? -0.0f : 0.0f; });                 // +0 first
  add([](int64_t i) { return i % 3 == 0 ? 0.0f : 1.0f + i; });         // zero minimum
  add([](int64_t i) { return i % 3 == 1 ? -0.0f : 1.0f + i; });
  add([](int64_t) { return 3.0f; });                                   // constant
  add([](int64_t) { return -3.0f; });
  add([](int64_t i) { return bits(0x00000001u + static_cast<uint32_t>(i)); });  // subnormals
  add([](int64_t i) { return i == 0 ? 1e-6f : bits(0x00400000u); });
  add([](int64_t i) { return i == 0 ? 3e38f : 1.0f; });                // huge
  add([](int64_t i) { return i == 0 ? -3e38f : 1e-30f; });
  add([](int64_t i) { return 1e-7f * static_cast<float>(i); });        // scale floor 1e-6
  return rows;
}

// The rule the GPU follows for int8 / fp8 rows (spec §3 as changed: a
// multiply by fp32(1/QMAX)), written with the SDK's per-element functions.
// Used only while the CPU plugin in this tree still divides (see below).
void multiply_rule_row(const std::vector<float>& x, bool fp8, unsigned char* row) {
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  const float scale = std::max(m * (fp8 ? 1.0f / 448.0f : 1.0f / 127.0f), 1e-6f);
  const float inv = 1.0f / scale;
  const size_t n = x.size();
  for (size_t i = 0; i < n; ++i)
    row[i] = fp8 ? sdk::float_to_e4m3(std::clamp(x[i] * inv, -448.0f, 448.0f))
                 : static_cast<unsigned char>(static_cast<int8_t>(
                       std::clamp(std::nearbyint(x[i] * inv), -128.0f, 127.0f)));
  std::memcpy(row + n, &scale, 4);
}

// int8 / fp8 rows: byte-identical to the CPU plugin's quantize_row_*. While
// the CPU plugin still computes the scale as absmax / QMAX (main is moving it
// to absmax * fp32(1/QMAX), spec §3), rows where the two rules give different
// scales are compared with multiply_rule_row instead; their count is printed
// and must drop to zero once the fix is merged into this branch.
void check_pth8(bool fp8) {
  int64_t rows_checked = 0, rule_rows = 0;
  for (int64_t n : {32, 36, 64, 100, 128, 256}) {
    for (const auto& x : test_rows(n, static_cast<uint32_t>(n * (fp8 ? 7 : 3)))) {
      std::vector<unsigned char> ours(static_cast<size_t>(n + 4)), cpu(ours.size()),
          rule(ours.size());
      if (fp8) {
        cc::quantize_row_fp8(x.data(), n, ours.data());
        kvq::triton::quantize_row_fp8(x.data(), n, cpu.data());
      } else {
        cc::quantize_row_int8(x.data(), n, ours.data());
        kvq::triton::quantize_row_int8(x.data(), n, cpu.data());
      }
      ++rows_checked;
      float cpu_scale, our_scale;
      std::memcpy(&cpu_scale, cpu.data() + n, 4);
      std::memcpy(&our_scale, ours.data() + n, 4);
      if (cpu_scale != our_scale) {
        float m = 0.0f;
        for (float v : x) m = std::max(m, std::fabs(v));
        const float div_scale = std::max(m / (fp8 ? 448.0f : 127.0f), 1e-6f);
        ASSERT_EQ(ubits(cpu_scale), ubits(div_scale)) << "CPU scale follows neither rule";
        ++rule_rows;
        multiply_rule_row(x, fp8, rule.data());
        ASSERT_EQ(ours, rule) << (fp8 ? "fp8" : "int8") << " row (multiply rule), n=" << n;
        continue;
      }
      ASSERT_EQ(ours, cpu) << (fp8 ? "fp8" : "int8") << " row differs from the CPU plugin, n="
                           << n << " x[0]=" << x[0];
    }
  }
  std::printf("[ info ] %s: %lld rows byte-identical to the CPU plugin, %lld compared with the "
              "multiply-rule reference (CPU plugin in this tree still divides)\n",
              fp8 ? "fp8_per_token_head" : "int8_per_token_head",
              static_cast<long long>(rows_checked - rule_rows), static_cast<long long>(rule_rows));
}

TEST(CudaCodecs, Int8RowsMatchCpuPlugin) {
  check_pth8(false);
}
TEST(CudaCodecs, Fp8RowsMatchCpuPlugin) {
  check_pth8(true);
}

TEST(CudaCodecs, Int4RowsMatchCpuPlugin) {
  int64_t rows = 0;
  for (int64_t n : {32, 33, 36, 64, 128, 255, 256}) {
    const int64_t rb = cc::int4_row_bytes(n);
    ASSERT_EQ(rb, kvq::triton::int4_row_bytes(n));
    for (const auto& x : test_rows(n, static_cast<uint32_t>(n + 11))) {
      std::vector<unsigned char> ours(static_cast<size_t>(rb), 0xAA), cpu(ours.size(), 0xAA);
      cc::quantize_row_int4(x.data(), n, ours.data());
      kvq::triton::quantize_row_int4(x.data(), n, cpu.data());
      ASSERT_EQ(ours, cpu) << "int4 row differs, n=" << n << " x[0]=" << x[0];
      ++rows;
    }
  }
  std::printf("[ info ] int4_per_token_head: %lld rows byte-identical\n",
              static_cast<long long>(rows));
}

// The zero point's sign follows the first zero of a zero-minimum row (the
// CPU's serial std::min); the device writer reproduces that explicitly.
TEST(CudaCodecs, Int4ZeroPointSignOfZeroMinimum) {
  const std::vector<float> plus_first = {0.0f, -0.0f, 1.0f, 2.0f};
  const std::vector<float> minus_first = {-0.0f, 0.0f, 1.0f, 2.0f};
  unsigned char a[10], b[10];
  cc::quantize_row_int4(plus_first.data(), 4, a);
  cc::quantize_row_int4(minus_first.data(), 4, b);
  float zpa, zpb;
  std::memcpy(&zpa, a + 6, 4);
  std::memcpy(&zpb, b + 6, 4);
  EXPECT_TRUE(std::signbit(zpa));   // lo = +0 -> -lo = -0 -> zp = -0
  EXPECT_FALSE(std::signbit(zpb));  // lo = -0 -> zp = +0
}

TEST(CudaCodecs, PerTensorFp8MatchesCpuRule) {
  // The CPU plugin stores sdk::store_float(fp8, x / scale): one IEEE division.
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float s : {1.0f, 0.5f, 0.013f, 3.7f, 1e-3f, 250.0f}) {
    for (int i = 0; i < 200000; ++i) {
      const float x = normal(rng) * (i % 7 == 0 ? 1000.0f : 1.0f);
      ASSERT_EQ(cc::float_to_e4m3(cc::div_rn(x, s)), sdk::float_to_e4m3(x / s));
      ASSERT_EQ(cc::float_to_e5m2(cc::div_rn(x, s)), sdk::float_to_e5m2(x / s));
    }
  }
}

TEST(CudaCodecs, ScaleBytesUnaligned) {
  unsigned char buf[16] = {};
  cc::store_f32_bytes(buf + 3, 1.5f);
  EXPECT_EQ(cc::load_f32_bytes(buf + 3), 1.5f);
  float f;
  std::memcpy(&f, buf + 3, 4);
  EXPECT_EQ(f, 1.5f);  // little-endian, as the CPU plugin's memcpy
}

}  // namespace
