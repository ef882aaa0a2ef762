// libkvq_cuda.so through the C ABI 1.1 on a GPU, against libkvq_triton_sim.so
// on the CPU (spec/cuda.md): the same bytes written for the same input in
// every mode, attention within fp32 rounding (plus one output rounding) of the
// CPU plugin's, caches moved between host and device read by either plugin,
// refused writes writing nothing (with and without a stream), bad block-table
// entries reported, calculate_kv_scales, device info and ordinals. Without a
// usable GPU every test is SKIPPED with the plugin's own probe reason.
//
// Plugin paths: KVQ_CUDA_PLUGIN / KVQ_TRITON_PLUGIN in the environment, else
// the build's (the GPU machine runs binaries built elsewhere).
#include "harness.hpp"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kvq::test {
namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}
std::string cuda_path() {
  return env_or("KVQ_CUDA_PLUGIN", KVQ_CUDA_PLUGIN);
}
std::string cpu_path() {
  return env_or("KVQ_TRITON_PLUGIN", KVQ_TRITON_PLUGIN);
}

// The plugin's probe reason when it cannot run here ("" when it can).
std::string unavailable() {
  void* h = dlopen(cuda_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return std::string("cannot load the CUDA plugin: ") + dlerror();
  const auto entry = reinterpret_cast<kvq_plugin_entry_fn>(dlsym(h, KVQ_PLUGIN_ENTRY_SYMBOL));
  const kvq_plugin_api* api = entry();
  kvq_probe_result r{};
  r.struct_size = KVQ_PROBE_RESULT_SIZE;
  if (kvq_error* e = api->probe(&r)) {
    api->error_destroy(e);
    return "probe failed";
  }
  return r.can_run ? "" : r.reason;
}

#define REQUIRE_GPU()                                                \
  do {                                                               \
    static const std::string why = unavailable();                    \
    if (!why.empty()) GTEST_SKIP() << "no usable GPU here: " << why; \
  } while (0)

// Device memory of the CUDA plugin's instance, with copies through its hooks.
class DeviceBuffer {
 public:
  DeviceBuffer(Plugin& p, int64_t bytes) : p_(&p), bytes_(bytes) {
    check(p.take(p.api().device_alloc(p.instance(), static_cast<uint64_t>(bytes), &ptr_)),
          "device_alloc");
  }
  ~DeviceBuffer() { p_->api().device_free(p_->instance(), ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  void upload(const void* src, int64_t bytes) {
    copy(ptr_, KVQ_DEVICE_CUDA, src, KVQ_DEVICE_CPU, bytes);
  }
  void download(void* dst, int64_t bytes) const {
    copy(dst, KVQ_DEVICE_CPU, ptr_, KVQ_DEVICE_CUDA, bytes);
  }
  std::vector<unsigned char> bytes() const {
    std::vector<unsigned char> out(static_cast<size_t>(bytes_));
    download(out.data(), bytes_);
    return out;
  }

 private:
  void copy(void* dst, int32_t dst_type, const void* src, int32_t src_type, int64_t bytes) const {
    kvq_memcpy_args a{};
    a.struct_size = KVQ_MEMCPY_ARGS_SIZE;
    a.dst = dst;
    a.dst_device_type = dst_type;
    a.src = src;
    a.src_device_type = src_type;
    a.bytes = static_cast<uint64_t>(bytes);
    check(p_->take(p_->api().device_memcpy(p_->instance(), &a)), "device_memcpy");
  }
  Plugin* p_;
  int64_t bytes_;
  void* ptr_ = nullptr;
};

// A host tensor's copy on the device, viewed as a CUDA tensor of the same shape.
struct DeviceTensor {
  DeviceTensor(Plugin& p, const kvq_tensor& host)
      : buffer(p, std::max<int64_t>(1, bytes_of(host))), view(host) {
    buffer.upload(host.data, bytes_of(host));
    view.data = buffer.get();
    view.device_type = KVQ_DEVICE_CUDA;
    view.device_id = 0;
  }
  static int64_t bytes_of(const kvq_tensor& t) {
    int64_t n = kvq::ref::dtype_size(t.dtype);
    for (int i = 0; i < t.ndim; ++i) n *= t.shape[i];
    return n;
  }
  DeviceBuffer buffer;
  kvq_tensor view;
};

// A device KV cache initialised by the plugin, with a host mirror on demand.
struct DeviceCache {
  DeviceCache(Plugin& p, kvq_layer* layer, int64_t num_blocks)
      : g(geometry(p, layer)), buffer(p, num_blocks * g.bytes_per_block) {
    view = tensor_view(nullptr, KVQ_DTYPE_U8, {num_blocks, g.bytes_per_block});
    view.data = buffer.get();
    view.device_type = KVQ_DEVICE_CUDA;
    check(p.take(p.api().cache_init(layer, &view)), "cache_init (GPU)");
  }
  kvq_cache_geometry g;
  DeviceBuffer buffer;
  kvq_tensor view{};
};

CallResult write_on_gpu(Plugin& p, kvq_layer* layer, const OwnedTensor& k, const OwnedTensor& v,
                        const std::vector<int64_t>& slots, DeviceCache& cache,
                        kvq_stream* stream = nullptr) {
  OwnedTensor s(KVQ_DTYPE_I64, {static_cast<int64_t>(slots.size())});
  for (size_t i = 0; i < slots.size(); ++i)
    s.set(static_cast<int64_t>(i), static_cast<double>(slots[i]));
  DeviceTensor dk(p, *k.get()), dv(p, *v.get()), ds(p, *s.get());
  kvq_cache_write_args a{};
  a.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE;
  a.key = &dk.view;
  a.value = &dv.view;
  a.slot_mapping = &ds.view;
  a.kv_cache = &cache.view;
  a.stream = stream;
  CallResult r = p.take(p.api().cache_write(layer, &a));
  // The buffers die with this scope: a stream-ordered write must be done first.
  if (stream != nullptr && r.code == 0) {
    kvq_error* e = p.api().synchronize(p.instance(), stream);
    r = p.take(e);
  }
  return r;
}

struct Mode {
  const char* name;
  int32_t model;
};
const Mode kModes[] = {
    {"bfloat16", KVQ_DTYPE_BF16},
    {"float16", KVQ_DTYPE_F16},
    {"float32", KVQ_DTYPE_F32},
    {"fp8", KVQ_DTYPE_BF16},
    {"fp8_e5m2", KVQ_DTYPE_BF16},
    {"int8_per_token_head", KVQ_DTYPE_BF16},
    {"fp8_per_token_head", KVQ_DTYPE_BF16},
    {"int4_per_token_head", KVQ_DTYPE_BF16},
};

LayerSpec spec_for(const Mode& m, int64_t hq, int64_t hkv, int64_t d) {
  LayerSpec s;
  s.backend = "triton";
  s.mode = m.name;
  s.model_dtype = m.model;
  s.num_heads = hq;
  s.num_kv_heads = hkv;
  s.head_size = d;
  return s;
}

// fp8 per-tensor layers get non-unit scales (vLLM's test values).
void load_scales(Plugin& p, kvq_layer* layer, const LayerSpec& s) {
  if (std::string(s.mode).rfind("fp8", 0) != 0 || s.mode == std::string("fp8_per_token_head"))
    return;
  check(load_param(p, layer, full_name(s, "k_scale"), {0.5}), "k_scale");
  check(load_param(p, layer, full_name(s, "v_scale"), {0.25}), "v_scale");
  check(load_param(p, layer, full_name(s, "q_scale"), {0.75}), "q_scale");
  check(process_weights(p, layer), "process_weights");
}

class CudaPluginModes : public ::testing::TestWithParam<Mode> {};

TEST(CudaPlugin, InfoNamesTheDevice) {
  REQUIRE_GPU();
  Plugin g(cuda_path());
  kvq_plugin_info info{};
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  check(g.take(g.api().get_info(g.instance(), &info)), "get_info");
  EXPECT_EQ(info.device_type, KVQ_DEVICE_CUDA);
  EXPECT_EQ(info.device_ordinal, 0);
  EXPECT_GT(info.device_count, 0);
  EXPECT_GT(info.device_memory_bytes, 1ull << 30);
  EXPECT_TRUE(info.has_device_memory);
  EXPECT_STRNE(info.device_name, "");
  std::printf("[ info     ] %s, %.1f GiB, %d device(s)\n", info.device_name,
              static_cast<double>(info.device_memory_bytes) / (1ull << 30), info.device_count);
}

TEST(CudaPlugin, AnOrdinalTheMachineLacksIsRefused) {
  REQUIRE_GPU();
  void* h = dlopen(cuda_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr);
  const kvq_plugin_api* api =
      reinterpret_cast<kvq_plugin_entry_fn>(dlsym(h, KVQ_PLUGIN_ENTRY_SYMBOL))();
  kvq_host_info host{};
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = KVQ_ABI_MAJOR;
  host.abi_minor = KVQ_ABI_MINOR;
  host.device_ordinal = 99;
  kvq_instance* inst = nullptr;
  kvq_error* e = api->negotiate(&host, &inst);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(api->error_code(e), KVQ_ERR_OUT_OF_RANGE);
  EXPECT_NE(std::string(api->error_message(e)).find("device_ordinal 99"), std::string::npos)
      << api->error_message(e);
  api->error_destroy(e);
  EXPECT_EQ(inst, nullptr);
}

TEST(CudaPlugin, HostMemoryForBulkTensorsIsRefused) {
  REQUIRE_GPU();
  Plugin g(cuda_path());
  const LayerSpec s = spec_for(kModes[5], 8, 2, 64);
  LayerPtr layer = make_layer(g, s);
  DeviceCache cache(g, layer.get(), 4);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {2, 2, 64}, 1.0, 3);
  OwnedTensor slots(KVQ_DTYPE_I64, {2});
  kvq_cache_write_args a{};
  a.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE;
  a.key = k.get();  // host memory
  a.value = v.get();
  a.slot_mapping = slots.get();
  a.kv_cache = &cache.view;
  const CallResult r = g.take(g.api().cache_write(layer.get(), &a));
  EXPECT_EQ(r.code, KVQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.message.find("key: host memory"), std::string::npos) << r.message;
}

// Same K/V, same slots (with padding): the GPU cache's bytes equal the CPU's,
// written rows and untouched ones (cache_init) alike.
TEST_P(CudaPluginModes, WritesTheCpuPluginsBytes) {
  REQUIRE_GPU();
  const Mode m = GetParam();
  Plugin cpu(cpu_path()), gpu(cuda_path());
  const LayerSpec s = spec_for(m, 8, 2, 128);
  LayerPtr lc = make_layer(cpu, s), lg = make_layer(gpu, s);
  load_scales(cpu, lc.get(), s);
  load_scales(gpu, lg.get(), s);
  constexpr int64_t kBlocks = 8, kTokens = 77;
  Cache host(cpu, lc.get(), kBlocks);
  DeviceCache dev(gpu, lg.get(), kBlocks);
  ASSERT_EQ(dev.g.bytes_per_block, host.geometry().bytes_per_block);
  auto [k, v] = random_kv(m.model, {kTokens, 2, 128}, 2.0, 11);
  std::vector<int64_t> slots(kTokens);
  std::mt19937_64 rng(5);
  std::vector<int64_t> perm(kBlocks * 16);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int64_t t = 0; t < kTokens; ++t)
    slots[static_cast<size_t>(t)] = t % 9 == 4 ? -1 : perm[static_cast<size_t>(t)];
  check(write_kv(cpu, lc.get(), k, v, slots, host), "CPU write");
  check(write_on_gpu(gpu, lg.get(), k, v, slots, dev), "GPU write");
  const std::vector<unsigned char> a = host.snapshot(), b = dev.buffer.bytes();
  ASSERT_EQ(a.size(), b.size());
  int64_t differ = 0, first = -1;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] && differ++ == 0) first = static_cast<int64_t>(i);
  EXPECT_EQ(differ, 0) << m.name << ": " << differ << " bytes differ, first at " << first;
}

struct Batch {
  const char* name;
  std::vector<Seq> seqs;
  int64_t hq, hkv, d, window = 0;
  double softcap = 0.0;
  bool alibi_sinks = false;
};
const Batch kBatches[] = {
    {"vllm_mixed", {{1, 1328}, {5, 18}, {129, 463}}, 8, 2, 128},
    {"decode_gqa32_8", {{1, 2000}, {1, 37}, {1, 523}, {1, 4097}}, 32, 8, 128},
    {"window_softcap", {{1, 700}, {33, 300}, {1, 64}}, 8, 2, 64, 128, 50.0},
    {"alibi_sinks_h256", {{1, 300}, {17, 140}}, 5, 1, 256, 0, 0.0, true},
};

// Runs a forward of `b` on a cache holding every position's K/V; returns the
// output. `gpu_cache` set: the cache and the batch live on the device.
std::vector<double> attend(Plugin& p, kvq_layer* layer, const LayerSpec& s, const Batch& b,
                           const kvq_tensor& cache_view, bool on_gpu, const OwnedTensor& query,
                           const PagedBatch& pb) {
  OwnedTensor out(s.model_dtype, {pb.total_q, s.num_heads, s.head_size});
  for (int64_t i = 0; i < out.numel(); ++i) out.set(i, std::numeric_limits<double>::quiet_NaN());
  OwnedTensor alibi(KVQ_DTYPE_F32, {s.num_heads}), sinks(KVQ_DTYPE_F32, {s.num_heads});
  for (int64_t h = 0; h < s.num_heads; ++h) {
    alibi.set(h, -0.05 * static_cast<double>(h + 1));
    sinks.set(h, 0.5 * static_cast<double>(h) - 1.0);
  }
  if (!on_gpu) {
    kvq_forward_args f = pb.forward_args(KVQ_ATTN_CHUNKED_PREFILL, query, &cache_view, out);
    f.alibi_slopes = b.alibi_sinks ? alibi.get() : nullptr;
    f.sinks = b.alibi_sinks ? sinks.get() : nullptr;
    check(p.take(p.api().forward(layer, &f)), "CPU forward");
    return out.to_doubles();
  }
  DeviceTensor q(p, *query.get()), o(p, *out.get()), table(p, *pb.table.get());
  DeviceTensor qsl(p, *pb.qsl.get()), lens(p, *pb.lens.get());
  kvq_forward_args f = forward_args(KVQ_ATTN_CHUNKED_PREFILL, &q.view, &cache_view, &qsl.view,
                                    &lens.view, &table.view, &o.view);
  f.alibi_slopes = b.alibi_sinks ? alibi.get() : nullptr;  // host memory: allowed for these
  f.sinks = b.alibi_sinks ? sinks.get() : nullptr;
  check(p.take(p.api().forward(layer, &f)), "GPU forward");
  o.buffer.download(out.data(), out.bytes());
  return out.to_doubles();
}

// Attention on GPU-written and CPU-written caches, each read by both plugins:
// every combination within fp32 rounding plus one output rounding of the
// CPU plugin on its own cache.
TEST_P(CudaPluginModes, AttentionMatchesTheCpuPluginAcrossDevices) {
  REQUIRE_GPU();
  const Mode m = GetParam();
  for (const Batch& b : kBatches) {
    SCOPED_TRACE(b.name);
    Plugin cpu(cpu_path()), gpu(cuda_path());
    LayerSpec s = spec_for(m, b.hq, b.hkv, b.d);
    s.sliding_window = b.window;
    s.softcap = b.softcap;
    LayerPtr lc = make_layer(cpu, s), lg = make_layer(gpu, s);
    load_scales(cpu, lc.get(), s);
    load_scales(gpu, lg.get(), s);
    std::mt19937_64 rng(17);
    const PagedBatch pb = paged_batch(b.seqs, s.block_size, 3, rng);
    Cache host(cpu, lc.get(), pb.num_blocks);
    DeviceCache dev(gpu, lg.get(), pb.num_blocks);
    int64_t total = 0;
    for (const Seq& q : b.seqs) total += q.seq_len;
    auto [k, v] = random_kv(m.model, {total, b.hkv, b.d}, 1.0, 23);
    std::vector<int64_t> slots;
    for (const auto& per_seq : pb.slots) slots.insert(slots.end(), per_seq.begin(), per_seq.end());
    check(write_kv(cpu, lc.get(), k, v, slots, host), "CPU write");
    check(write_on_gpu(gpu, lg.get(), k, v, slots, dev), "GPU write");
    const OwnedTensor query = random_tensor(m.model, {pb.total_q, b.hq, b.d}, 1.0, 29);

    // The caches swapped: the GPU's bytes on the host, the CPU's on the device.
    OwnedTensor gpu_bytes(KVQ_DTYPE_U8, {pb.num_blocks, dev.g.bytes_per_block});
    dev.buffer.download(gpu_bytes.data(), gpu_bytes.bytes());
    DeviceTensor cpu_bytes_on_gpu(gpu, *host.tensor());

    const std::vector<double> cpu_own =
        attend(cpu, lc.get(), s, b, *host.tensor(), false, query, pb);
    const std::vector<double> gpu_own = attend(gpu, lg.get(), s, b, dev.view, true, query, pb);
    const std::vector<double> cpu_reads_gpu =
        attend(cpu, lc.get(), s, b, *gpu_bytes.get(), false, query, pb);
    const std::vector<double> gpu_reads_cpu =
        attend(gpu, lg.get(), s, b, cpu_bytes_on_gpu.view, true, query, pb);

    double scale = 0.0;
    for (double x : cpu_own) scale = std::max(scale, std::fabs(x));
    ASSERT_GT(scale, 0.0);
    // Tensor-core paths: 2e-3 of the output scale plus one bf16 ulp (2^-8 rel).
    const double atol = 2e-3 * scale, rtol = 1.0 / 128;
    for (const auto* other : {&gpu_own, &cpu_reads_gpu, &gpu_reads_cpu}) {
      const kvq::ref::Comparison c = kvq::ref::compare(*other, cpu_own, atol, rtol);
      EXPECT_EQ(c.non_finite, 0);
      EXPECT_EQ(c.violations, 0) << m.name << ": max |diff| " << c.max_abs_error << " (scale "
                                 << scale << "), worst element " << c.worst_index;
    }
    std::printf("[ info     ] %-20s %-18s max|gpu - cpu| %.2e of %.2e\n", m.name, b.name,
                kvq::ref::compare(gpu_own, cpu_own, atol, rtol).max_abs_error, scale);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaPluginModes, ::testing::ValuesIn(kModes),
                         [](const auto& info) { return std::string(info.param.name); });

// A refused write writes nothing: a slot past the cache, a NaN key in a
// quantized mode; without a stream the call returns the error, with one the
// next synchronize does.
TEST(CudaPlugin, RefusedWritesWriteNothingWithAndWithoutAStream) {
  REQUIRE_GPU();
  Plugin gpu(cuda_path());
  const LayerSpec s = spec_for(kModes[5], 8, 2, 64);
  LayerPtr layer = make_layer(gpu, s);
  DeviceCache cache(gpu, layer.get(), 4);
  const std::vector<unsigned char> fresh = cache.buffer.bytes();
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {3, 2, 64}, 1.0, 7);
  kvq_stream* stream = nullptr;
  check(gpu.take(gpu.api().stream_create(gpu.instance(), &stream)), "stream_create");
  for (kvq_stream* st : {static_cast<kvq_stream*>(nullptr), stream}) {
    SCOPED_TRACE(st ? "stream" : "no stream");
    CallResult r = write_on_gpu(gpu, layer.get(), k, v, {1, 64, 2}, cache, st);
    EXPECT_EQ(r.code, KVQ_ERR_OUT_OF_RANGE) << r.message;
    EXPECT_NE(r.message.find("slot_mapping[1] = 64 is outside the cache"), std::string::npos)
        << r.message;
    EXPECT_TRUE(cache.buffer.bytes() == fresh);
    OwnedTensor bad = random_tensor(KVQ_DTYPE_BF16, {3, 2, 64}, 1.0, 8);
    bad.set((2 * 2 + 1) * 64 + 5, std::numeric_limits<double>::quiet_NaN());  // token 2, head 1
    r = write_on_gpu(gpu, layer.get(), bad, v, {1, 2, 3}, cache, st);
    EXPECT_EQ(r.code, KVQ_ERR_NON_FINITE) << r.message;
    EXPECT_NE(r.message.find("key of token 2 head 1 is nan"), std::string::npos) << r.message;
    EXPECT_TRUE(cache.buffer.bytes() == fresh);
  }
  gpu.api().stream_destroy(gpu.instance(), stream);
}

TEST(CudaPlugin, ABadBlockTableEntryIsReported) {
  REQUIRE_GPU();
  Plugin gpu(cuda_path());
  const LayerSpec s = spec_for(kModes[5], 8, 2, 64);
  LayerPtr layer = make_layer(gpu, s);
  std::mt19937_64 rng(3);
  PagedBatch pb = paged_batch({{1, 40}, {1, 20}}, 16, 0, rng);
  DeviceCache cache(gpu, layer.get(), pb.num_blocks);
  pb.table.set(1, 1000);  // sequence 0, its second block
  const OwnedTensor query = random_tensor(KVQ_DTYPE_BF16, {2, 8, 64}, 1.0, 4);
  OwnedTensor out(KVQ_DTYPE_BF16, {2, 8, 64});
  DeviceTensor q(gpu, *query.get()), o(gpu, *out.get()), table(gpu, *pb.table.get());
  kvq_forward_args f = forward_args(KVQ_ATTN_DECODE_ONLY, &q.view, &cache.view, pb.qsl.get(),
                                    pb.lens.get(), &table.view, &o.view);
  const CallResult r = gpu.take(gpu.api().forward(layer.get(), &f));
  EXPECT_EQ(r.code, KVQ_ERR_OUT_OF_RANGE) << r.message;
  EXPECT_NE(r.message.find("block_table[0][1] = 1000"), std::string::npos) << r.message;
}

// calculate_kv_scales gives the CPU plugin's scales (max|k|/200, max|v|/100).
TEST(CudaPlugin, CalculatedScalesEqualTheCpuPlugins) {
  REQUIRE_GPU();
  Plugin cpu(cpu_path()), gpu(cuda_path());
  LayerSpec s = spec_for(kModes[3], 8, 2, 64);
  s.options = {{"calculate_kv_scales", "true"}};
  LayerPtr lc = make_layer(cpu, s), lg = make_layer(gpu, s);
  Cache host(cpu, lc.get(), 4);
  DeviceCache dev(gpu, lg.get(), 4);
  auto [k, v] = random_kv(KVQ_DTYPE_BF16, {5, 2, 64}, 3.0, 9);
  check(write_kv(cpu, lc.get(), k, v, {0, 1, -1, 3, 4}, host), "CPU write");
  check(write_on_gpu(gpu, lg.get(), k, v, {0, 1, -1, 3, 4}, dev), "GPU write");
  for (const char* name : {"k_scale", "v_scale"})
    EXPECT_EQ(read_param(gpu, lg.get(), full_name(s, name)),
              read_param(cpu, lc.get(), full_name(s, name)))
        << name;
  EXPECT_TRUE(dev.buffer.bytes() == host.snapshot());
}

}  // namespace
}  // namespace kvq::test
