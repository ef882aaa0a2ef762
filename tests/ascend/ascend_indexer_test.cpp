// The INT8_DYNAMIC lightning indexer (spec/ascend.md §8) through the C ABI
// only: layer_create -> apply_scheme "INT8_DYNAMIC" -> param_load (optional
// rotations) -> cache_write (keys only) -> forward (I32 top-k positions).
// Every expectation is computed here in float64, with fp16 rounding by
// kvq_ref, from the formulas the plugin documents (indexer_impl.hpp):
//   x_rot = fp32( sum_i x[i] * R[i][j] )            (float64 sum, i ascending)
//   s = max(fp32(max|x_rot| / 127), fp32(1e-6));  code = clamp(rne(fp32(x_rot / s)), ±127)
//   stored scale = fp16(s);  wq = fp16(fp32(w * fp16(sq)))
//   score[t,j] = fp16(sk[j]) * sum_h wq[t,h] * max(q_code[t,h] . k_code[j], 0)
// top-k by descending score, ties to the lower position, -1 padded.
#include "ascend_harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace kvq::test::asc {
namespace {

constexpr int32_t kAllStates[] = {KVQ_ATTN_PREFILL_NO_CACHE, KVQ_ATTN_PREFILL_CACHE_HIT,
                                  KVQ_ATTN_DECODE_ONLY, KVQ_ATTN_CHUNKED_PREFILL,
                                  KVQ_ATTN_SPEC_DECODING};

Config indexer_config(int64_t heads, int64_t dim, int32_t dtype = KVQ_DTYPE_BF16,
                      int64_t block_size = 16) {
  Config c;
  c.model_dtype = dtype;
  c.num_heads = heads;
  c.num_kv_heads = 1;
  c.head_size = dim;
  c.block_size = block_size;
  return c;
}

CallResult apply_indexer(Plugin& p, kvq_layer* layer, const Options& options) {
  return apply_scheme(p, layer, "INT8_DYNAMIC", options);
}

Options options_for(int64_t topk, int64_t dim) {
  return {{"index_topk", std::to_string(topk)}, {"index_head_dim", std::to_string(dim)}};
}

LayerPtr make_indexer(Plugin& p, const Config& c, int64_t topk) {
  LayerPtr layer = make_layer(p, c);
  check(apply_indexer(p, layer.get(), options_for(topk, c.head_size)), "apply_scheme");
  return layer;
}

// param_load of a [D, D] rotation into "indexer.<which>" (q_rot or k_rot);
// throws on an error.
void load_rotation(Plugin& p, kvq_layer* layer, const Config& c, const std::string& which,
                   const std::vector<double>& r) {
  check(load_param(p, layer, full_name(c, "indexer." + which), r, {c.head_size, c.head_size}),
        "load " + which);
}

// Both rotations, then process_weights; throws on an error.
void load_rotations(Plugin& p, kvq_layer* layer, const Config& c, const std::vector<double>& rq,
                    const std::vector<double>& rk) {
  load_rotation(p, layer, c, "q_rot", rq);
  load_rotation(p, layer, c, "k_rot", rk);
  check(process_weights(p, layer), "process_weights");
}

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

// ---- test-side reference -------------------------------------------------------

// Sylvester's construction by doubling, H_2n = [[H, H], [H, -H]], / sqrt(D).
std::vector<double> ref_hadamard(int64_t d) {
  std::vector<double> h = {1.0};
  for (int64_t n = 1; n < d; n *= 2) {
    std::vector<double> next(static_cast<size_t>(4 * n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double v = h[static_cast<size_t>(i * n + j)];
        next[static_cast<size_t>(i * 2 * n + j)] = v;
        next[static_cast<size_t>(i * 2 * n + j + n)] = v;
        next[static_cast<size_t>((i + n) * 2 * n + j)] = v;
        next[static_cast<size_t>((i + n) * 2 * n + j + n)] = -v;
      }
    h = std::move(next);
  }
  for (double& v : h) v /= std::sqrt(static_cast<double>(d));
  return h;
}

std::vector<double> identity_rotation(int64_t d) {
  std::vector<double> r(static_cast<size_t>(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) r[static_cast<size_t>(i * d + i)] = 1.0;
  return r;
}

// A seeded random ±1 Hadamard, H * diag(±1) / sqrt(D), rounded to float32
// (what an exporter writes into the checkpoint).
std::vector<double> random_rotation(int64_t d, uint64_t seed) {
  std::vector<double> r = ref_hadamard(d);
  std::mt19937_64 rng(seed);
  std::vector<double> sign(static_cast<size_t>(d));
  for (double& s : sign) s = (rng() & 1u) ? -1.0 : 1.0;
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) {
      double& v = r[static_cast<size_t>(i * d + j)];
      v = static_cast<double>(static_cast<float>(v * sign[static_cast<size_t>(j)]));
    }
  return r;
}

std::vector<float> ref_rotate(const double* x, const std::vector<double>& r, int64_t d) {
  std::vector<float> out(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    double acc = 0.0;
    for (int64_t i = 0; i < d; ++i) acc += x[i] * r[static_cast<size_t>(i * d + j)];
    out[static_cast<size_t>(j)] = static_cast<float>(acc);
  }
  return out;
}

struct RefRow {
  std::vector<int8_t> codes;
  uint16_t scale_bits = 0;
  double scale = 0.0;  // fp16(s) as float64
};

RefRow ref_quantize(const std::vector<float>& x) {
  double amax = 0.0;
  for (float v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
  // fp32 division: the float64 quotient of two floats rounded once to float32.
  double s = static_cast<double>(static_cast<float>(amax / 127.0));
  s = std::max(s, static_cast<double>(1e-6f));
  RefRow row;
  for (float v : x) {
    const double q = static_cast<double>(static_cast<float>(static_cast<double>(v) / s));
    row.codes.push_back(static_cast<int8_t>(std::clamp(round_half_even(q), -127.0, 127.0)));
  }
  row.scale = kvq::ref::round_to(KVQ_DTYPE_F16, s);
  row.scale_bits = bits16(KVQ_DTYPE_F16, s);
  return row;
}

// One query token: its sequence's rotated+quantized keys are given.
std::vector<int32_t> ref_topk(const std::vector<RefRow>& keys, int64_t visible,
                              const std::vector<RefRow>& q_heads, const std::vector<double>& wq,
                              int64_t topk) {
  std::vector<double> score(static_cast<size_t>(visible));
  for (int64_t j = 0; j < visible; ++j) {
    const RefRow& k = keys[static_cast<size_t>(j)];
    double sum = 0.0;
    for (size_t h = 0; h < q_heads.size(); ++h) {
      int64_t dot = 0;
      for (size_t x = 0; x < k.codes.size(); ++x)
        dot += static_cast<int64_t>(q_heads[h].codes[x]) * k.codes[x];
      if (dot > 0) sum += wq[h] * static_cast<double>(dot);
    }
    score[static_cast<size_t>(j)] = k.scale * sum;
  }
  std::vector<int32_t> idx(static_cast<size_t>(visible));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
    return score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)];
  });
  std::vector<int32_t> out(static_cast<size_t>(topk), -1);
  for (int64_t r = 0; r < std::min<int64_t>(topk, visible); ++r)
    out[static_cast<size_t>(r)] = idx[static_cast<size_t>(r)];
  return out;
}

// ---- one forward batch ---------------------------------------------------------

struct Inputs {
  std::vector<Seq> seqs;
  std::vector<OwnedTensor> keys;  // per sequence [seq_len, 1, D]
  OwnedTensor query{KVQ_DTYPE_F32, {0}};
  OwnedTensor weights{KVQ_DTYPE_F32, {0}};
};

Inputs random_inputs(const Config& c, const std::vector<Seq>& seqs, int32_t weight_dtype,
                     uint64_t seed) {
  Inputs in;
  in.seqs = seqs;
  std::mt19937_64 rng(seed);
  int64_t total_q = 0;
  for (const Seq& s : seqs) {
    in.keys.push_back(random_tensor(c.model_dtype, {s.seq_len, 1, c.head_size}, 1.0, rng()));
    total_q += s.query_len;
  }
  in.query = random_tensor(c.model_dtype, {total_q, c.num_heads, c.head_size}, 1.0, rng());
  in.weights = random_tensor(weight_dtype, {total_q, c.num_heads}, 0.5, rng());
  return in;
}

struct IndexerRun {
  CallResult write, supports, forward;
  std::vector<int32_t> output;  // [T][topk]
};

struct IndexerRunOptions {
  int32_t state = KVQ_ATTN_CHUNKED_PREFILL;
  bool pass_weights = true;
  uint64_t seed = 11;
  const OwnedTensor* query_override = nullptr;
  const OwnedTensor* weights_override = nullptr;
  int64_t output_topk = -1;  // -1: the layer's topk
};

IndexerRun run_indexer(Plugin& p, kvq_layer* layer, const Config& c, int64_t topk, const Inputs& in,
                       const IndexerRunOptions& o = {}) {
  std::mt19937_64 rng(o.seed);
  const PagedBatch pb = paged_batch(in.seqs, c.block_size, 3, rng, -1.0);  // -1: unused entries
  Cache cache(p, layer, pb.num_blocks);
  IndexerRun run;
  for (size_t si = 0; si < in.seqs.size(); ++si) {
    run.write = write_keys(p, layer, in.keys[si], pb.slots[si], cache);
    if (run.write.code != 0) return run;
  }
  const int64_t out_topk = o.output_topk < 0 ? topk : o.output_topk;
  const OwnedTensor out = filled_tensor(KVQ_DTYPE_I32, {pb.total_q, out_topk}, -7.0);  // poison

  client::ForwardArgs args = pb.forward_args(
      o.state, o.query_override ? *o.query_override : in.query, cache.tensor(), out);
  if (o.pass_weights)
    args.head_weights(o.weights_override ? o.weights_override->get() : in.weights.get());
  run.supports = supports(p, layer, args);
  run.forward = forward(p, layer, args);
  if (run.forward.code == 0) {
    for (double v : out.to_doubles()) run.output.push_back(static_cast<int32_t>(v));
  }
  return run;
}

// run_indexer with `query` in place of the inputs' query.
IndexerRun run_with_query(Plugin& p, kvq_layer* layer, const Config& c, int64_t topk,
                          const Inputs& in, const OwnedTensor& query) {
  IndexerRunOptions o;
  o.query_override = &query;
  return run_indexer(p, layer, c, topk, in, o);
}

// run_indexer with `weights` in place of the inputs' head weights.
IndexerRun run_with_weights(Plugin& p, kvq_layer* layer, const Config& c, int64_t topk,
                            const Inputs& in, const OwnedTensor& weights) {
  IndexerRunOptions o;
  o.weights_override = &weights;
  return run_indexer(p, layer, c, topk, in, o);
}

// The expected output of a batch, from the inputs alone.
std::vector<int32_t> reference_output(const Config& c, int64_t topk, const Inputs& in,
                                      const std::vector<double>& rq,
                                      const std::vector<double>& rk) {
  const int64_t d = c.head_size, nh = c.num_heads;
  const std::vector<double> q = in.query.to_doubles(), w = in.weights.to_doubles();
  std::vector<int32_t> out;
  int64_t t = 0;
  for (size_t s = 0; s < in.seqs.size(); ++s) {
    const std::vector<double> k = in.keys[s].to_doubles();
    std::vector<RefRow> keys;
    for (int64_t j = 0; j < in.seqs[s].seq_len; ++j)
      keys.push_back(ref_quantize(ref_rotate(k.data() + j * d, rk, d)));
    const int64_t ctx = in.seqs[s].seq_len - in.seqs[s].query_len;
    for (int64_t i = 0; i < in.seqs[s].query_len; ++i, ++t) {
      std::vector<RefRow> heads;
      std::vector<double> wq;
      for (int64_t h = 0; h < nh; ++h) {
        heads.push_back(ref_quantize(ref_rotate(q.data() + (t * nh + h) * d, rq, d)));
        const double prod = static_cast<double>(
            static_cast<float>(w[static_cast<size_t>(t * nh + h)] * heads.back().scale));
        wq.push_back(kvq::ref::round_to(KVQ_DTYPE_F16, prod));
      }
      const std::vector<int32_t> r = ref_topk(keys, ctx + i + 1, heads, wq, topk);
      out.insert(out.end(), r.begin(), r.end());
    }
  }
  return out;
}

// Expects `r` to fail with `code`, its message naming every one of `needles`.
void expect_error(const CallResult& r, int32_t code, std::initializer_list<const char*> needles) {
  EXPECT_EQ(r.code, code);
  for (const char* needle : needles) EXPECT_TRUE(contains(r.message, needle)) << r.message;
}

void expect_output(const std::vector<int32_t>& actual, const std::vector<int32_t>& expected,
                   int64_t topk) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_EQ(actual[i], expected[i])
        << "token " << static_cast<int64_t>(i) / topk << " rank " << static_cast<int64_t>(i) % topk;
}

// ---- scheme, layer and parameters ----------------------------------------------

TEST(AscendIndexer, SchemeUpgradesTheLayerAndDeclaresTheRotations) {
  Plugin p(ascend_plugin_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  check(p.take(p.api().get_info(p.instance(), &info)), "get_info");
  bool scheme_found = false, mode_found = false;
  for (int64_t s = 0; s < info.num_schemes; ++s)
    if (std::string(info.schemes[s]->quant_type) == "INT8_DYNAMIC") {
      scheme_found = true;
      EXPECT_EQ(std::string(info.schemes[s]->layer_type), "attention");
      EXPECT_EQ(info.schemes[s]->supported, 1);
    }
  for (int64_t m = 0; m < info.backends[0]->num_kv_modes; ++m) {
    const kvq_kv_mode_info* mode = info.backends[0]->kv_modes[m];
    if (std::string(mode->name) != "int8_indexer") continue;
    mode_found = true;
    EXPECT_EQ(mode->element_dtype, KVQ_DTYPE_I8);
    EXPECT_EQ(mode->supported, 1);
    EXPECT_EQ(mode->needs_scheme, 1);
  }
  EXPECT_TRUE(scheme_found);
  EXPECT_TRUE(mode_found);

  const Config c = indexer_config(64, 128);
  LayerPtr layer = make_layer(p, c);
  ASSERT_EQ(apply_indexer(p, layer.get(), {}).code, 0);  // defaults: topk 2048, dim 128
  const kvq_layer_info li = layer_info(p, layer.get());
  EXPECT_EQ(std::string(li.impl_name), "ascend_int8_indexer");
  EXPECT_EQ(std::string(li.kv_cache_dtype), "int8_indexer");
  EXPECT_EQ(std::string(li.scheme), "INT8_DYNAMIC");
  EXPECT_EQ(li.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(li.num_params, 2);
  for (const char* local : {"indexer.q_rot", "indexer.k_rot"}) {
    const auto pi = find_param(p, layer.get(), full_name(c, local));
    ASSERT_TRUE(pi.has_value()) << local;
    EXPECT_EQ(std::string(pi->loader), "default");
    EXPECT_EQ(pi->dtype, KVQ_DTYPE_F32);
    ASSERT_EQ(pi->ndim, 2);
    EXPECT_EQ(pi->shape[0], 128);
    EXPECT_EQ(pi->shape[1], 128);
    EXPECT_EQ(pi->loaded, 0);
    EXPECT_EQ(pi->trainable, 0);
    for (double v : read_param(p, layer.get(), full_name(c, local))) ASSERT_EQ(v, 0.0);
  }
  // Geometry: keys only, int8 + fp16 scale, rows padded to a multiple of 4.
  const kvq_cache_geometry g = geometry(p, layer.get());
  EXPECT_EQ(g.layout, KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD);
  EXPECT_EQ(g.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(g.num_kv_heads, 1);
  EXPECT_EQ(g.head_size, 128);
  EXPECT_EQ(g.row_bytes, 132);
  EXPECT_EQ(g.bytes_per_block, 16 * 132);

  // The default loader: exact shape after squeezing; a (1, D, D) tensor loads.
  const std::vector<double> rot = random_rotation(128, 5);
  EXPECT_EQ(load_param(p, layer.get(), full_name(c, "indexer.q_rot"), rot, {1, 128, 128}).code, 0);
  EXPECT_EQ(find_param(p, layer.get(), full_name(c, "indexer.q_rot"))->loaded, 1);
  EXPECT_EQ(read_param(p, layer.get(), full_name(c, "indexer.q_rot")), rot);
  const CallResult bad = load_param(p, layer.get(), full_name(c, "indexer.k_rot"),
                                    std::vector<double>(64 * 128, 0.0), {64, 128});
  EXPECT_EQ(bad.code, KVQ_ERR_INVALID_ARGUMENT) << bad.message;
  // The work is the backend's: the scheme's own apply is refused.
  EXPECT_EQ(p.take(p.api().scheme_apply(layer.get())).code, KVQ_ERR_FAILED_PRECONDITION);
  // Row sizes for other dims: round_up(D + 2, 4).
  for (const auto& [dim, bytes] :
       std::vector<std::pair<int64_t, int64_t>>{{64, 68}, {96, 100}, {7, 12}, {2, 4}}) {
    const Config cd = indexer_config(4, dim);
    LayerPtr l = make_indexer(p, cd, 8);
    EXPECT_EQ(geometry(p, l.get()).row_bytes, bytes) << dim;
  }
}

TEST(AscendIndexer, ConfigurationErrorsNameTheValues) {
  Plugin p(ascend_plugin_path());
  {  // two KV heads
    Config c = indexer_config(8, 64);
    c.num_kv_heads = 2;
    LayerPtr layer = make_layer(p, c);
    const CallResult r = apply_indexer(p, layer.get(), options_for(8, 64));
    expect_error(r, KVQ_ERR_INVALID_ARGUMENT, {"num_kv_heads 2"});
  }
  {  // head_size 64 against the default index_head_dim 128
    LayerPtr layer = make_layer(p, indexer_config(8, 64));
    const CallResult r = apply_indexer(p, layer.get(), {});
    expect_error(r, KVQ_ERR_INVALID_ARGUMENT, {"index_head_dim 128", "head_size 64"});
    EXPECT_EQ(std::string(layer_info(p, layer.get()).impl_name), "ascend_attention");
  }
  for (const char* bad : {"abc", "0", "-3", "12x", ""}) {
    LayerPtr layer = make_layer(p, indexer_config(8, 64));
    const CallResult r =
        apply_indexer(p, layer.get(), {{"index_topk", bad}, {"index_head_dim", "64"}});
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << bad;
    EXPECT_TRUE(contains(r.message, "index_topk")) << r.message;
  }
}

// ---- the write path ------------------------------------------------------------

TEST(AscendIndexer, WritePathBytesExact) {
  Plugin p(ascend_plugin_path());
  const int64_t d = 128, tokens = 48, num_blocks = 5;
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    for (const bool loaded : {false, true}) {
      SCOPED_TRACE(std::to_string(dtype) + (loaded ? " loaded rotation" : " default Hadamard"));
      const Config c = indexer_config(4, d, dtype);
      LayerPtr layer = make_indexer(p, c, 8);
      std::vector<double> rk = ref_hadamard(d);
      if (loaded) {
        const std::vector<double> rq = random_rotation(d, 21);
        rk = random_rotation(d, 22);
        load_rotations(p, layer.get(), c, rq, rk);
      }
      Cache cache(p, layer.get(), num_blocks);
      const kvq_cache_geometry& g = cache.geometry();
      ASSERT_EQ(g.row_bytes, 132);
      // cache_init: zero codes, fp16 scale 1.0, zero padding.
      for (int64_t s = 0; s < num_blocks * c.block_size; ++s) {
        const unsigned char* row = cache.key_row(s);
        for (int64_t x = 0; x < d; ++x) ASSERT_EQ(row[x], 0);
        uint16_t bits;
        std::memcpy(&bits, row + d, 2);
        ASSERT_EQ(bits, 0x3C00);
        ASSERT_EQ(row[d + 2], 0);
        ASSERT_EQ(row[d + 3], 0);
      }
      OwnedTensor key =
          random_tensor(dtype, {tokens, 1, d}, 1.0, 100 + static_cast<uint64_t>(dtype));
      // Row magnitudes from 1e-7 (below the scale floor) to 3e3, an all-zero row.
      std::mt19937_64 rng(7);
      for (int64_t t = 0; t < tokens; ++t) {
        const double mag = std::pow(10.0, -7.0 + 10.5 * static_cast<double>(t % 12) / 11.0);
        for (int64_t x = 0; x < d; ++x)
          key.set(t * d + x, t == 5 ? 0.0 : kvq::ref::load(dtype, key.data(), t * d + x) * mag);
      }
      std::vector<int64_t> slots(static_cast<size_t>(tokens));
      std::iota(slots.begin(), slots.end(), 0);
      std::shuffle(slots.begin(), slots.end(), rng);
      slots[3] = -1;  // padding tokens are skipped
      slots[17] = -1;
      const int64_t written = tokens - 4;  // num_tokens: the last four are not written
      const std::vector<int64_t> all_slots = slots;
      ASSERT_EQ(write_keys(p, layer.get(), key, slots, cache, written).code, 0);

      const std::vector<double> k = key.to_doubles();
      std::vector<bool> touched(static_cast<size_t>(num_blocks * c.block_size), false);
      int64_t floor_rows = 0;
      for (int64_t t = 0; t < written; ++t) {
        const int64_t slot = all_slots[static_cast<size_t>(t)];
        if (slot < 0) continue;
        touched[static_cast<size_t>(slot)] = true;
        const RefRow ref = ref_quantize(ref_rotate(k.data() + t * d, rk, d));
        if (ref.scale_bits == bits16(KVQ_DTYPE_F16, 1e-6f)) ++floor_rows;
        const unsigned char* row = cache.key_row(slot);
        for (int64_t x = 0; x < d; ++x) {
          int8_t code;
          std::memcpy(&code, row + x, 1);
          ASSERT_EQ(code, ref.codes[static_cast<size_t>(x)]) << "token " << t << " d " << x;
        }
        uint16_t bits;
        std::memcpy(&bits, row + d, 2);
        ASSERT_EQ(bits, ref.scale_bits) << "token " << t;
        ASSERT_EQ(row[d + 2], 0);
        ASSERT_EQ(row[d + 3], 0);
      }
      EXPECT_GE(floor_rows, 2);  // the zero row and the 1e-7 rows hit the floor
      for (size_t s = 0; s < touched.size(); ++s) {
        if (touched[s]) continue;
        const unsigned char* row = cache.key_row(static_cast<int64_t>(s));
        uint16_t bits;
        std::memcpy(&bits, row + d, 2);
        ASSERT_EQ(bits, 0x3C00) << "slot " << s << " was written";
        for (int64_t x = 0; x < d; ++x) ASSERT_EQ(row[x], 0) << "slot " << s;
      }
    }
  }
}

// ---- forward: top-k positions ----------------------------------------------------

// Decodes (one with fewer keys than top-k), a prefill chunk with context, a
// prefill without context (its first tokens see fewer than top-k keys) and a
// speculative-decode-like chunk; every attention state runs the same indexer.
TEST(AscendIndexer, TopKMatchesTheScoreFormulaOnAMixedBatch) {
  Plugin p(ascend_plugin_path());
  const std::vector<Seq> seqs = {{1, 5}, {1, 37}, {6, 30}, {5, 5}, {3, 20}};
  const int64_t topk = 8;
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    const int32_t wdtype = dtype == KVQ_DTYPE_F32 ? KVQ_DTYPE_F32 : KVQ_DTYPE_BF16;
    SCOPED_TRACE(dtype);
    const Config c = indexer_config(8, 64, dtype);
    LayerPtr layer = make_indexer(p, c, topk);
    const Inputs in = random_inputs(c, seqs, wdtype, 31 + static_cast<uint64_t>(dtype));
    const std::vector<double> h = ref_hadamard(64);
    const std::vector<int32_t> expected = reference_output(c, topk, in, h, h);
    int64_t padded = 0;
    for (int32_t v : expected) padded += v == -1;
    EXPECT_GT(padded, 0);
    for (const int32_t state : kAllStates) {
      SCOPED_TRACE(state);
      IndexerRunOptions o;
      o.state = state;
      const IndexerRun run = run_indexer(p, layer.get(), c, topk, in, o);
      ASSERT_EQ(run.write.code, 0) << run.write.message;
      ASSERT_EQ(run.supports.code, 0) << run.supports.message;
      ASSERT_EQ(run.forward.code, 0) << run.forward.message;
      expect_output(run.output, expected, topk);
    }
  }
}

// Head weights in every float dtype, and an fp16 weight dtype other than the model's.
TEST(AscendIndexer, HeadWeightsInAnyFloatDtype) {
  Plugin p(ascend_plugin_path());
  const std::vector<Seq> seqs = {{1, 40}, {4, 12}};
  const Config c = indexer_config(16, 32, KVQ_DTYPE_BF16, 8);
  LayerPtr layer = make_indexer(p, c, 6);
  const std::vector<double> h = ref_hadamard(32);
  for (const int32_t wdtype : {KVQ_DTYPE_F32, KVQ_DTYPE_F16, KVQ_DTYPE_BF16}) {
    SCOPED_TRACE(wdtype);
    const Inputs in = random_inputs(c, seqs, wdtype, 77);
    const IndexerRun run = run_indexer(p, layer.get(), c, 6, in);
    ASSERT_EQ(run.forward.code, 0) << run.forward.message;
    expect_output(run.output, reference_output(c, 6, in, h, h), 6);
  }
}

// With a loaded random orthogonal rotation shared by q and k, q.k is unchanged,
// so on well-separated scores the top-k equals the default Hadamard's (and the
// order the construction implies). Keys are a_j * u (+ small noise) with
// distinct a_j; negative a_j give zero scores (ReLU), ordered by position.
TEST(AscendIndexer, LoadedRotationAndDefaultHadamardAgreeOnSeparatedScores) {
  Plugin p(ascend_plugin_path());
  const int64_t d = 128, nh = 4, topk = 16;
  const Config c = indexer_config(nh, d);
  const std::vector<Seq> seqs = {{1, 40}, {4, 30}, {2, 10}};
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> u(static_cast<size_t>(d));
  for (double& v : u) v = normal(rng);

  Inputs in;
  in.seqs = seqs;
  std::vector<std::vector<double>> a_of;
  int64_t total_q = 0;
  for (const Seq& s : seqs) {
    std::vector<int64_t> perm(static_cast<size_t>(s.seq_len));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<double> a;
    OwnedTensor k(c.model_dtype, {s.seq_len, 1, d});
    for (int64_t j = 0; j < s.seq_len; ++j) {
      const double mag = 1.0 + 0.5 * static_cast<double>(perm[static_cast<size_t>(j)]);
      a.push_back(j % 4 == 3 ? -mag : mag);
      for (int64_t x = 0; x < d; ++x)
        k.set(j * d + x, a.back() * u[static_cast<size_t>(x)] + 0.01 * normal(rng));
    }
    a_of.push_back(a);
    in.keys.push_back(k);
    total_q += s.query_len;
  }
  in.query = OwnedTensor(c.model_dtype, {total_q, nh, d});
  in.weights = OwnedTensor(KVQ_DTYPE_BF16, {total_q, nh});
  for (int64_t t = 0; t < total_q; ++t)
    for (int64_t h = 0; h < nh; ++h) {
      const double scale = 0.5 + 0.25 * static_cast<double>((t + h) % 5);
      for (int64_t x = 0; x < d; ++x)
        in.query.set((t * nh + h) * d + x, scale * u[static_cast<size_t>(x)] + 0.01 * normal(rng));
      in.weights.set(t * nh + h, 0.25 + 0.125 * static_cast<double>(h));
    }

  // What the construction implies: positive a by size, then zeros by position.
  std::vector<int32_t> implied;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t ctx = seqs[s].seq_len - seqs[s].query_len;
    for (int64_t i = 0; i < seqs[s].query_len; ++i) {
      std::vector<int32_t> idx(static_cast<size_t>(ctx + i + 1));
      std::iota(idx.begin(), idx.end(), 0);
      const std::vector<double>& a = a_of[s];
      std::stable_sort(idx.begin(), idx.end(), [&](int32_t x, int32_t y) {
        return std::max(a[static_cast<size_t>(x)], 0.0) > std::max(a[static_cast<size_t>(y)], 0.0);
      });
      for (int64_t r = 0; r < topk; ++r)
        implied.push_back(r < static_cast<int64_t>(idx.size()) ? idx[static_cast<size_t>(r)] : -1);
    }
  }

  LayerPtr hadamard_layer = make_indexer(p, c, topk);
  LayerPtr loaded_layer = make_indexer(p, c, topk);
  const std::vector<double> rot = random_rotation(d, 99);
  load_rotations(p, loaded_layer.get(), c, rot, rot);

  const IndexerRun with_hadamard = run_indexer(p, hadamard_layer.get(), c, topk, in);
  const IndexerRun with_loaded = run_indexer(p, loaded_layer.get(), c, topk, in);
  ASSERT_EQ(with_hadamard.forward.code, 0) << with_hadamard.forward.message;
  ASSERT_EQ(with_loaded.forward.code, 0) << with_loaded.forward.message;
  expect_output(with_hadamard.output, implied, topk);
  expect_output(with_loaded.output, implied, topk);
  // Each also equals the score formula with its own rotation.
  expect_output(with_hadamard.output,
                reference_output(c, topk, in, ref_hadamard(d), ref_hadamard(d)), topk);
  expect_output(with_loaded.output, reference_output(c, topk, in, rot, rot), topk);
  // The rotation was really used: the loaded one changes the cached codes.
  EXPECT_NE(ref_quantize(ref_rotate(in.keys[0].to_doubles().data(), rot, d)).codes,
            ref_quantize(ref_rotate(in.keys[0].to_doubles().data(), ref_hadamard(d), d)).codes);
}

// Distinct loaded rotations for queries and keys: each side uses its own.
TEST(AscendIndexer, DistinctLoadedQueryAndKeyRotations) {
  Plugin p(ascend_plugin_path());
  const int64_t d = 32, topk = 5;
  const Config c = indexer_config(6, d, KVQ_DTYPE_BF16, 8);
  LayerPtr layer = make_indexer(p, c, topk);
  const std::vector<double> rq = random_rotation(d, 41), rk = random_rotation(d, 42);
  load_rotations(p, layer.get(), c, rq, rk);
  const Inputs in = random_inputs(c, {{1, 23}, {7, 19}, {2, 2}}, KVQ_DTYPE_F16, 43);
  const IndexerRun run = run_indexer(p, layer.get(), c, topk, in);
  ASSERT_EQ(run.forward.code, 0) << run.forward.message;
  expect_output(run.output, reference_output(c, topk, in, rq, rk), topk);
}

// Scores use the fp16-rounded key scale and the fp16-rounded weighted query
// scale: values 2^-12 above 1.0 round to 1.0, which turns a would-be winner
// into a tie that the lower position wins. (Identity rotations, D = 4.)
TEST(AscendIndexer, Fp16RoundedScalesDecideTies) {
  Plugin p(ascend_plugin_path());
  const int64_t d = 4, topk = 4;
  const Config c = indexer_config(2, d, KVQ_DTYPE_F32, 4);
  const double up = 1.0 + std::ldexp(1.0, -12);  // fp16(up) == 1.0
  ASSERT_EQ(kvq::ref::round_to(KVQ_DTYPE_F16, up), 1.0);
  const std::vector<double> identity = identity_rotation(d);
  auto make = [&] {
    LayerPtr layer = make_indexer(p, c, topk);
    load_rotation(p, layer.get(), c, "q_rot", identity);
    load_rotation(p, layer.get(), c, "k_rot", identity);
    return layer;
  };
  auto inputs = [&](const std::vector<std::vector<double>>& keys, double w0) {
    Inputs in;
    in.seqs = {{1, static_cast<int64_t>(keys.size())}};
    OwnedTensor k(KVQ_DTYPE_F32, {static_cast<int64_t>(keys.size()), 1, d});
    for (size_t j = 0; j < keys.size(); ++j)
      for (int64_t x = 0; x < d; ++x)
        k.set(static_cast<int64_t>(j) * d + x, keys[j][static_cast<size_t>(x)]);
    in.keys.push_back(k);
    in.query = OwnedTensor(KVQ_DTYPE_F32, {1, 2, d});
    in.query.set(0, 127.0);      // head 0 along x0
    in.query.set(d + 1, 127.0);  // head 1 along x1
    in.weights = OwnedTensor(KVQ_DTYPE_F32, {1, 2});
    in.weights.set(0, w0);
    in.weights.set(1, 1.0);
    return in;
  };
  {  // head weight 1 + 2^-12: fp16(w * sq) = 1, so keys 0 (x1) and 1 (x0) tie
    LayerPtr layer = make();
    const Inputs in =
        inputs({{0, 127, 0, 0}, {127, 0, 0, 0}, {0, 0, 127, 0}, {-127, -127, 0, 0}}, up);
    const IndexerRun run = run_indexer(p, layer.get(), c, topk, in);
    ASSERT_EQ(run.forward.code, 0) << run.forward.message;
    expect_output(run.output, {0, 1, 2, 3}, topk);
  }
  {  // key scale 1 + 2^-12 is stored as fp16 1.0: keys 0 and 1 tie
    LayerPtr layer = make();
    const Inputs in = inputs({{0, 127, 0, 0}, {127 * up, 0, 0, 0}}, 1.0);
    const IndexerRun run = run_indexer(p, layer.get(), c, topk, in);
    ASSERT_EQ(run.forward.code, 0) << run.forward.message;
    expect_output(run.output, {0, 1, -1, -1}, topk);
  }
  {  // control: a weight 2^-10 above 1.0 survives fp16 and key 1 wins
    LayerPtr layer = make();
    const Inputs in = inputs({{0, 127, 0, 0}, {127, 0, 0, 0}}, 1.0 + std::ldexp(1.0, -10));
    const IndexerRun run = run_indexer(p, layer.get(), c, topk, in);
    ASSERT_EQ(run.forward.code, 0) << run.forward.message;
    expect_output(run.output, {1, 0, -1, -1}, topk);
  }
}

// ---- errors ----------------------------------------------------------------------

TEST(AscendIndexer, MissingHeadWeightsIsInvalidArgument) {
  Plugin p(ascend_plugin_path());
  const Config c = indexer_config(8, 64);
  LayerPtr layer = make_indexer(p, c, 8);
  const Inputs in = random_inputs(c, {{1, 9}, {3, 3}}, KVQ_DTYPE_BF16, 3);
  IndexerRunOptions o;
  o.pass_weights = false;
  const IndexerRun run = run_indexer(p, layer.get(), c, 8, in, o);
  expect_error(run.forward, KVQ_ERR_INVALID_ARGUMENT, {"head_weights", "required"});
  EXPECT_EQ(run.supports.code, run.forward.code) << run.supports.message;
}

TEST(AscendIndexer, WrongHeadCountOrOutputShapeIsInvalidArgument) {
  Plugin p(ascend_plugin_path());
  const Config c = indexer_config(8, 64);
  LayerPtr layer = make_indexer(p, c, 8);
  const Inputs in = random_inputs(c, {{1, 9}, {3, 3}}, KVQ_DTYPE_BF16, 3);
  {
    const OwnedTensor q = random_tensor(c.model_dtype, {4, 6, 64}, 1.0, 1);
    const IndexerRun run = run_with_query(p, layer.get(), c, 8, in, q);
    expect_error(run.forward, KVQ_ERR_INVALID_ARGUMENT, {"query", "8"});
    EXPECT_EQ(run.supports.code, run.forward.code);
  }
  {
    const OwnedTensor w = random_tensor(KVQ_DTYPE_BF16, {4, 7}, 1.0, 1);
    const IndexerRun run = run_with_weights(p, layer.get(), c, 8, in, w);
    expect_error(run.forward, KVQ_ERR_INVALID_ARGUMENT, {"head_weights"});
    EXPECT_EQ(run.supports.code, run.forward.code);
  }
  {  // output must be I32 [T, index_topk]
    IndexerRunOptions o;
    o.output_topk = 16;
    const IndexerRun run = run_indexer(p, layer.get(), c, 8, in, o);
    expect_error(run.forward, KVQ_ERR_INVALID_ARGUMENT, {"output"});
  }
}

TEST(AscendIndexer, NonPowerOfTwoDimNeedsLoadedRotations) {
  Plugin p(ascend_plugin_path());
  const int64_t d = 96;
  const Config c = indexer_config(4, d);
  LayerPtr layer = make_indexer(p, c, 4);  // creating is fine: rotations may come later
  const CallResult pw = process_weights(p, layer.get());
  expect_error(pw, KVQ_ERR_INVALID_ARGUMENT, {"index_head_dim 96 is not a power of two"});
  const Inputs in = random_inputs(c, {{2, 6}}, KVQ_DTYPE_BF16, 4);
  {
    const IndexerRun run = run_indexer(p, layer.get(), c, 4, in);
    expect_error(run.write, KVQ_ERR_INVALID_ARGUMENT, {"not a power of two"});
  }
  // One rotation is not enough.
  const std::vector<double> identity = identity_rotation(d);
  load_rotation(p, layer.get(), c, "q_rot", identity);
  EXPECT_EQ(process_weights(p, layer.get()).code, KVQ_ERR_INVALID_ARGUMENT);
  // Both loaded: the identity rotation works, and the scores follow the formula.
  load_rotation(p, layer.get(), c, "k_rot", identity);
  check(process_weights(p, layer.get()), "process_weights");
  const IndexerRun run = run_indexer(p, layer.get(), c, 4, in);
  ASSERT_EQ(run.write.code, 0) << run.write.message;
  ASSERT_EQ(run.forward.code, 0) << run.forward.message;
  expect_output(run.output, reference_output(c, 4, in, identity, identity), 4);
}

TEST(AscendIndexer, NanKeyIsNonFiniteAndWritesNothing) {
  Plugin p(ascend_plugin_path());
  const Config c = indexer_config(4, 64);
  LayerPtr layer = make_indexer(p, c, 4);
  Cache cache(p, layer.get(), 2);
  OwnedTensor key = random_tensor(c.model_dtype, {6, 1, 64}, 1.0, 8);
  key.set(3 * 64 + 10, NAN);
  const std::vector<unsigned char> before = cache.snapshot();
  const CallResult r = write_keys(p, layer.get(), key, {0, 1, 2, 3, 4, 5}, cache);
  expect_error(r, KVQ_ERR_NON_FINITE, {"token 3"});
  EXPECT_EQ(cache.snapshot(), before);
  // A NaN in a padding token (slot -1) is never read.
  EXPECT_EQ(write_keys(p, layer.get(), key, {0, 1, 2, -1, 4, 5}, cache).code, 0);
  key.set(5 * 64, INFINITY);
  EXPECT_EQ(write_keys(p, layer.get(), key, {0, 1, 2, -1, 4, 5}, cache).code, KVQ_ERR_NON_FINITE);
}

TEST(AscendIndexer, NonFiniteQueryOrHeadWeightIsNonFinite) {
  Plugin p(ascend_plugin_path());
  const Config c = indexer_config(4, 64);
  LayerPtr layer = make_indexer(p, c, 4);
  const Inputs in = random_inputs(c, {{1, 9}, {3, 3}}, KVQ_DTYPE_F32, 3);
  {
    OwnedTensor q = random_tensor(c.model_dtype, {4, 4, 64}, 1.0, 2);
    q.set((2 * 4 + 1) * 64 + 5, NAN);
    const IndexerRun run = run_with_query(p, layer.get(), c, 4, in, q);
    expect_error(run.forward, KVQ_ERR_NON_FINITE, {"token 2 head 1"});
  }
  {
    OwnedTensor w = random_tensor(KVQ_DTYPE_F32, {4, 4}, 1.0, 2);
    w.set(3 * 4 + 2, INFINITY);
    const IndexerRun run = run_with_weights(p, layer.get(), c, 4, in, w);
    expect_error(run.forward, KVQ_ERR_NON_FINITE, {"token 3 head 2"});
  }
}

// The first cache_write fixes the rotation; loading another one afterwards is
// refused rather than silently mixing rotations in one cache.
TEST(AscendIndexer, RotationChangeAfterFirstUseIsRefused) {
  Plugin p(ascend_plugin_path());
  const int64_t d = 64;
  const Config c = indexer_config(4, d);
  LayerPtr layer = make_indexer(p, c, 4);
  Cache cache(p, layer.get(), 2);
  const OwnedTensor key = random_tensor(c.model_dtype, {3, 1, d}, 1.0, 8);
  ASSERT_EQ(write_keys(p, layer.get(), key, {0, 1, 2}, cache).code, 0);
  const std::vector<double> rot = random_rotation(d, 3);
  load_rotation(p, layer.get(), c, "q_rot", rot);
  ASSERT_EQ(write_keys(p, layer.get(), key, {0, 1, 2}, cache).code, 0);  // one of two: unchanged
  load_rotation(p, layer.get(), c, "k_rot", rot);
  const CallResult r = write_keys(p, layer.get(), key, {0, 1, 2}, cache);
  expect_error(r, KVQ_ERR_FAILED_PRECONDITION, {"rotation"});
  EXPECT_EQ(process_weights(p, layer.get()).code, KVQ_ERR_FAILED_PRECONDITION);
}

}  // namespace
}  // namespace kvq::test::asc
