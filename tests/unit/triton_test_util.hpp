// Helpers for the Triton-sim KV-mode tests (triton_*_test.cpp): layers with
// options, a host-owned KV cache with row access, scale parameters, paged
// attention batches, and test-side reference quantizers written from
// spec/triton_sim.md §3 (no plugin code is reused in expectations).
#pragma once

#include "harness.hpp"

#include <kvq_abi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kvq::test::tri {

inline constexpr const char* kLayerName = "model.layers.0.self_attn.attn";
// The full parameter name: "<layer_name>.<local>".
std::string param_name(const std::string& local);

using LayerPtr = std::unique_ptr<kvq_layer, void (*)(kvq_layer*)>;

struct Config {
  std::string mode = "auto";
  int32_t model_dtype = KVQ_DTYPE_BF16;
  int64_t num_heads = 4, num_kv_heads = 2, head_size = 64, block_size = 16;
  int64_t sliding_window = 0;        // 0 = none
  double softcap = 0.0;              // 0 = none
  std::vector<std::string> options;  // flat key, value, key, value, ...
};

// layer_create; `out` is set on success.
CallResult create_layer(Plugin& p, const Config& c, LayerPtr* out);
// layer_create, throwing std::runtime_error on an error.
LayerPtr make_layer(Plugin& p, const Config& c);
// Throws std::runtime_error with `what` and the message when r is an error.
void check(const CallResult& r, const std::string& what);

kvq_cache_geometry geometry(Plugin& p, const kvq_layer* layer);
kvq_layer_info layer_info(Plugin& p, const kvq_layer* layer);
CallResult apply_scheme(Plugin& p, kvq_layer* layer, const char* quant_type,
                        const char* layer_type = "attention");

// Loads an F32 tensor of shape `shape` (default [values.size()]) into the
// parameter "<layer_name>.<local>".
CallResult load_param(Plugin& p, kvq_layer* layer, const std::string& local,
                      const std::vector<float>& values, std::vector<int64_t> shape = {});
CallResult process_weights(Plugin& p, kvq_layer* layer);
// param_read into an F32 [n] tensor; throws on an error.
std::vector<float> read_param(Plugin& p, const kvq_layer* layer, const std::string& local,
                              int64_t n);

// A host-owned KV cache buffer for one layer, initialised with cache_init.
// The plugin sees [num_blocks, bytes_per_block]; one more block of guard
// bytes (0xA5) follows it, so a write past the end is caught, not a heap
// corruption.
class Cache {
 public:
  static constexpr unsigned char kGuard = 0xA5;
  Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks);
  const kvq_cache_geometry& geometry() const { return g_; }
  int64_t num_blocks() const { return num_blocks_; }
  kvq_tensor* tensor() { return &view_; }
  // The (block, K=0|V=1, slot-in-block, head) row, by the spec §2 formula.
  const unsigned char* row(int64_t block, int kv, int64_t in_block, int64_t head) const;
  const unsigned char* slot_row(int64_t slot, int kv, int64_t head) const {
    return row(slot / g_.block_size, kv, slot % g_.block_size, head);
  }
  // The bytes the plugin sees (without the guard).
  std::vector<unsigned char> bytes() const;
  std::vector<unsigned char> guard_bytes() const;
  // Offset of the first guard byte that changed, or -1.
  int64_t first_changed_guard_byte() const;

 private:
  kvq_cache_geometry g_{};
  int64_t num_blocks_ = 0;
  OwnedTensor storage_;
  kvq_tensor view_{};
};

// cache_write of key/value (first dimension T) at `slots` (T entries).
CallResult write_kv(Plugin& p, kvq_layer* layer, OwnedTensor& key, OwnedTensor& value,
                    const std::vector<int64_t>& slots, Cache& cache);

// Random tensors: N(0, stddev) rounded to `dtype`.
OwnedTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, double stddev, uint64_t seed);
// The D-element row (token, head) of a [T, H, D] tensor, as float32.
std::vector<float> row_of(const OwnedTensor& t, int64_t token, int64_t head);
void set_row(OwnedTensor& t, int64_t token, int64_t head, const std::vector<double>& values);

// ---- reference quantizers (spec §3), float32 math as the spec states -------

uint32_t bits(float f);
float load_f32(const unsigned char* p);
// Round half to even of a float32 value (computed exactly in double).
double round_half_even(double y);

struct RefRow {
  std::vector<uint8_t> data;  // the stored data bytes (codes, or packed nibbles)
  float scale = 0.0f;
  float zero_point = 0.0f;      // int4 only
  std::vector<double> dequant;  // the dequantized row, float64
};
RefRow ref_int8_row(const std::vector<float>& x);
RefRow ref_fp8_row(const std::vector<float>& x);  // per-token-head e4m3
RefRow ref_int4_row(const std::vector<float>& x);
// FP8 per-tensor: code = fp8(x / scale) with the division in float32.
uint8_t ref_fp8_tensor_code(int32_t fp8_dtype, float x, float scale);

// ---- attention batches -------------------------------------------------------

struct Seq {
  int64_t query_len, seq_len;
};

struct PagedRun {
  CallResult status;
  std::vector<std::vector<float>> keys, values;  // per sequence [len][H_kv][D], as given
  std::vector<double> query;                     // [T][H_q][D], decoded from the query tensor
  std::vector<double> output;                    // [T][H_q][D]
};

struct PagedInput {
  std::vector<Seq> seqs;
  int32_t query_dtype = KVQ_DTYPE_BF16;
  double kv_stddev = 1.0, q_stddev = 1.0;
  uint64_t seed = 1;
};

// Writes every position of every sequence into shuffled blocks of a fresh
// cache, then runs one forward with a random query.
PagedRun run_paged(Plugin& p, kvq_layer* layer, const Config& c, const PagedInput& in);

// The float64 reference over per-sequence K/V rows transformed by `deq`
// (row of D float inputs -> D doubles), and a query scaled per head by
// q_scale[h] (empty = 1).
std::vector<double> reference_attention(
    const Config& c, const std::vector<Seq>& seqs, const PagedRun& run,
    const std::function<std::vector<double>(const std::vector<float>&, int64_t head, bool is_v)>&
        deq,
    const std::vector<double>& q_scale = {});

// max |a - b|
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kvq::test::tri
