// Bad arguments to cache_write, forward and supports through the C ABI:
// NULL pointers, struct sizes, unknown enums, dtype and shape mismatches,
// ndim > 8, negative or overflowing shapes and strides, misaligned buffers,
// out-of-range slots and block indices, malformed batch descriptions, and
// NaN/Inf into quantized caches. Each row: the exact code, the message, and
// the cache (with its guard bytes), the layer and the output unchanged.
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "bad_input.hpp"
#include "scene.hpp"

namespace kvq::bad_input {
namespace {

enum class Call { kCacheWrite, kForward, kSupports };

struct CallRow {
  std::string name;
  std::string mode;  // the layer's kv_cache_dtype
  Call call;
  std::function<void(Scene&)> breaks;
  int32_t code;
  std::vector<std::string> message;
};
void PrintTo(const CallRow& row, std::ostream* os) {
  *os << row.name;
}

constexpr int64_t kHuge = std::numeric_limits<int64_t>::max() / 2;

void set_i32(kvq_tensor& t, int64_t i, int32_t v) {
  std::memcpy(static_cast<unsigned char*>(t.data) + i * 4, &v, 4);
}

const std::vector<CallRow>& rows() {
  using S = Scene&;
  const std::string bf16 = "bfloat16", int8 = "int8_per_token_head";
  static const std::vector<CallRow> kRows = {
      // ---- cache_write: pointers and struct sizes
      {"WriteNullLayer",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.layer_arg = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"layer is NULL"}},
      {"WriteArgsNull",
       int8,
       Call::kCacheWrite,
       [](S s) { s.null_args = true; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"cache_write args is NULL"}},
      {"WriteArgsStructSizeZero",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.struct_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"cache_write args: struct_size 0 is smaller than the v1.0 size 48"}},
      {"WriteArgsStructSizeTooSmall",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE_1_0 - 8; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"struct_size 40 is smaller than the v1.0 size 48"}},
      {"WriteKeyNull",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.key = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"cache_write: key, value and slot_mapping are required"}},
      {"WriteValueNullOnAKvLayout",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.value = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key, value and slot_mapping are required"}},
      {"WriteKvCacheNull",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.kv_cache = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"kv_cache is NULL"}},
      {"WriteKeyDataNull",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.data = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: data is NULL"}},
      {"TensorStructSizeZero",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.struct_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: struct_size 0 is smaller than the v1.0 size 160"}},
      {"TensorStructSizeTooSmall",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.value_t.struct_size = 96; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"value: struct_size 96 is smaller than the v1.0 size 160"}},
      // ---- tensors: enums, dtypes, ranks, shapes, strides, alignment
      {"UnknownDeviceType",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.device_type = 2; },
       KVQ_ERR_UNSUPPORTED,
       {"key: device type 2 (cuda) is not this plugin's (cpu)"}},
      {"UnknownDtypeZero",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.dtype = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: unknown dtype 0"}},
      {"UnknownDtypeFromTheFuture",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.value_t.dtype = 77; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"value: unknown dtype 77"}},
      {"KeyDtypeMismatch",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.dtype = KVQ_DTYPE_F16; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: dtype float16 where bfloat16 is required"}},
      {"SlotMappingInt32",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.slots_t.dtype = KVQ_DTYPE_I32; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"slot_mapping: dtype int32 where int64 is required"}},
      {"NdimNine",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.ndim = 9; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: ndim 9 is outside 0..8"}},
      {"NdimNegative",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.ndim = -1; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: ndim -1 is outside 0..8"}},
      {"WrongRank",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.ndim = 2; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: 2 dimensions where 3 are required"}},
      {"NegativeShape",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.shape[0] = -8; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: negative dimension 0 = -8"}},
      {"NegativeStride",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.value_t.strides[1] = -32; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"value: negative stride 1 = -32"}},
      {"OverflowingShape",
       bf16,
       Call::kCacheWrite,
       [](S s) {
         s.key_t.shape[0] = kHuge;
         s.key_t.strides[0] = kHuge;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: shape and strides overflow"}},
      {"OverflowingByteSize",
       bf16,
       Call::kCacheWrite,
       [](S s) {
         s.slots_t.shape[0] = std::numeric_limits<int64_t>::max() / 64;
         s.slots_t.strides[0] = 1;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"slot_mapping: tensor too large"}},
      {"ShapeDisagreesWithTheLayer",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t.shape[2] = 16; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: shape [8, 2, 16] where [*, 2, 32] is required"}},
      {"ValueTokenCountDisagrees",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.value_t.shape[0] = 7; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"value: shape [7, 2, 32] where [8, 2, 32] is required"}},
      {"MisalignedKeyBuffer",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.key_t = s.shifted(s.key, 1); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"key: data is not aligned to its 2-byte elements"}},
      {"MisalignedSlotMapping",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.slots_t = s.shifted(s.slots, 4); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"slot_mapping: data is not aligned to its 8-byte elements"}},
      {"MisalignedCacheBuffer",
       bf16,
       Call::kCacheWrite,
       [](S s) {
         s.cache_t.data = static_cast<unsigned char*>(s.cache_t.data) + 16;
         s.cache_t.shape[0] -= 1;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"kv_cache is not aligned to 64 bytes"}},
      {"CacheBlockBytesDisagree",
       bf16,
       Call::kCacheWrite,
       [](S s) {
         s.cache_t.shape[1] /= 2;
         s.cache_t.shape[0] *= 2;
         s.cache_t.strides[0] /= 2;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"kv_cache: shape"}},
      {"CacheNotContiguous",
       bf16,
       Call::kCacheWrite,
       [](S s) {
         s.cache_t.shape[0] /= 2;
         s.cache_t.strides[0] *= 2;
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"kv_cache must be contiguous"}},
      {"NumTokensBeyondTheBatch",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.num_tokens = 9; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"num_tokens 9 is outside 0..8"}},
      {"NumTokensNegative",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.write.num_tokens = -1; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"num_tokens -1 is outside 0..8"}},
      // ---- cache_write: contents
      {"SlotPastTheCache",
       bf16,
       Call::kCacheWrite,
       [](S s) { s.slots.set(3, static_cast<double>(s.pb.num_blocks * Scene::kBlockSize)); },
       KVQ_ERR_OUT_OF_RANGE,
       {"slot_mapping[3] = 64 is outside the cache (4 blocks x 16 slots)", "nothing written"}},
      {"SlotHuge",
       int8,
       Call::kCacheWrite,
       [](S s) {
         const int64_t big = std::numeric_limits<int64_t>::max();
         std::memcpy(static_cast<unsigned char*>(s.slots.get()->data) + 7 * 8, &big, 8);
       },
       KVQ_ERR_OUT_OF_RANGE,
       {"slot_mapping[7] = 9223372036854775807 is outside the cache"}},
      {"NanKeyIntoInt8Cache",
       int8,
       Call::kCacheWrite,
       [](S s) { s.key.set(5 * 64 + 33, NAN); },
       KVQ_ERR_NON_FINITE,
       {"key of token 5 head 1 is nan; nothing written"}},
      {"InfValueIntoFp8PerTokenHeadCache",
       "fp8_per_token_head",
       Call::kCacheWrite,
       [](S s) { s.value.set(2 * 64 + 3, INFINITY); },
       KVQ_ERR_NON_FINITE,
       {"value of token 2 head 0 is inf; nothing written"}},
      {"NegativeInfKeyIntoInt4Cache",
       "int4_per_token_head",
       Call::kCacheWrite,
       [](S s) { s.key.set(7 * 64, -INFINITY); },
       KVQ_ERR_NON_FINITE,
       {"key of token 7 head 0 is -inf; nothing written"}},
      {"NanValueIntoFp8PerTensorCache",
       "fp8",
       Call::kCacheWrite,
       [](S s) { s.value.set(0, NAN); },
       KVQ_ERR_NON_FINITE,
       {"value of token 0 head 0 is nan; nothing written"}},
      // ---- forward: pointers, struct sizes, enums
      {"ForwardArgsNull",
       bf16,
       Call::kForward,
       [](S s) { s.null_args = true; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"forward args is NULL"}},
      {"ForwardArgsStructSizeZero",
       bf16,
       Call::kForward,
       [](S s) { s.forward.struct_size = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"forward args: struct_size 0 is smaller than the v1.0 size 104"}},
      {"ForwardArgsStructSizeTooSmall",
       bf16,
       Call::kForward,
       [](S s) { s.forward.struct_size = KVQ_FORWARD_ARGS_SIZE_1_0 - 8; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"struct_size 96 is smaller than the v1.0 size 104"}},
      {"AttentionStateZero",
       bf16,
       Call::kForward,
       [](S s) { s.forward.attention_state = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"attention_state 0 is not a KVQ_ATTN_* value"}},
      {"AttentionStateUnknown",
       bf16,
       Call::kForward,
       [](S s) { s.forward.attention_state = 6; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"attention_state 6 is not a KVQ_ATTN_* value"}},
      {"ForwardQueryNull",
       bf16,
       Call::kForward,
       [](S s) { s.forward.query = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query, output, kv_cache, query_start_loc, seq_lens and block_table are required"}},
      {"ForwardBlockTableNull",
       int8,
       Call::kForward,
       [](S s) { s.forward.block_table = nullptr; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"are required"}},
      {"QueryDtypeInt8",
       bf16,
       Call::kForward,
       [](S s) { s.query_t.dtype = KVQ_DTYPE_I8; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query: dtype int8 is not accepted by this layer"}},
      {"OutputDtypeMismatch",
       bf16,
       Call::kForward,
       [](S s) { s.output_t.dtype = KVQ_DTYPE_F32; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"output: dtype float32 where bfloat16 is required"}},
      {"OutputTooFewTokens",
       bf16,
       Call::kForward,
       [](S s) { s.output_t.shape[0] = 7; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"output: shape [7, 4, 32] where [8, 4, 32] is required"}},
      {"QueryNdimNine",
       bf16,
       Call::kForward,
       [](S s) { s.query_t.ndim = 9; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query: ndim 9 is outside 0..8"}},
      {"MisalignedQuery",
       bf16,
       Call::kForward,
       [](S s) { s.query_t = s.shifted(s.query, 1); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query: data is not aligned to its 2-byte elements"}},
      {"KeyWithoutValue",
       bf16,
       Call::kForward,
       [](S s) { s.forward.key = &s.key_t; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"forward: key and value must be given together"}},
      {"AlibiSlopesWrongLength",
       bf16,
       Call::kForward,
       [](S s) { s.forward.alibi_slopes = &s.lens_t; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"alibi_slopes: dtype int32 where float32 is required"}},
      {"HeadWeightsOnAnAttentionLayer",
       bf16,
       Call::kForward,
       [](S s) { s.forward.head_weights = &s.query_t; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"head_weights: this layer's implementation takes none"}},
      // ---- forward: the batch description
      {"QueryStartLocNotMonotonic",
       bf16,
       Call::kForward,
       [](S s) {
         set_i32(s.qsl_t, 1, 5);
         set_i32(s.qsl_t, 2, 4);
       },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query_start_loc decreases at 1: 5 -> 4"}},
      {"QueryStartLocNotStartingAtZero",
       bf16,
       Call::kForward,
       [](S s) { set_i32(s.qsl_t, 0, 1); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query_start_loc[0] = 1, must be 0"}},
      {"QueryStartLocEndsBeforeTheQuery",
       bf16,
       Call::kForward,
       [](S s) { set_i32(s.qsl_t, 2, 7); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query_start_loc[2] = 7 but query has 8 tokens"}},
      {"QueryStartLocEmpty",
       bf16,
       Call::kForward,
       [](S s) { s.qsl_t.shape[0] = 0; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"query_start_loc is empty"}},
      {"SeqLenShorterThanItsQuery",
       bf16,
       Call::kForward,
       [](S s) { set_i32(s.lens_t, 0, 4); },
       KVQ_ERR_INVALID_ARGUMENT,
       {"seq_lens[0] = 4 is smaller than its query length 5"}},
      {"SeqLenBeyondItsBlocks",
       int8,
       Call::kForward,
       [](S s) { set_i32(s.lens_t, 1, 17); },
       KVQ_ERR_OUT_OF_RANGE,
       {"seq_lens[1] = 17 needs 2 blocks; block_table holds 1"}},
      {"SeqLensWrongLength",
       bf16,
       Call::kForward,
       [](S s) { s.lens_t.shape[0] = 3; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"seq_lens: shape [3] where [2] is required"}},
      {"BlockIndexPastTheCache",
       bf16,
       Call::kForward,
       [](S s) { set_i32(s.table_t, 1, static_cast<int32_t>(s.pb.num_blocks)); },
       KVQ_ERR_OUT_OF_RANGE,
       {"block_table[1][0] = 4 is outside the cache's 4 blocks"}},
      {"BlockIndexNegative",
       int8,
       Call::kForward,
       [](S s) { set_i32(s.table_t, 0, -1); },
       KVQ_ERR_OUT_OF_RANGE,
       {"block_table[0][0] = -1 is outside the cache's 4 blocks"}},
      {"BlockTableInt64",
       bf16,
       Call::kForward,
       [](S s) { s.table_t.dtype = KVQ_DTYPE_I64; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"block_table: dtype int64 where int32 is required"}},
      // ---- supports() answers exactly what forward would
      {"SupportsSeesTheBadBlockIndex",
       bf16,
       Call::kSupports,
       [](S s) { set_i32(s.table_t, 0, 1000); },
       KVQ_ERR_OUT_OF_RANGE,
       {"block_table[0][0] = 1000 is outside the cache's 4 blocks"}},
      {"SupportsSeesTheUnknownState",
       int8,
       Call::kSupports,
       [](S s) { s.forward.attention_state = -3; },
       KVQ_ERR_INVALID_ARGUMENT,
       {"attention_state -3 is not a KVQ_ATTN_* value"}},
  };
  return kRows;
}

kvq_error* call(Scene& s, Call c) {
  const kvq_plugin_api& api = s.plugin.api();
  switch (c) {
    case Call::kCacheWrite: return api.cache_write(s.layer_arg, s.null_args ? nullptr : &s.write);
    case Call::kForward: return api.forward(s.layer_arg, s.null_args ? nullptr : &s.forward);
    case Call::kSupports: return api.supports(s.layer_arg, s.null_args ? nullptr : &s.forward);
  }
  return nullptr;
}

class CallRowTest : public ::testing::TestWithParam<CallRow> {};

TEST_P(CallRowTest, FailsWithItsCodeAndChangesNothing) {
  const CallRow& row = GetParam();
  Scene scene(row.mode);
  row.breaks(scene);
  const SceneState before = state_of(scene);
  const test::CallResult r = scene.plugin.take(call(scene, row.call));
  EXPECT_EQ(r.code, row.code) << r.message;
  expect_message(r.message, row.message);
  EXPECT_TRUE(state_of(scene) == before) << "the failed call changed the cache, layer or output";
}

INSTANTIATE_TEST_SUITE_P(Call, CallRowTest, ::testing::ValuesIn(rows()), RowName());

// The unbroken scene is valid: every row above fails because of its one change.
TEST(CallRowBaseline, TheUnbrokenBatchesSucceedInEveryMode) {
  for (const std::string mode :
       {"bfloat16", "int8_per_token_head", "fp8_per_token_head", "int4_per_token_head", "fp8"}) {
    SCOPED_TRACE(mode);
    Scene scene(mode);
    const std::vector<unsigned char> cache_before = scene.cache->snapshot();
    for (const Call c : {Call::kSupports, Call::kCacheWrite, Call::kForward}) {
      const test::CallResult r = scene.plugin.take(call(scene, c));
      EXPECT_EQ(r.code, 0) << r.message;
    }
    EXPECT_NE(scene.cache->snapshot(), cache_before);
    EXPECT_EQ(scene.cache->first_changed_guard_byte(), -1);
    for (const double x : scene.output.to_doubles()) ASSERT_TRUE(std::isfinite(x));
  }
}

}  // namespace
}  // namespace kvq::bad_input
