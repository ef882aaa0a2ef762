// The plugin SDK on its own: element conversions against the independent
// reference codecs, the split-KV decode path against the unsplit path, the
// scheme registry, tolerant struct reading, tensor validation, weight loading.
#include "harness.hpp"
#include "kvq_ref/reference.hpp"
#include "kvq_sdk/abi_struct.hpp"
#include "kvq_sdk/batch.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"
#include "kvq_sdk/paged_attention.hpp"
#include "kvq_sdk/plugin.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace kvq::test {
namespace {

std::vector<float> probe_values() {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -1.0f,
                          448.0f,
                          449.0f,
                          464.0f,
                          480.0f,
                          1e6f,
                          -1e6f,
                          57344.0f,
                          61440.0f,
                          65504.0f,
                          65519.0f,
                          65520.0f,
                          1e-3f,
                          1e-8f,
                          3e-39f,
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-30.0f, 20.0f);
  for (int i = 0; i < 20000; ++i) {
    const float mag = std::exp2(exponent(rng));
    v.push_back((i % 2 ? -1.0f : 1.0f) * mag);
  }
  // Exact midpoints between neighbouring fp8 values: the ties.
  for (int32_t dt : {KVQ_DTYPE_F8_E4M3FN, KVQ_DTYPE_F8_E5M2})
    for (int c = 0; c < 126; ++c) {
      const double a = kvq::ref::decode_fp8(dt, static_cast<uint8_t>(c));
      const double b = kvq::ref::decode_fp8(dt, static_cast<uint8_t>(c + 1));
      if (std::isfinite(a) && std::isfinite(b)) v.push_back(static_cast<float>((a + b) / 2));
    }
  return v;
}

TEST(Dtype, Fp8EncodeMatchesExhaustiveReference) {
  for (float x : probe_values()) {
    EXPECT_EQ(sdk::float_to_e4m3(x), kvq::ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, x)) << x;
    EXPECT_EQ(sdk::float_to_e5m2(x), kvq::ref::encode_fp8(KVQ_DTYPE_F8_E5M2, x)) << x;
  }
  EXPECT_EQ(sdk::float_to_e4m3(NAN), 0x7F);
  EXPECT_EQ(sdk::float_to_e4m3(1e9f), 0x7E);  // saturates to 448, never NaN
  EXPECT_EQ(sdk::float_to_e5m2(1e9f), 0x7B);  // 57344
}

TEST(Dtype, Fp8DecodeMatchesReferenceForAllCodes) {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    const double a = kvq::ref::decode_fp8(KVQ_DTYPE_F8_E4M3FN, code);
    const double b = kvq::ref::decode_fp8(KVQ_DTYPE_F8_E5M2, code);
    if (std::isnan(a))
      EXPECT_TRUE(std::isnan(sdk::e4m3_to_float(code)));
    else
      EXPECT_EQ(sdk::e4m3_to_float(code), a) << c;
    if (std::isnan(b))
      EXPECT_TRUE(std::isnan(sdk::e5m2_to_float(code)));
    else
      EXPECT_EQ(sdk::e5m2_to_float(code), b) << c;
  }
}

TEST(Dtype, Bf16AndF16RoundToNearestEven) {
  for (float x : probe_values()) {
    uint16_t ref_bits;
    kvq::ref::store(KVQ_DTYPE_BF16, &ref_bits, 0, x);
    EXPECT_EQ(sdk::float_to_bf16(x), ref_bits) << x;
    kvq::ref::store(KVQ_DTYPE_F16, &ref_bits, 0, x);
    EXPECT_EQ(sdk::float_to_f16(x), ref_bits) << x;
    EXPECT_EQ(sdk::f16_to_float(ref_bits), kvq::ref::load(KVQ_DTYPE_F16, &ref_bits, 0)) << x;
  }
  // 1 + 2^-8 is a bf16 tie: rounds to even (1.0); 1 + 3*2^-8 rounds up.
  EXPECT_EQ(sdk::float_to_bf16(1.00390625f), 0x3F80);
  EXPECT_EQ(sdk::float_to_bf16(1.01171875f), 0x3F82);
}

TEST(PagedAttention, SplitKvDecodeMatchesUnsplitPath) {
  sdk::LayerConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_size = c.head_size_v = 64;
  c.block_size = 16;
  const kvq_cache_geometry g = sdk::block_kv_slot_head_geometry(c, KVQ_DTYPE_F32, false);
  const std::vector<int32_t> lens_v = {1500, 77, 1};
  const int64_t s_count = 3, max_blocks = 94, num_blocks = s_count * max_blocks;
  OwnedTensor cache(KVQ_DTYPE_U8, {num_blocks, g.bytes_per_block});  // 64-byte aligned
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 1);
  for (int64_t i = 0; i < cache.bytes() / 4; ++i) {
    const float x = n(rng);
    std::memcpy(cache.data() + 4 * i, &x, 4);
  }
  std::vector<float> q(static_cast<size_t>(s_count * 8 * 64)), out1(q.size()), out2(q.size());
  for (float& x : q) x = n(rng);
  std::vector<int32_t> qsl = {0, 1, 2, 3}, lens = lens_v, table(static_cast<size_t>(num_blocks));
  for (int32_t i = 0; i < num_blocks; ++i) table[static_cast<size_t>(i)] = i;
  kvq_tensor tq = tensor_view(q.data(), KVQ_DTYPE_F32, {s_count, 8, 64}),
             to1 = tensor_view(out1.data(), KVQ_DTYPE_F32, {s_count, 8, 64}),
             to2 = tensor_view(out2.data(), KVQ_DTYPE_F32, {s_count, 8, 64}),
             tqsl = tensor_view(qsl.data(), KVQ_DTYPE_I32, {4}),
             tl = tensor_view(lens.data(), KVQ_DTYPE_I32, {3}),
             tt = tensor_view(table.data(), KVQ_DTYPE_I32, {s_count, max_blocks});
  client::ForwardArgs args =
      forward_args(KVQ_ATTN_DECODE_ONLY, &tq, cache.get(), &tqsl, &tl, &tt, &to1);
  const sdk::ForwardSpec spec{{KVQ_DTYPE_F32}, KVQ_DTYPE_F32, {8, 64}, false};
  const kvq_forward_args a1 = args.c_struct();
  const sdk::ForwardBatch b1 = sdk::validate_forward(c, g, &a1, true, spec);
  const kvq_forward_args a2 = args.output(to2).c_struct();
  const sdk::ForwardBatch b2 = sdk::validate_forward(c, g, &a2, true, spec);
  const sdk::RowFormat f32 = sdk::row_format(KVQ_DTYPE_F32, false);
  sdk::AttentionOptions o = sdk::attention_options(c, 2);
  o.num_splits = 1;
  sdk::paged_attention(c, b1, sdk::PagedKvSource(b1, f32), o);
  o.num_splits = 7;
  sdk::paged_attention(c, b2, sdk::PagedKvSource(b2, f32), o);
  for (size_t i = 0; i < out1.size(); ++i)
    EXPECT_NEAR(out1[i], out2[i], 1e-5f * (1.0f + std::fabs(out1[i]))) << i;
}

TEST(SchemeRegistry, DuplicateKeyIsAnError) {
  sdk::SchemeRegistry r;
  sdk::SchemeDefinition s;
  s.quant_type = "C8";
  s.layer_type = "attention";
  r.add(s);
  try {
    r.add(s);
    FAIL() << "duplicate accepted";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), KVQ_ERR_ALREADY_EXISTS);
    EXPECT_NE(std::string(e.what()).find("(C8, attention)"), std::string::npos);
  }
  s.layer_type = "linear";
  EXPECT_NO_THROW(r.add(s));
  EXPECT_NE(r.find("C8", "linear"), nullptr);
  EXPECT_EQ(r.find("C8", "moe"), nullptr);
}

TEST(AbiStruct, SmallerStructIsRefusedLargerTailIgnored) {
  struct Buffer {
    kvq_host_info info;
    unsigned char tail[64];
  } buf;
  std::memset(&buf, 0xAB, sizeof buf);
  buf.info.struct_size = sizeof(kvq_host_info) + 64;
  buf.info.abi_major = 1;
  const kvq_host_info copy = sdk::read_struct(&buf.info, KVQ_HOST_INFO_SIZE, "host_info");
  EXPECT_EQ(copy.abi_major, 1u);
  buf.info.struct_size = KVQ_HOST_INFO_SIZE - 8;
  EXPECT_THROW(sdk::read_struct(&buf.info, KVQ_HOST_INFO_SIZE, "host_info"), sdk::Error);
  EXPECT_THROW(sdk::read_struct<kvq_host_info>(nullptr, KVQ_HOST_INFO_SIZE, "host_info"),
               sdk::Error);
}

TEST(AbiStruct, OutStructIsWrittenNoFurtherThanItsSize) {
  struct Buffer {
    kvq_cache_geometry g;
    unsigned char guard[64];
  } buf;
  std::memset(&buf, 0xCD, sizeof buf);
  buf.g.struct_size = KVQ_STRUCT_SIZE(kvq_cache_geometry, block_size);
  kvq_cache_geometry value{};
  value.alignment = 64;
  sdk::write_struct(&buf.g, value);
  EXPECT_EQ(buf.g.struct_size, KVQ_STRUCT_SIZE(kvq_cache_geometry, block_size));
  const auto* raw = reinterpret_cast<const unsigned char*>(&buf);
  for (size_t i = KVQ_STRUCT_SIZE(kvq_cache_geometry, block_size); i < sizeof buf; ++i)
    ASSERT_EQ(raw[i], 0xCD) << i;
}

TEST(TensorView, RejectsMalformedDescriptors) {
  std::vector<float> data(16);
  kvq_tensor t = tensor_view(data.data(), KVQ_DTYPE_F32, {4, 4});
  EXPECT_NO_THROW(sdk::TensorView(&t, "x"));
  const auto code_of = [](const kvq_tensor& bad) {
    try {
      sdk::TensorView v(&bad, "x");
      return 0;
    } catch (const sdk::Error& e) {
      return e.code();
    }
  };
  kvq_tensor bad = t;
  bad.ndim = 9;
  EXPECT_EQ(code_of(bad), KVQ_ERR_INVALID_ARGUMENT);
  bad = t;
  bad.shape[0] = -1;
  EXPECT_EQ(code_of(bad), KVQ_ERR_INVALID_ARGUMENT);
  bad = t;
  bad.shape[0] = int64_t{1} << 62;
  EXPECT_EQ(code_of(bad), KVQ_ERR_INVALID_ARGUMENT);
  bad = t;
  bad.dtype = 99;
  EXPECT_EQ(code_of(bad), KVQ_ERR_INVALID_ARGUMENT);
  bad = t;
  bad.device_type = 2;
  EXPECT_EQ(code_of(bad), KVQ_ERR_UNSUPPORTED);
  bad = t;
  bad.struct_size = 8;
  EXPECT_EQ(code_of(bad), KVQ_ERR_INVALID_ARGUMENT);
}

TEST(WeightLoader, DefaultLoaderSqueezesAndNamesBothShapes) {
  sdk::Param p;
  p.name = "layer.k_scale";
  p.loader = "default";
  p.reshape({4});
  std::vector<uint16_t> src(4);
  for (int i = 0; i < 4; ++i)
    src[static_cast<size_t>(i)] = sdk::float_to_f16(static_cast<float>(i + 1));
  kvq_tensor t = tensor_view(src.data(), KVQ_DTYPE_F16, {1, 4});
  sdk::default_weight_loader(p, sdk::TensorView(&t, "loaded"), {}, 0, 1);
  EXPECT_EQ(p.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(p.get(3), 4.0f);
  kvq_tensor wrong = tensor_view(src.data(), KVQ_DTYPE_F16, {2, 2});
  try {
    sdk::default_weight_loader(p, sdk::TensorView(&wrong, "loaded"), {}, 0, 1);
    FAIL() << "mismatch accepted";
  } catch (const sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(4,)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvq::test
