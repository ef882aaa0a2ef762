#include "batch.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "case_log.hpp"
#include "kvq_ref/reference.hpp"

namespace kvq::conform {

void ForwardBatch::bind(const Session& session, bool metadata_on_host) {
  for (HostTensor* t : {&query, &key, &value, &block_table, &output}) t->bind(session);
  if (!metadata_on_host) {
    query_start_loc.bind(session);
    seq_lens.bind(session);
  }
  if (alibi_slopes) alibi_slopes->bind(session);
  if (sinks) sinks->bind(session);
}

void ForwardBatch::upload() {
  for (HostTensor* t : {&query, &key, &value, &query_start_loc, &seq_lens, &block_table, &output})
    t->upload();
  if (alibi_slopes) alibi_slopes->upload();
  if (sinks) sinks->upload();
}

client::ForwardArgs ForwardBatch::args(HostTensor& cache, int32_t attention_state) {
  client::ForwardArgs a;
  a.attention_state(attention_state)
      .query(*query.tensor())
      .key(key.tensor())
      .value(value.tensor())
      .kv_cache(*cache.tensor())
      .query_start_loc(*query_start_loc.tensor())
      .seq_lens(*seq_lens.tensor())
      .block_table(*block_table.tensor())
      .alibi_slopes(alibi_slopes ? alibi_slopes->tensor() : nullptr)
      .sinks(sinks ? sinks->tensor() : nullptr)
      .output(*output.tensor());
  return a;
}

std::string ForwardBatch::damaged_guards(const HostTensor& cache) const {
  return conform::damaged_guards({{"query", &query},
                                  {"key", &key},
                                  {"value", &value},
                                  {"query_start_loc", &query_start_loc},
                                  {"seq_lens", &seq_lens},
                                  {"block_table", &block_table},
                                  {"output", &output},
                                  {"alibi_slopes", alibi_slopes ? &*alibi_slopes : nullptr},
                                  {"sinks", sinks ? &*sinks : nullptr},
                                  {"kv_cache", &cache}});
}

int32_t derive_attention_state(const std::vector<int32_t>& query_start_loc,
                               const std::vector<int32_t>& seq_lens) {
  bool all_new = true, all_single = true;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    const int32_t qlen = query_start_loc[s + 1] - query_start_loc[s];
    all_new = all_new && qlen == seq_lens[s];
    all_single = all_single && qlen == 1;
  }
  if (all_new) return KVQ_ATTN_PREFILL_NO_CACHE;
  if (all_single) return KVQ_ATTN_DECODE_ONLY;
  return KVQ_ATTN_CHUNKED_PREFILL;
}

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform(double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53;
}

namespace {

std::vector<double> random_values(Rng& rng, size_t n, double range, int32_t dtype) {
  std::vector<double> v(n);
  for (double& x : v) x = kvq::ref::round_to(dtype, rng.uniform(-range, range));
  return v;
}

}  // namespace

void RandomBatch::bind(const Session& session, bool metadata_on_host) {
  batch.bind(session, metadata_on_host);
  for (HostTensor* t : {&context_key, &context_value, &context_slots, &new_slots}) t->bind(session);
}

RandomBatch make_random_batch(const LayerShape& shape, const std::vector<SeqShape>& seqs,
                              uint64_t seed, int64_t spare_blocks) {
  Rng rng(seed);
  const int64_t hq = shape.num_heads, hkv = shape.num_kv_heads, d = shape.head_size;
  const int64_t bs = shape.block_size;
  const int32_t dtype = shape.model_dtype;
  RandomBatch r;

  // Blocks: a random permutation, so sequences own scattered, non-contiguous blocks.
  std::vector<int64_t> blocks_of(seqs.size());
  int64_t total_blocks = 0, max_blocks = 1;
  for (size_t s = 0; s < seqs.size(); ++s) {
    blocks_of[s] = std::max<int64_t>(1, (seqs[s].seq_len + bs - 1) / bs);
    total_blocks += blocks_of[s];
    max_blocks = std::max(max_blocks, blocks_of[s]);
  }
  r.num_blocks = total_blocks + spare_blocks;
  std::vector<int32_t> order(static_cast<size_t>(r.num_blocks));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[static_cast<size_t>(rng.below(static_cast<int64_t>(i)))]);
  const auto width = static_cast<size_t>(max_blocks);
  std::vector<int32_t> table(seqs.size() * width, 0);
  size_t next_block = 0;
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t b = 0; b < blocks_of[s]; ++b)
      table[s * width + static_cast<size_t>(b)] = order[next_block++];
  auto slot_of = [&](size_t s, int64_t pos) -> int64_t {
    return int64_t{table[s * width + static_cast<size_t>(pos / bs)]} * bs + pos % bs;
  };

  const size_t row = static_cast<size_t>(hkv * d);
  std::vector<double> ctx_k, ctx_v, new_k, new_v;
  std::vector<int64_t> ctx_slots, new_slots;
  // A padding row carries values far from the data: if a plugin wrote it
  // anywhere the attention would show it.
  auto add_padding = [&] {
    ctx_k.insert(ctx_k.end(), row, kvq::ref::round_to(dtype, 1000.0));
    ctx_v.insert(ctx_v.end(), row, kvq::ref::round_to(dtype, -1000.0));
    ctx_slots.push_back(-1);
  };
  r.query_start_loc.push_back(0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto [qlen, slen] = seqs[s];
    const int64_t ctx = slen - qlen;
    r.keys.push_back(random_values(rng, static_cast<size_t>(slen) * row, 1.0, dtype));
    r.values.push_back(random_values(rng, static_cast<size_t>(slen) * row, 1.0, dtype));
    const auto q = random_values(rng, static_cast<size_t>(qlen * hq * d), 3.0, dtype);
    r.query.insert(r.query.end(), q.begin(), q.end());
    add_padding();
    for (int64_t pos = 0; pos < slen; ++pos) {
      const bool is_new = pos >= ctx;
      std::vector<double>& keys = is_new ? new_k : ctx_k;
      std::vector<double>& values = is_new ? new_v : ctx_v;
      const auto at = static_cast<ptrdiff_t>(static_cast<size_t>(pos) * row);
      const auto n = static_cast<ptrdiff_t>(row);
      keys.insert(keys.end(), r.keys[s].begin() + at, r.keys[s].begin() + at + n);
      values.insert(values.end(), r.values[s].begin() + at, r.values[s].begin() + at + n);
      (is_new ? new_slots : ctx_slots).push_back(slot_of(s, pos));
      if (!is_new && pos % 5 == 4) add_padding();
    }
    r.query_start_loc.push_back(r.query_start_loc.back() + qlen);
    r.seq_lens.push_back(slen);
  }

  const int64_t t = r.query_start_loc.back();
  const int64_t tc = static_cast<int64_t>(ctx_slots.size());
  const auto s_count = static_cast<int64_t>(seqs.size());
  r.context_key = HostTensor::from_doubles(dtype, {tc, hkv, d}, ctx_k);
  r.context_value = HostTensor::from_doubles(dtype, {tc, hkv, d}, ctx_v);
  r.context_slots = HostTensor::from_ints(KVQ_DTYPE_I64, {tc}, ctx_slots);
  r.new_slots = HostTensor::from_ints(KVQ_DTYPE_I64, {t}, new_slots);
  ForwardBatch& b = r.batch;
  b.query = HostTensor::from_doubles(dtype, {t, hq, d}, r.query);
  b.key = HostTensor::from_doubles(dtype, {t, hkv, d}, new_k);
  b.value = HostTensor::from_doubles(dtype, {t, hkv, d}, new_v);
  b.query_start_loc = HostTensor::from_ints(KVQ_DTYPE_I32, {s_count + 1}, r.query_start_loc);
  b.seq_lens = HostTensor::from_ints(KVQ_DTYPE_I32, {s_count}, r.seq_lens);
  b.block_table = HostTensor::from_ints(KVQ_DTYPE_I32, {s_count, max_blocks}, table);
  b.output = HostTensor(dtype, {t, hq, d});
  return r;
}

void place(const Session& session, HostTensor& t) {
  if (session.on_device() && !t.on_device()) {
    t.bind(session);
  } else {
    t.upload();
  }
}

Error write_cache(const Session& session, const client::Layer& layer, HostTensor& key,
                  HostTensor& value, HostTensor& slots, HostTensor& cache) {
  for (HostTensor* t : {&key, &value, &slots}) place(session, *t);
  client::CacheWriteArgs w;
  w.key(*key.tensor())
      .value(value.tensor())
      .slot_mapping(*slots.tensor())
      .kv_cache(*cache.tensor());
  const kvq_cache_write_args raw = w.c_struct();
  Error error(&session.api(), session.api().cache_write(layer.get(), &raw));
  cache.download();
  return error;
}

HostTensor allocate_cache(const Session& session, client::Layer& layer,
                          const kvq_cache_geometry& geometry, int64_t num_blocks) {
  const int64_t align = geometry.alignment;
  HostTensor cache(KVQ_DTYPE_U8, {num_blocks, geometry.bytes_per_block},
                   align > 64 ? static_cast<size_t>(align) : 64);
  cache.bind(session);
  layer.cache_init(*cache.tensor());
  cache.download();
  if (!cache.guards_intact()) throw CaseFailure("cache_init overwrote the cache's guard bytes");
  return cache;
}

client::ForwardArgs forward_checked(const Session& session, const client::Layer& layer,
                                    ForwardBatch& batch, HostTensor& cache, int32_t attention_state,
                                    bool optional) {
  const kvq_plugin_api& api = session.api();
  batch.output.fill(std::numeric_limits<double>::quiet_NaN());
  for (HostTensor* t : {&batch.query, &batch.key, &batch.value, &batch.query_start_loc,
                        &batch.seq_lens, &batch.block_table, &batch.output})
    place(session, *t);
  if (batch.alibi_slopes) place(session, *batch.alibi_slopes);
  if (batch.sinks) place(session, *batch.sinks);
  client::ForwardArgs args = batch.args(cache, attention_state);
  const kvq_forward_args raw = args.c_struct();
  const Error supported(&api, api.supports(layer.get(), &raw));
  if (optional && supported.code() == KVQ_ERR_UNSUPPORTED)
    throw CaseSkip("supports(): " + supported.describe());
  require_ok(supported, "supports() refuses a valid batch");

  const std::vector<unsigned char> query_before(batch.query.bytes(),
                                                batch.query.bytes() + batch.query.byte_size());
  require_ok(Error(&api, api.forward(layer.get(), &raw)), "forward");
  batch.output.download();
  batch.query.download();
  cache.download();
  if (const std::string damaged = batch.damaged_guards(cache); !damaged.empty())
    throw CaseFailure("guard bytes overwritten: " + damaged);
  if (std::memcmp(query_before.data(), batch.query.bytes(), query_before.size()) != 0)
    throw CaseFailure("forward modified the query it borrowed");
  return args;
}

std::string check_geometry(const kvq_cache_geometry& g, int64_t num_kv_heads, int64_t head_size,
                           int64_t block_size, int64_t min_row_bytes) {
  std::string problems;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) problems += (problems.empty() ? "" : "; ") + what;
  };
  const int64_t element = kvq::ref::dtype_size(g.element_dtype);
  expect(g.layout == KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD,
         "layout " + std::to_string(g.layout) + " is not BLOCK_KV_SLOT_HEAD");
  expect(element > 0, "element_dtype " + std::to_string(g.element_dtype) + " unknown");
  expect(g.block_size == block_size, "block_size " + std::to_string(g.block_size));
  expect(g.num_kv_heads == num_kv_heads, "num_kv_heads " + std::to_string(g.num_kv_heads));
  expect(g.head_size == head_size, "head_size " + std::to_string(g.head_size));
  expect(g.head_size_v == head_size || g.head_size_v == 0,
         "head_size_v " + std::to_string(g.head_size_v));
  if (min_row_bytes < 0)
    expect(g.row_bytes >= head_size * std::max<int64_t>(element, 0),
           "row_bytes " + std::to_string(g.row_bytes) + " < head_size * element size");
  else
    expect(g.row_bytes >= min_row_bytes,
           "row_bytes " + std::to_string(g.row_bytes) + " < " + std::to_string(min_row_bytes));
  expect(g.bytes_per_block == 2 * g.block_size * g.num_kv_heads * g.row_bytes,
         "bytes_per_block " + std::to_string(g.bytes_per_block) +
             " != 2 * block_size * num_kv_heads * row_bytes");
  expect(g.alignment >= 1 && (g.alignment & (g.alignment - 1)) == 0,
         "alignment " + std::to_string(g.alignment) + " is not a power of two");
  return problems.empty() ? "" : "cache geometry: " + problems;
}

}  // namespace kvq::conform
