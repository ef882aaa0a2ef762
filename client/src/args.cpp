#include "kvq_client/args.hpp"

#include "kvq_client/buffer.hpp"

namespace kvq::client {

namespace {

const kvq_tensor* pointer(const std::optional<kvq_tensor>& t) {
  return t ? &*t : nullptr;
}

void assign(std::optional<kvq_tensor>& slot, const kvq_tensor* t) {
  if (t == nullptr) {
    slot.reset();
  } else {
    slot = *t;
  }
}

}  // namespace

kvq_layer_config LayerConfig::c_struct(std::vector<const char*>& flat_options) const {
  flat_options.clear();
  for (const auto& [key, value] : options) {
    flat_options.push_back(key.c_str());
    flat_options.push_back(value.c_str());
  }
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = backend.c_str();
  c.layer_name = layer_name.c_str();
  c.kv_cache_dtype = kv_cache_dtype.c_str();
  c.model_dtype = model_dtype;
  c.layer_index = layer_index;
  c.num_heads = num_heads;
  c.num_kv_heads = num_kv_heads;
  c.head_size = head_size;
  c.head_size_v = head_size_v;
  c.block_size = block_size;
  c.softmax_scale = softmax_scale;
  c.sliding_window = sliding_window;
  c.softcap = softcap;
  c.tp_rank = tp_rank;
  c.tp_size = tp_size;
  c.num_options = static_cast<int64_t>(options.size());
  c.options = flat_options.empty() ? nullptr : flat_options.data();
  return c;
}

// ---- ForwardArgs --------------------------------------------------------------

ForwardArgs& ForwardArgs::attention_state(int32_t state) {
  state_ = state;
  return *this;
}

ForwardArgs& ForwardArgs::set(Slot slot, const kvq_tensor* tensor) {
  assign(tensors_.at(slot), tensor);
  return *this;
}

ForwardArgs& ForwardArgs::stream(kvq_stream* stream) {
  stream_ = stream;
  return *this;
}

ForwardArgs& ForwardArgs::stream(const Stream& stream) {
  return this->stream(stream.get());
}

ForwardArgs& ForwardArgs::struct_size(uint64_t size) {
  struct_size_ = size;
  return *this;
}

kvq_tensor* ForwardArgs::tensor(Slot slot) {
  auto& t = tensors_.at(slot);
  return t ? &*t : nullptr;
}

const kvq_tensor* ForwardArgs::tensor(Slot slot) const {
  return pointer(tensors_.at(slot));
}

kvq_forward_args ForwardArgs::c_struct() const {
  kvq_forward_args a{};
  a.struct_size = struct_size_;
  a.attention_state = state_;
  a.query = tensor(kQuery);
  a.key = tensor(kKey);
  a.value = tensor(kValue);
  a.kv_cache = tensor(kKvCache);
  a.query_start_loc = tensor(kQueryStartLoc);
  a.seq_lens = tensor(kSeqLens);
  a.block_table = tensor(kBlockTable);
  a.alibi_slopes = tensor(kAlibiSlopes);
  a.sinks = tensor(kSinks);
  a.output = tensor(kOutput);
  a.head_weights = tensor(kHeadWeights);
  a.stream = stream_;
  return a;
}

// ---- CacheWriteArgs -----------------------------------------------------------

CacheWriteArgs& CacheWriteArgs::key(const kvq_tensor& t) {
  key_ = t;
  return *this;
}

CacheWriteArgs& CacheWriteArgs::value(const kvq_tensor* t) {
  assign(value_, t);
  return *this;
}

CacheWriteArgs& CacheWriteArgs::slot_mapping(const kvq_tensor& t) {
  slots_ = t;
  return *this;
}

CacheWriteArgs& CacheWriteArgs::kv_cache(const kvq_tensor& t) {
  cache_ = t;
  return *this;
}

CacheWriteArgs& CacheWriteArgs::num_tokens(int64_t n) {
  num_tokens_ = n;
  return *this;
}

CacheWriteArgs& CacheWriteArgs::stream(kvq_stream* stream) {
  stream_ = stream;
  return *this;
}

CacheWriteArgs& CacheWriteArgs::stream(const Stream& stream) {
  return this->stream(stream.get());
}

CacheWriteArgs& CacheWriteArgs::struct_size(uint64_t size) {
  struct_size_ = size;
  return *this;
}

kvq_cache_write_args CacheWriteArgs::c_struct() const {
  kvq_cache_write_args w{};
  w.struct_size = struct_size_;
  w.key = pointer(key_);
  w.value = pointer(value_);
  w.slot_mapping = pointer(slots_);
  w.kv_cache = pointer(cache_);
  w.num_tokens = num_tokens_;
  w.stream = stream_;
  return w;
}

}  // namespace kvq::client
