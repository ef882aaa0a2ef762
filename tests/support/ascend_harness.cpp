#include "ascend_harness.hpp"

#include "kvq_ref/reference.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace kvq::test::asc {

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
  return static_cast<int8_t>(std::clamp(round_half_even(t), -128.0, 127.0));
}

double ref_dequantize(int8_t q, const RefChannel& ch) {
  return bf16(bf16(static_cast<double>(q) - ch.off) * ch.scale);
}

// ---- attention batches -------------------------------------------------------------

C8Run run_c8(Plugin& p, kvq_layer* layer, const Config& c, const std::vector<Seq>& seqs,
             const RunOptions& o, std::unique_ptr<Cache>* cache_out) {
  const kvq_plugin_api& api = p.api();
  C8Run run;
  const int64_t hq = c.num_heads, hkv = c.num_kv_heads, d = c.head_size;
  std::mt19937_64 rng(o.seed);
  const PagedBatch pb = paged_batch(seqs, c.block_size, 2, rng);
  auto cache = std::make_unique<Cache>(p, layer, pb.num_blocks);
  OwnedTensor new_k(c.model_dtype, {pb.total_q, hkv, d}),
      new_v(c.model_dtype, {pb.total_q, hkv, d});
  int64_t row = 0;
  for (size_t si = 0; si < seqs.size(); ++si) {
    const Seq& s = seqs[si];
    OwnedTensor k = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, o.kv_stddev, rng());
    OwnedTensor v = random_tensor(c.model_dtype, {s.seq_len, hkv, d}, o.kv_stddev, rng());
    if (o.write_cache) {
      run.status = write_kv(p, layer, k, v, pb.slots[si], *cache);
      if (run.status.code != 0) {
        if (cache_out != nullptr) *cache_out = std::move(cache);
        return run;
      }
    }
    copy_rows(new_k, row, k, s.seq_len - s.query_len, s.query_len);
    copy_rows(new_v, row, v, s.seq_len - s.query_len, s.query_len);
    run.keys.push_back(k.to_doubles());
    run.values.push_back(v.to_doubles());
    run.blocks.push_back(pb.blocks[si]);
    row += s.query_len;
  }
  OwnedTensor query = random_tensor(c.model_dtype, {pb.total_q, hq, d}, o.q_stddev, rng());
  run.query = query.to_doubles();
  const OwnedTensor out = filled_tensor(c.model_dtype, {pb.total_q, hq, d}, NAN);

  client::ForwardArgs args = pb.forward_args(o.state, query, cache->tensor(), out);
  if (o.pass_batch_kv) args.key(new_k.get()).value(new_v.get());
  if (KVQ_API_HAS(&api, supports)) run.supports = supports(p, layer, args);
  run.status = forward(p, layer, args);
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

}  // namespace kvq::test::asc
