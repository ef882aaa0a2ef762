// The tensors of one step: the batch description (shared by all layers) and
// the per-layer Q/K/V/output buffers in the model dtype. Bulk tensors live in
// the plugin's memory space (PluginTensor: host memory for a CPU plugin,
// device memory behind a host staging copy for a device plugin);
// query_start_loc and seq_lens stay in host memory, which the ABI allows for
// every plugin.
#pragma once

#include <kvq_abi.h>
#include <kvq_client/args.hpp>

#include <cstdint>
#include <vector>

#include "kvq_engine/activation_generator.hpp"
#include "kvq_engine/host_tensor.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_engine/plugin_tensor.hpp"
#include "kvq_engine/scheduler.hpp"
#include "kvq_engine/workload.hpp"

namespace kvq::host {

// One rank's share of the model: with tensor parallelism, num_heads and
// num_kv_heads are this rank's (contiguous ranges of the model's heads).
struct ModelShape {
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t head_size_v = 0;  // = head_size for now
  int32_t dtype = 0;        // KVQ_DTYPE_* of activations
  int32_t tp_rank = 0;
  int32_t tp_size = 1;

  // The model-wide index of this rank's first query / KV head.
  int64_t first_head() const { return tp_rank * num_heads; }
  int64_t first_kv_head() const { return tp_rank * num_kv_heads; }
};

// Which text and position a query row of the step holds.
struct TokenRef {
  uint64_t content = 0;
  int64_t position = 0;
};

class StepBatch {
 public:
  // Allocates in `plugin`'s memory space; the plugin must outlive the batch.
  StepBatch(const ModelShape& shape, const Plugin& plugin);

  // Lays out the plan: slot mapping, query_start_loc, seq_lens, block table
  // (uploaded to the plugin's memory). `requests` is indexed by request id.
  void prepare(const StepPlan& plan, const std::vector<RequestSpec>& requests, int64_t block_size);
  // Generates the step's Q, K and V of `layer` in the model dtype and
  // uploads them.
  void generate(const ActivationGenerator& generator, int64_t layer);
  // Brings the plugin's output of the last forward into output().
  void download_output() { output_.download(); }

  client::CacheWriteArgs cache_write_args(const kvq_tensor& kv_cache) const;
  client::ForwardArgs forward_args(const kvq_tensor& kv_cache) const;

  const ModelShape& shape() const { return shape_; }
  const std::vector<TokenRef>& tokens() const { return tokens_; }
  const std::vector<int32_t>& query_start_loc() const { return query_start_loc_host_; }
  const std::vector<int32_t>& seq_lens() const { return seq_lens_host_; }
  // Host bytes of the query and (after download_output) the output.
  const PluginTensor& query() const { return query_; }
  const PluginTensor& output() const { return output_; }
  int32_t attention_state() const { return attention_state_; }

 private:
  ModelShape shape_;
  int32_t attention_state_ = 0;
  std::vector<TokenRef> tokens_;
  std::vector<int32_t> query_start_loc_host_;
  std::vector<int32_t> seq_lens_host_;
  std::vector<float> scratch_;
  PluginTensor query_, key_, value_, output_;
  PluginTensor slot_mapping_, block_table_;
  HostTensor query_start_loc_, seq_lens_;
};

}  // namespace kvq::host
