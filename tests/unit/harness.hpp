// Test harness: loads a plugin through the C ABI and runs attention batches
// whose inputs are random, computing the float64 reference alongside.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace kvq::test {

struct CallResult {
  int32_t code = 0;  // 0 = success
  std::string message;
};

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

// A loaded, negotiated plugin. The library is never dlclosed (ABI rule 12).
class Plugin {
 public:
  explicit Plugin(const std::string& path, int num_threads = 2);
  // Negotiates with a host log callback that appends to `log` (which must
  // outlive the Plugin), asking for messages at `log_level` and above.
  Plugin(const std::string& path, int num_threads, LogSink* log, int32_t log_level = KVQ_LOG_TRACE);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;
  const kvq_plugin_api& api() const { return *api_; }
  kvq_instance* instance() const { return instance_; }
  // Consumes an error returned by the plugin.
  CallResult take(kvq_error* e) const;

 private:
  const kvq_plugin_api* api_ = nullptr;
  kvq_instance* instance_ = nullptr;
};

// A tensor that owns its (64-byte aligned) bytes.
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

struct LayerSpec {
  std::string backend;
  std::string mode = "auto";
  int32_t model_dtype = KVQ_DTYPE_BF16;
  int64_t num_heads = 8, num_kv_heads = 2, head_size = 64, block_size = 16;
  int64_t sliding_window = 0;
  double softcap = 0.0;
};

struct BatchSpec {
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (query_len, seq_len)
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

// Creates a layer and returns the status (for configuration errors).
CallResult try_create(Plugin& plugin, const LayerSpec& layer);

// Plugin paths from the build (compile definitions).
std::string triton_plugin_path();
std::string ascend_plugin_path();

}  // namespace kvq::test
