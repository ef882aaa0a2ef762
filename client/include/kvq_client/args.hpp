// Argument builders for the ABI's argument structs. Each owns what the C
// struct points to (tensor descriptors, strings, the flat option array) and
// yields the struct on demand, pointing into the builder: valid while the
// builder lives and is not modified. This is the one place outside the
// plugin SDK that fills kvq_forward_args / kvq_cache_write_args /
// kvq_layer_config field by field.
#pragma once

#include <kvq_abi.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvq::client {

class Stream;

// Flat key/value string options (kvq_layer_config.options, kvq_scheme_args.options).
using Options = std::vector<std::pair<std::string, std::string>>;

// kvq_layer_config, with owned strings.
struct LayerConfig {
  std::string backend;
  std::string layer_name;
  std::string kv_cache_dtype;  // a mode string
  int32_t model_dtype = KVQ_DTYPE_BF16;
  int32_t layer_index = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t head_size_v = 0;  // 0 = head_size
  int64_t block_size = 0;
  double softmax_scale = 0.0;  // 0 = 1/sqrt(head_size)
  int64_t sliding_window = 0;  // 0 = none
  double softcap = 0.0;        // 0 = none
  int32_t tp_rank = 0;
  int32_t tp_size = 1;
  Options options;

  // The C struct; `flat_options` receives the key, value, ... array the
  // struct points to and must live as long as the struct is used.
  kvq_layer_config c_struct(std::vector<const char*>& flat_options) const;
};

// kvq_forward_args. Setters copy the descriptor; a nullptr clears the slot
// (the struct then holds NULL, as for an absent alibi_slopes).
class ForwardArgs {
 public:
  enum Slot : size_t {
    kQuery,
    kKey,
    kValue,
    kKvCache,
    kQueryStartLoc,
    kSeqLens,
    kBlockTable,
    kAlibiSlopes,
    kSinks,
    kOutput,
    kHeadWeights,
    kNumSlots
  };

  ForwardArgs& attention_state(int32_t state);
  ForwardArgs& set(Slot slot, const kvq_tensor* tensor);
  ForwardArgs& set(Slot slot, const kvq_tensor& tensor) { return set(slot, &tensor); }
  ForwardArgs& query(const kvq_tensor& t) { return set(kQuery, t); }
  ForwardArgs& key(const kvq_tensor* t) { return set(kKey, t); }
  ForwardArgs& key(const kvq_tensor& t) { return set(kKey, t); }
  ForwardArgs& value(const kvq_tensor* t) { return set(kValue, t); }
  ForwardArgs& value(const kvq_tensor& t) { return set(kValue, t); }
  ForwardArgs& kv_cache(const kvq_tensor& t) { return set(kKvCache, t); }
  ForwardArgs& query_start_loc(const kvq_tensor& t) { return set(kQueryStartLoc, t); }
  ForwardArgs& seq_lens(const kvq_tensor& t) { return set(kSeqLens, t); }
  ForwardArgs& block_table(const kvq_tensor& t) { return set(kBlockTable, t); }
  ForwardArgs& alibi_slopes(const kvq_tensor* t) { return set(kAlibiSlopes, t); }
  ForwardArgs& sinks(const kvq_tensor* t) { return set(kSinks, t); }
  ForwardArgs& output(const kvq_tensor& t) { return set(kOutput, t); }
  ForwardArgs& head_weights(const kvq_tensor* t) { return set(kHeadWeights, t); }
  // NULL (the default): the call completes before it returns.
  ForwardArgs& stream(kvq_stream* stream);
  ForwardArgs& stream(const Stream& stream);
  // The struct_size the struct carries (KVQ_FORWARD_ARGS_SIZE by default);
  // tests set KVQ_FORWARD_ARGS_SIZE_1_0 to act as a 1.0 host.
  ForwardArgs& struct_size(uint64_t size);

  // The descriptor in a slot, or nullptr; tests break one of its fields.
  kvq_tensor* tensor(Slot slot);
  const kvq_tensor* tensor(Slot slot) const;
  int32_t attention_state() const { return state_; }
  kvq_stream* stream() const { return stream_; }

  // The C struct, pointing into this builder.
  kvq_forward_args c_struct() const;

 private:
  int32_t state_ = 0;
  kvq_stream* stream_ = nullptr;
  uint64_t struct_size_ = KVQ_FORWARD_ARGS_SIZE;
  std::array<std::optional<kvq_tensor>, kNumSlots> tensors_{};
};

// kvq_cache_write_args.
class CacheWriteArgs {
 public:
  CacheWriteArgs& key(const kvq_tensor& t);
  CacheWriteArgs& value(const kvq_tensor* t);  // nullptr: keys-only layouts
  CacheWriteArgs& value(const kvq_tensor& t) { return value(&t); }
  CacheWriteArgs& slot_mapping(const kvq_tensor& t);
  CacheWriteArgs& kv_cache(const kvq_tensor& t);
  CacheWriteArgs& num_tokens(int64_t n);  // 0 = every row of key
  CacheWriteArgs& stream(kvq_stream* stream);
  CacheWriteArgs& stream(const Stream& stream);
  CacheWriteArgs& struct_size(uint64_t size);

  kvq_tensor* key() { return key_ ? &*key_ : nullptr; }
  kvq_tensor* value() { return value_ ? &*value_ : nullptr; }
  kvq_tensor* slot_mapping() { return slots_ ? &*slots_ : nullptr; }
  kvq_tensor* kv_cache() { return cache_ ? &*cache_ : nullptr; }
  kvq_stream* stream() const { return stream_; }

  kvq_cache_write_args c_struct() const;

 private:
  std::optional<kvq_tensor> key_, value_, slots_, cache_;
  int64_t num_tokens_ = 0;
  kvq_stream* stream_ = nullptr;
  uint64_t struct_size_ = KVQ_CACHE_WRITE_ARGS_SIZE;
};

}  // namespace kvq::client
