// Helpers for the Triton-sim KV-mode tests (triton_*_test.cpp), on top of
// harness.hpp: the Triton layer config, guarded caches, scale parameters,
// paged attention batches, and test-side reference quantizers written from
// spec/triton_sim.md §3 (no plugin code is reused in expectations).
#pragma once

#include "harness.hpp"

#include <kvq_abi.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace kvq::test::tri {

// The full parameter name: "<layer_name>.<local>".
std::string param_name(const std::string& local);

// A Triton layer in KV mode `kv_mode`: backend "triton", 4 query heads.
struct Config : LayerSpec {
  explicit Config(const std::string& kv_mode = "auto") {
    backend = "triton";
    mode = kv_mode;
    num_heads = 4;
  }
};

// The Triton scale parameters are F32 vectors, named here by their local name.
CallResult load_scale(Plugin& p, kvq_layer* layer, const std::string& local,
                      const std::vector<float>& values);
// k_scale [k], v_scale [v], then process_weights; the first error.
CallResult load_kv_scales(Plugin& p, kvq_layer* layer, float k, float v);
// param_read of the whole parameter, as float32; throws on an error.
std::vector<float> read_scale(Plugin& p, const kvq_layer* layer, const std::string& local);

// The Triton tests' caches are always guarded (see test::Cache).
class Cache : public test::Cache {
 public:
  Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks)
      : test::Cache(p, layer, num_blocks, true) {}
};

// The D-element row (token, head) of a [T, H, D] tensor, as float32.
std::vector<float> row_of(const OwnedTensor& t, int64_t token, int64_t head);
void set_row(OwnedTensor& t, int64_t token, int64_t head, const std::vector<double>& values);
// Row checks: check(token, head, kv, x, row) with kv 0 = K, 1 = V, x the
// row's inputs as float32 and row its bytes in the cache.
using RowCheck = std::function<void(int64_t token, int64_t head, int kv,
                                    const std::vector<float>& x, const unsigned char* row)>;
// cache_write of key/value [T, H, D] at `slots` (asserted to succeed), then
// `check` for every row it wrote, stopping at the first fatal failure;
// `written` (if given) receives the written slots.
void write_and_check_rows(Plugin& p, kvq_layer* layer, const OwnedTensor& key,
                          const OwnedTensor& value, const std::vector<int64_t>& slots, Cache& cache,
                          const RowCheck& check, std::set<int64_t>* written = nullptr);

// ---- reference quantizers (spec §3), float32 math as the spec states -------

uint32_t bits(float f);
float load_f32(const unsigned char* p);

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

// What the reference reads for a K (is_v false) or V row of `head`: the
// row of D float inputs -> D doubles.
using Deq = std::function<std::vector<double>(const std::vector<float>&, int64_t head, bool is_v)>;
// The inputs as given (unquantized).
std::vector<double> identity_deq(const std::vector<float>& x, int64_t head, bool is_v);
// FP8 per-tensor: decode(fp8(x / s)) * s with the head's scale (a single
// value: every head's), rounded to bf16 when `round_bf16`.
Deq fp8_tensor_deq(int32_t fp8_dtype, std::vector<float> k_scale, std::vector<float> v_scale,
                   bool round_bf16 = false);

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

// The float64 reference over per-sequence K/V rows transformed by `deq`,
// and a query scaled per head by q_scale[h] (empty = 1); round_p_e4m3 as in
// kvq::ref::AttentionProblem (the fp8-query path).
std::vector<double> reference_attention(const Config& c, const std::vector<Seq>& seqs,
                                        const PagedRun& run, const Deq& deq,
                                        const std::vector<double>& q_scale = {},
                                        bool round_p_e4m3 = false);

// max |a - b|
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kvq::test::tri
