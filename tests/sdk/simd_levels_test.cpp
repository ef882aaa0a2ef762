// Every SIMD level this CPU runs (portable, avx2, avx512) must give the
// portable level's attention results within fp32 rounding, and each must
// match the float64 reference over the K/V stored in the cache.
//
// How a level is forced: the plugin chooses its level once per process, at
// first use (an immutable function-local static inside the plugin's own copy
// of the SDK). Each level therefore runs in a private copy of the plugin
// file: KVQ_SIMD is set, the copy is dlopen'ed (a different file is a new
// library instance with its own choice) and negotiated, which makes the
// choice, and the environment is restored. The plugin's info reports the
// level it took; a level this CPU lacks is ignored by the plugin and skipped
// here.
//
// Drives the plugin through the client library (and kvq_ref) only, not the
// other tests' helpers.
#include "harness.hpp"
#include "kvq_ref/reference.hpp"

#include <kvq_abi.h>

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr const char* kLayerName = "model.layers.0.self_attn.attn";

// A negotiated private copy of the plugin (the client's session; the
// library stays mapped, as the ABI requires).
struct Loaded {
  kvq::client::Plugin plugin;
  std::string level;  // what the plugin reports
};

// Loads a private copy of the Triton plugin with KVQ_SIMD = level (the file
// is removed once mapped).
Loaded load_with_level(const std::string& level) {
  char path[] = "/tmp/kvq_simd_level_XXXXXX.so";
  const int fd = mkstemps(path, 3);
  if (fd < 0) throw std::runtime_error("mkstemps failed");
  close(fd);
  std::filesystem::copy_file(KVQ_TRITON_PLUGIN, path,
                             std::filesystem::copy_options::overwrite_existing);
  const char* old = std::getenv("KVQ_SIMD");
  const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  setenv("KVQ_SIMD", level.c_str(), 1);
  // Restores the environment and removes the copy however the load ends.
  struct Restore {
    const std::optional<std::string>& saved;
    const char* path;
    ~Restore() {
      saved ? setenv("KVQ_SIMD", saved->c_str(), 1) : unsetenv("KVQ_SIMD");
      std::filesystem::remove(path);
    }
  } restore{saved, path};
  kvq::client::PluginOptions options;
  options.num_threads = 2;
  kvq::client::Plugin plugin = kvq::client::Plugin::load(path, options);  // chooses the level
  std::string chosen = plugin.info().simd_level;
  return Loaded{std::move(plugin), std::move(chosen)};
}

struct Buffer {
  explicit Buffer(size_t n)
      : p(static_cast<unsigned char*>(std::aligned_alloc(64, (n + 63) / 64 * 64)), std::free) {
    std::memset(p.get(), 0, (n + 63) / 64 * 64);
  }
  unsigned char* get() const { return p.get(); }
  std::unique_ptr<unsigned char, void (*)(void*)> p;
};

kvq_tensor view(void* data, int32_t dtype, const std::vector<int64_t>& shape) {
  return kvq::test::tensor_view(data, dtype, shape);
}

struct Case {
  std::string name, mode;
  int32_t model = KVQ_DTYPE_F32;
  int64_t hq = 32, hkv = 8, d = 128;
  int64_t window = 0;
  double softcap = 0.0;
  bool alibi = false, sinks = false;
  std::vector<std::pair<int64_t, int64_t>> seqs;  // (query_len, seq_len)
  float k_scale = 0.0f, v_scale = 0.0f;           // fp8 per-tensor checkpoint scales; 0 = none
  bool nan_code = false;  // e4m3 NaN code (0x7F) in one stored key of sequence 0, KV head 0
};

struct Outputs {
  std::vector<double> out, ref;
};

bool per_tensor_fp8(const std::string& mode) {
  return mode == "fp8" || mode == "fp8_e4m3" || mode == "fp8_e5m2";
}

// The float64 value of element x of a stored row, as the mode defines it.
double stored(const Case& c, const kvq_cache_geometry& g, const unsigned char* row, int64_t x,
              bool is_v) {
  const int32_t dt = g.element_dtype;
  if (c.mode == "int8_per_token_head" || c.mode == "fp8_per_token_head") {
    float s;
    std::memcpy(&s, row + c.d, 4);
    return kvq::ref::load(dt, row, x) * static_cast<double>(s);
  }
  if (per_tensor_fp8(c.mode)) {
    const float s = is_v ? (c.v_scale > 0 ? c.v_scale : 1.0f) : (c.k_scale > 0 ? c.k_scale : 1.0f);
    // fp8 * scale in fp32, then rounded to the query dtype (spec §4).
    const auto f = static_cast<float>(kvq::ref::load(dt, row, x) * static_cast<double>(s));
    return c.model == KVQ_DTYPE_F32 ? f : kvq::ref::round_to(c.model, f);
  }
  return kvq::ref::load(dt, row, x);
}

Outputs run_case(const Loaded& l, const Case& c) {
  kvq::client::LayerConfig cfg;
  cfg.backend = "triton";
  cfg.layer_name = kLayerName;
  cfg.kv_cache_dtype = c.mode;
  cfg.model_dtype = c.model;
  cfg.num_heads = c.hq;
  cfg.num_kv_heads = c.hkv;
  cfg.head_size = c.d;
  cfg.block_size = 16;
  cfg.sliding_window = c.window;
  cfg.softcap = c.softcap;
  kvq::client::Layer layer = l.plugin.create_layer(cfg);
  for (const auto& [name, value] : {std::pair{"k_scale", c.k_scale}, {"v_scale", c.v_scale}}) {
    if (value <= 0.0f) continue;
    float v = value;
    layer.param_load(std::string(kLayerName) + "." + name, view(&v, KVQ_DTYPE_F32, {1}), 0, 1);
  }
  layer.process_weights();
  const kvq_cache_geometry g = layer.cache_geometry();

  const int64_t bs = g.block_size, ns = static_cast<int64_t>(c.seqs.size());
  int64_t total_blocks = 0, max_blocks = 1, total_q = 0;
  for (const auto& [ql, sl] : c.seqs) {
    total_blocks += (sl + bs - 1) / bs;
    max_blocks = std::max(max_blocks, (sl + bs - 1) / bs);
    total_q += ql;
  }
  const int64_t num_blocks = total_blocks + 1;
  Buffer cache(static_cast<size_t>(num_blocks * g.bytes_per_block));
  const kvq_tensor tc = view(cache.get(), KVQ_DTYPE_U8, {num_blocks, g.bytes_per_block});
  layer.cache_init(tc);

  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const int64_t es = kvq::ref::dtype_size(c.model);
  std::vector<int32_t> table(static_cast<size_t>(ns * max_blocks), 0), qsl = {0}, lens;
  std::vector<std::vector<double>> keys, values;
  size_t next = 0;
  for (int64_t s = 0; s < ns; ++s) {
    const auto [ql, sl] = c.seqs[static_cast<size_t>(s)];
    qsl.push_back(qsl.back() + static_cast<int32_t>(ql));
    lens.push_back(static_cast<int32_t>(sl));
    std::vector<int64_t> slots;
    for (int64_t b = 0; b < (sl + bs - 1) / bs; ++b)
      table[static_cast<size_t>(s * max_blocks + b)] = ids[next++];
    for (int64_t j = 0; j < sl; ++j)
      slots.push_back(table[static_cast<size_t>(s * max_blocks + j / bs)] * bs + j % bs);
    const int64_t n = sl * c.hkv * c.d;
    Buffer k(static_cast<size_t>(n * es)), v(static_cast<size_t>(n * es));
    for (int64_t i = 0; i < n; ++i) {
      kvq::ref::store(c.model, k.get(), i, normal(rng));
      kvq::ref::store(c.model, v.get(), i, normal(rng));
    }
    const kvq_tensor tk = view(k.get(), c.model, {sl, c.hkv, c.d}),
                     tv = view(v.get(), c.model, {sl, c.hkv, c.d}),
                     tsl = view(slots.data(), KVQ_DTYPE_I64, {sl});
    layer.cache_write(
        kvq::client::CacheWriteArgs().key(tk).value(tv).slot_mapping(tsl).kv_cache(tc));
    if (c.nan_code && s == 0) {
      const int64_t slot = slots[5];
      cache.get()[((slot / bs * 2) * bs + slot % bs) * c.hkv * g.row_bytes + 3] = 0x7F;
    }
    // The reference reads back what the cache holds.
    std::vector<double> kr, vr;
    for (int64_t j = 0; j < sl; ++j) {
      const int64_t slot = slots[static_cast<size_t>(j)], blk = slot / bs, in = slot % bs;
      for (int64_t h = 0; h < c.hkv; ++h)
        for (int kv = 0; kv < 2; ++kv) {
          const unsigned char* row =
              cache.get() + ((blk * 2 + kv) * bs + in) * c.hkv * g.row_bytes + h * g.row_bytes;
          for (int64_t x = 0; x < c.d; ++x) (kv ? vr : kr).push_back(stored(c, g, row, x, kv));
        }
    }
    keys.push_back(std::move(kr));
    values.push_back(std::move(vr));
  }

  const int64_t qn = total_q * c.hq * c.d;
  Buffer q(static_cast<size_t>(qn * es)), out(static_cast<size_t>(qn * es));
  std::vector<double> query;
  for (int64_t i = 0; i < qn; ++i) {
    kvq::ref::store(c.model, q.get(), i, normal(rng));
    query.push_back(kvq::ref::load(c.model, q.get(), i));
  }
  std::vector<float> slopes, sinks;
  for (int64_t h = 0; h < c.hq; ++h) {
    slopes.push_back(-0.04f * static_cast<float>(h + 1));
    sinks.push_back(0.3f * static_cast<float>(h % 4));
  }
  const kvq_tensor tq = view(q.get(), c.model, {total_q, c.hq, c.d}),
                   to = view(out.get(), c.model, {total_q, c.hq, c.d}),
                   tqsl = view(qsl.data(), KVQ_DTYPE_I32, {ns + 1}),
                   tl = view(lens.data(), KVQ_DTYPE_I32, {ns}),
                   tt = view(table.data(), KVQ_DTYPE_I32, {ns, max_blocks}),
                   ta = view(slopes.data(), KVQ_DTYPE_F32, {c.hq}),
                   tsk = view(sinks.data(), KVQ_DTYPE_F32, {c.hq});
  layer.forward(kvq::client::ForwardArgs()
                    .attention_state(KVQ_ATTN_CHUNKED_PREFILL)
                    .query(tq)
                    .kv_cache(tc)
                    .query_start_loc(tqsl)
                    .seq_lens(tl)
                    .block_table(tt)
                    .output(to)
                    .alibi_slopes(c.alibi ? &ta : nullptr)
                    .sinks(c.sinks ? &tsk : nullptr));

  Outputs r;
  for (int64_t i = 0; i < qn; ++i) r.out.push_back(kvq::ref::load(c.model, out.get(), i));
  kvq::ref::AttentionProblem prob;
  prob.num_heads = c.hq;
  prob.num_kv_heads = c.hkv;
  prob.head_size = c.d;
  prob.query_start_loc = qsl;
  prob.seq_lens = lens;
  prob.sliding_window = c.window;
  prob.softcap = c.softcap;
  if (c.alibi) prob.alibi_slopes.assign(slopes.begin(), slopes.end());
  if (c.sinks) prob.sinks.assign(sinks.begin(), sinks.end());
  r.ref = kvq::ref::attention(prob, query, keys, values);
  return r;
}

std::vector<Case> cases() {
  // Decodes (one long, one short) and a prefill chunk with context, at the
  // benchmark's GQA shape; then a shape with vector tails (head 100), a
  // group of 5 (a 4-row block plus one), window, softcap, ALiBi and sinks.
  const std::vector<std::pair<int64_t, int64_t>> main_seqs = {{1, 1300}, {1, 37}, {40, 140}};
  const std::vector<std::pair<int64_t, int64_t>> odd_seqs = {{1, 300}, {20, 90}};
  std::vector<Case> v;
  for (const char* mode : {"bfloat16", "int8_per_token_head", "fp8_per_token_head"}) {
    Case c;
    c.name = std::string(mode) + "/gqa32_8";
    c.mode = mode;
    c.seqs = main_seqs;
    v.push_back(c);
    c.name = std::string(mode) + "/odd";
    c.hq = 5;
    c.hkv = 1;
    c.d = 100;
    c.window = 64;
    c.softcap = 30.0;
    c.alibi = c.sinks = true;
    c.seqs = odd_seqs;
    v.push_back(c);
  }
  Case c;
  c.name = "fp8_per_tensor/gqa32_8";  // fp32 query: linear, scales folded
  c.mode = "fp8";
  c.seqs = main_seqs;
  c.k_scale = 0.5f;
  c.v_scale = 0.25f;
  v.push_back(c);
  c.name = "fp8_per_tensor/bf16_query";  // dequantized values rounded to bf16
  c.model = KVQ_DTYPE_BF16;
  c.k_scale = 0.37f;
  c.v_scale = 0.61f;
  v.push_back(c);
  c.name = "fp8_e5m2_per_tensor/f16_query/odd";  // rounded to fp16, with tails
  c.mode = "fp8_e5m2";
  c.model = KVQ_DTYPE_F16;
  c.hq = 8;
  c.hkv = 2;
  c.d = 72;
  c.alibi = true;
  c.seqs = odd_seqs;
  v.push_back(c);
  c = Case{};
  c.name = "fp8_per_token_head/nan_code";  // e4m3 code 0x7F decodes to NaN
  c.mode = "fp8_per_token_head";
  c.seqs = main_seqs;
  c.nan_code = true;
  v.push_back(c);
  c.name = "fp8_per_tensor/bf16_query/nan_code";
  c.mode = "fp8";
  c.model = KVQ_DTYPE_BF16;
  c.k_scale = 0.37f;
  v.push_back(c);
  c = Case{};
  c.name = "float16/f16/gqa32_8";
  c.mode = "float16";
  c.model = KVQ_DTYPE_F16;
  c.seqs = main_seqs;
  v.push_back(c);
  return v;
}

// One ulp of `dtype` at |x| (0 for F32: fp32 outputs are compared exactly
// to the tolerance).
double output_ulp(int32_t dtype, double x) {
  if (dtype == KVQ_DTYPE_F32) return 0.0;
  const int bits = dtype == KVQ_DTYPE_BF16 ? 8 : 11;
  int e;
  std::frexp(std::max(std::fabs(x), 1e-30), &e);
  return std::ldexp(1.0, e - bits);
}

// Each level against the portable one (itself checked against float64 in
// the Portable test). A level this CPU lacks is SKIPPED, with the reason.
class SimdLevel : public ::testing::TestWithParam<std::string> {};

TEST_P(SimdLevel, MatchesPortableAndTheReference) {
  const std::string& name = GetParam();
  std::vector<Loaded> levels;
  levels.push_back(load_with_level("portable"));
  ASSERT_EQ(levels[0].level, "portable") << "portable is always available";
  if (name != "portable") {
    Loaded l = load_with_level(name);
    if (l.level != name) {
      // The CPU lacks this level: the plugin ignored KVQ_SIMD.
      GTEST_SKIP() << "this CPU has no " << name << " level (the plugin chose " << l.level << ")"
                   << (name == "avx512"
                           ? "; the integer Q·K path (AVX-512 VNNI) and the bf16 conversions "
                             "(AVX-512 BF16) are not exercised here"
                           : "");
    }
    levels.push_back(std::move(l));
  }
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::vector<Outputs> runs;
    for (const Loaded& l : levels) runs.push_back(run_case(l, c));
    if (c.nan_code) {
      // Exactly the rows that read the NaN key are NaN, at every level; the
      // rest is compared below.
      int64_t nan_rows = 0;
      for (double x : runs[0].ref) nan_rows += std::isnan(x) ? 1 : 0;
      EXPECT_GT(nan_rows, 0);
      for (Outputs& r : runs) {
        int64_t mismatches = 0;
        std::vector<double> out, ref;
        for (size_t k = 0; k < r.ref.size(); ++k) {
          mismatches += std::isnan(r.ref[k]) != std::isnan(r.out[k]) ? 1 : 0;
          if (!std::isnan(r.ref[k])) {
            out.push_back(r.out[k]);
            ref.push_back(r.ref[k]);
          }
        }
        EXPECT_EQ(mismatches, 0);
        r.out = std::move(out);
        r.ref = std::move(ref);
      }
    }
    for (size_t i = levels.size() - 1; i < levels.size(); ++i) {  // this level only
      SCOPED_TRACE(levels[i].level);
      // Against float64 over the stored K/V: fp32 accumulation error, plus
      // one rounding of the output to a 16-bit model dtype.
      const double tol = c.model == KVQ_DTYPE_F32 ? 1e-5 : 1e-2;
      const kvq::ref::Comparison cmp = kvq::ref::compare(runs[i].out, runs[i].ref, tol, tol);
      EXPECT_EQ(cmp.non_finite, 0);
      EXPECT_EQ(cmp.violations, 0)
          << "worst " << cmp.worst_index << " max err " << cmp.max_abs_error;
      // Against portable: relative 1e-5 (of the element, or of the output's
      // RMS for elements near zero), plus one output ulp for 16-bit outputs
      // where a last-bit fp32 difference can flip the output rounding.
      double rms = 0.0;
      for (double x : runs[0].out) rms += x * x;
      rms = std::sqrt(rms / static_cast<double>(runs[0].out.size()));
      int64_t bad = 0;
      double worst = 0.0;
      for (size_t k = 0; k < runs[i].out.size(); ++k) {
        const double a = runs[i].out[k], b = runs[0].out[k];
        const double diff = std::fabs(a - b);
        worst = std::max(worst, diff);
        if (!(diff <= 1e-5 * std::max(std::fabs(b), rms) + output_ulp(c.model, b))) ++bad;
      }
      EXPECT_EQ(bad, 0) << "max |diff| vs portable " << worst;
      std::printf("[ info     ] %-36s %-8s max|err| vs float64 %.2e, vs portable %.2e\n",
                  c.name.c_str(), levels[i].level.c_str(), cmp.max_abs_error, worst);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, SimdLevel, ::testing::Values("portable", "avx2", "avx512"),
                         [](const auto& info) { return info.param; });

}  // namespace
