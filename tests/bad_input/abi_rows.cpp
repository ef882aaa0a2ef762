// Bad arguments to the ABI's session and layer calls: negotiate (wrong major,
// NULLs, struct sizes, unknown enums), layer_create (configs that break the
// geometry rules, unknown enums and modes, NaN/Inf numbers), out-structs
// that are too small, and scheme/parameter calls. Each row checks the exact
// code, the message, and that no object was created or changed.
#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "bad_input.hpp"
#include "harness.hpp"
#include "scene.hpp"

namespace kvq::bad_input {
namespace {

using test::CallResult;

// ---- negotiate --------------------------------------------------------------

const kvq_plugin_api& triton_api() {
  return triton().api();
}

struct NegotiateRow {
  std::string name;
  std::function<void(kvq_host_info&)> breaks;
  int32_t code;
  std::vector<std::string> message;
  bool null_host = false, null_out = false;
};
void PrintTo(const NegotiateRow& row, std::ostream* os) {
  *os << row.name;
}

const std::vector<NegotiateRow>& negotiate_rows() {
  using H = kvq_host_info&;
  static const std::vector<NegotiateRow> kRows = {
      {"NegotiateWrongMajor",
       [](H h) { h.abi_major = 2; },
       KVQ_ERR_VERSION_MISMATCH,
       {"host speaks kvq ABI major 2", "speaks major 1: refusing to load"}},
      {"NegotiateMajorZero",
       [](H h) { h.abi_major = 0; },
       KVQ_ERR_VERSION_MISMATCH,
       {"host speaks kvq ABI major 0"}},
      {"NegotiateNullHostInfo", [](H) {}, KVQ_ERR_INVALID_ARGUMENT, {"host_info is NULL"}, true},
      {"NegotiateNullOut", [](H) {}, KVQ_ERR_INVALID_ARGUMENT, {"out is NULL"}, false, true},
      {"NegotiateStructSizeZero",
       [](H h) { h.struct_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"host_info: struct_size 0 is too small to hold a version"}},
      {"NegotiateStructSizeTooSmall",
       [](H h) { h.struct_size = KVQ_HOST_INFO_SIZE_1_0 - 8; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"host_info: struct_size 32 is smaller than the v1.0 size 40"}},
      {"NegotiateUnknownLogLevel",
       [](H h) { h.log_level = 9; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"host_info: log_level 9 is not a KVQ_LOG_* value"}},
      {"NegotiateNegativeThreads",
       [](H h) { h.num_threads = -4; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"host_info: num_threads -4 is outside 0..1024"}},
      // Issue #17: a runtime that cannot create the threads ends the process.
      {"NegotiateAbsurdThreads",
       [](H h) { h.num_threads = 4096; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"host_info: num_threads 4096 is outside 0..1024"}},
      {"NegotiateNegativeDeviceOrdinal",
       [](H h) { h.device_ordinal = -1; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"host_info: device_ordinal -1 < 0"}},
  };
  return kRows;
}

class NegotiateRowTest : public ::testing::TestWithParam<NegotiateRow> {};

TEST_P(NegotiateRowTest, IsRefusedAndNoInstanceIsMade) {
  const NegotiateRow& row = GetParam();
  kvq_host_info host{};
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = KVQ_ABI_MAJOR;
  host.abi_minor = KVQ_ABI_MINOR;
  host.num_threads = 1;
  row.breaks(host);
  const kvq_host_info given = host;
  kvq_instance* instance = nullptr;
  const CallResult r = triton().take(
      triton_api().negotiate(row.null_host ? nullptr : &host, row.null_out ? nullptr : &instance));
  EXPECT_EQ(r.code, row.code) << r.message;
  expect_message(r.message, row.message);
  EXPECT_EQ(instance, nullptr);
  EXPECT_EQ(std::memcmp(&host, &given, sizeof host), 0) << "the plugin wrote into host_info";
  triton_api().instance_destroy(instance);
}

INSTANTIATE_TEST_SUITE_P(Abi, NegotiateRowTest, ::testing::ValuesIn(negotiate_rows()), RowName());

// A host_info larger than the plugin knows (a newer host): the tail is
// ignored, never read as v1 fields, and the session works.
TEST(NegotiateTolerance, AHugeStructSizeIsReadAsV1AndTheTailIgnored) {
  struct Bigger {
    kvq_host_info info;
    unsigned char tail[64];
  } big{};
  std::memset(big.tail, 0xEE, sizeof big.tail);
  big.info.struct_size = uint64_t{1} << 40;  // far beyond the real struct
  big.info.abi_major = KVQ_ABI_MAJOR;
  big.info.abi_minor = KVQ_ABI_MINOR + 5;
  big.info.num_threads = 1;
  kvq_instance* instance = nullptr;
  const CallResult r = triton().take(triton_api().negotiate(&big.info, &instance));
  ASSERT_EQ(r.code, 0) << r.message;
  ASSERT_NE(instance, nullptr);
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  EXPECT_EQ(triton().take(triton_api().get_info(instance, &info)).code, 0);
  EXPECT_EQ(info.abi_minor, static_cast<uint32_t>(KVQ_ABI_MINOR));  // min(host, plugin)
  triton_api().instance_destroy(instance);
}

// ---- layer_create -------------------------------------------------------------

struct LayerCreateRow {
  std::string name;
  std::function<void(kvq_layer_config&)> breaks;
  int32_t code;
  std::vector<std::string> message;
  bool null_config = false;
};
void PrintTo(const LayerCreateRow& row, std::ostream* os) {
  *os << row.name;
}

const char* const kUnknownOption[] = {"frobnicate", "1"};
const char* const kNullOption[] = {"calculate_kv_scales", nullptr};

const std::vector<LayerCreateRow>& layer_create_rows() {
  using C = kvq_layer_config&;
  constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  static const std::vector<LayerCreateRow> kRows = {
      {"CreateNullConfig", [](C) {}, KVQ_ERR_INVALID_ARGUMENT, {"layer config is NULL"}, true},
      {"CreateConfigStructSizeZero",
       [](C c) { c.struct_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer config: struct_size 0 is smaller than the v1.0 size 128"}},
      {"CreateConfigStructSizeTooSmall",
       [](C c) { c.struct_size = 64; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer config: struct_size 64 is smaller than the v1.0 size 128"}},
      {"CreateUnknownBackend",
       [](C c) { c.backend = "cuda"; },
       KVQ_ERR_NOT_FOUND,
       {"backend 'cuda' not found; plugin", "offers: triton"}},
      {"CreateNullBackend",
       [](C c) { c.backend = nullptr; },
       KVQ_ERR_NOT_FOUND,
       {"backend '' not found"}},
      {"CreateUnknownKvMode",
       [](C c) { c.kv_cache_dtype = "int3_per_galaxy"; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"int3_per_galaxy"}},
      {"CreateModelDtypeZero",
       [](C c) { c.model_dtype = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"model_dtype 0 must be F32, F16 or BF16"}},
      {"CreateModelDtypeInt8",
       [](C c) { c.model_dtype = KVQ_DTYPE_I8; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"model_dtype 4 must be F32, F16 or BF16"}},
      {"CreateModelDtypeFromTheFuture",
       [](C c) { c.model_dtype = 1000; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"model_dtype 1000 must be F32, F16 or BF16"}},
      {"CreateHeadSizeZero",
       [](C c) { c.head_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"head_size 0 / head_size_v 0 must be in 1..4096"}},
      {"CreateHeadSizeTooLarge",
       [](C c) { c.head_size = 8192; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"head_size 8192 / head_size_v 8192 must be in 1..4096"}},
      {"CreateHeadSizeVNegative",
       [](C c) { c.head_size_v = -64; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"head_size 64 / head_size_v -64 must be in 1..4096"}},
      {"CreateBlockSizeZero",
       [](C c) { c.block_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"block_size 0 must be in 1..65536"}},
      {"CreateBlockSizeHuge",
       [](C c) { c.block_size = int64_t{1} << 40; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"block_size 1099511627776 must be in 1..65536"}},
      {"CreateHeadsNotAMultipleOfKvHeads",
       [](C c) { c.num_kv_heads = 3; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"num_heads 8 must be a positive multiple of num_kv_heads 3"}},
      {"CreateZeroKvHeads",
       [](C c) { c.num_kv_heads = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"num_heads 8 must be a positive multiple of num_kv_heads 0"}},
      {"CreateNegativeSlidingWindow",
       [](C c) { c.sliding_window = -1; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"sliding_window -1 < 0"}},
      {"CreateNanSoftcap",
       [](C c) { c.softcap = kNan; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"softcap and softmax_scale must be finite and >= 0"}},
      {"CreateInfiniteSoftcap",
       [](C c) { c.softcap = kInf; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"softcap and softmax_scale must be finite and >= 0"}},
      {"CreateInfiniteSoftmaxScale",
       [](C c) { c.softmax_scale = kInf; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"softcap and softmax_scale must be finite and >= 0"}},
      {"CreateTpRankOutsideTpSize",
       [](C c) { c.tp_rank = 2, c.tp_size = 2; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"tp_rank 2 is outside 0..tp_size-1 (tp_size 2)"}},
      {"CreateNegativeOptionCount",
       [](C c) { c.num_options = -1; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer config: num_options -1 is outside 0..4096"}},
      {"CreateOptionsNull",
       [](C c) { c.num_options = 2; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer config: options is NULL"}},
      {"CreateOptionWithNullValue",
       [](C c) {
         c.num_options = 1;
         c.options = kNullOption;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer config: option 0 has a NULL key or value"}},
      {"CreateUnknownOption",
       [](C c) {
         c.num_options = 1;
         c.options = kUnknownOption;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"unknown layer option 'frobnicate' for backend triton"}},
  };
  return kRows;
}

class LayerCreateRowTest : public ::testing::TestWithParam<LayerCreateRow> {};

TEST_P(LayerCreateRowTest, IsRefusedAndNoLayerIsMade) {
  const LayerCreateRow& row = GetParam();
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = "triton";
  c.layer_name = "model.layers.0.self_attn.attn";
  c.kv_cache_dtype = "int8_per_token_head";
  c.model_dtype = KVQ_DTYPE_BF16;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_size = 64;
  c.block_size = 16;
  c.tp_size = 1;
  row.breaks(c);
  kvq_layer* layer = nullptr;
  const CallResult r = triton().take(
      triton_api().layer_create(triton().instance(), row.null_config ? nullptr : &c, &layer));
  EXPECT_EQ(r.code, row.code) << r.message;
  expect_message(r.message, row.message);
  EXPECT_EQ(layer, nullptr);
  triton_api().layer_destroy(layer);
}

INSTANTIATE_TEST_SUITE_P(Abi, LayerCreateRowTest, ::testing::ValuesIn(layer_create_rows()),
                         RowName());

// ---- out-structs and layer handles -----------------------------------------------

struct OutStructRow {
  std::string name;
  std::function<kvq_error*(const Scene&, kvq_cache_geometry*, kvq_layer_info*)> call;
  int32_t code;
  std::vector<std::string> message;
};
void PrintTo(const OutStructRow& row, std::ostream* os) {
  *os << row.name;
}

const std::vector<OutStructRow>& out_struct_rows() {
  using G = kvq_cache_geometry*;
  using I = kvq_layer_info*;
  static const std::vector<OutStructRow> kRows = {
      {"GeometryOutNull",
       [](const Scene& s, G, I) { return triton_api().cache_geometry(s.layer.get(), nullptr); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"cache geometry is NULL"}},
      {"GeometryOutStructSizeZero",
       [](const Scene& s, G g, I) {
         g->struct_size = 0;
         return triton_api().cache_geometry(s.layer.get(), g);
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"cache geometry: struct_size 0 is smaller than the v1.0 size 72"}},
      {"LayerInfoOutStructSizeTooSmall",
       [](const Scene& s, G, I i) {
         i->struct_size = 16;
         return triton_api().layer_info(s.layer.get(), i);
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer info: struct_size 16 is smaller than the v1.0 size 48"}},
      {"LayerInfoNullLayer",
       [](const Scene&, G, I i) { return triton_api().layer_info(nullptr, i); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer is NULL"}},
      {"CacheInitNullTensor",
       [](const Scene& s, G, I) { return triton_api().cache_init(s.layer.get(), nullptr); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"kv_cache is NULL"}},
      {"GetInfoNullInstance",
       [](const Scene&, G, I) {
         kvq_plugin_info info{};
         info.struct_size = KVQ_PLUGIN_INFO_SIZE;
         return triton_api().get_info(nullptr, &info);
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"instance is NULL"}},
      {"ParamInfoIndexOutOfRange",
       [](const Scene& s, G, I) {
         kvq_param_info p{};
         p.struct_size = KVQ_PARAM_INFO_SIZE;
         return triton_api().param_info(s.layer.get(), 5, &p);
       },
       KVQ_ERR_OUT_OF_RANGE,
       {"parameter index 5 is outside"}},
  };
  return kRows;
}

class OutStructRowTest : public ::testing::TestWithParam<OutStructRow> {};

TEST_P(OutStructRowTest, IsRefusedAndNoByteIsWritten) {
  const OutStructRow& row = GetParam();
  Scene scene("fp8_per_token_head");
  const SceneState before = state_of(scene);
  // Poisoned out-structs: a refused call must write none of their bytes.
  kvq_cache_geometry g;
  kvq_layer_info i;
  std::memset(&g, 0x5A, sizeof g);
  std::memset(&i, 0x5A, sizeof i);
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  i.struct_size = KVQ_LAYER_INFO_SIZE;
  const CallResult r = triton().take(row.call(scene, &g, &i));
  EXPECT_EQ(r.code, row.code) << r.message;
  expect_message(r.message, row.message);
  const auto* gb = reinterpret_cast<const unsigned char*>(&g);
  const auto* ib = reinterpret_cast<const unsigned char*>(&i);
  for (size_t k = sizeof(uint64_t); k < sizeof g; ++k)
    ASSERT_EQ(gb[k], 0x5A) << "geometry byte " << k;
  for (size_t k = sizeof(uint64_t); k < sizeof i; ++k) ASSERT_EQ(ib[k], 0x5A) << "info byte " << k;
  EXPECT_TRUE(state_of(scene) == before);
}

INSTANTIATE_TEST_SUITE_P(Abi, OutStructRowTest, ::testing::ValuesIn(out_struct_rows()), RowName());

}  // namespace
}  // namespace kvq::bad_input
