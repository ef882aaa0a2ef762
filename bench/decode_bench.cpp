// Decode attention through the C ABI, next to the machine's own read
// bandwidth measured in the same run (speed is reported, never asserted).
// Run: build/bin/kvq_bench_decode [--benchmark_filter=...]
#include <kvq_abi.h>

#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Aligned {
  explicit Aligned(size_t n) : p(static_cast<unsigned char*>(std::aligned_alloc(64, (n + 63) / 64 * 64)), std::free) {
    std::memset(p.get(), 0, n);
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

const kvq_plugin_api* load(const char* path) {
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);  // never closed
  if (h == nullptr) throw std::runtime_error(dlerror());
  return reinterpret_cast<kvq_plugin_entry_fn>(dlsym(h, KVQ_PLUGIN_ENTRY_SYMBOL))();
}

// Pure read of a 1 GiB buffer: the bandwidth baseline for the kernels below.
void BM_ReadBandwidth(benchmark::State& state) {
  const size_t n = size_t{1} << 30;
  Aligned buf(n);
  const auto* p = reinterpret_cast<const uint64_t*>(buf.p.get());
  for (auto _ : state) {
    uint64_t sum = 0;
    for (size_t i = 0; i < n / 8; i += 8) sum += p[i] ^ p[i + 1] ^ p[i + 2] ^ p[i + 3] ^ p[i + 4] ^ p[i + 5] ^ p[i + 6] ^ p[i + 7];
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

// One decode token, 32 query heads over 8 KV heads, head 128, context range(0).
void BM_Decode(benchmark::State& state, const char* mode) {
  const kvq_plugin_api* api = load(KVQ_TRITON_PLUGIN);
  kvq_host_info host{KVQ_HOST_INFO_SIZE, KVQ_ABI_MAJOR, KVQ_ABI_MINOR, nullptr, nullptr, 0,
                     static_cast<int32_t>(state.range(1))};
  kvq_instance* inst = nullptr;
  if (kvq_error* e = api->negotiate(&host, &inst)) throw std::runtime_error(api->error_message(e));
  kvq_layer_config c{};
  c.struct_size = KVQ_LAYER_CONFIG_SIZE;
  c.backend = "triton";
  c.kv_cache_dtype = mode;
  c.model_dtype = KVQ_DTYPE_BF16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_size = 128;
  c.block_size = 16;
  kvq_layer* layer = nullptr;
  if (kvq_error* e = api->layer_create(inst, &c, &layer)) {
    state.SkipWithError(api->error_message(e));
    api->error_destroy(e);
    api->instance_destroy(inst);
    return;
  }
  kvq_cache_geometry g{};
  g.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  api->cache_geometry(layer, &g);
  const int64_t ctx = state.range(0), blocks = ctx / 16;
  Aligned cache(static_cast<size_t>(blocks * g.bytes_per_block)), q(32 * 128 * 2), out(32 * 128 * 2);
  std::vector<int32_t> table(static_cast<size_t>(blocks)), qsl = {0, 1}, lens = {static_cast<int32_t>(ctx)};
  std::iota(table.begin(), table.end(), 0);
  kvq_tensor tc = tensor(cache.p.get(), KVQ_DTYPE_U8, {blocks, g.bytes_per_block});
  api->cache_init(layer, &tc);
  kvq_tensor tq = tensor(q.p.get(), KVQ_DTYPE_BF16, {1, 32, 128}), to = tensor(out.p.get(), KVQ_DTYPE_BF16, {1, 32, 128});
  kvq_tensor tqsl = tensor(qsl.data(), KVQ_DTYPE_I32, {2}), tl = tensor(lens.data(), KVQ_DTYPE_I32, {1}),
             tt = tensor(table.data(), KVQ_DTYPE_I32, {1, blocks});
  kvq_forward_args a{};
  a.struct_size = KVQ_FORWARD_ARGS_SIZE;
  a.attention_state = KVQ_ATTN_DECODE_ONLY;
  a.query = &tq;
  a.kv_cache = &tc;
  a.query_start_loc = &tqsl;
  a.seq_lens = &tl;
  a.block_table = &tt;
  a.output = &to;
  for (auto _ : state) {
    kvq_error* e = api->forward(layer, &a);
    if (e != nullptr) {
      state.SkipWithError(api->error_message(e));
      api->error_destroy(e);
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * blocks * g.bytes_per_block);
  state.counters["kv_MB"] = static_cast<double>(blocks * g.bytes_per_block) / 1e6;
  api->layer_destroy(layer);
  api->instance_destroy(inst);
}
BENCHMARK_CAPTURE(BM_Decode, bf16, "bfloat16")
    ->Args({4096, 1})->Args({16384, 1})->Args({16384, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
