// Buffers, streams, tensor descriptors and argument builders: host memory for
// a CPU plugin, device memory through the hooks for the arena test plugin
// (whose addresses fault when dereferenced), and the same attention bytes
// either way.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <span>

#include "client_test_support.hpp"

namespace kvq::client {
namespace {

using ::testing::AllOf;
using testing::error_of;
using ::testing::HasSubstr;

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

// upload, fill and download over a buffer of `plugin`'s memory space.
void round_trip(const Plugin& plugin) {
  Buffer b(plugin, 16);
  EXPECT_EQ(b.size(), 16u);
  b.fill(0xAB);
  b.upload(bytes_of({1, 2, 3, 4}), 4);
  b.fill(0x00, 12, 2);
  std::vector<std::byte> out(16);
  b.download(out);
  EXPECT_EQ(out, bytes_of({0xAB, 0xAB, 0xAB, 0xAB, 1, 2, 3, 4, 0xAB, 0xAB, 0xAB, 0xAB, 0, 0, 0xAB,
                           0xAB}));
  std::vector<std::byte> middle(4);
  b.download(middle, 6);
  EXPECT_EQ(middle, bytes_of({3, 4, 0xAB, 0xAB}));
}

TEST(ClientBuffer, HostMemoryForACpuPlugin) {
  const Plugin plugin = Plugin::load(testing::triton_plugin());
  Buffer b(plugin, 100, 128);
  ASSERT_NE(b.host_data(), nullptr);
  EXPECT_FALSE(b.on_device());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 128, 0u);
  const kvq_tensor t = b.tensor(KVQ_DTYPE_F32, {5, 4}, 16);
  EXPECT_EQ(t.device_type, KVQ_DEVICE_CPU);
  EXPECT_EQ(t.data, b.host_data() + 16);
  EXPECT_EQ(t.ndim, 2);
  EXPECT_EQ(t.strides[0], 4);
  EXPECT_EQ(t.strides[1], 1);
  round_trip(plugin);
}

TEST(ClientBuffer, DeviceMemoryOfTheArenaPlugin) {
  PluginOptions options;
  options.device_ordinal = 1;
  const Plugin plugin = Plugin::load(testing::arena_plugin(), options);
  EXPECT_TRUE(plugin.on_device());
  EXPECT_EQ(plugin.device_type(), KVQ_DEVICE_OPAQUE);
  EXPECT_EQ(plugin.device_id(), 1);
  EXPECT_EQ(plugin.info().device_count, 2);
  EXPECT_TRUE(plugin.info().has_device_memory);
  Buffer b(plugin, 64);
  EXPECT_TRUE(b.on_device());
  EXPECT_EQ(b.host_data(), nullptr);
  // The arena's fake addresses start at a non-canonical base.
  EXPECT_GE(reinterpret_cast<uintptr_t>(b.data()), uintptr_t{0x4000'0000'0000'0000});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 256, 0u);
  const kvq_tensor t = b.tensor(KVQ_DTYPE_BF16, {2, 16});
  EXPECT_EQ(t.device_type, KVQ_DEVICE_OPAQUE);
  EXPECT_EQ(t.device_id, 1);
  round_trip(plugin);
}

// The arena poisons its addresses: a host that reads device memory directly
// instead of through the hooks dies at once.
TEST(ClientBufferDeathTest, DereferencingArenaMemoryFaults) {
  const Plugin plugin = Plugin::load(testing::arena_plugin());
  const Buffer b(plugin, 64);
  EXPECT_DEATH(
      {
        const auto* p = static_cast<const volatile unsigned char*>(b.data());
        std::printf("%d\n", *p);
      },
      "");
}

TEST(ClientBuffer, AnOrdinalThePluginDoesNotHaveIsRefused) {
  PluginOptions options;
  options.device_ordinal = 2;
  try {
    Plugin::load(testing::arena_plugin(), options);
    FAIL() << "the arena plugin sees two devices";
  } catch (const PluginError& e) {
    EXPECT_EQ(e.code(), KVQ_ERR_OUT_OF_RANGE);
    EXPECT_THAT(e.what(), AllOf(HasSubstr("negotiate"), HasSubstr("device ordinal 2"),
                                HasSubstr("sees 2 arena devices")));
  }
}

TEST(ClientBuffer, BadRequestsAreRefusedWithTheirNumbers) {
  const Plugin cpu = Plugin::load(testing::triton_plugin());
  const Plugin arena = Plugin::load(testing::arena_plugin());
  EXPECT_THAT(error_of([&] { Buffer(cpu, 0); }), HasSubstr("Buffer of 0 bytes"));
  EXPECT_THAT(error_of([&] { Buffer(cpu, 8, 24); }),
              HasSubstr("Buffer alignment 24 is not a power of two"));
  EXPECT_THAT(error_of([&] { Buffer(arena, 8, 4096); }),
              HasSubstr("Buffer alignment 4096 exceeds the 256 bytes device_alloc guarantees"));
  for (const Plugin* plugin : {&cpu, &arena}) {
    Buffer b(*plugin, 64);
    std::vector<std::byte> data(16);
    EXPECT_THAT(error_of([&] { b.upload(data, 56); }),
                HasSubstr("Buffer::upload: 16 bytes at offset 56 overrun the 64-byte buffer"));
    EXPECT_THAT(error_of([&] { b.download(data, 65); }),
                HasSubstr("Buffer::download: 16 bytes at offset 65 overrun the 64-byte buffer"));
    EXPECT_THAT(error_of([&] { b.fill(0, 60, 8); }),
                HasSubstr("Buffer::fill: 8 bytes at offset 60 overrun the 64-byte buffer"));
    EXPECT_THAT(error_of([&] {
                  b.tensor(KVQ_DTYPE_F32, {4, 4}, 4);
                }),
                HasSubstr("Buffer::tensor: [4, 4] of F32 needs 64 bytes at offset 4, the buffer "
                          "has 64"));
    EXPECT_THAT(error_of([&] { b.tensor(KVQ_DTYPE_F32, {2}, 2); }),
                HasSubstr("Buffer::tensor: offset 2 is not a multiple of the 4-byte F32 elements"));
  }
}

TEST(ClientBuffer, TheArenaRefusesMoreThanItsMemory) {
  const Plugin arena = Plugin::load(testing::arena_plugin());
  try {
    Buffer(arena, arena.info().device_memory_bytes + 1);
    FAIL() << "more than the device has";
  } catch (const PluginError& e) {
    EXPECT_EQ(e.code(), KVQ_ERR_OUT_OF_MEMORY);
    EXPECT_THAT(e.what(), HasSubstr("device_alloc"));
  }
}

TEST(ClientStream, ACpuPluginHasNoStreams) {
  const Plugin plugin = Plugin::load(testing::triton_plugin());
  EXPECT_THAT(error_of([&] { Stream s(plugin); }),
              HasSubstr("has no streams (stream_create/stream_destroy are missing)"));
  EXPECT_NO_THROW(plugin.synchronize());  // every call already completed
}

TEST(ClientStream, ArenaStreamsOrderCopiesAndSynchronize) {
  const Plugin plugin = Plugin::load(testing::arena_plugin());
  Stream stream(plugin);
  ASSERT_NE(stream.get(), nullptr);
  Buffer b(plugin, 8);
  const std::vector<std::byte> in = bytes_of({9, 8, 7, 6, 5, 4, 3, 2});
  b.upload(in, 0, &stream);
  std::vector<std::byte> out(8);
  b.download(out, 0, &stream);
  stream.synchronize();
  EXPECT_EQ(out, in);
  EXPECT_NO_THROW(plugin.synchronize());
  Stream moved = std::move(stream);
  EXPECT_NE(moved.get(), nullptr);
}

// The device path end to end: the same layer and batch on the CPU plugin
// (host memory) and on the arena plugin (every bulk tensor uploaded through
// device_memcpy, the output downloaded) give the same bytes.
TEST(ClientDevicePath, ArenaAttentionEqualsTheCpuPluginsBytes) {
  const Plugin cpu = Plugin::load(testing::triton_plugin());
  const Plugin arena = Plugin::load(testing::arena_plugin());
  for (const char* mode : {"bfloat16", "int8_per_token_head", "fp8"}) {
    SCOPED_TRACE(mode);
    const std::vector<std::byte> on_cpu = testing::run_small_batch(cpu, mode);
    const std::vector<std::byte> on_arena = testing::run_small_batch(arena, mode);
    EXPECT_EQ(on_cpu, on_arena);
    // Every element was written (no NaN fill left).
    size_t untouched = 0;
    for (size_t i = 0; i + 1 < on_cpu.size(); i += 2)
      untouched += on_cpu[i] == std::byte{0xFF} && on_cpu[i + 1] == std::byte{0xFF};
    EXPECT_EQ(untouched, 0u);
  }
}

// A host buffer handed to a device plugin is refused, naming the argument.
TEST(ClientDevicePath, HostMemoryForADevicePluginIsRefused) {
  const Plugin arena = Plugin::load(testing::arena_plugin());
  LayerConfig config;
  config.backend = "triton";
  config.layer_name = "l";
  config.kv_cache_dtype = "bfloat16";
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_size = 64;
  config.block_size = 16;
  Layer layer = arena.create_layer(config);
  std::vector<std::byte> host(static_cast<size_t>(layer.cache_geometry().bytes_per_block));
  const int64_t bytes = layer.cache_geometry().bytes_per_block;
  EXPECT_THAT(error_of([&] {
                layer.cache_init(describe(host.data(), KVQ_DTYPE_U8, {1, bytes}));
              }),
              AllOf(HasSubstr("cache_init (l)"), HasSubstr("host memory, but this plugin computes "
                                                           "on opaque")));
}

TEST(ClientTensor, DescribeRefusesBadShapes) {
  EXPECT_THAT(error_of([] { describe(nullptr, 99, {1}); }),
              HasSubstr("tensor descriptor: unknown dtype 99"));
  EXPECT_THAT(error_of([] {
                describe(nullptr, KVQ_DTYPE_F32, {1, 1, 1, 1, 1, 1, 1, 1, 1});
              }),
              HasSubstr("tensor descriptor: 9 dimensions, at most 8"));
  EXPECT_THAT(error_of([] {
                describe(nullptr, KVQ_DTYPE_F32, {2, -1});
              }),
              HasSubstr("tensor descriptor: dimension 1 of [2, -1] < 0"));
  EXPECT_THAT(error_of([] {
                byte_size(KVQ_DTYPE_F64, std::vector<int64_t>{1ll << 40, 1ll << 30});
              }),
              HasSubstr("tensor size: [1099511627776, 1073741824] of F64 overflows"));
  const std::vector<int64_t> values = {1, 2, 3};
  const kvq_tensor v = host_vector(values);
  EXPECT_EQ(v.dtype, KVQ_DTYPE_I64);
  EXPECT_EQ(v.shape[0], 3);
  EXPECT_EQ(shape_of(v), std::vector<int64_t>{3});
}

TEST(ClientArgs, ForwardArgsOwnTheirDescriptors) {
  float a = 0, b = 0;
  kvq_tensor query = describe(&a, KVQ_DTYPE_F32, {1});
  ForwardArgs args;
  args.attention_state(KVQ_ATTN_DECODE_ONLY).query(query).sinks(nullptr);
  query.data = &b;  // the builder copied the descriptor
  args.alibi_slopes(&query).alibi_slopes(nullptr);
  const kvq_forward_args c = args.c_struct();
  EXPECT_EQ(c.struct_size, KVQ_FORWARD_ARGS_SIZE);
  EXPECT_EQ(c.attention_state, KVQ_ATTN_DECODE_ONLY);
  ASSERT_NE(c.query, nullptr);
  EXPECT_EQ(c.query->data, &a);
  EXPECT_EQ(c.query, args.tensor(ForwardArgs::kQuery));
  EXPECT_EQ(c.alibi_slopes, nullptr);
  EXPECT_EQ(c.sinks, nullptr);
  EXPECT_EQ(c.stream, nullptr);
  args.tensor(ForwardArgs::kQuery)->dtype = KVQ_DTYPE_BF16;  // a test breaks one field
  EXPECT_EQ(args.c_struct().query->dtype, KVQ_DTYPE_BF16);
  EXPECT_EQ(args.struct_size(KVQ_FORWARD_ARGS_SIZE_1_0).c_struct().struct_size,
            KVQ_FORWARD_ARGS_SIZE_1_0);

  CacheWriteArgs w;
  w.key(query).value(nullptr).num_tokens(3);
  const kvq_cache_write_args cw = w.c_struct();
  EXPECT_EQ(cw.struct_size, KVQ_CACHE_WRITE_ARGS_SIZE);
  EXPECT_NE(cw.key, nullptr);
  EXPECT_EQ(cw.value, nullptr);
  EXPECT_EQ(cw.slot_mapping, nullptr);
  EXPECT_EQ(cw.num_tokens, 3);
}

TEST(ClientArgs, LayerConfigFlattensItsOptions) {
  LayerConfig config;
  config.backend = "triton";
  config.options = {{"calculate_kv_scales", "true"}, {"other", "1"}};
  std::vector<const char*> flat;
  const kvq_layer_config c = config.c_struct(flat);
  EXPECT_EQ(c.struct_size, KVQ_LAYER_CONFIG_SIZE);
  EXPECT_STREQ(c.backend, "triton");
  ASSERT_EQ(c.num_options, 2);
  EXPECT_STREQ(c.options[0], "calculate_kv_scales");
  EXPECT_STREQ(c.options[1], "true");
  EXPECT_STREQ(c.options[3], "1");
  EXPECT_EQ(c.tp_size, 1);
}

}  // namespace
}  // namespace kvq::client
