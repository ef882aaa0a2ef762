// A forward batch in guarded memory (host memory, mirrored into a device
// plugin's memory when bound to its session), a generator of random paged
// batches (random block assignment, padding slots) shared by the numeric and
// the error-code cases, and the calls that move the bytes around each
// plugin call.
#pragma once

#include <kvq_abi.h>
#include <kvq_client/args.hpp>
#include <kvq_client/plugin.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "buffers.hpp"
#include "plugin_session.hpp"

namespace kvq::conform {

struct ForwardBatch {
  HostTensor query;  // [T, Hq, D]
  HostTensor key;    // the batch's new tokens [T, Hkv, D]
  HostTensor value;  // [T, Hkv, Dv]
  HostTensor query_start_loc, seq_lens, block_table;
  HostTensor output;  // [T, Hq, Dv], model dtype
  std::optional<HostTensor> alibi_slopes, sinks;

  // Mirrors every tensor in the session's memory (device plugins; the
  // metadata too unless `metadata_on_host`: query_start_loc and seq_lens may
  // be either).
  void bind(const Session& session, bool metadata_on_host = false);
  // Host bytes -> mirrors of every tensor (after a case edited them).
  void upload();
  // The forward arguments over this batch.
  client::ForwardArgs args(HostTensor& cache, int32_t attention_state);
  // Names of the buffers (cache included) whose guard bytes were overwritten.
  std::string damaged_guards(const HostTensor& cache) const;
};

// The engine's choice when the case names no state: all new -> prefill,
// all single-token -> decode, else chunked prefill.
int32_t derive_attention_state(const std::vector<int32_t>& query_start_loc,
                               const std::vector<int32_t>& seq_lens);

struct SeqShape {
  int32_t query_len = 0;
  int32_t seq_len = 0;
};

struct LayerShape {
  int32_t model_dtype = KVQ_DTYPE_BF16;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t block_size = 0;
};

// Deterministic (splitmix64) so every run and every machine sees the same data.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform(double lo, double hi);
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

// Random K/V for every position of every sequence, spread over randomly
// chosen blocks, plus the batch that attends over them.
struct RandomBatch {
  ForwardBatch batch;
  int64_t num_blocks = 0;
  // What a host writes before the step: every context position, interleaved
  // with padding rows (slot -1, values that would be visible if written).
  HostTensor context_key, context_value, context_slots;
  HostTensor new_slots;  // slots of batch.key/value rows
  // Model-dtype values as float64, for the reference: per sequence
  // [seq_len][Hkv][D]; the query [T][Hq][D].
  std::vector<std::vector<double>> keys, values;
  std::vector<double> query;
  std::vector<int32_t> query_start_loc, seq_lens;

  // Binds the batch and the context tensors to the session (see ForwardBatch::bind).
  void bind(const Session& session, bool metadata_on_host = false);
};

RandomBatch make_random_batch(const LayerShape& shape, const std::vector<SeqShape>& seqs,
                              uint64_t seed, int64_t spare_blocks);

// cache_write of (key, value, slots) into `cache`: the inputs are placed in
// the session's memory first (bound, or uploaded), the cache is downloaded
// after. The plugin's answer (success or its error) is returned.
Error write_cache(const Session& session, const client::Layer& layer, HostTensor& key,
                  HostTensor& value, HostTensor& slots, HostTensor& cache);

// Allocates a guarded U8 cache [num_blocks, bytes_per_block] as the geometry
// asks, in the session's memory, and lets the plugin initialise it (a write
// past the buffer fails the case, naming cache_init); the host bytes hold
// what cache_init wrote.
HostTensor allocate_cache(const Session& session, client::Layer& layer,
                          const kvq_cache_geometry& geometry, int64_t num_blocks);

// Runs the batch as a host would and checks what it may not touch: fills the
// output with NaN, places every tensor in the session's memory, asks
// supports() (an UNSUPPORTED answer skips the case when `optional`, else
// fails it), calls forward, downloads output and cache, then fails the case
// if a guard byte was overwritten or the borrowed query modified. Returns
// the arguments (valid while `batch` and `cache` live).
client::ForwardArgs forward_checked(const Session& session, const client::Layer& layer,
                                    ForwardBatch& batch, HostTensor& cache, int32_t attention_state,
                                    bool optional);

// Places `t` in the session's memory: binds it (first time, device plugins)
// or uploads its host bytes.
void place(const Session& session, HostTensor& t);

// The geometry the spec promises for a layer of this shape and element size.
// `min_row_bytes` < 0: a row holds at least head_size elements of the
// element dtype (modes that pack, e.g. int4, pass their own minimum).
std::string check_geometry(const kvq_cache_geometry& g, int64_t num_kv_heads, int64_t head_size,
                           int64_t block_size, int64_t min_row_bytes = -1);

}  // namespace kvq::conform
