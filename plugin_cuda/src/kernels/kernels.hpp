// The CUDA kernels of plugin_cuda behind a narrow, plain-C++ launcher
// interface (no CUDA header: ordinary .cpp files include this). Streams are
// passed as void* (a cudaStream_t; nullptr = the legacy default stream).
// Every launcher only enqueues work and returns a cudaError_t as int: 0, or
// the error of an argument check (cudaErrorInvalidValue = 1,
// cudaErrorMisalignedAddress = 716) or of a launch. Errors found on the device
// (bad slots, NaN input, bad block-table entries) are written to a verdict in
// device memory that the caller reads after synchronizing.
//
// The math, the cache layout and the write rules are spec/triton_sim.md's;
// the device rules spec/cuda.md's. Pointers documented "device" must point to
// device memory (or memory the device can read, e.g. pinned host memory).
#pragma once

#include <cstdint>

namespace kvq::cuda {

// How a cache stores its rows (spec/triton_sim.md §1-§2).
enum class Codec : int32_t {
  kF32 = 1,  // mode NONE, fp32 cache
  kBF16,     // mode NONE, bf16 cache
  kF16,      // mode NONE, fp16 cache
  kE4M3,     // FP8_PER_TENSOR, e4m3fn elements (fp8, fp8_e4m3)
  kE5M2,     // FP8_PER_TENSOR, e5m2 elements (fp8_e5m2)
  kInt8Pth,  // int8_per_token_head: D int8 + fp32 scale per row
  kFp8Pth,   // fp8_per_token_head: D e4m3 + fp32 scale per row
  kInt4Pth,  // int4_per_token_head: (D+1)/2 nibble bytes + fp32 scale + fp32 zero point
};

// One layer's cache: [num_blocks][2 (K,V)][block_size][num_kv_heads][row_bytes]
// bytes. row_bytes / bytes_per_block must be what the plugin's geometry says
// (per-token-head: max(D,Dv)*elem + 4, int4: (max(D,Dv)+1)/2 + 8; other modes
// max(D,Dv)*elem); the launchers check them against the codec. The cache base
// must be 16-byte aligned (cudaMalloc gives 256).
struct CacheLayout {
  int64_t num_blocks;
  int64_t block_size;  // multiple of 16
  int64_t num_kv_heads;
  int64_t head_size;    // D (K rows)
  int64_t head_size_v;  // Dv (V rows)
  int64_t row_bytes;
  int64_t bytes_per_block;  // 2 * block_size * num_kv_heads * row_bytes
};

// Expected row_bytes for a codec and head sizes (what the checks compare with).
int64_t expected_row_bytes(Codec codec, int64_t head_size, int64_t head_size_v);

// ---- cache write ------------------------------------------------------------------

// The device-written verdict of one cache write (device memory, one per
// call in flight; the launcher zeroes it first). code: 0 ok; 1 a slot is >=
// num_blocks * block_size (token = the lowest such token, slot = its slot,
// head = 0); 2 a K or V element is NaN/Inf in a quantized codec (token, head,
// is_value: the lowest (token, head, K-before-V) row holding one, bad_value:
// that row's first non-finite element). Slot errors win over NaN errors, as
// on the CPU. When code != 0 nothing was written.
struct WriteVerdict {
  int32_t code;
  int32_t is_value;  // 0 key, 1 value
  int64_t token;
  int64_t head;
  int64_t slot;
  float bad_value;
  int32_t pad;
  uint64_t order_key;  // internal: the kernels' running minimum (inverted); ignore
};

struct WriteArgs {
  Codec codec;
  CacheLayout layout;
  int32_t in_dtype;  // dtype of key/value: 1 = F32, 2 = F16, 3 = BF16 (kvq dtype values)
  const void* key;   // device [num_tokens, num_kv_heads, head_size], element strides below
  int64_t key_stride_token, key_stride_head;  // in elements; the last dim is contiguous
  const void* value;                          // device [num_tokens, num_kv_heads, head_size_v]
  int64_t value_stride_token, value_stride_head;
  const int64_t* slot_mapping;  // device [num_tokens]; < 0: padding token, nothing written
  int64_t num_tokens;
  unsigned char* cache;  // device, layout above
  // FP8 per-tensor only: device arrays of num_scales floats (1, or one per KV
  // head); q = fp8(x / scale) with an IEEE division.
  const float* k_scales;
  const float* v_scales;
  int32_t num_scales;
  WriteVerdict* verdict;  // device
};

// Enqueues: zero the verdict; validate (slots, then NaN/Inf for quantized
// codecs); write, which reads the verdict on the device and writes nothing
// unless it is 0. Bytes are identical to the CPU plugin's for every input.
int launch_cache_write(const WriteArgs& args, void* stream);

// Zeroes num_blocks blocks; per-token-head rows get scale 1.0 (int4: scale
// 1.0, zero point 0.0) after their data, as the CPU plugin's cache_init.
int launch_cache_init(Codec codec, const CacheLayout& layout, unsigned char* cache, void* stream);

// ---- attention -----------------------------------------------------------------------

// The device-written verdict of one attention call (optional). code 0 ok;
// 3: a block-table entry the call reads is < 0 or >= num_blocks (seq = the
// sequence, index = the entry's position in its row, value = the entry; the
// lowest (seq, index) is reported). Such a block is not read (its keys see
// stale shared memory: the output is meaningless), so no memory outside the
// cache is touched.
struct AttentionVerdict {
  int32_t code;
  int32_t value;
  int64_t seq;
  int64_t index;
  uint64_t order_key;  // internal; ignore
};

struct AttentionArgs {
  Codec codec;
  CacheLayout layout;
  int32_t q_dtype;    // 1 F32, 2 F16, 3 BF16, 6 F8_E4M3FN (fp8 per-tensor codecs only)
  int32_t out_dtype;  // 1 F32, 2 F16, 3 BF16: the model dtype. FP8 per-tensor K/V for a
                      // non-fp8 query are rounded to it (spec §4).
  int64_t num_heads;  // Hq, a multiple of num_kv_heads; q head h reads KV head h / (Hq/Hkv)
  const void* query;  // device [num_tokens, Hq, D]; element strides; last dim contiguous
  int64_t q_stride_token, q_stride_head;
  void* output;  // device [num_tokens, Hq, Dv]
  int64_t o_stride_token, o_stride_head;
  const unsigned char* cache;      // device
  const int32_t* block_table;      // device [num_seqs, block_table_stride]
  int64_t block_table_stride;      // entries per row
  const int32_t* query_start_loc;  // device [num_seqs + 1], cumulative query tokens
  const int32_t* seq_lens;         // device [num_seqs], context + new tokens
  int64_t num_seqs;
  int64_t num_tokens;     // = query_start_loc[num_seqs]
  int64_t max_query_len;  // >= every sequence's query length (host value)
  int64_t max_seq_len;    // >= every seq_len (host value)
  // The caller guarantees 0 <= query_len <= seq_len per sequence and
  // seq_len <= block_table_stride * block_size (the CPU plugin checks these on
  // the host copies).
  float softmax_scale;        // the scale itself (the caller resolves 0 -> 1/sqrt(D))
  int64_t sliding_window;     // 0 = none; key j visible to position p when p - j < W
  float softcap;              // 0 = none; s = c * tanh(s / c)
  const float* alibi_slopes;  // device [Hq] or nullptr; s += slope[h] * (j - (seq_len - query_len))
  const float* sinks;         // device [Hq] or nullptr; exp(sink - m) joins the denominator
  // FP8 per-tensor scales (device; ignored by other codecs). q_scales: 1 or Hq
  // values, used with an fp8 query only; k/v: 1 or Hkv values.
  const float* q_scales;
  int32_t num_q_scales;
  const float* k_scales;
  const float* v_scales;
  int32_t num_kv_scales;
  float* workspace;  // device, attention_workspace_bytes() bytes (may be null when that is 0)
  int64_t workspace_bytes;
  AttentionVerdict* verdict;  // device or nullptr; zeroed by launch_attention
  // The KV heads the split planner sizes the grid for: the model's
  // (num_kv_heads x tp_size), so every rank of a tensor-parallel group splits
  // the keys exactly as one device holding all heads would and its heads'
  // outputs are the same bytes. 0 = num_kv_heads.
  int64_t plan_kv_heads;
};

// How launch_attention will run a call (the same for the same shapes and
// num_sms: results are deterministic). For logs and tests.
struct AttentionPlan {
  int32_t path;            // 0 tensor-core kernels, 1 fp32 SIMT kernel (fp32 query or
                           // cache, head sizes not multiples of 4 or > 256, other dtype mixes)
  int32_t padded_head;     // tensor-core path: 64, 128 or 256
  int32_t decode_splits;   // key splits per decode sequence (query_len * Hq/Hkv <= 8)
  int32_t prefill_splits;  // key splits per prefill tile
  int32_t heads_per_cta;   // KV heads one decode CTA reads together
  int64_t workspace_bytes;
  int32_t error;  // non-zero: the call would be refused with this cudaError_t
};
AttentionPlan attention_plan(const AttentionArgs& args, int num_sms);
int64_t attention_workspace_bytes(const AttentionArgs& args, int num_sms);
// num_sms: the device's multiprocessor count (cudaDevAttrMultiProcessorCount).
int launch_attention(const AttentionArgs& args, int num_sms, void* stream);

// ---- calculate_kv_scales ---------------------------------------------------------------

// max |x| over x [num_tokens, num_heads, head_size] (element strides, last dim
// contiguous), skipping tokens whose slot_mapping entry is < 0 when
// slot_mapping is given. NaN elements are skipped (as std::max on the CPU);
// infinities count. Written to *out (device) after zeroing it.
struct AbsmaxArgs {
  int32_t dtype;  // 1 F32, 2 F16, 3 BF16
  const void* x;
  int64_t num_tokens, num_heads, head_size;
  int64_t stride_token, stride_head;
  const int64_t* slot_mapping;  // device or nullptr
  float* out;                   // device
};
int launch_absmax(const AbsmaxArgs& args, void* stream);

}  // namespace kvq::cuda
