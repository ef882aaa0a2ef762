// FAKQuant (MLA models, int8 latent KV cache; spec/ascend.md §3, §7) through
// the C ABI only: the FA-quant loader and FAKQuant scheme behaviours pinned by
// vllm-ascend's unit tests (§9 items 1-16, one test each), the exact bytes of
// the latent cache write, decode attention against a float64 reference built
// from the same cache bytes, end to end against unquantized float64
// attention, and the error answers. Expectations are computed here in
// float64 with kvq_ref codecs; no plugin code is reused.
#include "ascend_harness.hpp"
#include "kvq_ref/reference.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace kvq::test::asc {
namespace {

// An MLA attention layer: one latent KV head, head_size = lora + rope (the
// key is c_kv ‖ k_pe), head_size_v = lora (the output is the latent).
struct MlaConfig : LayerSpec {
  int64_t lora = 32, rope = 8;  // head_size, head_size_v 0 = lora + rope / lora
  MlaConfig() {
    backend = "ascend";
    num_heads = 4;
    num_kv_heads = 1;
    head_size = 0;
  }
  int64_t hs() const { return head_size != 0 ? head_size : lora + rope; }
  int64_t hsv() const { return head_size_v != 0 ? head_size_v : lora; }
};

constexpr const char* kFaParams[] = {"fa_q.scale",  "fa_q.offset", "fa_k.scale",
                                     "fa_k.offset", "fa_v.scale",  "fa_v.offset"};

// Both options, as a host passes them from the model config.
Options mla_options(const MlaConfig& c) {
  return {{"kv_lora_rank", std::to_string(c.lora)}, {"qk_rope_head_dim", std::to_string(c.rope)}};
}

CallResult create_mla(Plugin& p, const MlaConfig& c, LayerPtr* out) {
  LayerSpec s = c;
  s.head_size = c.hs();
  s.head_size_v = c.hsv();
  return create_layer(p, s, out);
}

CallResult apply_fakquant(Plugin& p, kvq_layer* layer, const Options& options) {
  return apply_scheme(p, layer, "FAKQuant", options);
}

// A layer with the scheme applied (nothing loaded yet).
struct FakFixture {
  Plugin plugin{ascend_plugin_path()};
  MlaConfig config;
  LayerPtr layer{nullptr, nullptr};
  explicit FakFixture(MlaConfig c = {}, std::optional<Options> options = std::nullopt)
      : config(std::move(c)) {
    check(create_mla(plugin, config, &layer), "layer_create");
    check(apply_fakquant(plugin, layer.get(), options.value_or(mla_options(config))),
          "apply_scheme FAKQuant");
  }
  std::string name(const std::string& local) const { return full_name(config, local); }
  std::optional<kvq_param_info> find(const std::string& local) {
    return find_param(plugin, layer.get(), name(local));
  }
  kvq_param_info info(const std::string& local) {
    return param_info(plugin, layer.get(), name(local));
  }
  std::vector<double> read(const std::string& local) {
    return read_param(plugin, layer.get(), name(local));
  }
  CallResult load(const std::string& local, const std::vector<double>& values,
                  std::vector<int64_t> shape, int32_t dtype, int32_t tp_rank = 0,
                  int32_t tp_size = 1) {
    return load_param(plugin, layer.get(), name(local), values, std::move(shape), dtype, tp_rank,
                      tp_size);
  }
  // fa_k.scale [[scale]] in the model dtype and fa_k.offset [[0]], then process_weights.
  void load_k_and_process(double scale) {
    check(load("fa_k.scale", {scale}, {1, 1}, config.model_dtype), "param_load fa_k.scale");
    check(load("fa_k.offset", {0}, {1, 1}, KVQ_DTYPE_I8), "param_load fa_k.offset");
    check(process_weights(plugin, layer.get()), "process_weights");
  }
};

// ---- test-side codecs ------------------------------------------------------

double f32(double x) {
  return kvq::ref::round_to(KVQ_DTYPE_F32, x);
}

// quant_kscale as documented: 1 / scale in float32.
double ref_quant_kscale(double scale) {
  return f32(1.0 / f32(scale));
}

// The stored latent: saturate(rne(f32(x * quant_kscale))).
int8_t ref_latent(double x, double qk) {
  return static_cast<int8_t>(std::clamp(round_half_even(f32(x * qk)), -128.0, 127.0));
}

// ---- decode batches ---------------------------------------------------------------

struct MlaRun {
  CallResult status;                         // of the first failing call (cache_write or forward)
  CallResult supports;                       // what supports() answered for the forward arguments
  std::vector<double> query;                 // [T][H][D]
  std::vector<std::vector<double>> keys;     // per sequence [len][D], model-dtype values
  std::vector<std::vector<int32_t>> blocks;  // per sequence
  std::vector<double> output;                // [T][H][L]
  std::unique_ptr<Cache> cache;
};

struct MlaRunOptions {
  int32_t state = KVQ_ATTN_DECODE_ONLY;
  double kv_stddev = 1.0, pe_stddev = 1.0, q_stddev = 1.0;
  bool zero_q_nope = false;  // the latent part of every query is 0
  uint64_t seed = 1;
};

// Writes every position of every sequence into shuffled blocks of a fresh
// cache (c_kv ~ N(0, kv_stddev), k_pe ~ N(0, pe_stddev)), then runs forward.
MlaRun run_mla(Plugin& p, kvq_layer* layer, const MlaConfig& c, const std::vector<Seq>& seqs,
               const MlaRunOptions& o) {
  MlaRun run;
  const int64_t hq = c.num_heads, d = c.hs(), l = c.lora;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const PagedBatch pb = paged_batch(seqs, c.block_size, 2, rng);
  run.cache = std::make_unique<Cache>(p, layer, pb.num_blocks);
  for (size_t si = 0; si < seqs.size(); ++si) {
    const Seq& s = seqs[si];
    OwnedTensor key(c.model_dtype, {s.seq_len, 1, d});
    for (int64_t j = 0; j < s.seq_len; ++j)
      for (int64_t x = 0; x < d; ++x)
        key.set(j * d + x, normal(rng) * (x < l ? o.kv_stddev : o.pe_stddev));
    run.status = write_keys(p, layer, key, pb.slots[si], *run.cache);
    if (run.status.code != 0) return run;
    run.keys.push_back(key.to_doubles());
    run.blocks.push_back(pb.blocks[si]);
  }
  OwnedTensor query = random_tensor(c.model_dtype, {pb.total_q, hq, d}, o.q_stddev, rng());
  if (o.zero_q_nope)
    for (int64_t i = 0; i < pb.total_q * hq; ++i)
      for (int64_t x = 0; x < l; ++x) query.set(i * d + x, 0.0);
  run.query = query.to_doubles();
  const OwnedTensor out = filled_tensor(c.model_dtype, {pb.total_q, hq, l}, NAN);
  const client::ForwardArgs args = pb.forward_args(o.state, query, run.cache->tensor(), out);
  run.supports = supports(p, layer, args);
  run.status = forward(p, layer, args);
  if (run.status.code == 0) run.output = out.to_doubles();
  return run;
}

double softmax_scale(const MlaConfig& c) {
  return c.softmax_scale != 0.0 ? c.softmax_scale : 1.0 / std::sqrt(static_cast<double>(c.hs()));
}

// MLA decode attention in float64 for every query token and head: scores =
// scores_of(sequence, q) * scale over the sequence's keys; output x < lora =
// sum_j softmax_j * value(sequence, j, x) * value_scale.
std::vector<double> mla_attention(
    const MlaConfig& c, const std::vector<Seq>& seqs, const MlaRun& run,
    const std::function<std::vector<double>(size_t seq, const double* q)>& scores_of,
    const std::function<double(size_t seq, int64_t j, int64_t x)>& value,
    double value_scale = 1.0) {
  const int64_t hq = c.num_heads, d = c.hs(), l = c.lora;
  const double scale = softmax_scale(c);
  std::vector<double> out;
  int64_t t = 0;
  for (size_t si = 0; si < seqs.size(); ++si)
    for (int64_t qi = 0; qi < seqs[si].query_len; ++qi, ++t)
      for (int64_t h = 0; h < hq; ++h) {
        std::vector<double> s = scores_of(si, run.query.data() + (t * hq + h) * d);
        double m = -INFINITY;
        for (double& x : s) {
          x *= scale;
          m = std::max(m, x);
        }
        double sum = 0.0;
        std::vector<double> acc(static_cast<size_t>(l), 0.0);
        for (size_t j = 0; j < s.size(); ++j) {
          const double pj = std::exp(s[j] - m);
          sum += pj;
          for (int64_t x = 0; x < l; ++x)
            acc[static_cast<size_t>(x)] += pj * value(si, static_cast<int64_t>(j), x) * value_scale;
        }
        for (double v : acc) out.push_back(v / sum);
      }
  return out;
}

// Decode attention in float64 from the cache bytes (int8 latent, bf16 rope)
// with the test-side dynamic query quantization: sq = max|q_nope| / 127,
// q_int8 = clamp(rne(q_nope / sq)).
std::vector<double> reference_from_cache(const MlaConfig& c, const std::vector<Seq>& seqs,
                                         const MlaRun& run, double s_k) {
  const int64_t l = c.lora, r = c.rope, bs = c.block_size;
  // Per sequence and key: the int8 latent and the bf16 rope, as stored.
  std::vector<std::vector<std::vector<double>>> k_int(seqs.size()), k_pe(seqs.size());
  for (size_t si = 0; si < seqs.size(); ++si)
    for (int64_t j = 0; j < seqs[si].seq_len; ++j) {
      const int64_t slot = run.blocks[si][static_cast<size_t>(j / bs)] * bs + j % bs;
      const unsigned char* row = run.cache->key_row(slot);
      k_int[si].emplace_back();
      k_pe[si].emplace_back();
      for (int64_t x = 0; x < l; ++x)
        k_int[si].back().push_back(kvq::ref::load(KVQ_DTYPE_I8, row, x));
      for (int64_t x = 0; x < r; ++x)
        k_pe[si].back().push_back(kvq::ref::load(KVQ_DTYPE_BF16, row + l, x));
    }
  const auto scores_of = [&](size_t si, const double* q) {
    double amax = 0.0;
    for (int64_t x = 0; x < l; ++x) amax = std::max(amax, std::fabs(q[x]));
    const double sq = amax / 127.0;
    std::vector<double> q8(static_cast<size_t>(l), 0.0);
    if (amax > 0.0)
      for (int64_t x = 0; x < l; ++x)
        q8[static_cast<size_t>(x)] = std::clamp(round_half_even(q[x] / sq), -128.0, 127.0);
    std::vector<double> s;
    for (size_t j = 0; j < k_int[si].size(); ++j) {
      double dot = 0.0, pe = 0.0;
      for (int64_t x = 0; x < l; ++x)
        dot += q8[static_cast<size_t>(x)] * k_int[si][j][static_cast<size_t>(x)];
      for (int64_t x = 0; x < r; ++x) pe += q[l + x] * k_pe[si][j][static_cast<size_t>(x)];
      s.push_back(dot * sq * s_k + pe);
    }
    return s;
  };
  const auto latent = [&](size_t si, int64_t j, int64_t x) {
    return k_int[si][static_cast<size_t>(j)][static_cast<size_t>(x)];
  };
  return mla_attention(c, seqs, run, scores_of, latent, s_k);
}

// Unquantized MLA decode attention in float64 over the keys as the host gave
// them (model-dtype values): scores (q_nope·c_kv + q_pe·k_pe) * scale, output
// sum p * c_kv.
std::vector<double> reference_unquantized(const MlaConfig& c, const std::vector<Seq>& seqs,
                                          const MlaRun& run) {
  const int64_t d = c.hs();
  const auto scores_of = [&](size_t si, const double* q) {
    std::vector<double> s;
    for (int64_t j = 0; j < seqs[si].seq_len; ++j) {
      double dot = 0.0;
      for (int64_t x = 0; x < d; ++x) dot += q[x] * run.keys[si][static_cast<size_t>(j * d + x)];
      s.push_back(dot);
    }
    return s;
  };
  const auto c_kv = [&](size_t si, int64_t j, int64_t x) {
    return run.keys[si][static_cast<size_t>(j * d + x)];
  };
  return mla_attention(c, seqs, run, scores_of, c_kv);
}

// ---- FA-quant loader (_fa_quant_weight_loader), items 1-7 ---------------------

TEST(AscendFAKQuantPinned, FaQuantLoader_01_OneElementFloatParamIsFilledAndStaysFloat32) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;  // the scales are float32
  FakFixture f(c);
  ASSERT_EQ(f.info("fa_k.scale").dtype, KVQ_DTYPE_F32);
  ASSERT_EQ(f.load("fa_k.scale", {5.0}, {1}, KVQ_DTYPE_F32).code, 0);  // [5.0] into (1, 1)
  const kvq_param_info info = f.info("fa_k.scale");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{1, 1}));  // filled, not re-shaped
  EXPECT_EQ(info.loaded, 1);
  EXPECT_EQ(f.read("fa_k.scale"), (std::vector<double>{5.0}));
}

TEST(AscendFAKQuantPinned, FaQuantLoader_02_OneElementIntParamTakesAScalarInt) {
  FakFixture f;
  ASSERT_EQ(f.info("fa_k.offset").dtype, KVQ_DTYPE_I8);
  ASSERT_EQ(f.load("fa_k.offset", {10}, {1}, KVQ_DTYPE_I32).code, 0);  // int [10]
  const kvq_param_info info = f.info("fa_k.offset");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_I8);  // the parameter keeps its integer dtype
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(f.read("fa_k.offset"), (std::vector<double>{10}));
  // A 0-d scalar fills too.
  ASSERT_EQ(f.load("fa_v.offset", {-7}, {}, KVQ_DTYPE_I32).code, 0);
  EXPECT_EQ(f.read("fa_v.offset"), (std::vector<double>{-7}));
}

// TP 4: a (2, 1) parameter (2 heads per rank) loads rank `rank`'s rows of an
// (8, 1) checkpoint tensor holding 10 * row + 0.5.
void expect_tp4_rows(int32_t rank, std::vector<double> rows) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  c.num_heads = 2;
  FakFixture f(c);
  ASSERT_EQ(shape_of(f.info("fa_q.scale")), (std::vector<int64_t>{2, 1}));
  std::vector<double> full, offsets;
  for (int i = 0; i < 8; ++i) {
    full.push_back(10.0 * i + 0.5);
    offsets.push_back(i - 4);
  }
  ASSERT_EQ(f.load("fa_q.scale", full, {8, 1}, KVQ_DTYPE_F32, rank, 4).code, 0);
  ASSERT_EQ(f.load("fa_q.offset", offsets, {8, 1}, KVQ_DTYPE_I8, rank, 4).code, 0);
  EXPECT_EQ(shape_of(f.info("fa_q.scale")), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(f.read("fa_q.scale"), (std::vector<double>{full[static_cast<size_t>(rows[0])],
                                                       full[static_cast<size_t>(rows[1])]}));
  EXPECT_EQ(f.read("fa_q.offset"), (std::vector<double>{rows[0] - 4, rows[1] - 4}));
}

TEST(AscendFAKQuantPinned, FaQuantLoader_03_Tp4Rank0TakesRows0To1) {
  expect_tp4_rows(0, {0, 1});
}

TEST(AscendFAKQuantPinned, FaQuantLoader_04_Tp4Rank2TakesRows4To5) {
  expect_tp4_rows(2, {4, 5});
}

TEST(AscendFAKQuantPinned, FaQuantLoader_05_Tp4Rank3TakesRows6To7) {
  expect_tp4_rows(3, {6, 7});
}

TEST(AscendFAKQuantPinned, FaQuantLoader_06_ShardShapeMismatchFailsNamingShapesAndTp) {
  MlaConfig c;
  c.num_heads = 2;
  FakFixture f(c);
  const std::vector<double> before = f.read("fa_q.scale");
  // (8, 5) at TP 4: the rank's shard (2, 5) is not the parameter's (2, 1).
  const CallResult r =
      f.load("fa_q.scale", std::vector<double>(40, 1.0), {8, 5}, KVQ_DTYPE_BF16, 1, 4);
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("Attempted to load weight"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("into parameter"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("Attempted to load weight ([2, 5]) into parameter ([2, 1]) when TP "
                           "is (4)"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find(f.name("fa_q.scale")), std::string::npos) << r.message;
  // (12, 1) at TP 4: shard (3, 1).
  const CallResult r2 =
      f.load("fa_q.offset", std::vector<double>(12, 1.0), {12, 1}, KVQ_DTYPE_I8, 0, 4);
  EXPECT_EQ(r2.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r2.message.find("Attempted to load weight ([3, 1]) into parameter ([2, 1]) when TP "
                            "is (4)"),
            std::string::npos)
      << r2.message;
  // A failed load leaves the parameter as it was.
  EXPECT_EQ(f.read("fa_q.scale"), before);
  EXPECT_EQ(f.info("fa_q.scale").loaded, 0);
}

TEST(AscendFAKQuantPinned, FaQuantLoader_07_Tp1Fp16OnesIntoFp32Param) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  FakFixture f(c);
  const std::vector<double> ones(static_cast<size_t>(c.num_heads), 1.0);
  ASSERT_EQ(f.load("fa_q.scale", ones, {c.num_heads, 1}, KVQ_DTYPE_F16, 0, 1).code, 0);
  const kvq_param_info info = f.info("fa_q.scale");
  EXPECT_EQ(info.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(info), (std::vector<int64_t>{c.num_heads, 1}));
  EXPECT_EQ(f.read("fa_q.scale"), ones);
}

// ---- FAKQuant scheme (the method), items 8-16 ---------------------------------------
// kv_lora_rank is observable as quant_kscale's shape [1, kv_lora_rank] after
// processing; qk_rope_head_dim as the cache row (kv_lora_rank int8 + 2 *
// qk_rope_head_dim bf16 bytes). Without kv_lora_rank the scheme still
// declares its parameters and processes, but the MLA cache answers UNSUPPORTED.

// {quant_kscale shape, row_bytes} after applying `options` and processing.
std::pair<std::vector<int64_t>, int64_t> lora_and_row(FakFixture& f) {
  f.load_k_and_process(0.5);
  return {shape_of(f.info("quant_kscale")), geometry(f.plugin, f.layer.get()).row_bytes};
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_08_KvLoraRankAndRopeComeFromTheOptions) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c, Options{{"kv_lora_rank", "4"}, {"qk_rope_head_dim", "2"}});
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(row, 4 + 2 * 2);
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {});
  EXPECT_EQ(run.status.code, 0) << run.status.message;
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_09_MissingKvLoraRankDefaultsToZero) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c, Options{{"qk_rope_head_dim", "2"}});
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(row, 2 * 2);
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {});
  EXPECT_EQ(run.status.code, KVQ_ERR_UNSUPPORTED);  // the cache write
  EXPECT_NE(run.status.message.find("kv_lora_rank is 0"), std::string::npos) << run.status.message;
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_10_MissingRopeHeadDimDefaultsToZero) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 0;  // head_size 4 == kv_lora_rank + 0
  FakFixture f(c, Options{{"kv_lora_rank", "4"}});
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(row, 4);  // no rope bytes
  EXPECT_EQ(run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {}).status.code, 0);
  // The default shows in the geometry rule too: a layer sized for rope 2
  // (head_size 6) refuses kv_lora_rank 4 without qk_rope_head_dim.
  Plugin p(ascend_plugin_path());
  MlaConfig c6;
  c6.lora = 4;
  c6.rope = 2;
  LayerPtr layer(nullptr, nullptr);
  check(create_mla(p, c6, &layer), "layer_create");
  const CallResult r = apply_fakquant(p, layer.get(), {{"kv_lora_rank", "4"}});
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("4 + 0 = 4"), std::string::npos) << r.message;
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_11_BothMissingDefaultToZero) {
  MlaConfig c;
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c, Options{{"unrelated_key", "7"}});  // unknown keys are ignored
  const auto [kscale, row] = lora_and_row(f);
  EXPECT_EQ(kscale, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(row, 0);
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, 10);  // declared and derived
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, {{1, 3}}, {});
  EXPECT_EQ(run.status.code, KVQ_ERR_UNSUPPORTED);
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_12_CreateWeightsAddsFaQFaKFaV) {
  Plugin p(ascend_plugin_path());
  const MlaConfig c;
  LayerPtr layer(nullptr, nullptr);
  check(create_mla(p, c, &layer), "layer_create");
  const kvq_layer_info before = layer_info(p, layer.get());
  EXPECT_STREQ(before.impl_name, "ascend_attention");
  EXPECT_EQ(before.num_params, 0);
  ASSERT_EQ(apply_fakquant(p, layer.get(), mla_options(c)).code, 0);
  const kvq_layer_info after = layer_info(p, layer.get());
  EXPECT_EQ(after.num_params, 6);
  for (const char* local : kFaParams)
    EXPECT_TRUE(find_param(p, layer.get(), full_name(c, local)).has_value()) << local;
  // The class upgrade to the MLA latent-cache implementation.
  EXPECT_STREQ(after.impl_name, "ascend_mla_fakquant");
  EXPECT_STREQ(after.kv_cache_dtype, "int8_latent");
  EXPECT_STREQ(after.scheme, "FAKQuant");
  EXPECT_EQ(after.element_dtype, KVQ_DTYPE_I8);
  // Applied twice -> FAILED_PRECONDITION.
  EXPECT_EQ(apply_fakquant(p, layer.get(), mla_options(c)).code, KVQ_ERR_FAILED_PRECONDITION);
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_13_ShapesWith32HeadsAnd1KvHead) {
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    MlaConfig c;
    c.num_heads = 32;
    c.model_dtype = dtype;
    FakFixture f(c);
    EXPECT_EQ(shape_of(f.info("fa_q.scale")), (std::vector<int64_t>{32, 1}));
    EXPECT_EQ(shape_of(f.info("fa_q.offset")), (std::vector<int64_t>{32, 1}));
    for (const char* local : {"fa_k.scale", "fa_k.offset", "fa_v.scale", "fa_v.offset"})
      EXPECT_EQ(shape_of(f.info(local)), (std::vector<int64_t>{1, 1})) << local;
    for (const char* local : {"fa_q.scale", "fa_k.scale", "fa_v.scale"})
      EXPECT_EQ(f.info(local).dtype, dtype) << local;  // the model dtype
    for (const char* local : {"fa_q.offset", "fa_k.offset", "fa_v.offset"})
      EXPECT_EQ(f.info(local).dtype, KVQ_DTYPE_I8) << local;
  }
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_14_BoundToFaQuantLoaderNotTrainableOffsetsInt8) {
  FakFixture f;
  for (const char* local : kFaParams) {
    const kvq_param_info info = f.info(local);
    EXPECT_STREQ(info.loader, "fa_quant") << local;
    EXPECT_EQ(info.trainable, 0) << local;
    EXPECT_EQ(info.derived, 0) << local;
    EXPECT_EQ(info.loaded, 0) << local;
    if (std::string(local).ends_with("offset")) {
      EXPECT_EQ(info.dtype, KVQ_DTYPE_I8) << local;
    }
  }
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_15_QuantKscaleFromScale2IsHalfRepeated) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F16;  // fa_k.scale is fp16
  c.lora = 4;
  c.rope = 2;
  FakFixture f(c);
  ASSERT_EQ(f.load("fa_k.scale", {2.0}, {1, 1}, KVQ_DTYPE_F16).code, 0);  // [[2.0]]
  ASSERT_EQ(f.load("fa_k.offset", {1}, {1, 1}, KVQ_DTYPE_I8).code, 0);    // [[1]]
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  const kvq_param_info q = f.info("quant_kscale");
  EXPECT_EQ(shape_of(q), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(q.dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(f.read("quant_kscale"), (std::vector<double>(4, 0.5)));
  EXPECT_EQ(f.read("fak_descale"), (std::vector<double>{2.0}));
  EXPECT_EQ(f.read("fak_descale_reciprocal"), (std::vector<double>{0.5}));
  EXPECT_EQ(f.read("fak_offset"), (std::vector<double>{1}));
}

TEST(AscendFAKQuantPinned, FAKQuantScheme_16_CreateLoadRandomProcess) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F16;
  c.num_heads = 8;
  FakFixture f(c);
  std::mt19937_64 rng(16);
  std::uniform_real_distribution<double> scale(0.01, 0.1);
  std::uniform_int_distribution<int> offset(-20, 20);
  std::vector<std::vector<double>> values;
  for (const char* local : kFaParams) {
    const kvq_param_info info = f.info(local);
    const std::vector<int64_t> shape = shape_of(info);
    std::vector<double> v;
    for (int64_t i = 0; i < shape[0]; ++i)
      v.push_back(info.dtype == KVQ_DTYPE_I8 ? offset(rng)
                                             : kvq::ref::round_to(info.dtype, scale(rng)));
    ASSERT_EQ(f.load(local, v, shape, info.dtype, 0, 1).code, 0) << local;
    values.push_back(v);
  }
  for (size_t i = 0; i < std::size(kFaParams); ++i) {
    EXPECT_EQ(f.read(kFaParams[i]), values[i]) << kFaParams[i];  // values equal
    EXPECT_EQ(f.info(kFaParams[i]).loaded, 1) << kFaParams[i];
  }
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  const double k_scale = values[2][0], k_offset = values[3][0];
  for (const char* local :
       {"fak_descale", "fak_descale_reciprocal", "fak_offset", "quant_kscale"}) {
    const std::optional<kvq_param_info> info = f.find(local);
    ASSERT_TRUE(info.has_value()) << local;
    EXPECT_EQ(info->derived, 1) << local;
    EXPECT_STREQ(info->loader, "") << local;
    EXPECT_EQ(info->trainable, 0) << local;
  }
  EXPECT_EQ(f.info("fak_descale").dtype, KVQ_DTYPE_F32);
  EXPECT_EQ(shape_of(f.info("fak_descale")), (std::vector<int64_t>{1}));
  EXPECT_EQ(f.read("fak_descale"), (std::vector<double>{k_scale}));
  EXPECT_EQ(f.read("fak_descale_reciprocal"), (std::vector<double>{ref_quant_kscale(k_scale)}));
  EXPECT_EQ(f.info("fak_offset").dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(f.read("fak_offset"), (std::vector<double>{k_offset}));
  EXPECT_EQ(f.read("quant_kscale"),
            (std::vector<double>(static_cast<size_t>(c.lora), ref_quant_kscale(k_scale))));
}

// ---- the scheme beyond the pinned cases ------------------------------------------------

TEST(AscendFAKQuant, SchemeListedWithNameRulesAndTheInt8LatentMode) {
  Plugin p(ascend_plugin_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  check(p.take(p.api().get_info(p.instance(), &info)), "get_info");
  const kvq_scheme_info* s = nullptr;
  for (int64_t i = 0; i < info.num_schemes; ++i)
    if (std::string(info.schemes[i]->quant_type) == "FAKQuant") s = info.schemes[i];
  ASSERT_NE(s, nullptr);
  EXPECT_STREQ(s->layer_type, "attention");
  EXPECT_EQ(s->supported, 1);
  // Checkpoint names ...self_attn.fa_k.scale load into the layer ...self_attn.attn.
  std::vector<std::pair<std::string, std::string>> rules;
  for (int64_t r = 0; r < s->num_name_rules; ++r)
    rules.emplace_back(s->name_rules[r]->checkpoint_suffix, s->name_rules[r]->param_suffix);
  EXPECT_EQ(rules.size(), 6u);
  EXPECT_NE(std::find(rules.begin(), rules.end(),
                      std::make_pair(std::string(".self_attn.fa_k.scale"),
                                     std::string(".self_attn.attn.fa_k.scale"))),
            rules.end());
  const kvq_kv_mode_info* mode = nullptr;
  for (int64_t m = 0; m < info.backends[0]->num_kv_modes; ++m)
    if (std::string(info.backends[0]->kv_modes[m]->name) == "int8_latent")
      mode = info.backends[0]->kv_modes[m];
  ASSERT_NE(mode, nullptr);
  EXPECT_EQ(mode->element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(mode->supported, 1);
  EXPECT_EQ(mode->needs_scheme, 1);
  EXPECT_EQ(mode->per_token_head, 0);
}

TEST(AscendFAKQuant, SchemeRefusesNonMlaGeometryNamingTheValues) {
  Plugin p(ascend_plugin_path());
  struct Case {
    int64_t num_kv_heads, head_size, head_size_v;
    const char* needle;
  };
  // lora 32, rope 8: the layer must have 1 KV head, head_size 40, head_size_v 32.
  for (const Case& k : {Case{2, 40, 32, "num_kv_heads 2"}, Case{1, 48, 32, "head_size 48"},
                        Case{1, 40, 40, "head_size_v 40"}}) {
    MlaConfig c;
    c.num_kv_heads = k.num_kv_heads;
    c.head_size = k.head_size;
    c.head_size_v = k.head_size_v;
    LayerPtr layer(nullptr, nullptr);
    check(create_mla(p, c, &layer), "layer_create");
    const CallResult r = apply_fakquant(p, layer.get(), mla_options(c));
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT) << k.needle;
    EXPECT_NE(r.message.find(k.needle), std::string::npos) << r.message;
    EXPECT_NE(r.message.find(c.layer_name), std::string::npos) << r.message;
    // Nothing changed.
    const kvq_layer_info info = layer_info(p, layer.get());
    EXPECT_STREQ(info.impl_name, "ascend_attention");
    EXPECT_STREQ(info.scheme, "");
    EXPECT_EQ(info.num_params, 0);
  }
}

TEST(AscendFAKQuant, SchemeRefusesNonIntegerOptionsNamingTheKey) {
  Plugin p(ascend_plugin_path());
  const MlaConfig c;
  const Options bad[] = {{{"kv_lora_rank", "abc"}, {"qk_rope_head_dim", "8"}},
                         {{"kv_lora_rank", "32"}, {"qk_rope_head_dim", "1.5"}},
                         {{"kv_lora_rank", "-32"}, {"qk_rope_head_dim", "8"}},
                         {{"kv_lora_rank", ""}, {"qk_rope_head_dim", "8"}}};
  for (const Options& o : bad) {
    LayerPtr layer(nullptr, nullptr);
    check(create_mla(p, c, &layer), "layer_create");
    const CallResult r = apply_fakquant(p, layer.get(), o);
    EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
    const std::string key = o[0].second == "32" ? "qk_rope_head_dim" : "kv_lora_rank";
    EXPECT_NE(r.message.find(key), std::string::npos) << r.message;
    EXPECT_EQ(layer_info(p, layer.get()).num_params, 0);
  }
}

TEST(AscendFAKQuant, ProcessWeightsNeedsAFiniteNonZeroLoadedKeyScaleAndIsIdempotent) {
  FakFixture f;
  CallResult r = process_weights(f.plugin, f.layer.get());
  EXPECT_EQ(r.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(r.message.find("fa_k.scale"), std::string::npos) << r.message;
  ASSERT_EQ(f.load("fa_k.scale", {0.0}, {1, 1}, KVQ_DTYPE_BF16).code, 0);
  r = process_weights(f.plugin, f.layer.get());
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("fa_k.scale"), std::string::npos) << r.message;
  EXPECT_FALSE(f.find("quant_kscale").has_value());
  ASSERT_EQ(f.load("fa_k.scale", {0.25}, {1, 1}, KVQ_DTYPE_BF16).code, 0);
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);
  const int64_t n = layer_info(f.plugin, f.layer.get()).num_params;
  EXPECT_EQ(n, 10);
  ASSERT_EQ(process_weights(f.plugin, f.layer.get()).code, 0);  // idempotent
  EXPECT_EQ(layer_info(f.plugin, f.layer.get()).num_params, n);
  EXPECT_EQ(f.read("quant_kscale"), (std::vector<double>(32, 4.0)));
  EXPECT_EQ(f.read("fak_descale"), (std::vector<double>{0.25}));
}

TEST(AscendFAKQuant, ProcessedScalesAreRequiredBeforeWriteAndForward) {
  FakFixture f;
  ASSERT_EQ(f.load("fa_k.scale", {0.03125}, {1, 1}, KVQ_DTYPE_BF16).code, 0);  // not processed
  Cache cache(f.plugin, f.layer.get(), 4);
  const OwnedTensor key = random_tensor(KVQ_DTYPE_BF16, {2, 1, f.config.hs()}, 1.0, 3);
  const CallResult w = write_keys(f.plugin, f.layer.get(), key, {0, 1}, cache);
  EXPECT_EQ(w.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(w.message.find("FAKQuant scales not processed"), std::string::npos) << w.message;
  EXPECT_NE(w.message.find(f.config.layer_name), std::string::npos) << w.message;
  const MlaRun run = run_mla(f.plugin, f.layer.get(), f.config, {{1, 2}}, {});
  EXPECT_EQ(run.status.code, KVQ_ERR_FAILED_PRECONDITION);  // the cache write
  // forward / supports on a processed-less layer: same answer.
  FakFixture g;
  check(g.load("fa_k.scale", {0.03125}, {1, 1}, KVQ_DTYPE_BF16), "load");
  OwnedTensor q = random_tensor(KVQ_DTYPE_BF16, {1, g.config.num_heads, g.config.hs()}, 1.0, 5);
  OwnedTensor out(KVQ_DTYPE_BF16, {1, g.config.num_heads, g.config.lora});
  OwnedTensor qsl(KVQ_DTYPE_I32, {2}), lens(KVQ_DTYPE_I32, {1}), table(KVQ_DTYPE_I32, {1, 1});
  qsl.set(1, 1);
  lens.set(0, 1);
  Cache gcache(g.plugin, g.layer.get(), 2);
  const client::ForwardArgs args = forward_args(KVQ_ATTN_DECODE_ONLY, q.get(), gcache.tensor(),
                                                qsl.get(), lens.get(), table.get(), out.get());
  const CallResult fw = forward(g.plugin, g.layer.get(), args);
  EXPECT_EQ(fw.code, KVQ_ERR_FAILED_PRECONDITION);
  EXPECT_NE(fw.message.find("FAKQuant scales not processed"), std::string::npos) << fw.message;
  EXPECT_NE(fw.message.find(g.config.layer_name), std::string::npos) << fw.message;
  EXPECT_EQ(supports(g.plugin, g.layer.get(), args).code, KVQ_ERR_FAILED_PRECONDITION);
}

// ---- the latent cache write ---------------------------------------------------------------

TEST(AscendFAKQuant, GeometryIsTheKeysOnlyInt8LatentPlusBf16RopeRow) {
  FakFixture f;
  const kvq_cache_geometry g = geometry(f.plugin, f.layer.get());
  EXPECT_EQ(g.layout, KVQ_CACHE_LAYOUT_BLOCK_SLOT_HEAD);
  EXPECT_EQ(g.element_dtype, KVQ_DTYPE_I8);
  EXPECT_EQ(g.block_size, f.config.block_size);
  EXPECT_EQ(g.num_kv_heads, 1);
  EXPECT_EQ(g.head_size, f.config.lora + f.config.rope);
  EXPECT_EQ(g.head_size_v, f.config.lora);
  EXPECT_EQ(g.row_bytes, f.config.lora + 2 * f.config.rope);  // no padding
  EXPECT_EQ(g.bytes_per_block, f.config.block_size * g.row_bytes);
}

// Every byte of the cache after writes in each model dtype: the latent as
// saturate(rne(f32(c_kv * quant_kscale))), the rope as bf16, every other
// byte untouched (zero), padding slots skipped, num_tokens honoured.
TEST(AscendFAKQuant, CacheWriteBytesAreExact) {
  for (const int32_t dtype : {KVQ_DTYPE_BF16, KVQ_DTYPE_F16, KVQ_DTYPE_F32}) {
    MlaConfig c;
    c.model_dtype = dtype;
    c.lora = 16;
    c.rope = 4;
    c.block_size = 8;
    FakFixture f(c);
    const double k_scale = 2.0;  // quant_kscale 0.5: ties at odd integers
    f.load_k_and_process(k_scale);
    const double qk = ref_quant_kscale(kvq::ref::round_to(dtype, k_scale));
    const int64_t d = c.hs(), t = 7;
    OwnedTensor key = random_tensor(dtype, {t, 1, d}, 40.0, 11 + static_cast<uint64_t>(dtype));
    // Token 0: ties and saturation, written out.
    const double row0[] = {5, 7, -5, -7, 1, 3, 0.5, -0.5, 254, 256, 1000, -255, -256, -1000, 0, 9};
    for (int64_t x = 0; x < c.lora; ++x) key.set(x, row0[x]);
    Cache cache(f.plugin, f.layer.get(), 3);
    const std::vector<int64_t> slots = {3, 17, -1, 8, 0, 23, 9};  // token 2 is padding
    const std::vector<unsigned char> before = cache.snapshot();
    // num_tokens 6: token 6 (slot 9) is not written.
    ASSERT_EQ(write_keys(f.plugin, f.layer.get(), key, slots, cache, 6).code, 0);
    std::vector<unsigned char> expected = before;
    const std::vector<double> k = key.to_doubles();
    const int64_t rb = cache.geometry().row_bytes;
    for (int64_t i = 0; i < 6; ++i) {
      const int64_t slot = slots[static_cast<size_t>(i)];
      if (slot < 0) continue;
      unsigned char* row = expected.data() + slot * rb;
      for (int64_t x = 0; x < c.lora; ++x) {
        const int8_t q = ref_latent(k[static_cast<size_t>(i * d + x)], qk);
        std::memcpy(row + x, &q, 1);
      }
      for (int64_t x = 0; x < c.rope; ++x) {
        const uint16_t bits = bits16(KVQ_DTYPE_BF16, k[static_cast<size_t>(i * d + c.lora + x)]);
        std::memcpy(row + c.lora + 2 * x, &bits, 2);
      }
    }
    const std::vector<unsigned char> after = cache.snapshot();
    ASSERT_EQ(after.size(), expected.size());
    for (size_t b = 0; b < after.size(); ++b)
      ASSERT_EQ(after[b], expected[b])
          << "dtype " << dtype << " byte " << b << " (slot " << static_cast<int64_t>(b) / rb << ")";
    // The hand-written row: 5*0.5=2.5 -> 2, 3.5 -> 4, -2.5 -> -2, -3.5 -> -4,
    // 0.5 -> 0, 1.5 -> 2, 0.25 -> 0, 127 -> 127, 128 -> 127 (saturated), ...
    const auto* r0 = reinterpret_cast<const int8_t*>(after.data() + 3 * rb);
    const std::vector<int> want = {2, 4, -2, -4, 0, 2, 0, 0, 127, 127, 127, -128, -128, -128, 0, 4};
    EXPECT_EQ(std::vector<int>(r0, r0 + c.lora), want) << "dtype " << dtype;
  }
}

TEST(AscendFAKQuant, CacheWriteRefusesNonFiniteNamingTheTokenAndWritesNothing) {
  FakFixture f;
  f.load_k_and_process(0.03125);
  const int64_t d = f.config.hs();
  Cache cache(f.plugin, f.layer.get(), 2);
  const std::vector<unsigned char> before = cache.snapshot();
  struct Case {
    int64_t token, element;
    double value;
  };
  for (const Case& k : {Case{2, 5, NAN}, Case{0, d - 1, INFINITY}, Case{3, 0, -INFINITY}}) {
    OwnedTensor key = random_tensor(KVQ_DTYPE_BF16, {4, 1, d}, 1.0, 21);
    key.set(k.token * d + k.element, k.value);
    const CallResult r = write_keys(f.plugin, f.layer.get(), key, {0, 1, 2, 3}, cache);
    EXPECT_EQ(r.code, KVQ_ERR_NON_FINITE);
    EXPECT_NE(r.message.find("token " + std::to_string(k.token)), std::string::npos) << r.message;
    EXPECT_EQ(cache.snapshot(), before) << "token " << k.token;
  }
  // A non-finite padding token (slot -1) is never read.
  OwnedTensor key = random_tensor(KVQ_DTYPE_BF16, {2, 1, d}, 1.0, 22);
  key.set(d + 3, NAN);
  EXPECT_EQ(write_keys(f.plugin, f.layer.get(), key, {0, -1}, cache).code, 0);
}

// ---- decode attention ----------------------------------------------------------------

// Decode batches on bf16: against float64 attention over the same cache
// bytes with the test-side query quantization, and end to end against
// unquantized float64 attention.
void expect_decode_matches(MlaConfig c, int32_t state, uint64_t seed) {
  FakFixture f(c);
  const double k_scale = kvq::ref::round_to(c.model_dtype, 4.0 / 127.0);  // |c_kv| <= 4
  f.load_k_and_process(k_scale);
  const std::vector<Seq> seqs = {{1, 1}, {1, 17}, {1, 40}, {1, 5}, {1, 33}};
  MlaRunOptions o;
  o.state = state;
  o.seed = seed;
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, seqs, o);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  EXPECT_EQ(run.supports.code, 0) << run.supports.message;
  const double s_k = f.read("fak_descale")[0];
  EXPECT_EQ(s_k, k_scale);
  const std::vector<double> ref = reference_from_cache(c, seqs, run, s_k);
  const kvq::ref::Comparison cmp = kvq::ref::compare(run.output, ref, 2e-2, 2e-2);
  EXPECT_EQ(cmp.non_finite, 0);
  EXPECT_EQ(cmp.violations, 0)
      << "worst index " << cmp.worst_index << ": "
      << run.output[static_cast<size_t>(std::max<int64_t>(cmp.worst_index, 0))] << " vs "
      << ref[static_cast<size_t>(std::max<int64_t>(cmp.worst_index, 0))];
  const kvq::ref::Comparison e2e =
      kvq::ref::compare(run.output, reference_unquantized(c, seqs, run), 1.0, 1.0);
  EXPECT_GT(e2e.cosine, 0.99);
}

TEST(AscendFAKQuant, DecodeOnlyMatchesReferenceFromCacheBytes) {
  MlaConfig c;
  c.num_heads = 8;
  c.lora = 64;
  c.rope = 16;
  expect_decode_matches(c, KVQ_ATTN_DECODE_ONLY, 1);
}

TEST(AscendFAKQuant, ChunkedPrefillAndSpecDecodingOfSingleTokensMatchReference) {
  MlaConfig c;
  c.lora = 32;
  c.rope = 8;
  expect_decode_matches(c, KVQ_ATTN_CHUNKED_PREFILL, 2);
  expect_decode_matches(c, KVQ_ATTN_SPEC_DECODING, 3);
}

TEST(AscendFAKQuant, DecodeUsesTheConfiguredSoftmaxScale) {
  MlaConfig c;
  c.lora = 32;
  c.rope = 8;
  c.block_size = 8;
  c.softmax_scale = 1.0 / std::sqrt(24.0);  // vLLM MLA: 1/sqrt(qk_nope_head_dim + rope)
  expect_decode_matches(c, KVQ_ATTN_DECODE_ONLY, 4);
}

TEST(AscendFAKQuant, DecodeInFloat32AndFloat16MatchesReference) {
  for (const int32_t dtype : {KVQ_DTYPE_F32, KVQ_DTYPE_F16}) {
    MlaConfig c;
    c.model_dtype = dtype;
    c.lora = 48;
    c.rope = 8;
    expect_decode_matches(c, KVQ_ATTN_DECODE_ONLY, 5 + static_cast<uint64_t>(dtype));
  }
}

// max|q_nope| = 0: q_int8 is all zero, the scores are the rope part alone.
TEST(AscendFAKQuant, AllZeroLatentQueryGivesARopeOnlySoftmax) {
  MlaConfig c;
  c.model_dtype = KVQ_DTYPE_F32;
  FakFixture f(c);
  f.load_k_and_process(0.03125);
  MlaRunOptions o;
  o.zero_q_nope = true;
  o.pe_stddev = 3.0;
  const std::vector<Seq> seqs = {{1, 9}, {1, 20}};
  const MlaRun run = run_mla(f.plugin, f.layer.get(), c, seqs, o);
  ASSERT_EQ(run.status.code, 0) << run.status.message;
  const std::vector<double> ref = reference_from_cache(c, seqs, run, 0.03125);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(run.output[i], ref[i], 1e-5) << i;
}

// ---- batches the MLA decode path does not run -------------------------------------------

TEST(AscendFAKQuant, NonDecodeBatchesAreUnsupportedAndSupportsAgrees) {
  FakFixture f;
  f.load_k_and_process(0.03125);
  struct Case {
    int32_t state;
    std::vector<Seq> seqs;
    int32_t code;
    const char* needle;
  };
  const Case cases[] = {
      {KVQ_ATTN_PREFILL_NO_CACHE, {{4, 4}}, KVQ_ERR_UNSUPPORTED, "PrefillNoCache"},
      {KVQ_ATTN_PREFILL_CACHE_HIT, {{1, 6}}, KVQ_ERR_UNSUPPORTED, "PrefillCacheHit"},
      {KVQ_ATTN_CHUNKED_PREFILL, {{1, 5}, {3, 9}}, KVQ_ERR_UNSUPPORTED, "query_len 3"},
      {KVQ_ATTN_SPEC_DECODING, {{2, 6}}, KVQ_ERR_UNSUPPORTED, "query_len 2"},
      // A DecodeOnly batch with two tokens contradicts its state: malformed.
      {KVQ_ATTN_DECODE_ONLY, {{2, 6}}, KVQ_ERR_INVALID_ARGUMENT, "2 query tokens"},
  };
  for (const Case& k : cases) {
    MlaRunOptions o;
    o.state = k.state;
    const MlaRun run = run_mla(f.plugin, f.layer.get(), f.config, k.seqs, o);
    EXPECT_EQ(run.status.code, k.code) << k.needle << ": " << run.status.message;
    EXPECT_EQ(run.supports.code, run.status.code) << k.needle;
    EXPECT_NE(run.status.message.find(k.needle), std::string::npos) << run.status.message;
  }
}

}  // namespace
}  // namespace kvq::test::asc
