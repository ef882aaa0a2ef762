// Helpers for the Ascend tests (tests/ascend, and tests/sdk's C8 decode-stream
// cases), on top of harness.hpp: the Ascend layer config, C8 layers driven
// through the C ABI only (layer_create -> apply_scheme "C8" -> param_load ->
// process_weights -> cache_write / forward), and test-side references written
// from spec/ascend.md §4-§6 with kvq_ref codecs (no plugin code is reused in
// expectations).
#pragma once

#include "harness.hpp"

#include <kvq_abi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvq::test::asc {

inline constexpr const char* kC8Params[] = {"k_cache_scale", "k_cache_offset", "v_cache_scale",
                                            "v_cache_offset"};
inline constexpr const char* kAntiquantParams[] = {"antiquant_key_scale", "antiquant_key_offset",
                                                   "antiquant_value_scale",
                                                   "antiquant_value_offset"};

// An Ascend layer (ordinary implementation, kv "auto"): 8 query heads, 4 KV
// heads of 8, blocks of 32.
struct Config : LayerSpec {
  Config() {
    backend = "ascend";
    num_kv_heads = 4;
    head_size = 8;
    block_size = 32;
  }
};

inline CallResult apply_c8(Plugin& p, kvq_layer* layer) {
  return apply_scheme(p, layer, "C8");
}

// Per-channel C8 vectors as a checkpoint holds them ([kv_heads * head_size]).
struct Scales {
  std::vector<double> k_scale, k_offset, v_scale, v_offset;
};
// Random float32 values: scales uniform in [lo, hi]; offsets uniform in
// ±[0.5, max_offset] (never zero), all rounded to float32.
Scales random_scales(int64_t channels, uint64_t seed, double lo = 0.02, double hi = 0.06,
                     double max_offset = 12.0);
Scales uniform_scales(int64_t channels, double scale, double offset);
// Loads the four vectors (F32, shape [n]) with this TP position.
CallResult load_scales(Plugin& p, kvq_layer* layer, const Config& c, const Scales& s,
                       int32_t tp_rank = 0, int32_t tp_size = 1);
// create -> apply_scheme C8 -> load_scales (c.tp_rank, c.tp_size) ->
// process_weights; throws on an error.
LayerPtr make_c8_layer(Plugin& p, const Config& c, const Scales& s);

// The vectors a rank uses (spec §4): as is when they hold local*D values,
// else KV heads [floor(rank*total/tp), +local) of the full vector.
std::vector<double> rank_slice(const std::vector<double>& full, const Config& c);
Scales rank_slice(const Scales& full, const Config& c);

// ---- reference codecs (spec §4-§5), bf16 rounding emulated with kvq_ref ----

double bf16(double x);
// Per channel, from the float32 raw parameters:
//   inv = bf16(1.0f / scale)   (the reciprocal in float32, then bf16)
//   off = bf16(offset)
struct RefChannel {
  double inv, off, scale;  // scale = bf16(scale), the antiquant scale
};
RefChannel ref_channel(double scale_f32, double offset_f32);
// t = bf16(bf16(x) * inv); t = bf16(t + off); q = clamp(rne(t), -128, 127)
int8_t ref_quantize(double x, const RefChannel& ch);
// What the plugin documents for c8_dequantize (c8_impl.cpp):
//   bf16( bf16(q - off) * bf16(scale) )
double ref_dequantize(int8_t q, const RefChannel& ch);

// ---- attention batches --------------------------------------------------

// One forward batch on a C8 layer: every position of every sequence is
// written into shuffled blocks of a fresh cache, then forward runs with a
// random query; the batch's float K/V are the last query_len rows.
struct C8Run {
  CallResult status;          // of the first failing call (cache_write or forward)
  CallResult supports;        // what supports() answered for the forward arguments
  std::vector<double> query;  // [T][H_q][D]
  std::vector<std::vector<double>> keys, values;  // per sequence [len][H_kv][D], model dtype
  std::vector<std::vector<int32_t>> blocks;       // per sequence, its blocks
  std::vector<double> output;                     // [T][H_q][D]
};
struct RunOptions {
  int32_t state = KVQ_ATTN_CHUNKED_PREFILL;
  bool pass_batch_kv = true;
  bool write_cache = true;  // false: forward on the initialised, unwritten cache
  double kv_stddev = 1.0, q_stddev = 1.0;
  uint64_t seed = 1;
};
// Runs the batch; `cache` receives the bytes (so the reference can read them back).
C8Run run_c8(Plugin& p, kvq_layer* layer, const Config& c, const std::vector<Seq>& seqs,
             const RunOptions& o, std::unique_ptr<Cache>* cache_out = nullptr);

// Per sequence [len][H_kv][D] K and V dequantized from the cache codes
// through the sequence's blocks with the rank's channels.
void dequantized_kv(const Cache& cache, const Config& c, const Scales& local,
                    const std::vector<int32_t>& blocks, int64_t len, std::vector<double>* k,
                    std::vector<double>* v);

}  // namespace kvq::test::asc
