// The ABI's threading rule: calls on one layer are serialised by the host,
// but different layers of one instance may be driven concurrently. Each
// thread here owns one layer (its own mode, cache and batches) and runs
// prefill + decode steps (cache_write, then forward) while the others do the
// same; every output and the final cache bytes must equal a single-threaded
// run of the same steps. Under ThreadSanitizer (.ci/sanitizers.sh) any data
// race between layers, or on instance state, is reported.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace kvq::test {
namespace {

#if defined(__SANITIZE_THREAD__)
#define KVQ_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KVQ_UNDER_TSAN 1
#endif
#endif

// One worker thread per plugin call normally (the host's usual setting with
// parallel layers: OpenMP teams nest inside each layer's call). Under TSan a
// single thread per call: libgomp is not instrumented, so its own barriers
// would be reported as races; the threads under test are ours.
#ifdef KVQ_UNDER_TSAN
constexpr int kPluginThreads = 1;
constexpr int kDecodeSteps = 6;
#else
constexpr int kPluginThreads = 2;
constexpr int kDecodeSteps = 24;
#endif

constexpr int64_t kBlockSize = 16;
const std::vector<int64_t> kPrompts = {21, 13, 5};

// What one layer produced: every forward output, and the cache at the end.
struct Trace {
  std::vector<std::vector<unsigned char>> outputs;
  std::vector<unsigned char> cache;
};

OwnedTensor int_tensor(int32_t dtype, const std::vector<int64_t>& values) {
  OwnedTensor t(dtype, {static_cast<int64_t>(values.size())});
  for (size_t i = 0; i < values.size(); ++i)
    t.set(static_cast<int64_t>(i), static_cast<double>(values[i]));
  return t;
}

// Prefill of every prompt, then kDecodeSteps decode steps of one token per
// sequence; K/V/Q drawn from `seed`, so two runs with one seed are equal.
Trace run_layer(Plugin& plugin, const LayerSpec& spec, uint64_t seed) {
  LayerPtr layer = make_layer(plugin, spec);
  std::mt19937_64 rng(seed);
  std::vector<Seq> final_lengths;
  for (int64_t p : kPrompts) final_lengths.push_back({1, p + kDecodeSteps});
  const PagedBatch pb = paged_batch(final_lengths, kBlockSize, 2, rng);
  Cache cache(plugin, layer.get(), pb.num_blocks);
  const int64_t hq = spec.num_heads, hkv = spec.num_kv_heads, d = spec.head_size;
  const auto num_seqs = static_cast<int64_t>(kPrompts.size());

  Trace trace;
  for (int step = 0; step <= kDecodeSteps; ++step) {
    // Rows this step: the whole prompt at step 0, one token afterwards.
    std::vector<int64_t> qsl = {0}, lens, slots;
    for (int64_t s = 0; s < num_seqs; ++s) {
      const int64_t prompt = kPrompts[static_cast<size_t>(s)];
      const int64_t first = step == 0 ? 0 : prompt + step - 1;
      const int64_t len = step == 0 ? prompt : prompt + step;
      for (int64_t j = first; j < len; ++j)
        slots.push_back(pb.slots[static_cast<size_t>(s)][static_cast<size_t>(j)]);
      qsl.push_back(qsl.back() + (len - first));
      lens.push_back(len);
    }
    const int64_t t = qsl.back();
    const auto [key, value] = random_kv(spec.model_dtype, {t, hkv, d}, 1.0, rng());
    const OwnedTensor query = random_tensor(spec.model_dtype, {t, hq, d}, 1.0, rng());
    check(write_kv(plugin, layer.get(), key, value, slots, cache), "cache_write");

    const OwnedTensor qsl_t = int_tensor(KVQ_DTYPE_I32, qsl);
    const OwnedTensor lens_t = int_tensor(KVQ_DTYPE_I32, lens);
    OwnedTensor out = filled_tensor(spec.model_dtype, {t, hq, d}, 0.0);
    check(forward(plugin, layer.get(),
                  forward_args(step == 0 ? KVQ_ATTN_PREFILL_NO_CACHE : KVQ_ATTN_DECODE_ONLY,
                               query.get(), cache.tensor(), qsl_t.get(), lens_t.get(),
                               pb.table.get(), out.get())),
          "forward");
    trace.outputs.emplace_back(out.data(), out.data() + out.bytes());
  }
  trace.cache = cache.snapshot();
  return trace;
}

LayerSpec spec_for(const std::string& mode, int index) {
  LayerSpec s;
  s.backend = "triton";
  s.layer_name = "model.layers." + std::to_string(index) + ".self_attn.attn";
  s.mode = mode;
  s.num_heads = 8;
  s.num_kv_heads = 2;
  s.head_size = 64;
  s.block_size = kBlockSize;
  return s;
}

// Layers in every cache family the triton backend has: float, fp8 per
// tensor, int8/fp8/int4 per token-head, and one that computes its scales on
// the first write (state mutated inside a call).
std::vector<LayerSpec> layer_specs() {
  const std::vector<std::string> modes = {"bfloat16",           "int8_per_token_head", "fp8",
                                          "fp8_per_token_head", "int4_per_token_head", "fp8_e5m2"};
  std::vector<LayerSpec> specs;
  for (size_t i = 0; i < modes.size(); ++i)
    specs.push_back(spec_for(modes[i], static_cast<int>(i)));
  LayerSpec calc = spec_for("fp8", static_cast<int>(modes.size()));
  calc.options = {{"calculate_kv_scales", "true"}};
  specs.push_back(calc);
  return specs;
}

TEST(ConcurrentLayersTest, LayersOfOneInstanceOnTheirOwnThreadsMatchASerialRun) {
  Plugin plugin(triton_plugin_path(), kPluginThreads);
  const std::vector<LayerSpec> specs = layer_specs();

  std::vector<Trace> serial;
  for (size_t i = 0; i < specs.size(); ++i) serial.push_back(run_layer(plugin, specs[i], 100 + i));

  // All threads start together, so their calls really overlap.
  std::vector<Trace> parallel(specs.size());
  std::vector<std::string> errors(specs.size());
  std::atomic<size_t> ready{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < specs.size(); ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < specs.size()) std::this_thread::yield();
      try {
        parallel[i] = run_layer(plugin, specs[i], 100 + i);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();

  for (size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].mode + " (layer " + std::to_string(i) + ")");
    ASSERT_EQ(errors[i], "");
    ASSERT_EQ(parallel[i].outputs.size(), serial[i].outputs.size());
    for (size_t step = 0; step < serial[i].outputs.size(); ++step)
      EXPECT_EQ(parallel[i].outputs[step], serial[i].outputs[step]) << "step " << step;
    EXPECT_EQ(parallel[i].cache, serial[i].cache);
    // The outputs are real attention results, not an untouched buffer.
    bool any_nonzero = false;
    for (unsigned char b : serial[i].outputs.back()) any_nonzero |= b != 0;
    EXPECT_TRUE(any_nonzero);
  }
}

// Instance-level queries are thread-safe and may run while layers are
// created, used and destroyed on other threads.
TEST(ConcurrentLayersTest, QueriesAndLayerLifetimesOverlapSafely) {
  Plugin plugin(triton_plugin_path(), kPluginThreads);
  constexpr int kThreads = 4;
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        for (int round = 0; round < 20; ++round) {
          kvq_plugin_info info{};
          info.struct_size = KVQ_PLUGIN_INFO_SIZE;
          check(plugin.take(plugin.api().get_info(plugin.instance(), &info)), "get_info");
          if (info.num_backends < 1) throw std::runtime_error("no backends");
          LayerPtr layer = make_layer(
              plugin, spec_for(round % 2 ? "int8_per_token_head" : "auto", i * 100 + round));
          const kvq_layer_info li = layer_info(plugin, layer.get());
          if (li.impl_name == nullptr || li.impl_name[0] == '\0')
            throw std::runtime_error("layer_info has no implementation name");
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i)
    EXPECT_EQ(errors[static_cast<size_t>(i)], "") << "thread " << i;
}

}  // namespace
}  // namespace kvq::test
