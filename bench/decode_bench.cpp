// Decode attention through the client library (the C ABI), next to the machine's own read
// bandwidth measured in the same run (speed is reported, never asserted).
//
// Run: build/bin/kvq_bench_decode [--benchmark_filter=...]
//   KVQ_BENCH_PLUGIN=/path/libkvq_triton_sim.so  benchmark another build of the plugin
//   KVQ_SIMD=avx512|avx2|portable                force the plugin's kernel level
//
// BM_ReadBandwidth/threads:N streams a 1 GiB buffer (touched before timing,
// so no page faults are timed) with N threads; BM_Decode then reports the KV
// bytes it read per second (kv_GBps) and that as a fraction of the read
// bandwidth at the same thread count (bw_frac), when that ran first.
#include <kvq_abi.h>
#include <kvq_client/buffer.hpp>
#include <kvq_client/plugin.hpp>
#include <kvq_client/tensor.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace {

struct Aligned {
  explicit Aligned(size_t n)
      : p(static_cast<unsigned char*>(std::aligned_alloc(64, (n + 63) / 64 * 64)), std::free) {
    std::memset(p.get(), 1, n);  // fault every page in now, not while timing
  }
  std::unique_ptr<unsigned char, void (*)(void*)> p;
};

std::string plugin_path() {
  const char* env = std::getenv("KVQ_BENCH_PLUGIN");
  return env != nullptr ? env : KVQ_TRITON_PLUGIN;
}

// Read bandwidth (bytes/s) per thread count, as BM_ReadBandwidth measured it.
std::map<int, double>& read_bandwidth() {
  static std::map<int, double> bw;
  return bw;
}

// Streams a 1 GiB buffer with range(0) threads, five passes, and records
// the mean bandwidth for BM_Decode's bw_frac.
void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const size_t n = size_t{1} << 30, words = n / 8;
  Aligned buf(n);
  const auto* p = reinterpret_cast<const uint64_t*>(buf.p.get());
  double total_time = 0.0;
  for (auto _ : state) {
    const double t0 = omp_get_wtime();
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (size_t c = 0; c < words; c += 8) {
      uint64_t s = 0;  // one 64-byte line, vectorised by the compiler
      for (size_t i = 0; i < 8; ++i) s += p[c + i];
      total += s;
    }
    benchmark::DoNotOptimize(total);
    const double t = omp_get_wtime() - t0;
    state.SetIterationTime(t);
    total_time += t;
  }
  const double bytes = static_cast<double>(state.iterations()) * static_cast<double>(n);
  read_bandwidth()[threads] = bytes / total_time;
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

// Decode: range(0) sequences of one query token at context range(1), 32
// query heads over 8 KV heads, head 128, bf16 queries, range(2) threads.
// Bulk tensors are client Buffers, so a device plugin (KVQ_BENCH_PLUGIN)
// is measured with its own memory.
void BM_Decode(benchmark::State& state, const char* mode) {
  namespace client = kvq::client;
  const int threads = static_cast<int>(state.range(2));
  client::PluginOptions options;
  options.num_threads = threads;
  const client::Plugin plugin = client::Plugin::load(plugin_path(), options);
  state.SetLabel(std::string(mode) + " simd=" + plugin.info().simd_level);
  client::LayerConfig c;
  c.backend = "triton";
  c.layer_name = "model.layers.0.self_attn.attn";
  c.kv_cache_dtype = mode;
  c.model_dtype = KVQ_DTYPE_BF16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_size = 128;
  c.block_size = 16;
  std::optional<client::Layer> layer;
  try {
    layer.emplace(plugin.create_layer(c));
  } catch (const client::Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  layer->process_weights();  // fp8 per-tensor: default scales
  const kvq_cache_geometry g = layer->cache_geometry();
  const int64_t seqs = state.range(0), ctx = state.range(1), per_seq = ctx / 16;
  const int64_t blocks = seqs * per_seq;
  client::Buffer cache(plugin, static_cast<uint64_t>(blocks * g.bytes_per_block));
  cache.fill(1);  // fault every page in now, not while timing
  client::Buffer q(plugin, static_cast<uint64_t>(seqs * 32 * 128 * 2)),
      out(plugin, static_cast<uint64_t>(seqs * 32 * 128 * 2));
  // Queries of 1.0 (bf16 0x3F80): a finite, nonzero input for every head.
  const std::vector<uint16_t> ones(static_cast<size_t>(seqs * 32 * 128), 0x3F80);
  q.upload(std::as_bytes(std::span(ones)));
  std::vector<int32_t> table(static_cast<size_t>(blocks)), qsl(static_cast<size_t>(seqs + 1)),
      lens(static_cast<size_t>(seqs), static_cast<int32_t>(ctx));
  std::iota(table.begin(), table.end(), 0);
  std::iota(qsl.begin(), qsl.end(), 0);
  client::Buffer table_buffer(plugin, table.size() * sizeof(int32_t));
  table_buffer.upload(std::as_bytes(std::span(table)));
  const kvq_tensor tc = cache.tensor(KVQ_DTYPE_U8, {blocks, g.bytes_per_block});
  layer->cache_init(tc);
  client::ForwardArgs f;
  f.attention_state(KVQ_ATTN_DECODE_ONLY)
      .query(q.tensor(KVQ_DTYPE_BF16, {seqs, 32, 128}))
      .kv_cache(tc)
      .query_start_loc(client::host_vector(qsl))
      .seq_lens(client::host_vector(lens))
      .block_table(table_buffer.tensor(KVQ_DTYPE_I32, {seqs, per_seq}))
      .output(out.tensor(KVQ_DTYPE_BF16, {seqs, 32, 128}));
  double elapsed = 0.0;  // wall seconds inside forward, for the plain counters below
  for (auto _ : state) {
    const double t0 = omp_get_wtime();
    try {
      layer->forward(f);
    } catch (const client::Error& e) {
      state.SkipWithError(e.what());
      break;
    }
    elapsed += omp_get_wtime() - t0;
  }
  const double bytes = static_cast<double>(blocks * g.bytes_per_block);
  const double rate = elapsed > 0 ? bytes * static_cast<double>(state.iterations()) / elapsed : 0;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * blocks * g.bytes_per_block);
  state.counters["kv_MB"] = bytes / 1e6;
  state.counters["kv_GBps"] = rate / 1e9;
  const auto bw = read_bandwidth().find(threads);
  if (bw != read_bandwidth().end()) state.counters["bw_frac"] = rate / bw->second;
}

// Sequences, context, threads.
void decode_args(benchmark::internal::Benchmark* b) {
  for (int64_t seqs : {1, 16})
    for (int64_t ctx : {4096, 16384})
      for (int64_t threads : {1, 2}) b->Args({seqs, ctx, threads});
  b->ArgNames({"seqs", "ctx", "threads"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_ReadBandwidth)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Decode, bf16, "bfloat16")->Apply(decode_args);
BENCHMARK_CAPTURE(BM_Decode, int8_pth, "int8_per_token_head")->Apply(decode_args);
BENCHMARK_CAPTURE(BM_Decode, fp8_pth, "fp8_per_token_head")->Apply(decode_args);
BENCHMARK_CAPTURE(BM_Decode, fp8_per_tensor, "fp8")->Apply(decode_args);

BENCHMARK_MAIN();
