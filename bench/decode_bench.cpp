// Decode attention through the C ABI, next to the machine's own read
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

#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <stdexcept>
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

kvq_tensor tensor(void* data, int32_t dtype, std::vector<int64_t> shape) {
  kvq_tensor t{};
  t.struct_size = KVQ_TENSOR_SIZE;
  t.data = data;
  t.device_type = KVQ_DEVICE_CPU;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[static_cast<size_t>(i)];
    t.strides[i] = stride;
    stride *= shape[static_cast<size_t>(i)];
  }
  return t;
}

const kvq_plugin_api* load_plugin() {
  const char* env = std::getenv("KVQ_BENCH_PLUGIN");
  void* h =
      dlopen(env != nullptr ? env : KVQ_TRITON_PLUGIN, RTLD_NOW | RTLD_LOCAL);  // never closed
  if (h == nullptr) throw std::runtime_error(dlerror());
  return reinterpret_cast<kvq_plugin_entry_fn>(dlsym(h, KVQ_PLUGIN_ENTRY_SYMBOL))();
}

const kvq_plugin_api* api() {
  static const kvq_plugin_api* const a = load_plugin();
  return a;
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
void BM_Decode(benchmark::State& state, const char* mode) {
  const kvq_plugin_api* a = api();
  const int threads = static_cast<int>(state.range(2));
  kvq_host_info host{
      KVQ_HOST_INFO_SIZE, KVQ_ABI_MAJOR, KVQ_ABI_MINOR, nullptr, nullptr, 0, threads, 0, 0};
  kvq_instance* inst = nullptr;
  if (kvq_error* e = a->negotiate(&host, &inst)) throw std::runtime_error(a->error_message(e));
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  if (kvq_error* e = a->get_info(inst, &info)) throw std::runtime_error(a->error_message(e));
  state.SetLabel(std::string(mode) + " simd=" + (info.simd_level ? info.simd_level : "?"));
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = "triton";
  c.layer_name = "model.layers.0.self_attn.attn";
  c.kv_cache_dtype = mode;
  c.model_dtype = KVQ_DTYPE_BF16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_size = 128;
  c.block_size = 16;
  kvq_layer* layer = nullptr;
  if (kvq_error* e = a->layer_create(inst, &c, &layer)) {
    state.SkipWithError(a->error_message(e));
    a->error_destroy(e);
    a->instance_destroy(inst);
    return;
  }
  a->process_weights(layer);  // fp8 per-tensor: default scales
  kvq_cache_geometry g{};
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  a->cache_geometry(layer, &g);
  const int64_t seqs = state.range(0), ctx = state.range(1), per_seq = ctx / 16;
  const int64_t blocks = seqs * per_seq;
  Aligned cache(static_cast<size_t>(blocks * g.bytes_per_block));
  Aligned q(static_cast<size_t>(seqs * 32 * 128 * 2)),
      out(static_cast<size_t>(seqs * 32 * 128 * 2));
  // Queries of 1.0 (bf16 0x3F80): a finite, nonzero input for every head.
  for (int64_t i = 0; i < seqs * 32 * 128; ++i) {
    const uint16_t one = 0x3F80;
    std::memcpy(q.p.get() + 2 * i, &one, 2);
  }
  std::vector<int32_t> table(static_cast<size_t>(blocks)), qsl(static_cast<size_t>(seqs + 1)),
      lens(static_cast<size_t>(seqs), static_cast<int32_t>(ctx));
  std::iota(table.begin(), table.end(), 0);
  std::iota(qsl.begin(), qsl.end(), 0);
  kvq_tensor tc = tensor(cache.p.get(), KVQ_DTYPE_U8, {blocks, g.bytes_per_block});
  a->cache_init(layer, &tc);
  kvq_tensor tq = tensor(q.p.get(), KVQ_DTYPE_BF16, {seqs, 32, 128}),
             to = tensor(out.p.get(), KVQ_DTYPE_BF16, {seqs, 32, 128});
  kvq_tensor tqsl = tensor(qsl.data(), KVQ_DTYPE_I32, {seqs + 1}),
             tl = tensor(lens.data(), KVQ_DTYPE_I32, {seqs}),
             tt = tensor(table.data(), KVQ_DTYPE_I32, {seqs, per_seq});
  kvq_forward_args f{};
  f.struct_size = KVQ_FORWARD_ARGS_SIZE;
  f.attention_state = KVQ_ATTN_DECODE_ONLY;
  f.query = &tq;
  f.kv_cache = &tc;
  f.query_start_loc = &tqsl;
  f.seq_lens = &tl;
  f.block_table = &tt;
  f.output = &to;
  double elapsed = 0.0;  // wall seconds inside forward, for the plain counters below
  for (auto _ : state) {
    const double t0 = omp_get_wtime();
    kvq_error* e = a->forward(layer, &f);
    elapsed += omp_get_wtime() - t0;
    if (e != nullptr) {
      state.SkipWithError(a->error_message(e));
      a->error_destroy(e);
      break;
    }
  }
  const double bytes = static_cast<double>(blocks * g.bytes_per_block);
  const double rate = elapsed > 0 ? bytes * static_cast<double>(state.iterations()) / elapsed : 0;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * blocks * g.bytes_per_block);
  state.counters["kv_MB"] = bytes / 1e6;
  state.counters["kv_GBps"] = rate / 1e9;
  const auto bw = read_bandwidth().find(threads);
  if (bw != read_bandwidth().end()) state.counters["bw_frac"] = rate / bw->second;
  a->layer_destroy(layer);
  a->instance_destroy(inst);
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
