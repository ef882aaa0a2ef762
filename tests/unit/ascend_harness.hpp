// Helpers for the Ascend C8 tests (ascend_c8_*_test.cpp): C8 layers driven
// through the C ABI only (layer_create -> apply_scheme "C8" -> param_load ->
// process_weights -> cache_write / forward), a host-owned int8 cache with
// code access, parameter inspection, and test-side references written from
// spec/ascend.md §4-§6 with kvq_ref codecs (no plugin code is reused in
// expectations).
#pragma once

#include "harness.hpp"

#include <kvq_abi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kvq::test::asc {

inline constexpr const char* kLayerName = "model.layers.0.self_attn.attn";
inline constexpr const char* kC8Params[] = {"k_cache_scale", "k_cache_offset", "v_cache_scale",
                                            "v_cache_offset"};
inline constexpr const char* kAntiquantParams[] = {"antiquant_key_scale", "antiquant_key_offset",
                                                   "antiquant_value_scale",
                                                   "antiquant_value_offset"};

using LayerPtr = std::unique_ptr<kvq_layer, void (*)(kvq_layer*)>;

struct Config {
  std::string layer_name = kLayerName;
  int32_t model_dtype = KVQ_DTYPE_BF16;
  int64_t num_heads = 8, num_kv_heads = 4, head_size = 8, block_size = 32;
  int32_t tp_rank = 0, tp_size = 1;
};

// "<layer_name>.<local>"
std::string full_name(const Config& c, const std::string& local);

// Throws std::runtime_error with `what` and the message when r is an error.
void check(const CallResult& r, const std::string& what);

// layer_create on the "ascend" backend (ordinary implementation, kv "auto").
CallResult create_layer(Plugin& p, const Config& c, LayerPtr* out);
LayerPtr make_layer(Plugin& p, const Config& c);  // throws on an error
CallResult apply_c8(Plugin& p, kvq_layer* layer);
kvq_layer_info layer_info(Plugin& p, const kvq_layer* layer);
kvq_cache_geometry geometry(Plugin& p, const kvq_layer* layer);

// The parameter named `full` (by scanning param_info), or nullopt.
std::optional<kvq_param_info> find_param(Plugin& p, const kvq_layer* layer,
                                         const std::string& full);
// param_read of the whole parameter (dtype and size from param_info), decoded
// to doubles; throws when the parameter is missing or the read fails.
std::vector<double> read_param(Plugin& p, const kvq_layer* layer, const std::string& full);
// param_load of `values` stored as `dtype` in `shape` (default [values.size()]).
CallResult load_param(Plugin& p, kvq_layer* layer, const std::string& full,
                      const std::vector<double>& values, std::vector<int64_t> shape = {},
                      int32_t dtype = KVQ_DTYPE_F32, int32_t tp_rank = 0, int32_t tp_size = 1);
CallResult process_weights(Plugin& p, kvq_layer* layer);

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

// A host-owned KV cache buffer U8 [num_blocks, bytes_per_block], initialised
// with cache_init.
class Cache {
 public:
  Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks);
  const kvq_cache_geometry& geometry() const { return g_; }
  kvq_tensor* tensor() { return storage_.get(); }
  unsigned char* data() { return storage_.data(); }
  int64_t bytes() const { return storage_.bytes(); }
  std::vector<unsigned char> snapshot() const;
  // Byte offset of element d of row (block, kv: 0 K / 1 V, slot in block,
  // head), by the layout of abi/kvq_abi.h (int8: one byte per element).
  int64_t offset(int64_t block, int kv, int64_t in_block, int64_t head, int64_t d) const;
  int8_t code(int64_t slot, int kv, int64_t head, int64_t d) const;
  void set_code(int64_t block, int kv, int64_t in_block, int64_t head, int64_t d, int8_t v);

 private:
  kvq_cache_geometry g_{};
  OwnedTensor storage_;
};

// cache_write of key/value [T, H_kv, D] at `slots` (T entries).
CallResult write_kv(Plugin& p, kvq_layer* layer, const OwnedTensor& key, const OwnedTensor& value,
                    const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens = 0);

// N(0, stddev) values rounded to `dtype`.
OwnedTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, double stddev, uint64_t seed);
OwnedTensor filled_tensor(int32_t dtype, std::vector<int64_t> shape, double value);

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

struct Seq {
  int64_t query_len, seq_len;
};

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

// The float64 reference attention (causal, bottom-right aligned, GQA).
std::vector<double> reference_attention(const Config& c, const std::vector<Seq>& seqs,
                                        const std::vector<double>& query,
                                        const std::vector<std::vector<double>>& keys,
                                        const std::vector<std::vector<double>>& values);

}  // namespace kvq::test::asc
