#include "harness.hpp"

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

void check(const CallResult& r, const std::string& what) {
  if (r.code != 0)
    throw std::runtime_error(what + " failed (" + std::to_string(r.code) + "): " + r.message);
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

namespace {

client::PluginOptions options_for(int num_threads, LogSink* log, int32_t log_level) {
  client::PluginOptions o;
  o.num_threads = num_threads;
  if (log != nullptr) {
    o.log_level = log_level;
    o.log = [log](std::string_view, int32_t level, std::string_view message) {
      LogSink::callback(log, level, std::string(message).c_str());
    };
  }
  return o;
}

}  // namespace

Plugin::Plugin(const std::string& path, int num_threads, LogSink* log, int32_t log_level)
    : plugin_(client::Plugin::load(path, options_for(num_threads, log, log_level))) {}

CallResult Plugin::take(kvq_error* e) const {
  const client::Status s = plugin_.take(e);
  return CallResult{s.code, s.message};
}

// ---- tensors -----------------------------------------------------------------

kvq_tensor tensor_view(void* data, int32_t dtype, const std::vector<int64_t>& shape) {
  return client::describe(data, dtype, shape);
}

OwnedTensor::OwnedTensor(int32_t dtype, std::vector<int64_t> shape)
    : t_(tensor_view(nullptr, dtype, shape)) {
  const size_t n = static_cast<size_t>(std::max<int64_t>(bytes(), 1));
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

void copy_rows(OwnedTensor& dst, int64_t at, const OwnedTensor& src, int64_t first, int64_t n) {
  if (n <= 0) return;
  const int64_t row = src.bytes() / src.get()->shape[0];
  std::memcpy(dst.data() + at * row,
              static_cast<const unsigned char*>(src.get()->data) + first * row,
              static_cast<size_t>(n * row));
}

OwnedTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, double stddev, uint64_t seed) {
  OwnedTensor t(dtype, std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, normal(rng));
  return t;
}

std::pair<OwnedTensor, OwnedTensor> random_kv(int32_t dtype, const std::vector<int64_t>& shape,
                                              double stddev, uint64_t seed) {
  return {random_tensor(dtype, shape, stddev, seed), random_tensor(dtype, shape, stddev, seed + 1)};
}

OwnedTensor filled_tensor(int32_t dtype, std::vector<int64_t> shape, double value) {
  OwnedTensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, value);
  return t;
}

// ---- layers ------------------------------------------------------------------

std::string full_name(const LayerSpec& s, const std::string& local) {
  return s.layer_name + "." + local;
}

client::LayerConfig layer_config(const LayerSpec& s) {
  client::LayerConfig c;
  c.backend = s.backend;
  c.layer_name = s.layer_name;
  c.kv_cache_dtype = s.mode;
  c.model_dtype = s.model_dtype;
  c.num_heads = s.num_heads;
  c.num_kv_heads = s.num_kv_heads;
  c.head_size = s.head_size;
  c.head_size_v = s.head_size_v;
  c.block_size = s.block_size;
  c.softmax_scale = s.softmax_scale;
  c.sliding_window = s.sliding_window;
  c.softcap = s.softcap;
  c.tp_rank = s.tp_rank;
  c.tp_size = s.tp_size;
  c.options = s.options;
  return c;
}

CallResult create_layer(Plugin& p, const LayerSpec& s, LayerPtr* out) {
  const client::LayerConfig config = layer_config(s);
  std::vector<const char*> options;
  const kvq_layer_config c = config.c_struct(options);  // points into config and options
  kvq_layer* raw = nullptr;
  const CallResult r = p.take(p.api().layer_create(p.instance(), &c, &raw));
  *out = LayerPtr(raw, p.api().layer_destroy);
  return r;
}

LayerPtr make_layer(Plugin& p, const LayerSpec& s) {
  LayerPtr layer(nullptr, p.api().layer_destroy);
  check(create_layer(p, s, &layer), "layer_create(" + s.backend + ", " + s.mode + ")");
  return layer;
}

CallResult try_create(Plugin& p, const LayerSpec& s) {
  LayerPtr layer(nullptr, p.api().layer_destroy);
  return create_layer(p, s, &layer);
}

kvq_layer_info layer_info(Plugin& p, const kvq_layer* layer) {
  kvq_layer_info info{};
  info.struct_size = KVQ_LAYER_INFO_SIZE;
  check(p.take(p.api().layer_info(layer, &info)), "layer_info");
  return info;
}

kvq_cache_geometry geometry(Plugin& p, const kvq_layer* layer) {
  kvq_cache_geometry g{};
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  check(p.take(p.api().cache_geometry(layer, &g)), "cache_geometry");
  return g;
}

CallResult apply_scheme(Plugin& p, kvq_layer* layer, const std::string& quant_type,
                        const Options& options, const std::string& layer_type) {
  std::vector<const char*> flat;
  for (const auto& [k, v] : options) {
    flat.push_back(k.c_str());
    flat.push_back(v.c_str());
  }
  kvq_scheme_args a{};
  a.struct_size = KVQ_SCHEME_ARGS_SIZE;
  a.quant_type = quant_type.c_str();
  a.layer_type = layer_type.c_str();
  a.num_options = static_cast<int64_t>(options.size());
  a.options = flat.empty() ? nullptr : flat.data();
  return p.take(p.api().apply_scheme(layer, &a));
}

// ---- parameters --------------------------------------------------------------

std::optional<kvq_param_info> find_param(Plugin& p, const kvq_layer* layer,
                                         const std::string& full) {
  const kvq_layer_info li = layer_info(p, layer);
  for (int64_t i = 0; i < li.num_params; ++i) {
    kvq_param_info info{};
    info.struct_size = KVQ_PARAM_INFO_SIZE;
    check(p.take(p.api().param_info(layer, i, &info)), "param_info");
    if (full == info.name) return info;
  }
  return std::nullopt;
}

kvq_param_info param_info(Plugin& p, const kvq_layer* layer, const std::string& full) {
  const std::optional<kvq_param_info> info = find_param(p, layer, full);
  if (!info) throw std::runtime_error("no parameter " + full);
  return *info;
}

std::vector<int64_t> shape_of(const kvq_param_info& info) {
  return {info.shape, info.shape + info.ndim};
}

std::vector<double> read_param(Plugin& p, const kvq_layer* layer, const std::string& full) {
  const kvq_param_info info = param_info(p, layer, full);
  OwnedTensor dst(info.dtype, shape_of(info));
  check(p.take(p.api().param_read(layer, full.c_str(), dst.get())), "param_read " + full);
  return dst.to_doubles();
}

CallResult load_param(Plugin& p, kvq_layer* layer, const std::string& full,
                      const std::vector<double>& values, std::vector<int64_t> shape, int32_t dtype,
                      int32_t tp_rank, int32_t tp_size) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  OwnedTensor t(dtype, shape);
  if (t.numel() != static_cast<int64_t>(values.size()))
    throw std::invalid_argument("load_param: shape does not match the values");
  for (size_t i = 0; i < values.size(); ++i) t.set(static_cast<int64_t>(i), values[i]);
  return p.take(p.api().param_load(layer, full.c_str(), t.get(), tp_rank, tp_size));
}

CallResult process_weights(Plugin& p, kvq_layer* layer) {
  return p.take(p.api().process_weights(layer));
}

// ---- the KV cache --------------------------------------------------------------

Cache::Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks, bool guarded)
    : g_(test::geometry(p, layer)),
      num_blocks_(num_blocks),
      storage_(KVQ_DTYPE_U8, {num_blocks + (guarded ? 1 : 0), g_.bytes_per_block}) {
  if (guarded) std::memset(storage_.data(), kGuard, static_cast<size_t>(storage_.bytes()));
  view_ = *storage_.get();
  view_.shape[0] = num_blocks;
  check(p.take(p.api().cache_init(layer, &view_)), "cache_init");
}

std::vector<unsigned char> Cache::snapshot() const {
  return {base(), base() + size()};
}

std::vector<unsigned char> Cache::guard_bytes() const {
  return {base() + size(), base() + storage_.bytes()};
}

int64_t Cache::first_changed_guard_byte() const {
  for (int64_t i = size(); i < storage_.bytes(); ++i)
    if (base()[i] != kGuard) return i - size();
  return -1;
}

int64_t Cache::offset(int64_t block, int kv, int64_t in_block, int64_t head) const {
  return ((block * 2 + kv) * g_.block_size + in_block) * g_.num_kv_heads * g_.row_bytes +
         head * g_.row_bytes;
}

const unsigned char* Cache::row(int64_t block, int kv, int64_t in_block, int64_t head) const {
  return base() + offset(block, kv, in_block, head);
}

int8_t Cache::code(int64_t slot, int kv, int64_t head, int64_t d) const {
  int8_t v;
  std::memcpy(&v, slot_row(slot, kv, head) + d, 1);
  return v;
}

void Cache::set_code(int64_t block, int kv, int64_t in_block, int64_t head, int64_t d, int8_t v) {
  std::memcpy(storage_.data() + offset(block, kv, in_block, head) + d, &v, 1);
}

namespace {

CallResult write_cache(Plugin& p, kvq_layer* layer, const kvq_tensor* key, const kvq_tensor* value,
                       const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens) {
  OwnedTensor slot_t(KVQ_DTYPE_I64, {static_cast<int64_t>(slots.size())});
  for (size_t i = 0; i < slots.size(); ++i)
    slot_t.set(static_cast<int64_t>(i), static_cast<double>(slots[i]));
  client::CacheWriteArgs args;
  args.key(*key).value(value).slot_mapping(*slot_t.get()).kv_cache(*cache.tensor());
  const kvq_cache_write_args w = args.num_tokens(num_tokens).c_struct();  // points into args
  return p.take(p.api().cache_write(layer, &w));
}

}  // namespace

CallResult write_kv(Plugin& p, kvq_layer* layer, const OwnedTensor& key, const OwnedTensor& value,
                    const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens) {
  return write_cache(p, layer, key.get(), value.get(), slots, cache, num_tokens);
}

CallResult write_keys(Plugin& p, kvq_layer* layer, const OwnedTensor& key,
                      const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens) {
  return write_cache(p, layer, key.get(), nullptr, slots, cache, num_tokens);
}

// ---- paged batches -------------------------------------------------------------

client::ForwardArgs forward_args(int32_t state, const kvq_tensor* query, const kvq_tensor* kv_cache,
                                 const kvq_tensor* query_start_loc, const kvq_tensor* seq_lens,
                                 const kvq_tensor* block_table, const kvq_tensor* output) {
  client::ForwardArgs f;
  f.attention_state(state)
      .set(client::ForwardArgs::kQuery, query)
      .set(client::ForwardArgs::kKvCache, kv_cache)
      .set(client::ForwardArgs::kQueryStartLoc, query_start_loc)
      .set(client::ForwardArgs::kSeqLens, seq_lens)
      .set(client::ForwardArgs::kBlockTable, block_table)
      .set(client::ForwardArgs::kOutput, output);
  return f;
}

CallResult forward(Plugin& p, kvq_layer* layer, const client::ForwardArgs& args) {
  const kvq_forward_args f = args.c_struct();  // points into args
  return p.take(p.api().forward(layer, &f));
}

CallResult supports(Plugin& p, const kvq_layer* layer, const client::ForwardArgs& args) {
  const kvq_forward_args f = args.c_struct();
  return p.take(p.api().supports(layer, &f));
}

client::ForwardArgs PagedBatch::forward_args(int32_t state, const OwnedTensor& query,
                                             const kvq_tensor* kv_cache,
                                             const OwnedTensor& output) const {
  return test::forward_args(state, query.get(), kv_cache, qsl.get(), lens.get(), table.get(),
                            output.get());
}

PagedBatch paged_batch(const std::vector<Seq>& seqs, int64_t block_size, int64_t spare_blocks,
                       std::mt19937_64& rng, double unused_entry) {
  PagedBatch b;
  const int64_t bs = block_size, ns = static_cast<int64_t>(seqs.size());
  int64_t total_blocks = 0;
  for (const Seq& s : seqs) {
    total_blocks += (s.seq_len + bs - 1) / bs;
    b.max_blocks = std::max(b.max_blocks, (s.seq_len + bs - 1) / bs);
    b.total_q += s.query_len;
  }
  b.num_blocks = total_blocks + spare_blocks;
  std::vector<int32_t> ids(static_cast<size_t>(b.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  b.table = OwnedTensor(KVQ_DTYPE_I32, {ns, b.max_blocks});
  b.qsl = OwnedTensor(KVQ_DTYPE_I32, {ns + 1});
  b.lens = OwnedTensor(KVQ_DTYPE_I32, {ns});
  for (int64_t i = 0; i < b.table.numel(); ++i) b.table.set(i, unused_entry);
  size_t next = 0;
  int64_t row = 0;
  for (int64_t si = 0; si < ns; ++si) {
    const Seq& s = seqs[static_cast<size_t>(si)];
    b.qsl.set(si, static_cast<double>(row));
    b.lens.set(si, static_cast<double>(s.seq_len));
    std::vector<int32_t> blocks;
    for (int64_t k = 0; k < (s.seq_len + bs - 1) / bs; ++k) {
      blocks.push_back(ids[next++]);
      b.table.set(si * b.max_blocks + k, blocks.back());
    }
    std::vector<int64_t> slots;
    for (int64_t j = 0; j < s.seq_len; ++j)
      slots.push_back(blocks[static_cast<size_t>(j / bs)] * bs + j % bs);
    b.blocks.push_back(std::move(blocks));
    b.slots.push_back(std::move(slots));
    row += s.query_len;
  }
  b.qsl.set(ns, static_cast<double>(row));
  return b;
}

// ---- references ------------------------------------------------------------------

double round_half_even(double y) {
  double r = std::floor(y);
  const double frac = y - r;  // exact for |y| < 2^52
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return r;
}

uint16_t bits16(int32_t dtype, double x) {
  uint16_t bits = 0;
  kvq::ref::store(dtype, &bits, 0, x);
  return bits;
}

kvq::ref::AttentionProblem attention_problem(const LayerSpec& s, const std::vector<Seq>& seqs) {
  kvq::ref::AttentionProblem prob;
  prob.num_heads = s.num_heads;
  prob.num_kv_heads = s.num_kv_heads;
  prob.head_size = s.head_size;
  prob.head_size_v = s.head_size_v;
  prob.softmax_scale = s.softmax_scale;
  prob.sliding_window = s.sliding_window;
  prob.softcap = s.softcap;
  prob.query_start_loc.push_back(0);
  for (const Seq& q : seqs) {
    prob.query_start_loc.push_back(prob.query_start_loc.back() + static_cast<int32_t>(q.query_len));
    prob.seq_lens.push_back(static_cast<int32_t>(q.seq_len));
  }
  return prob;
}

std::vector<double> reference_attention(const LayerSpec& s, const std::vector<Seq>& seqs,
                                        const std::vector<double>& query,
                                        const std::vector<std::vector<double>>& keys,
                                        const std::vector<std::vector<double>>& values) {
  return kvq::ref::attention(attention_problem(s, seqs), query, keys, values);
}

// ---- unquantized batches ------------------------------------------------------------

namespace {

int32_t cache_dtype(const LayerSpec& s) {
  if (s.mode == "bfloat16") return KVQ_DTYPE_BF16;
  if (s.mode == "float16") return KVQ_DTYPE_F16;
  if (s.mode == "float32") return KVQ_DTYPE_F32;
  return s.model_dtype;
}

}  // namespace

BatchResult run_batch(Plugin& p, const LayerSpec& s, const BatchSpec& b) {
  BatchResult result;
  LayerPtr layer(nullptr, p.api().layer_destroy);
  result.status = create_layer(p, s, &layer);
  if (result.status.code != 0) return result;

  const int64_t hq = s.num_heads, hkv = s.num_kv_heads, d = s.head_size;
  std::mt19937_64 rng(b.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const PagedBatch pb = paged_batch(b.seqs, s.block_size, 3, rng);
  Cache cache(p, layer.get(), pb.num_blocks);

  OwnedTensor query(s.model_dtype, {pb.total_q, hq, d});
  OwnedTensor new_k(s.model_dtype, {pb.total_q, hkv, d}),
      new_v(s.model_dtype, {pb.total_q, hkv, d});
  std::vector<std::vector<double>> keys, values;
  int64_t q_row = 0;
  for (size_t si = 0; si < b.seqs.size(); ++si) {
    const auto [qlen, len] = b.seqs[si];
    OwnedTensor k(s.model_dtype, {len, hkv, d}), v(s.model_dtype, {len, hkv, d});
    for (int64_t i = 0; i < k.numel(); ++i) {
      k.set(i, normal(rng));
      v.set(i, normal(rng));
    }
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
    copy_rows(new_k, q_row, k, len - qlen, qlen);
    copy_rows(new_v, q_row, v, len - qlen, qlen);
    if (b.write_cache) {
      result.status = write_kv(p, layer.get(), k, v, pb.slots[si], cache);
      if (result.status.code != 0) return result;
    }
    q_row += qlen;
  }
  for (int64_t i = 0; i < query.numel(); ++i) query.set(i, normal(rng));

  const OwnedTensor out = filled_tensor(s.model_dtype, {pb.total_q, hq, d}, NAN);
  OwnedTensor alibi(KVQ_DTYPE_F32, {hq}), sinks(KVQ_DTYPE_F32, {hq});
  kvq::ref::AttentionProblem prob = attention_problem(s, b.seqs);
  for (int64_t h = 0; h < hq; ++h) {
    alibi.set(h, -0.05 * static_cast<double>(h + 1));
    sinks.set(h, 0.5 * static_cast<double>(h % 3));
    if (b.alibi) prob.alibi_slopes.push_back(kvq::ref::load(KVQ_DTYPE_F32, alibi.data(), h));
    if (b.sinks) prob.sinks.push_back(kvq::ref::load(KVQ_DTYPE_F32, sinks.data(), h));
  }

  client::ForwardArgs f = pb.forward_args(b.state, query, cache.tensor(), out);
  if (b.pass_batch_kv) f.key(*new_k.get()).value(*new_v.get());
  f.alibi_slopes(b.alibi ? alibi.get() : nullptr).sinks(b.sinks ? sinks.get() : nullptr);
  result.status = forward(p, layer.get(), f);
  if (result.status.code != 0) return result;
  result.actual = out.to_doubles();
  result.reference = kvq::ref::attention(prob, query.to_doubles(), keys, values);
  return result;
}

}  // namespace kvq::test
