// The per-tile attention kernels behind paged_attention (private to the SDK).
// One implementation (attention_kernel_impl.inc) is compiled three times:
// for AVX-512, for AVX2+FMA and portably, each in its own translation unit
// with its own -m flags and an anonymous namespace, so no inline function or
// template instantiated for a wider ISA can be picked by the linker for a
// narrower caller. cpu.cpp chooses one set per process.
#pragma once

#include "kvq_sdk/paged_attention.hpp"

#include <cstdint>
#include <vector>

namespace kvq::sdk::kernels {

constexpr int64_t kKeyTile = 64;  // keys per tile
constexpr int kRowBlock = 4;      // query rows per register block

// The query rows of one work item and their softmax state.
struct ItemRows {
  int64_t rows = 0, d = 0, dv = 0;
  const float* q = nullptr;              // [rows][d], already times softmax_scale * query scale
  const int64_t* pos = nullptr;          // [rows] absolute position of the row's query token
  const float* slopes = nullptr;         // [rows] ALiBi slopes, or nullptr
  int64_t alibi_origin = 0;              // bias = slope * (key - alibi_origin)
  int64_t window = 0;                    // sliding window, 0 = none
  float softcap = 0.0f;                  // 0 = none
  bool quantize_p = false;               // P rounded to e4m3 before P·V
  float* m = nullptr;                    // [rows] running maxima
  float* l = nullptr;                    // [rows] running exp-sums
  float* acc = nullptr;                  // [rows][dv] running P·V
  RowFormat format;                      // how the tile's rows are stored
  float k_scale = 1.0f, v_scale = 1.0f;  // per-tensor scales (not per-token-head)
  ChannelVectors channels;               // this KV head's (per_channel formats)
  // per_channel: every offset is 0 and every scale finite and 0 or >= 2^-50,
  // so bf16(bf16(raw - 0) * s) = bf16(raw * s) is never subnormal (kernels
  // may then use a conversion that flushes subnormals).
  bool channels_symmetric = false;
  // The query in integers, for kernels with integer Q·K on int8 rows
  // (KernelSet::int16_query): q[r] = q16_scale[r] * (hi + lo / 2^15), hi and
  // lo int16, stored [rows][2][d]; nullptr when not used (then q is read).
  const int16_t* q16 = nullptr;
  const float* q16_scale = nullptr;
};

// Largest head size the integer Q·K takes: |hi * k| <= 2^15 * 2^7, summed
// over d in int32 without overflow for d <= 2^8.
constexpr int64_t kMaxInt16QueryD = 256;
// Splits rows x d floats into the q16 layout above. False (nothing usable)
// when a value is not finite or a row's max is too small to scale.
bool quantize_query_i16(const float* q, int64_t rows, int64_t d, int16_t* out, float* scale);
// ItemRows::channels_symmetric for one KV head's vectors.
bool channels_symmetric(const ChannelVectors& c, int64_t d, int64_t dv);

// n <= kKeyTile keys at absolute positions [first, first + n).
struct KeyTile {
  int64_t first = 0, n = 0;
  const unsigned char* const* k = nullptr;  // n row pointers
  const unsigned char* const* v = nullptr;
  // The next tile's rows, prefetched while this one is computed: a KV head's
  // rows are scattered (one per slot, num_kv_heads rows apart), which the
  // hardware prefetchers do not follow.
  int64_t next_n = 0;
  const unsigned char* const* next_k = nullptr;
  const unsigned char* const* next_v = nullptr;
  int64_t k_bytes = 0, v_bytes = 0;  // bytes of one K / V row to prefetch
};

// Floats of per-thread scratch a tile needs: kKeyTile * (d + dv).
inline int64_t scratch_floats(int64_t d, int64_t dv) {
  return kKeyTile * (d + dv);
}

// One decode task for the block-streaming kernel (decode_kernel_impl.inc):
// the single query token of one sequence, for every KV head and all its
// query heads, over keys [k_begin, k_end) of a paged cache whose blocks are
// [2][block_size][heads][row_bytes] (K plane, then V plane). Every key of the
// range is visible to every row (a decode's window is already in the range).
struct DecodeTask {
  int64_t heads = 0, group = 0, d = 0, dv = 0;  // KV heads; query rows per KV head
  const float* q = nullptr;       // [heads * group][d], times softmax_scale * query scale
  const float* slopes = nullptr;  // [heads * group] ALiBi slopes, or nullptr
  int64_t alibi_origin = 0;       // bias = slope * (key - alibi_origin)
  float softcap = 0.0f;           // 0 = none
  int64_t k_begin = 0, k_end = 0;
  const unsigned char* cache = nullptr;  // block 0
  const int32_t* blocks = nullptr;       // the sequence's block table
  int64_t block_size = 0, row_bytes = 0;
  RowFormat format;
  const float* k_scales = nullptr;  // [heads] per-tensor scales (not per-token-head)
  const float* v_scales = nullptr;
  ChannelVectors channels;  // per_channel: every KV head's vectors, [heads][d] / [heads][dv]
  // Results: KV head h's rows are row0[h] .. row0[h] + group of m, l and acc ([rows][dv]).
  float* m = nullptr;
  float* l = nullptr;
  float* acc = nullptr;
  const int64_t* row0 = nullptr;
};

struct KernelSet {
  const char* name;
  // Folds one key tile into the rows' online softmax state.
  void (*tile)(const ItemRows& rows, const KeyTile& tile, float* scratch);
  // The kernels read ItemRows::q16 for int8 per-token-head rows when given.
  bool int16_query;
  // Runs a whole decode task and returns true, or returns false (nothing
  // written) when it has no codec for the task's format or head sizes.
  bool (*decode)(const DecodeTask& task, std::vector<float>& scratch);
};

// The kernel set of the process's SIMD level (cpu.hpp: simd_choice()).
const KernelSet& active_kernels();
// The kernel set of one level; only levels this build has and the CPU runs.
const KernelSet& portable_kernels();
#if defined(KVQ_X86_KERNELS)
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();
#endif

}  // namespace kvq::sdk::kernels
