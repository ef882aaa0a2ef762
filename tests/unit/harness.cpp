#include "harness.hpp"

#include "kvq_ref/reference.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>

namespace kvq::test {

std::string triton_plugin_path() {
  return KVQ_TRITON_PLUGIN;
}
std::string ascend_plugin_path() {
  return KVQ_ASCEND_PLUGIN;
}

std::vector<LogSink::Entry> LogSink::entries() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return entries_;
}

int64_t LogSink::count(int32_t level, const std::string& needle) const {
  const std::lock_guard<std::mutex> lock(mutex_);
  int64_t n = 0;
  for (const Entry& e : entries_)
    if (e.level == level && e.message.find(needle) != std::string::npos) ++n;
  return n;
}

void LogSink::clear() {
  const std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
}

void LogSink::callback(void* user_data, int32_t level, const char* message) {
  auto* sink = static_cast<LogSink*>(user_data);
  const std::lock_guard<std::mutex> lock(sink->mutex_);
  sink->entries_.push_back({level, message != nullptr ? message : ""});
}

Plugin::Plugin(const std::string& path, int num_threads) : Plugin(path, num_threads, nullptr) {}

Plugin::Plugin(const std::string& path, int num_threads, LogSink* log, int32_t log_level) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) throw std::runtime_error(std::string("dlopen: ") + dlerror());
  auto entry = reinterpret_cast<kvq_plugin_entry_fn>(dlsym(handle, KVQ_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) throw std::runtime_error("no entry symbol in " + path);
  api_ = entry();
  kvq_host_info host{};
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = KVQ_ABI_MAJOR;
  host.abi_minor = KVQ_ABI_MINOR;
  host.num_threads = num_threads;
  if (log != nullptr) {
    host.log = &LogSink::callback;
    host.log_user_data = log;
    host.log_level = log_level;
  }
  const CallResult r = take(api_->negotiate(&host, &instance_));
  if (r.code != 0) throw std::runtime_error("negotiate: " + r.message);
}

Plugin::~Plugin() {
  api_->instance_destroy(instance_);
}

CallResult Plugin::take(kvq_error* e) const {
  CallResult r{api_->error_code(e), api_->error_message(e)};
  api_->error_destroy(e);
  return r;
}

OwnedTensor::OwnedTensor(int32_t dtype, std::vector<int64_t> shape) {
  t_.struct_size = KVQ_TENSOR_SIZE;
  t_.device_type = KVQ_DEVICE_CPU;
  t_.dtype = dtype;
  t_.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = t_.ndim - 1; i >= 0; --i) {
    t_.shape[i] = shape[static_cast<size_t>(i)];
    t_.strides[i] = stride;
    stride *= shape[static_cast<size_t>(i)];
  }
  const size_t n = static_cast<size_t>(std::max<int64_t>(stride * kvq::ref::dtype_size(dtype), 1));
  storage_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, (n + 63) / 64 * 64)),
                 std::free);
  std::memset(storage_.get(), 0, n);
  t_.data = storage_.get();
}

int64_t OwnedTensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < t_.ndim; ++i) n *= t_.shape[i];
  return n;
}
int64_t OwnedTensor::bytes() const {
  return numel() * kvq::ref::dtype_size(t_.dtype);
}

std::vector<double> OwnedTensor::to_doubles() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i)
    out[static_cast<size_t>(i)] = kvq::ref::load(t_.dtype, t_.data, i);
  return out;
}

void OwnedTensor::set(int64_t i, double v) {
  kvq::ref::store(t_.dtype, t_.data, i, v);
}

namespace {

kvq_layer_config make_config(const LayerSpec& s) {
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = s.backend.c_str();
  c.layer_name = "model.layers.0.self_attn.attn";
  c.kv_cache_dtype = s.mode.c_str();
  c.model_dtype = s.model_dtype;
  c.num_heads = s.num_heads;
  c.num_kv_heads = s.num_kv_heads;
  c.head_size = s.head_size;
  c.block_size = s.block_size;
  c.sliding_window = s.sliding_window;
  c.softcap = s.softcap;
  c.tp_size = 1;
  return c;
}

int32_t cache_dtype(const LayerSpec& s) {
  if (s.mode == "bfloat16") return KVQ_DTYPE_BF16;
  if (s.mode == "float16") return KVQ_DTYPE_F16;
  if (s.mode == "float32") return KVQ_DTYPE_F32;
  return s.model_dtype;
}

}  // namespace

CallResult try_create(Plugin& p, const LayerSpec& s) {
  const kvq_layer_config c = make_config(s);
  kvq_layer* layer = nullptr;
  CallResult r = p.take(p.api().layer_create(p.instance(), &c, &layer));
  p.api().layer_destroy(layer);
  return r;
}

BatchResult run_batch(Plugin& p, const LayerSpec& s, const BatchSpec& b) {
  const kvq_plugin_api& api = p.api();
  BatchResult result;
  const kvq_layer_config c = make_config(s);
  kvq_layer* raw = nullptr;
  result.status = p.take(api.layer_create(p.instance(), &c, &raw));
  if (result.status.code != 0) return result;
  std::unique_ptr<kvq_layer, void (*)(kvq_layer*)> layer(raw, api.layer_destroy);

  kvq_cache_geometry g{};
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  result.status = p.take(api.cache_geometry(layer.get(), &g));
  if (result.status.code != 0) return result;

  const int64_t hq = s.num_heads, hkv = s.num_kv_heads, d = s.head_size, bs = s.block_size;
  const int64_t num_seqs = static_cast<int64_t>(b.seqs.size());
  int64_t total_blocks = 0, max_blocks = 1, total_q = 0;
  for (const auto& [q, len] : b.seqs) {
    total_blocks += (len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, (len + bs - 1) / bs);
    total_q += q;
  }
  const int64_t num_blocks = total_blocks + 3;
  OwnedTensor cache(KVQ_DTYPE_U8, {num_blocks, g.bytes_per_block});
  result.status = p.take(api.cache_init(layer.get(), cache.get()));
  if (result.status.code != 0) return result;

  std::mt19937_64 rng(b.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  OwnedTensor table(KVQ_DTYPE_I32, {num_seqs, max_blocks});
  OwnedTensor qsl(KVQ_DTYPE_I32, {num_seqs + 1});
  OwnedTensor lens(KVQ_DTYPE_I32, {num_seqs});
  OwnedTensor query(s.model_dtype, {total_q, hq, d});
  OwnedTensor new_k(s.model_dtype, {total_q, hkv, d}), new_v(s.model_dtype, {total_q, hkv, d});
  std::vector<std::vector<double>> keys, values;
  size_t next_block = 0;
  int64_t q_row = 0;
  for (int64_t si = 0; si < num_seqs; ++si) {
    const auto [qlen, len] = b.seqs[static_cast<size_t>(si)];
    qsl.set(si, static_cast<double>(q_row));
    lens.set(si, static_cast<double>(len));
    std::vector<int32_t> blocks;
    for (int64_t k = 0; k < (len + bs - 1) / bs; ++k) {
      blocks.push_back(ids[next_block++]);
      table.set(si * max_blocks + k, blocks.back());
    }
    OwnedTensor k(s.model_dtype, {len, hkv, d}), v(s.model_dtype, {len, hkv, d});
    OwnedTensor slots(KVQ_DTYPE_I64, {len});
    for (int64_t i = 0; i < k.numel(); ++i) {
      k.set(i, normal(rng));
      v.set(i, normal(rng));
    }
    for (int64_t j = 0; j < len; ++j)
      slots.set(j, static_cast<double>(blocks[static_cast<size_t>(j / bs)] * bs + j % bs));
    // The keys as stored: rounded to the cache dtype.
    std::vector<double> kd = k.to_doubles(), vd = v.to_doubles();
    for (double& x : kd) x = kvq::ref::round_to(cache_dtype(s), x);
    for (double& x : vd) x = kvq::ref::round_to(cache_dtype(s), x);
    // PrefillNoCache on the Ascend backend reads the unrounded batch K/V.
    if (b.state == KVQ_ATTN_PREFILL_NO_CACHE && s.backend == "ascend") {
      kd = k.to_doubles();
      vd = v.to_doubles();
    }
    keys.push_back(kd);
    values.push_back(vd);
    std::memcpy(new_k.data() + q_row * hkv * d * kvq::ref::dtype_size(s.model_dtype),
                k.data() + (len - qlen) * hkv * d * kvq::ref::dtype_size(s.model_dtype),
                static_cast<size_t>(qlen * hkv * d * kvq::ref::dtype_size(s.model_dtype)));
    std::memcpy(new_v.data() + q_row * hkv * d * kvq::ref::dtype_size(s.model_dtype),
                v.data() + (len - qlen) * hkv * d * kvq::ref::dtype_size(s.model_dtype),
                static_cast<size_t>(qlen * hkv * d * kvq::ref::dtype_size(s.model_dtype)));
    if (b.write_cache) {
      kvq_cache_write_args w{};
      w.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE;
      w.key = k.get();
      w.value = v.get();
      w.slot_mapping = slots.get();
      w.kv_cache = cache.get();
      result.status = p.take(api.cache_write(layer.get(), &w));
      if (result.status.code != 0) return result;
    }
    q_row += qlen;
  }
  qsl.set(num_seqs, static_cast<double>(q_row));
  for (int64_t i = 0; i < query.numel(); ++i) query.set(i, normal(rng));

  OwnedTensor out(s.model_dtype, {total_q, hq, d});
  for (int64_t i = 0; i < out.numel(); ++i) out.set(i, NAN);
  OwnedTensor alibi(KVQ_DTYPE_F32, {hq}), sinks(KVQ_DTYPE_F32, {hq});
  kvq::ref::AttentionProblem prob;
  prob.num_heads = hq;
  prob.num_kv_heads = hkv;
  prob.head_size = d;
  prob.sliding_window = s.sliding_window;
  prob.softcap = s.softcap;
  for (int64_t i = 0; i <= num_seqs; ++i)
    prob.query_start_loc.push_back(
        static_cast<int32_t>(kvq::ref::load(KVQ_DTYPE_I32, qsl.data(), i)));
  for (const auto& sq : b.seqs) prob.seq_lens.push_back(static_cast<int32_t>(sq.second));
  for (int64_t h = 0; h < hq; ++h) {
    alibi.set(h, -0.05 * static_cast<double>(h + 1));
    sinks.set(h, 0.5 * static_cast<double>(h % 3));
    if (b.alibi) prob.alibi_slopes.push_back(kvq::ref::load(KVQ_DTYPE_F32, alibi.data(), h));
    if (b.sinks) prob.sinks.push_back(kvq::ref::load(KVQ_DTYPE_F32, sinks.data(), h));
  }

  kvq_forward_args f{};
  f.struct_size = KVQ_FORWARD_ARGS_SIZE;
  f.attention_state = b.state;
  f.query = query.get();
  if (b.pass_batch_kv) {
    f.key = new_k.get();
    f.value = new_v.get();
  }
  f.kv_cache = cache.get();
  f.query_start_loc = qsl.get();
  f.seq_lens = lens.get();
  f.block_table = table.get();
  f.alibi_slopes = b.alibi ? alibi.get() : nullptr;
  f.sinks = b.sinks ? sinks.get() : nullptr;
  f.output = out.get();
  result.status = p.take(api.forward(layer.get(), &f));
  if (result.status.code != 0) return result;
  result.actual = out.to_doubles();
  result.reference = kvq::ref::attention(prob, query.to_doubles(), keys, values);
  return result;
}

}  // namespace kvq::test
