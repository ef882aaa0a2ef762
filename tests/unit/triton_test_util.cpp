#include "triton_test_util.hpp"

#include "kvq_ref/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>

namespace kvq::test::tri {

std::string param_name(const std::string& local) {
  return std::string(kLayerName) + "." + local;
}

void check(const CallResult& r, const std::string& what) {
  if (r.code != 0)
    throw std::runtime_error(what + " failed (" + std::to_string(r.code) + "): " + r.message);
}

CallResult create_layer(Plugin& p, const Config& c, LayerPtr* out) {
  std::vector<const char*> options;
  for (const std::string& s : c.options) options.push_back(s.c_str());
  kvq_layer_config cfg{};
  cfg.struct_size = KVQ_LAYER_CONFIG_SIZE;
  cfg.backend = "triton";
  cfg.layer_name = kLayerName;
  cfg.kv_cache_dtype = c.mode.c_str();
  cfg.model_dtype = c.model_dtype;
  cfg.num_heads = c.num_heads;
  cfg.num_kv_heads = c.num_kv_heads;
  cfg.head_size = c.head_size;
  cfg.block_size = c.block_size;
  cfg.sliding_window = c.sliding_window;
  cfg.softcap = c.softcap;
  cfg.tp_size = 1;
  cfg.num_options = static_cast<int64_t>(options.size() / 2);
  cfg.options = options.empty() ? nullptr : options.data();
  kvq_layer* raw = nullptr;
  const CallResult r = p.take(p.api().layer_create(p.instance(), &cfg, &raw));
  *out = LayerPtr(raw, p.api().layer_destroy);
  return r;
}

LayerPtr make_layer(Plugin& p, const Config& c) {
  LayerPtr layer(nullptr, p.api().layer_destroy);
  check(create_layer(p, c, &layer), "layer_create(" + c.mode + ")");
  return layer;
}

kvq_cache_geometry geometry(Plugin& p, const kvq_layer* layer) {
  kvq_cache_geometry g{};
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  check(p.take(p.api().cache_geometry(layer, &g)), "cache_geometry");
  return g;
}

kvq_layer_info layer_info(Plugin& p, const kvq_layer* layer) {
  kvq_layer_info info{};
  info.struct_size = KVQ_LAYER_INFO_SIZE;
  check(p.take(p.api().layer_info(layer, &info)), "layer_info");
  return info;
}

CallResult apply_scheme(Plugin& p, kvq_layer* layer, const char* quant_type,
                        const char* layer_type) {
  kvq_scheme_args a{};
  a.struct_size = KVQ_SCHEME_ARGS_SIZE;
  a.quant_type = quant_type;
  a.layer_type = layer_type;
  return p.take(p.api().apply_scheme(layer, &a));
}

CallResult load_param(Plugin& p, kvq_layer* layer, const std::string& local,
                      const std::vector<float>& values, std::vector<int64_t> shape) {
  if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
  OwnedTensor t(KVQ_DTYPE_F32, shape);
  if (t.numel() != static_cast<int64_t>(values.size()))
    throw std::logic_error("load_param: shape does not match the values");
  for (size_t i = 0; i < values.size(); ++i) t.set(static_cast<int64_t>(i), values[i]);
  return p.take(p.api().param_load(layer, param_name(local).c_str(), t.get(), 0, 1));
}

CallResult process_weights(Plugin& p, kvq_layer* layer) {
  return p.take(p.api().process_weights(layer));
}

std::vector<float> read_param(Plugin& p, const kvq_layer* layer, const std::string& local,
                              int64_t n) {
  OwnedTensor t(KVQ_DTYPE_F32, {n});
  check(p.take(p.api().param_read(layer, param_name(local).c_str(), t.get())),
        "param_read(" + local + ")");
  std::vector<float> out;
  for (double v : t.to_doubles()) out.push_back(static_cast<float>(v));
  return out;
}

Cache::Cache(Plugin& p, kvq_layer* layer, int64_t num_blocks)
    : g_(tri::geometry(p, layer)),
      num_blocks_(num_blocks),
      storage_(KVQ_DTYPE_U8, {num_blocks + 1, g_.bytes_per_block}) {
  // Poison everything, so that cache_init must really initialise the cache.
  std::memset(storage_.data(), kGuard, static_cast<size_t>(storage_.bytes()));
  view_ = *storage_.get();
  view_.shape[0] = num_blocks;
  check(p.take(p.api().cache_init(layer, &view_)), "cache_init");
}

const unsigned char* Cache::row(int64_t block, int kv, int64_t in_block, int64_t head) const {
  const int64_t p = g_.row_bytes, h = g_.num_kv_heads, bs = g_.block_size;
  const int64_t offset = block * 2 * bs * h * p + kv * bs * h * p + in_block * h * p + head * p;
  return static_cast<const unsigned char*>(storage_.get()->data) + offset;
}

std::vector<unsigned char> Cache::bytes() const {
  const auto* b = static_cast<const unsigned char*>(storage_.get()->data);
  return {b, b + num_blocks_ * g_.bytes_per_block};
}

std::vector<unsigned char> Cache::guard_bytes() const {
  const auto* b = static_cast<const unsigned char*>(storage_.get()->data);
  return {b + num_blocks_ * g_.bytes_per_block, b + storage_.bytes()};
}

int64_t Cache::first_changed_guard_byte() const {
  const auto* b = static_cast<const unsigned char*>(storage_.get()->data);
  for (int64_t i = num_blocks_ * g_.bytes_per_block; i < storage_.bytes(); ++i)
    if (b[i] != kGuard) return i - num_blocks_ * g_.bytes_per_block;
  return -1;
}

CallResult write_kv(Plugin& p, kvq_layer* layer, OwnedTensor& key, OwnedTensor& value,
                    const std::vector<int64_t>& slots, Cache& cache) {
  OwnedTensor s(KVQ_DTYPE_I64, {static_cast<int64_t>(slots.size())});
  for (size_t i = 0; i < slots.size(); ++i)
    s.set(static_cast<int64_t>(i), static_cast<double>(slots[i]));
  kvq_cache_write_args w{};
  w.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE;
  w.key = key.get();
  w.value = value.get();
  w.slot_mapping = s.get();
  w.kv_cache = cache.tensor();
  return p.take(p.api().cache_write(layer, &w));
}

OwnedTensor random_tensor(int32_t dtype, std::vector<int64_t> shape, double stddev, uint64_t seed) {
  OwnedTensor t(dtype, std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.set(i, normal(rng));
  return t;
}

std::vector<float> row_of(const OwnedTensor& t, int64_t token, int64_t head) {
  const kvq_tensor& k = *t.get();
  std::vector<float> out(static_cast<size_t>(k.shape[2]));
  for (int64_t x = 0; x < k.shape[2]; ++x)
    out[static_cast<size_t>(x)] = static_cast<float>(kvq::ref::load(
        k.dtype, k.data, token * k.strides[0] + head * k.strides[1] + x * k.strides[2]));
  return out;
}

void set_row(OwnedTensor& t, int64_t token, int64_t head, const std::vector<double>& values) {
  const kvq_tensor& k = *t.get();
  for (size_t x = 0; x < values.size(); ++x)
    t.set(token * k.strides[0] + head * k.strides[1] + static_cast<int64_t>(x) * k.strides[2],
          values[x]);
}

// ---- reference quantizers ----------------------------------------------------

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float load_f32(const unsigned char* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

double round_half_even(double y) {
  const double f = std::floor(y);
  const double diff = y - f;  // exact for |y| < 2^52
  if (diff > 0.5) return f + 1.0;
  if (diff < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

namespace {

float absmax(const std::vector<float>& x) {
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

RefRow ref_int8_row(const std::vector<float>& x) {
  RefRow r;
  r.scale = std::max(absmax(x) / 127.0f, 1e-6f);
  const float inv = 1.0f / r.scale;
  for (float v : x) {
    const float y = v * inv;
    const double q = std::clamp(round_half_even(y), -128.0, 127.0);
    r.data.push_back(static_cast<uint8_t>(static_cast<int8_t>(q)));
    r.dequant.push_back(q * static_cast<double>(r.scale));
  }
  return r;
}

RefRow ref_fp8_row(const std::vector<float>& x) {
  RefRow r;
  r.scale = std::max(absmax(x) / 448.0f, 1e-6f);
  const float inv = 1.0f / r.scale;
  for (float v : x) {
    const float y = std::clamp(v * inv, -448.0f, 448.0f);
    const uint8_t code = kvq::ref::encode_fp8(KVQ_DTYPE_F8_E4M3FN, y);
    r.data.push_back(code);
    r.dequant.push_back(kvq::ref::decode_fp8(KVQ_DTYPE_F8_E4M3FN, code) *
                        static_cast<double>(r.scale));
  }
  return r;
}

RefRow ref_int4_row(const std::vector<float>& x) {
  RefRow r;
  const float lo = *std::min_element(x.begin(), x.end());
  const float hi = *std::max_element(x.begin(), x.end());
  r.scale = std::max((hi - lo) / 15.0f, 1e-6f);
  const float neg_lo_over_scale = -lo / r.scale;
  r.zero_point = static_cast<float>(std::clamp(round_half_even(neg_lo_over_scale), 0.0, 15.0));
  r.data.assign((x.size() + 1) / 2, 0);
  for (size_t i = 0; i < x.size(); ++i) {
    const float t = x[i] / r.scale;
    const float u = t + r.zero_point;
    const auto q = static_cast<unsigned>(std::clamp(round_half_even(u), 0.0, 15.0));
    r.data[i / 2] = static_cast<uint8_t>(r.data[i / 2] | (i % 2 == 0 ? q : q << 4));
    r.dequant.push_back((static_cast<double>(q) - r.zero_point) * static_cast<double>(r.scale));
  }
  return r;
}

uint8_t ref_fp8_tensor_code(int32_t fp8_dtype, float x, float scale) {
  const float y = x / scale;
  return kvq::ref::encode_fp8(fp8_dtype, y);
}

// ---- attention ---------------------------------------------------------------

PagedRun run_paged(Plugin& p, kvq_layer* layer, const Config& c, const PagedInput& in) {
  PagedRun run;
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, d = c.head_size, bs = c.block_size;
  const int64_t num_seqs = static_cast<int64_t>(in.seqs.size());
  int64_t total_blocks = 0, max_blocks = 1, total_q = 0;
  for (const Seq& s : in.seqs) {
    total_blocks += (s.seq_len + bs - 1) / bs;
    max_blocks = std::max(max_blocks, (s.seq_len + bs - 1) / bs);
    total_q += s.query_len;
  }
  const int64_t num_blocks = total_blocks + 2;
  Cache cache(p, layer, num_blocks);
  std::mt19937_64 rng(in.seed);
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  OwnedTensor table(KVQ_DTYPE_I32, {num_seqs, max_blocks});
  OwnedTensor qsl(KVQ_DTYPE_I32, {num_seqs + 1});
  OwnedTensor lens(KVQ_DTYPE_I32, {num_seqs});
  size_t next_block = 0;
  int64_t q_row = 0;
  for (int64_t si = 0; si < num_seqs; ++si) {
    const Seq& s = in.seqs[static_cast<size_t>(si)];
    qsl.set(si, static_cast<double>(q_row));
    lens.set(si, static_cast<double>(s.seq_len));
    std::vector<int64_t> blocks, slots;
    for (int64_t k = 0; k < (s.seq_len + bs - 1) / bs; ++k) {
      blocks.push_back(ids[next_block++]);
      table.set(si * max_blocks + k, static_cast<double>(blocks.back()));
    }
    for (int64_t j = 0; j < s.seq_len; ++j)
      slots.push_back(blocks[static_cast<size_t>(j / bs)] * bs + j % bs);
    OwnedTensor k = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, in.kv_stddev,
                                  in.seed * 7919 + 2 * static_cast<uint64_t>(si));
    OwnedTensor v = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, in.kv_stddev,
                                  in.seed * 7919 + 2 * static_cast<uint64_t>(si) + 1);
    std::vector<float> kf, vf;
    for (double x : k.to_doubles()) kf.push_back(static_cast<float>(x));
    for (double x : v.to_doubles()) vf.push_back(static_cast<float>(x));
    run.keys.push_back(std::move(kf));
    run.values.push_back(std::move(vf));
    run.status = write_kv(p, layer, k, v, slots, cache);
    if (run.status.code != 0) return run;
    q_row += s.query_len;
  }
  qsl.set(num_seqs, static_cast<double>(q_row));
  OwnedTensor query =
      random_tensor(in.query_dtype, {total_q, hq, d}, in.q_stddev, in.seed * 7919 + 99991);
  run.query = query.to_doubles();

  OwnedTensor out(c.model_dtype, {total_q, hq, d});
  for (int64_t i = 0; i < out.numel(); ++i) out.set(i, NAN);
  kvq_forward_args f{};
  f.struct_size = KVQ_FORWARD_ARGS_SIZE;
  bool decode_only = true;
  for (const Seq& s : in.seqs) decode_only = decode_only && s.query_len == 1;
  f.attention_state = decode_only ? KVQ_ATTN_DECODE_ONLY : KVQ_ATTN_CHUNKED_PREFILL;
  f.query = query.get();
  f.kv_cache = cache.tensor();
  f.query_start_loc = qsl.get();
  f.seq_lens = lens.get();
  f.block_table = table.get();
  f.output = out.get();
  run.status = p.take(p.api().forward(layer, &f));
  if (run.status.code == 0) run.output = out.to_doubles();
  return run;
}

std::vector<double> reference_attention(
    const Config& c, const std::vector<Seq>& seqs, const PagedRun& run,
    const std::function<std::vector<double>(const std::vector<float>&, int64_t, bool)>& deq,
    const std::vector<double>& q_scale) {
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, d = c.head_size;
  kvq::ref::AttentionProblem prob;
  prob.num_heads = hq;
  prob.num_kv_heads = hkv;
  prob.head_size = d;
  prob.sliding_window = c.sliding_window;
  prob.softcap = c.softcap;
  prob.query_start_loc.push_back(0);
  for (const Seq& s : seqs) {
    prob.query_start_loc.push_back(prob.query_start_loc.back() + static_cast<int32_t>(s.query_len));
    prob.seq_lens.push_back(static_cast<int32_t>(s.seq_len));
  }
  std::vector<std::vector<double>> keys, values;
  for (size_t s = 0; s < seqs.size(); ++s) {
    std::vector<double> kd, vd;
    for (int64_t j = 0; j < seqs[s].seq_len; ++j)
      for (int64_t h = 0; h < hkv; ++h) {
        const auto first = static_cast<ptrdiff_t>((j * hkv + h) * d);
        const std::vector<float> kr(run.keys[s].begin() + first, run.keys[s].begin() + first + d);
        const std::vector<float> vr(run.values[s].begin() + first,
                                    run.values[s].begin() + first + d);
        for (double x : deq(kr, h, false)) kd.push_back(x);
        for (double x : deq(vr, h, true)) vd.push_back(x);
      }
    keys.push_back(std::move(kd));
    values.push_back(std::move(vd));
  }
  std::vector<double> q = run.query;
  if (!q_scale.empty())
    for (size_t i = 0; i < q.size(); ++i)
      q[i] *= q_scale[static_cast<size_t>(static_cast<int64_t>(i) / d % hq)];
  return kvq::ref::attention(prob, q, keys, values);
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

}  // namespace kvq::test::tri
