#include "ascend_harness.hpp"

#include "kvq_ref/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>

namespace kvq::test::asc {

std::string full_name(const Config& c, const std::string& local) {
  return c.layer_name + "." + local;
}

void check(const CallResult& r, const std::string& what) {
  if (r.code != 0)
    throw std::runtime_error(what + " failed (" + std::to_string(r.code) + "): " + r.message);
}

CallResult create_layer(Plugin& p, const Config& c, LayerPtr* out) {
  kvq_layer_config lc{};
  lc.struct_size = KVQ_LAYER_CONFIG_SIZE;
  lc.backend = "ascend";
  lc.layer_name = c.layer_name.c_str();
  lc.kv_cache_dtype = "auto";
  lc.model_dtype = c.model_dtype;
  lc.num_heads = c.num_heads;
  lc.num_kv_heads = c.num_kv_heads;
  lc.head_size = c.head_size;
  lc.block_size = c.block_size;
  lc.tp_rank = c.tp_rank;
  lc.tp_size = c.tp_size;
  kvq_layer* raw = nullptr;
  CallResult r = p.take(p.api().layer_create(p.instance(), &lc, &raw));
  *out = LayerPtr(raw, p.api().layer_destroy);
  return r;
}

LayerPtr make_layer(Plugin& p, const Config& c) {
  LayerPtr layer(nullptr, p.api().layer_destroy);
  check(create_layer(p, c, &layer), "layer_create");
  return layer;
}

CallResult apply_c8(Plugin& p, kvq_layer* layer) {
  kvq_scheme_args a{};
  a.struct_size = KVQ_SCHEME_ARGS_SIZE;
  a.quant_type = "C8";
  a.layer_type = "attention";
  return p.take(p.api().apply_scheme(layer, &a));
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

std::vector<double> read_param(Plugin& p, const kvq_layer* layer, const std::string& full) {
  const std::optional<kvq_param_info> info = find_param(p, layer, full);
  if (!info) throw std::runtime_error("no parameter " + full);
  std::vector<int64_t> shape(info->shape, info->shape + info->ndim);
  OwnedTensor dst(info->dtype, shape);
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

Scales random_scales(int64_t channels, uint64_t seed, double lo, double hi, double max_offset) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> scale(lo, hi), mag(0.5, max_offset), coin(0.0, 1.0);
  auto offset = [&] {
    const double m = mag(rng);
    return static_cast<double>(static_cast<float>(coin(rng) < 0.5 ? -m : m));
  };
  Scales s;
  for (int64_t i = 0; i < channels; ++i) {
    s.k_scale.push_back(static_cast<float>(scale(rng)));
    s.k_offset.push_back(offset());
    s.v_scale.push_back(static_cast<float>(scale(rng)));
    s.v_offset.push_back(offset());
  }
  return s;
}

Scales uniform_scales(int64_t channels, double scale, double offset) {
  const auto n = static_cast<size_t>(channels);
  return {std::vector<double>(n, scale), std::vector<double>(n, offset),
          std::vector<double>(n, scale), std::vector<double>(n, offset)};
}

CallResult load_scales(Plugin& p, kvq_layer* layer, const Config& c, const Scales& s,
                       int32_t tp_rank, int32_t tp_size) {
  const std::vector<double>* vecs[] = {&s.k_scale, &s.k_offset, &s.v_scale, &s.v_offset};
  for (int i = 0; i < 4; ++i) {
    CallResult r = load_param(p, layer, full_name(c, kC8Params[i]), *vecs[i], {}, KVQ_DTYPE_F32,
                              tp_rank, tp_size);
    if (r.code != 0) return r;
  }
  return {};
}

LayerPtr make_c8_layer(Plugin& p, const Config& c, const Scales& s) {
  LayerPtr layer = make_layer(p, c);
  check(apply_c8(p, layer.get()), "apply_scheme C8");
  check(load_scales(p, layer.get(), c, s, c.tp_rank, c.tp_size), "param_load");
  check(process_weights(p, layer.get()), "process_weights");
  return layer;
}

std::vector<double> rank_slice(const std::vector<double>& full, const Config& c) {
  const int64_t d = c.head_size, local = c.num_kv_heads, n = static_cast<int64_t>(full.size());
  if (n == local * d) return full;
  const int64_t total = n / d;
  const int64_t start = static_cast<int64_t>(c.tp_rank) * total / c.tp_size;
  return {full.begin() + start * d, full.begin() + (start + local) * d};
}

Scales rank_slice(const Scales& full, const Config& c) {
  return {rank_slice(full.k_scale, c), rank_slice(full.k_offset, c), rank_slice(full.v_scale, c),
          rank_slice(full.v_offset, c)};
}

// ---- cache -------------------------------------------------------------------

Cache::Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks)
    : g_(asc::geometry(p, layer)), storage_(KVQ_DTYPE_U8, {num_blocks, g_.bytes_per_block}) {
  check(p.take(p.api().cache_init(layer, storage_.get())), "cache_init");
}

std::vector<unsigned char> Cache::snapshot() const {
  const auto* b = static_cast<const unsigned char*>(storage_.get()->data);
  return {b, b + storage_.bytes()};
}

int64_t Cache::offset(int64_t block, int kv, int64_t in_block, int64_t head, int64_t d) const {
  return ((block * 2 + kv) * g_.block_size + in_block) * g_.num_kv_heads * g_.row_bytes +
         head * g_.row_bytes + d;
}

int8_t Cache::code(int64_t slot, int kv, int64_t head, int64_t d) const {
  const auto* b = static_cast<const unsigned char*>(storage_.get()->data);
  int8_t v;
  std::memcpy(&v, b + offset(slot / g_.block_size, kv, slot % g_.block_size, head, d), 1);
  return v;
}

void Cache::set_code(int64_t block, int kv, int64_t in_block, int64_t head, int64_t d, int8_t v) {
  std::memcpy(storage_.data() + offset(block, kv, in_block, head, d), &v, 1);
}

CallResult write_kv(Plugin& p, kvq_layer* layer, const OwnedTensor& key, const OwnedTensor& value,
                    const std::vector<int64_t>& slots, Cache& cache, int64_t num_tokens) {
  OwnedTensor slot_t(KVQ_DTYPE_I64, {static_cast<int64_t>(slots.size())});
  for (size_t i = 0; i < slots.size(); ++i)
    slot_t.set(static_cast<int64_t>(i), static_cast<double>(slots[i]));
  kvq_cache_write_args w{};
  w.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE;
  w.key = key.get();
  w.value = value.get();
  w.slot_mapping = slot_t.get();
  w.kv_cache = cache.tensor();
  w.num_tokens = num_tokens;
  return p.take(p.api().cache_write(layer, &w));
}

OwnedTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, double stddev, uint64_t seed) {
  OwnedTensor t(dtype, std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, normal(rng));
  return t;
}

OwnedTensor filled_tensor(int32_t dtype, std::vector<int64_t> shape, double value) {
  OwnedTensor t(dtype, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, value);
  return t;
}

// ---- reference codecs ----------------------------------------------------------

double bf16(double x) {
  return kvq::ref::round_to(KVQ_DTYPE_BF16, x);
}

RefChannel ref_channel(double scale_f32, double offset_f32) {
  const float s = static_cast<float>(scale_f32);
  return {bf16(static_cast<double>(1.0f / s)), bf16(offset_f32), bf16(scale_f32)};
}

int8_t ref_quantize(double x, const RefChannel& ch) {
  double t = bf16(bf16(x) * ch.inv);
  t = bf16(t + ch.off);
  // Round half to even, written out (independent of the FP rounding mode).
  double r = std::floor(t);
  const double frac = t - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return static_cast<int8_t>(std::clamp(r, -128.0, 127.0));
}

double ref_dequantize(int8_t q, const RefChannel& ch) {
  return bf16(bf16(static_cast<double>(q) - ch.off) * ch.scale);
}

// ---- attention batches -------------------------------------------------------------

C8Run run_c8(Plugin& p, kvq_layer* layer, const Config& c, const std::vector<Seq>& seqs,
             const RunOptions& o, std::unique_ptr<Cache>* cache_out) {
  const kvq_plugin_api& api = p.api();
  C8Run run;
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, d = c.head_size, bs = c.block_size;
  const int64_t ns = static_cast<int64_t>(seqs.size());
  int64_t total_blocks = 0, max_blocks = 1, total_q = 0;
  for (const Seq& s : seqs) {
    total_blocks += (s.seq_len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, (s.seq_len + bs - 1) / bs);
    total_q += s.query_len;
  }
  const int64_t num_blocks = total_blocks + 2;
  auto cache = std::make_unique<Cache>(p, layer, num_blocks);

  std::mt19937_64 rng(o.seed);
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  OwnedTensor table(KVQ_DTYPE_I32, {ns, max_blocks});
  OwnedTensor qsl(KVQ_DTYPE_I32, {ns + 1});
  OwnedTensor lens(KVQ_DTYPE_I32, {ns});
  OwnedTensor new_k(c.model_dtype, {total_q, hkv, d}), new_v(c.model_dtype, {total_q, hkv, d});
  const int64_t es = kvq::ref::dtype_size(c.model_dtype);
  size_t next = 0;
  int64_t row = 0;
  for (int64_t si = 0; si < ns; ++si) {
    const Seq& s = seqs[static_cast<size_t>(si)];
    qsl.set(si, static_cast<double>(row));
    lens.set(si, static_cast<double>(s.seq_len));
    std::vector<int32_t> blocks;
    for (int64_t k = 0; k < (s.seq_len + bs - 1) / bs; ++k) {
      blocks.push_back(ids[next++]);
      table.set(si * max_blocks + k, blocks.back());
    }
    OwnedTensor k = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, o.kv_stddev, rng());
    OwnedTensor v = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, o.kv_stddev, rng());
    std::vector<int64_t> slots;
    for (int64_t j = 0; j < s.seq_len; ++j)
      slots.push_back(blocks[static_cast<size_t>(j / bs)] * bs + j % bs);
    if (o.write_cache) {
      run.status = write_kv(p, layer, k, v, slots, *cache);
      if (run.status.code != 0) {
        if (cache_out != nullptr) *cache_out = std::move(cache);
        return run;
      }
    }
    const size_t off = static_cast<size_t>((s.seq_len - s.query_len) * hkv * d * es);
    const size_t n = static_cast<size_t>(s.query_len * hkv * d * es);
    std::memcpy(new_k.data() + row * hkv * d * es, k.data() + off, n);
    std::memcpy(new_v.data() + row * hkv * d * es, v.data() + off, n);
    run.keys.push_back(k.to_doubles());
    run.values.push_back(v.to_doubles());
    run.blocks.push_back(blocks);
    row += s.query_len;
  }
  qsl.set(ns, static_cast<double>(row));
  OwnedTensor query = random_tensor(c.model_dtype, {total_q, hq, d}, o.q_stddev, rng());
  run.query = query.to_doubles();
  OwnedTensor out = filled_tensor(c.model_dtype, {total_q, hq, d}, NAN);

  kvq_forward_args f{};
  f.struct_size = KVQ_FORWARD_ARGS_SIZE;
  f.attention_state = o.state;
  f.query = query.get();
  if (o.pass_batch_kv) {
    f.key = new_k.get();
    f.value = new_v.get();
  }
  f.kv_cache = cache->tensor();
  f.query_start_loc = qsl.get();
  f.seq_lens = lens.get();
  f.block_table = table.get();
  f.output = out.get();
  if (KVQ_API_HAS(&api, supports)) run.supports = p.take(api.supports(layer, &f));
  run.status = p.take(api.forward(layer, &f));
  if (run.status.code == 0) run.output = out.to_doubles();
  if (cache_out != nullptr) *cache_out = std::move(cache);
  return run;
}

void dequantized_kv(const Cache& cache, const Config& c, const Scales& local,
                    const std::vector<int32_t>& blocks, int64_t len, std::vector<double>* k,
                    std::vector<double>* v) {
  const int64_t hkv = c.num_kv_heads, d = c.head_size, bs = c.block_size;
  k->assign(static_cast<size_t>(len * hkv * d), 0.0);
  v->assign(static_cast<size_t>(len * hkv * d), 0.0);
  for (int64_t j = 0; j < len; ++j) {
    const int64_t slot = blocks[static_cast<size_t>(j / bs)] * bs + j % bs;
    for (int64_t h = 0; h < hkv; ++h)
      for (int64_t x = 0; x < d; ++x) {
        const size_t ch = static_cast<size_t>(h * d + x);
        const size_t i = static_cast<size_t>((j * hkv + h) * d + x);
        (*k)[i] = ref_dequantize(cache.code(slot, 0, h, x),
                                 ref_channel(local.k_scale[ch], local.k_offset[ch]));
        (*v)[i] = ref_dequantize(cache.code(slot, 1, h, x),
                                 ref_channel(local.v_scale[ch], local.v_offset[ch]));
      }
  }
}

std::vector<double> reference_attention(const Config& c, const std::vector<Seq>& seqs,
                                        const std::vector<double>& query,
                                        const std::vector<std::vector<double>>& keys,
                                        const std::vector<std::vector<double>>& values) {
  kvq::ref::AttentionProblem prob;
  prob.num_heads = c.num_heads;
  prob.num_kv_heads = c.num_kv_heads;
  prob.head_size = c.head_size;
  int32_t start = 0;
  prob.query_start_loc.push_back(0);
  for (const Seq& s : seqs) {
    start += static_cast<int32_t>(s.query_len);
    prob.query_start_loc.push_back(start);
    prob.seq_lens.push_back(static_cast<int32_t>(s.seq_len));
  }
  return kvq::ref::attention(prob, query, keys, values);
}

}  // namespace kvq::test::asc
