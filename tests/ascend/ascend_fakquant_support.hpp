// Shared by the FAKQuant tests (ascend_fakquant_test.cpp, the behaviour
// beyond vllm-ascend's pins; ascend_fakquant_pinned_test.cpp, the pinned
// items 1-16): the MLA layer config, the scheme fixture, test-side codecs,
// decode batches and float64 references computed with kvq_ref.
#pragma once

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

namespace kvq::test::asc::fakquant {

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

inline constexpr const char* kFaParams[] = {"fa_q.scale",  "fa_q.offset", "fa_k.scale",
                                            "fa_k.offset", "fa_v.scale",  "fa_v.offset"};

// Both options, as a host passes them from the model config.
inline Options mla_options(const MlaConfig& c) {
  return {{"kv_lora_rank", std::to_string(c.lora)}, {"qk_rope_head_dim", std::to_string(c.rope)}};
}

inline CallResult create_mla(Plugin& p, const MlaConfig& c, LayerPtr* out) {
  LayerSpec s = c;
  s.head_size = c.hs();
  s.head_size_v = c.hsv();
  return create_layer(p, s, out);
}

inline CallResult apply_fakquant(Plugin& p, kvq_layer* layer, const Options& options) {
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

inline double f32(double x) {
  return kvq::ref::round_to(KVQ_DTYPE_F32, x);
}

// quant_kscale as documented: 1 / scale in float32.
inline double ref_quant_kscale(double scale) {
  return f32(1.0 / f32(scale));
}

// The stored latent: saturate(rne(f32(x * quant_kscale))).
inline int8_t ref_latent(double x, double qk) {
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
inline MlaRun run_mla(Plugin& p, kvq_layer* layer, const MlaConfig& c, const std::vector<Seq>& seqs,
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

inline double softmax_scale(const MlaConfig& c) {
  return c.softmax_scale != 0.0 ? c.softmax_scale : 1.0 / std::sqrt(static_cast<double>(c.hs()));
}

// MLA decode attention in float64 for every query token and head: scores =
// scores_of(sequence, q) * scale over the sequence's keys; output x < lora =
// sum_j softmax_j * value(sequence, j, x) * value_scale.
inline std::vector<double> mla_attention(
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
inline std::vector<double> reference_from_cache(const MlaConfig& c, const std::vector<Seq>& seqs,
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
inline std::vector<double> reference_unquantized(const MlaConfig& c, const std::vector<Seq>& seqs,
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

}  // namespace kvq::test::asc::fakquant
