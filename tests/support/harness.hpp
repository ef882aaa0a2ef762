// Test harness shared by every test binary that drives a plugin through the C
// ABI (the kvq_test_harness library): loading a plugin, tensors, layers (one
// config struct for every backend), schemes and parameters, a host-owned KV
// cache, paged batches and the float64 reference (kvq_ref) of their attention.
// Nothing here reuses plugin code: expectations come from kvq_ref and the
// test-side references.
#pragma once

#include "kvq_ref/reference.hpp"

#include <kvq_abi.h>
#include <kvq_client/args.hpp>
#include <kvq_client/plugin.hpp>
#include <kvq_client/tensor.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace kvq::test {

inline constexpr const char* kLayerName = "model.layers.0.self_attn.attn";

struct CallResult {
  int32_t code = 0;  // 0 = success
  std::string message;
};

// Throws std::runtime_error with `what` and the message when r is an error.
void check(const CallResult& r, const std::string& what);

// Collects what a plugin reports through the host log callback. Thread-safe:
// the plugin may log from any thread inside a call.
class LogSink {
 public:
  struct Entry {
    int32_t level = 0;
    std::string message;
  };
  std::vector<Entry> entries() const;
  // Entries at `level` (exactly) whose message contains `needle`.
  int64_t count(int32_t level, const std::string& needle = "") const;
  void clear();
  // A kvq_log_fn; user_data is the LogSink.
  static void callback(void* user_data, int32_t level, const char* message);

 private:
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

// A loaded, negotiated plugin (the client library's session; the library is
// never dlclosed, ABI rule 12). Tests call the raw api() to see exact codes.
class Plugin {
 public:
  explicit Plugin(const std::string& path, int num_threads = 2);
  // Negotiates with a host log callback that appends to `log` (which must
  // outlive the Plugin), asking for messages at `log_level` and above.
  Plugin(const std::string& path, int num_threads, LogSink* log, int32_t log_level = KVQ_LOG_TRACE);
  const kvq_plugin_api& api() const { return plugin_.api(); }
  kvq_instance* instance() const { return plugin_.instance(); }
  const client::Plugin& client() const { return plugin_; }
  // Consumes an error returned by the plugin.
  CallResult take(kvq_error* e) const;

 private:
  client::Plugin plugin_;
};

// Plugin paths from the build (compile definitions).
std::string triton_plugin_path();
std::string ascend_plugin_path();

// ---- tensors -----------------------------------------------------------------

// A contiguous CPU kvq_tensor over `data` (not owned).
kvq_tensor tensor_view(void* data, int32_t dtype, const std::vector<int64_t>& shape);

// A tensor that owns its (64-byte aligned, zeroed) bytes.
class OwnedTensor {
 public:
  OwnedTensor(int32_t dtype, std::vector<int64_t> shape);
  kvq_tensor* get() { return &t_; }
  const kvq_tensor* get() const { return &t_; }
  unsigned char* data() { return static_cast<unsigned char*>(t_.data); }
  int64_t numel() const;
  int64_t bytes() const;
  std::vector<double> to_doubles() const;
  void set(int64_t i, double v);  // rounds to the dtype

 private:
  std::shared_ptr<unsigned char[]> storage_;
  kvq_tensor t_{};
};

// Copies rows [first, first + n) of `src` (rows along the first dimension)
// to rows [at, at + n) of `dst`, a tensor of the same dtype and row shape.
void copy_rows(OwnedTensor& dst, int64_t at, const OwnedTensor& src, int64_t first, int64_t n);
// N(0, stddev) values rounded to `dtype`.
OwnedTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, double stddev, uint64_t seed);
// A random K and V of `shape`: random_tensor with seeds `seed` and `seed + 1`.
std::pair<OwnedTensor, OwnedTensor> random_kv(int32_t dtype, const std::vector<int64_t>& shape,
                                              double stddev, uint64_t seed);
OwnedTensor filled_tensor(int32_t dtype, std::vector<int64_t> shape, double value);

// ---- layers ------------------------------------------------------------------

using Options = std::vector<std::pair<std::string, std::string>>;

// Everything layer_create takes (kvq_layer_config). The backends' test
// configs (tri::Config, asc::Config, the MLA config) are LayerSpecs with
// their own defaults.
struct LayerSpec {
  std::string backend;
  std::string layer_name = kLayerName;
  std::string mode = "auto";  // kv_cache_dtype
  int32_t model_dtype = KVQ_DTYPE_BF16;
  int64_t num_heads = 8, num_kv_heads = 2, head_size = 64, block_size = 16;
  int64_t head_size_v = 0;     // 0 = head_size
  double softmax_scale = 0.0;  // 0 = 1/sqrt(head_size)
  int64_t sliding_window = 0;  // 0 = none
  double softcap = 0.0;        // 0 = none
  int32_t tp_rank = 0, tp_size = 1;
  Options options;
};

// The client's config for a spec (what layer_create receives).
client::LayerConfig layer_config(const LayerSpec& s);

// "<layer_name>.<local>"
std::string full_name(const LayerSpec& s, const std::string& local);

using LayerPtr = std::unique_ptr<kvq_layer, void (*)(kvq_layer*)>;

// layer_create; `out` is set on success.
CallResult create_layer(Plugin& p, const LayerSpec& s, LayerPtr* out);
// layer_create, throwing std::runtime_error on an error.
LayerPtr make_layer(Plugin& p, const LayerSpec& s);
// Creates a layer and returns the status (for configuration errors).
CallResult try_create(Plugin& p, const LayerSpec& s);

kvq_layer_info layer_info(Plugin& p, const kvq_layer* layer);
kvq_cache_geometry geometry(Plugin& p, const kvq_layer* layer);
CallResult apply_scheme(Plugin& p, kvq_layer* layer, const std::string& quant_type,
                        const Options& options = {}, const std::string& layer_type = "attention");

// ---- parameters --------------------------------------------------------------

// The parameter named `full` (by scanning param_info), or nullopt.
std::optional<kvq_param_info> find_param(Plugin& p, const kvq_layer* layer,
                                         const std::string& full);
// The parameter named `full`; throws when there is none.
kvq_param_info param_info(Plugin& p, const kvq_layer* layer, const std::string& full);
std::vector<int64_t> shape_of(const kvq_param_info& info);
// param_read of the whole parameter (dtype and shape from param_info), decoded
// to doubles; throws when the parameter is missing or the read fails.
std::vector<double> read_param(Plugin& p, const kvq_layer* layer, const std::string& full);
// param_load of `values` stored as `dtype` in `shape` (default [values.size()]).
CallResult load_param(Plugin& p, kvq_layer* layer, const std::string& full,
                      const std::vector<double>& values, std::vector<int64_t> shape = {},
                      int32_t dtype = KVQ_DTYPE_F32, int32_t tp_rank = 0, int32_t tp_size = 1);
CallResult process_weights(Plugin& p, kvq_layer* layer);

// ---- the KV cache --------------------------------------------------------------

// A host-owned KV cache buffer U8 [num_blocks, bytes_per_block] for one
// layer, initialised with cache_init. A guarded cache is poisoned (kGuard)
// before cache_init, so that cache_init must really initialise it, and one
// more block of guard bytes follows what the plugin sees, so a write past the
// end is caught, not a heap corruption.
class Cache {
 public:
  static constexpr unsigned char kGuard = 0xA5;
  Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks, bool guarded = false);
  const kvq_cache_geometry& geometry() const { return g_; }
  int64_t num_blocks() const { return num_blocks_; }
  kvq_tensor* tensor() { return &view_; }
  unsigned char* data() { return storage_.data(); }
  // The bytes the plugin sees (without the guard).
  int64_t size() const { return num_blocks_ * g_.bytes_per_block; }
  std::vector<unsigned char> snapshot() const;
  std::vector<unsigned char> guard_bytes() const;
  // Offset of the first guard byte that changed, or -1.
  int64_t first_changed_guard_byte() const;
  // The (block, K=0|V=1, slot in block, head) row of a K/V cache, by the
  // layout of abi/kvq_abi.h.
  const unsigned char* row(int64_t block, int kv, int64_t in_block, int64_t head) const;
  const unsigned char* slot_row(int64_t slot, int kv, int64_t head) const {
    return row(slot / g_.block_size, kv, slot % g_.block_size, head);
  }
  // The row of `slot` in a keys-only cache [blocks][block_size][1][row_bytes].
  const unsigned char* key_row(int64_t slot) const { return base() + slot * g_.row_bytes; }
  // Element d of an int8 K/V row.
  int8_t code(int64_t slot, int kv, int64_t head, int64_t d) const;
  void set_code(int64_t block, int kv, int64_t in_block, int64_t head, int64_t d, int8_t v);

 private:
  const unsigned char* base() const { return static_cast<const unsigned char*>(view_.data); }
  int64_t offset(int64_t block, int kv, int64_t in_block, int64_t head) const;
  kvq_cache_geometry g_{};
  int64_t num_blocks_ = 0;
  OwnedTensor storage_;
  kvq_tensor view_{};
};

// cache_write of key/value [T, H_kv, D] at `slots` (T entries); num_tokens 0 = all.
CallResult write_kv(Plugin& p, kvq_layer* layer, const OwnedTensor& key, const OwnedTensor& value,
                    const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens = 0);
// cache_write of a keys-only layout (value NULL).
CallResult write_keys(Plugin& p, kvq_layer* layer, const OwnedTensor& key,
                      const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens = 0);

// ---- paged batches -------------------------------------------------------------

struct Seq {
  int64_t query_len, seq_len;
};

// Forward arguments over these tensors (key, value, alibi, sinks and head
// weights NULL).
client::ForwardArgs forward_args(int32_t state, const kvq_tensor* query, const kvq_tensor* kv_cache,
                                 const kvq_tensor* query_start_loc, const kvq_tensor* seq_lens,
                                 const kvq_tensor* block_table, const kvq_tensor* output);
// forward / supports through the raw api (the exact code and message).
CallResult forward(Plugin& p, kvq_layer* layer, const client::ForwardArgs& args);
CallResult supports(Plugin& p, const kvq_layer* layer, const client::ForwardArgs& args);

// The block bookkeeping of a paged batch: every sequence's blocks come from
// a shuffled pool of all the blocks it needs plus spare ones.
struct PagedBatch {
  int64_t num_blocks = 0, max_blocks = 1, total_q = 0;
  OwnedTensor table{KVQ_DTYPE_I32, {0}};     // [S, max_blocks]
  OwnedTensor qsl{KVQ_DTYPE_I32, {0}};       // [S + 1]
  OwnedTensor lens{KVQ_DTYPE_I32, {0}};      // [S]
  std::vector<std::vector<int32_t>> blocks;  // per sequence
  std::vector<std::vector<int64_t>> slots;   // per sequence, the slot of every position
  client::ForwardArgs forward_args(int32_t state, const OwnedTensor& query,
                                   const kvq_tensor* kv_cache, const OwnedTensor& output) const;
};
// The shuffle is the only draw from `rng`; unused block table entries hold
// `unused_entry`.
PagedBatch paged_batch(const std::vector<Seq>& seqs, int64_t block_size, int64_t spare_blocks,
                       std::mt19937_64& rng, double unused_entry = 0.0);

// ---- references ------------------------------------------------------------------

// Round half to even of a float64 (written out, independent of the FP
// rounding mode).
double round_half_even(double y);
// The bits of x rounded to a 16-bit float dtype (F16 or BF16) by kvq_ref.
uint16_t bits16(int32_t dtype, double x);

// The reference problem of a batch on a layer (causal, bottom-right aligned,
// GQA, the layer's window and softcap).
kvq::ref::AttentionProblem attention_problem(const LayerSpec& s, const std::vector<Seq>& seqs);
// kvq::ref::attention of that problem.
std::vector<double> reference_attention(const LayerSpec& s, const std::vector<Seq>& seqs,
                                        const std::vector<double>& query,
                                        const std::vector<std::vector<double>>& keys,
                                        const std::vector<std::vector<double>>& values);

// ---- unquantized batches ------------------------------------------------------------

struct BatchSpec {
  std::vector<Seq> seqs;
  int32_t state = KVQ_ATTN_CHUNKED_PREFILL;
  bool alibi = false, sinks = false;
  bool write_cache = true;  // false: forward on an initialised but unwritten cache
  bool pass_batch_kv = true;
  uint64_t seed = 1;
};

struct BatchResult {
  CallResult status;
  std::vector<double> actual;     // forward output
  std::vector<double> reference;  // float64 attention over the stored K/V
};

// Creates a layer, writes every position of every sequence into a shuffled
// set of blocks, runs one forward, and computes the reference.
BatchResult run_batch(Plugin& plugin, const LayerSpec& layer, const BatchSpec& batch);

}  // namespace kvq::test
