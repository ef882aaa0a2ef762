// Numeric layer: every unquantized mode a backend claims, on a mixed batch
// (decodes, a fresh prefill, a chunk with context) over scattered blocks,
// against kvq::ref::attention in float64.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"
#include "kvq_ref/reference.hpp"
#include "verdict.hpp"

namespace kvq::conform {
namespace {

constexpr uint64_t kSeed = 0x6B7671'0002ull;
constexpr int64_t kHeadSize = 64;
constexpr int64_t kBlockSize = 32;

// Decodes first, as KVQ_ATTN_CHUNKED_PREFILL batches are ordered: a long
// decode, a decode of a one-token sequence, a fresh prefill, and a chunk of
// 17 tokens after 23 of context.
const std::vector<SeqShape> kSeqs = {{1, 70}, {1, 1}, {5, 5}, {17, 40}};

struct Variant {
  const char* name;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t sliding_window;
  double softcap;
  bool alibi_sinks;
  bool optional;  // a feature a plugin may answer UNSUPPORTED for
};

const Variant kVariants[] = {
    {"gqa_8x2", 8, 2, 0, 0.0, false, false},
    {"mha_4x4", 4, 4, 0, 0.0, false, false},
    {"sliding_window_softcap", 8, 2, 16, 30.0, false, true},
    {"alibi_sinks", 8, 2, 0, 0.0, true, true},
};

Tolerance tolerance_for(int32_t dtype) {
  switch (dtype) {
    case KVQ_DTYPE_F32: return {1e-5, 1e-5, 1e-5};
    case KVQ_DTYPE_F16: return {2e-3, 1e-2, 1e-5};
    default: return {1.5e-2, 1e-2, 1e-5};
  }
}

Outcome run_variant(const Plugin& plugin, const char* backend, const char* mode, int32_t dtype,
                    const Variant& v, bool metadata_on_host) {
  const Session session = open_session(plugin);
  client::LayerConfig config =
      layer_config(backend, mode, dtype, v.num_heads, v.num_kv_heads, kHeadSize, kBlockSize);
  config.sliding_window = v.sliding_window;
  config.softcap = v.softcap;
  client::Layer layer = create_layer(session, config, v.optional);
  const kvq_cache_geometry geometry = layer.cache_geometry();
  if (std::string p = check_geometry(geometry, v.num_kv_heads, kHeadSize, kBlockSize); !p.empty())
    return fail(p);
  if (geometry.element_dtype != dtype)
    return fail("mode " + std::string(mode) + " stores element dtype " +
                std::to_string(geometry.element_dtype) + ", expected " + std::to_string(dtype));

  RandomBatch r = make_random_batch({dtype, v.num_heads, v.num_kv_heads, kHeadSize, kBlockSize},
                                    kSeqs, kSeed + static_cast<uint64_t>(v.num_heads), 3);
  kvq::ref::AttentionProblem problem;
  problem.num_heads = v.num_heads;
  problem.num_kv_heads = v.num_kv_heads;
  problem.head_size = kHeadSize;
  problem.query_start_loc = r.query_start_loc;
  problem.seq_lens = r.seq_lens;
  problem.sliding_window = v.sliding_window;
  problem.softcap = v.softcap;
  if (v.alibi_sinks) {
    Rng rng(kSeed + 7);
    for (int64_t h = 0; h < v.num_heads; ++h) {
      // ALiBi's geometric slopes; sinks around the typical logit size.
      problem.alibi_slopes.push_back(
          std::exp2(-8.0 * static_cast<double>(h + 1) / static_cast<double>(v.num_heads)));
      problem.sinks.push_back(static_cast<float>(rng.uniform(-1.0, 2.0)));
    }
    r.batch.alibi_slopes =
        HostTensor::from_doubles(KVQ_DTYPE_F32, {v.num_heads}, problem.alibi_slopes);
    r.batch.sinks = HostTensor::from_doubles(KVQ_DTYPE_F32, {v.num_heads}, problem.sinks);
    for (double& s : problem.alibi_slopes) s = static_cast<float>(s);  // as the plugin sees them
  }

  r.bind(session, metadata_on_host);
  HostTensor cache = allocate_cache(session, layer, geometry, r.num_blocks);
  require_ok(write_cache(session, layer, r.context_key, r.context_value, r.context_slots, cache),
             "cache_write (context and padding rows)");
  require_ok(write_cache(session, layer, r.batch.key, r.batch.value, r.new_slots, cache),
             "cache_write (new tokens)");
  const client::ForwardArgs args =
      forward_checked(session, layer, r.batch, cache, KVQ_ATTN_CHUNKED_PREFILL, v.optional);
  const kvq_forward_args raw = args.c_struct();

  const std::vector<double> expected = kvq::ref::attention(problem, r.query, r.keys, r.values);
  const Verdict verdict = judge_output(r.batch.output.to_doubles(), expected,
                                       r.batch.output.shape(), tolerance_for(dtype));

  // Informational timing: best of a few repeats, never gating.
  double best_us = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    Error again(&session.api(), session.api().forward(layer.get(), &raw));
    const auto t1 = std::chrono::steady_clock::now();
    if (again) break;
    best_us = std::min(best_us, std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  const std::string timing =
      std::isfinite(best_us) ? ", " + short_number(best_us) + " us/forward" : "";
  return verdict.ok ? pass(verdict.detail + timing) : fail(verdict.detail);
}

}  // namespace

void run_numeric_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info) {
  // A device plugin gets the batch metadata in its memory; one variant per
  // mode also passes query_start_loc and seq_lens in host memory (both are
  // allowed, kvq_abi.h "DEVICE MEMORY").
  const bool on_device = info.abi_minor >= 1 && info.device_type != KVQ_DEVICE_CPU;
  for (int64_t b = 0; b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    if (!backend || !backend->name) continue;
    for (const char* mode_name : {"bfloat16", "float16", "float32"}) {
      const kvq_kv_mode_info* mode = find_mode(*backend, mode_name);
      if (!mode || !mode->supported) continue;
      const int32_t dtype = unquantized_mode_dtype(mode_name);
      const std::string prefix = std::string("numeric.") + backend->name + "." + mode_name + ".";
      for (const Variant& v : kVariants) {
        log.run(prefix + v.name,
                [&] { return run_variant(plugin, backend->name, mode_name, dtype, v, false); });
      }
      if (on_device)
        log.run(prefix + kVariants[0].name + "_host_metadata", [&] {
          return run_variant(plugin, backend->name, mode_name, dtype, kVariants[0], true);
        });
    }
  }
}

}  // namespace kvq::conform
