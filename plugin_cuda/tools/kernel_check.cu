// kvq_cuda_kernel_check: GPU self-test and micro-benchmark of plugin_cuda's
// kernels (run it on a machine with an NVIDIA GPU; without one it prints
// "no CUDA device" and exits 77).
//
//  1. cache writes for every codec, compared byte for byte with the host
//     codecs (which kvq_cuda_codecs_test proves equal to the CPU plugin);
//  2. attention on the written cache for many batch shapes, head layouts and
//     features, against a float64 reference of the same cache bytes; every
//     output element is poisoned first, each call is run twice (bitwise
//     determinism);
//  3. the refusal paths (bad slots, NaN input, bad block-table entries);
//  4. timings: a device copy kernel's bandwidth, decode GB/s with caches
//     rotated through >= 1 GiB, prefill TFLOP/s.
// Options: --quick (skip the timings), --perf (timings only), --filter=TEXT.
#include "check_host.hpp"
#include "codecs.cuh"
#include "kernels.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace kvq::cuda::check {
namespace {

void ck(int e, const char* what, int line) {
  if (e != 0) {
    std::fprintf(stderr, "FATAL: %s -> CUDA error %d (%s) at line %d\n", what, e,
                 cudaGetErrorString(static_cast<cudaError_t>(e)), line);
    std::exit(1);
  }
}
#define CK(x) ck(static_cast<int>(x), #x, __LINE__)

// Device memory owned by one object (RAII).
class DevMem {
 public:
  DevMem() = default;
  explicit DevMem(size_t bytes) {
    if (bytes > 0) CK(cudaMalloc(&p_, bytes));
  }
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  DevMem(DevMem&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  DevMem& operator=(DevMem&&) = delete;
  ~DevMem() {
    if (p_ != nullptr) cudaFree(p_);
  }
  template <class T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
 private:
  void* p_ = nullptr;
};

template <class T>
DevMem upload(const std::vector<T>& v) {
  DevMem m(std::max<size_t>(1, v.size() * sizeof(T)));
  if (!v.empty()) CK(cudaMemcpy(m.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return m;
}
std::vector<unsigned char> download(const DevMem& m, size_t bytes) {
  std::vector<unsigned char> v(bytes);
  if (bytes > 0) CK(cudaMemcpy(v.data(), m.get(), bytes, cudaMemcpyDeviceToHost));
  return v;
}

struct Ctx {
  int num_sms = 0;
  cudaStream_t stream = nullptr;
  int failures = 0;
  std::string filter;
};

// ---- one correctness case -----------------------------------------------------------

bool run_case(Ctx& ctx, const CaseSpec& spec) {
  const HostCase hc = build_case(spec);
  const CacheLayout& l = hc.layout;
  const size_t cache_bytes = static_cast<size_t>(l.num_blocks * l.bytes_per_block);
  DevMem cache(cache_bytes), verdict(sizeof(WriteVerdict)), averdict(sizeof(AttentionVerdict));
  CK(launch_cache_init(spec.codec, l, cache.get<unsigned char>(), ctx.stream));
  DevMem key = upload(hc.key_bytes), value = upload(hc.value_bytes), slots = upload(hc.slots);
  DevMem ks = upload(hc.k_scales), vs = upload(hc.v_scales), qsc = upload(hc.q_scales);
  WriteArgs w{};
  w.codec = spec.codec;
  w.layout = l;
  w.in_dtype = spec.model_dtype;
  w.key = key.get();
  w.key_stride_token = w.value_stride_token = hc.kv_stride_token;
  w.key_stride_head = w.value_stride_head = hc.kv_stride_head;
  w.value = value.get();
  w.slot_mapping = slots.get<int64_t>();
  w.num_tokens = hc.write_tokens;
  w.cache = cache.get<unsigned char>();
  w.k_scales = ks.get<float>();
  w.v_scales = vs.get<float>();
  w.num_scales = static_cast<int32_t>(hc.k_scales.size());
  w.verdict = verdict.get<WriteVerdict>();
  CK(launch_cache_write(w, ctx.stream));
  CK(cudaStreamSynchronize(ctx.stream));
  WriteVerdict wv{};
  CK(cudaMemcpy(&wv, verdict.get(), sizeof(wv), cudaMemcpyDeviceToHost));
  const std::vector<unsigned char> got_cache = download(cache, cache_bytes);
  int64_t bad_bytes = 0, first_bad = -1;
  for (size_t i = 0; i < cache_bytes; ++i)
    if (got_cache[i] != hc.expected_cache[i] && bad_bytes++ == 0) first_bad = static_cast<int64_t>(i);

  // attention
  DevMem q = upload(hc.q_bytes), bt = upload(hc.block_table), qsl = upload(hc.qsl),
         sl = upload(hc.seq_lens), alibi = upload(hc.alibi), sinks = upload(hc.sinks);
  const int64_t oes = element_size(spec.model_dtype);
  const size_t out_bytes = static_cast<size_t>(std::max<int64_t>(1, hc.num_tokens) * spec.hq * spec.dv * oes);
  DevMem out(out_bytes);
  AttentionArgs a{};
  a.codec = spec.codec;
  a.layout = l;
  a.q_dtype = spec.q_dtype;
  a.out_dtype = spec.model_dtype;
  a.num_heads = spec.hq;
  a.query = q.get();
  a.q_stride_token = hc.q_stride_token;
  a.q_stride_head = hc.q_stride_head;
  a.output = out.get();
  a.o_stride_token = int64_t{spec.hq} * spec.dv;
  a.o_stride_head = spec.dv;
  a.cache = cache.get<unsigned char>();
  a.block_table = bt.get<int32_t>();
  a.block_table_stride = hc.bt_stride;
  a.query_start_loc = qsl.get<int32_t>();
  a.seq_lens = sl.get<int32_t>();
  a.num_seqs = static_cast<int64_t>(spec.seqs.size());
  a.num_tokens = hc.num_tokens;
  for (const SeqSpec& s : spec.seqs) {
    a.max_query_len = std::max<int64_t>(a.max_query_len, s.qlen);
    a.max_seq_len = std::max<int64_t>(a.max_seq_len, s.seq_len);
  }
  a.softmax_scale = hc.softmax_scale;
  a.sliding_window = spec.window;
  a.softcap = spec.softcap;
  a.alibi_slopes = spec.alibi ? alibi.get<float>() : nullptr;
  a.sinks = spec.sinks ? sinks.get<float>() : nullptr;
  a.q_scales = qsc.get<float>();
  a.num_q_scales = static_cast<int32_t>(hc.q_scales.size());
  a.k_scales = ks.get<float>();
  a.v_scales = vs.get<float>();
  a.num_kv_scales = static_cast<int32_t>(hc.k_scales.size());
  a.verdict = averdict.get<AttentionVerdict>();
  const AttentionPlan plan = attention_plan(a, ctx.num_sms);
  DevMem ws(static_cast<size_t>(std::max<int64_t>(plan.workspace_bytes, 0)));
  a.workspace = ws.get<float>();
  a.workspace_bytes = plan.workspace_bytes;
  std::vector<unsigned char> outs[2];
  int launch_err = plan.error;
  for (int rep = 0; rep < 2 && launch_err == 0; ++rep) {
    CK(cudaMemsetAsync(out.get(), 0xFF, out_bytes, ctx.stream));  // NaN in every dtype
    launch_err = launch_attention(a, ctx.num_sms, ctx.stream);
    if (launch_err == 0) {
      CK(cudaStreamSynchronize(ctx.stream));
      outs[rep] = download(out, out_bytes);
    }
  }
  AttentionVerdict av{};
  CK(cudaMemcpy(&av, averdict.get(), sizeof(av), cudaMemcpyDeviceToHost));
  const bool deterministic = launch_err == 0 && outs[0] == outs[1];

  double max_ratio = 0.0, max_rel = 0.0, vmax = 0.0;
  if (launch_err == 0) {
    const std::vector<int64_t> rows = rows_to_check(hc);
    std::vector<double> ref;
    reference(hc, got_cache, rows, &ref, &vmax);
    const double tol = plan.path == 1 ? 2e-5 : spec.q_dtype == 6 ? 0.1 : 2e-3;
    for (size_t ri = 0; ri < rows.size(); ++ri)
      for (int i = 0; i < spec.dv; ++i) {
        const double r = ref[ri * spec.dv + i];
        const double g = output_value(spec.model_dtype, &outs[0][(rows[ri] * spec.dv + i) * oes]);
        const double err = std::isfinite(g) ? std::fabs(g - r) : INFINITY;
        const double allowed = tol * vmax + ulp_of(spec.model_dtype, r);
        max_ratio = std::max(max_ratio, err / allowed);
        max_rel = std::max(max_rel, err / std::max(vmax, 1e-30));
      }
  }
  const bool ok = wv.code == 0 && bad_bytes == 0 && launch_err == 0 && av.code == 0 &&
                  deterministic && max_ratio <= 1.0;
  std::printf("%s %-44s write:%s path=%s dp=%d splits=%d/%d err/vmax=%.2e ratio=%.3f%s%s\n",
              ok ? "PASS" : "FAIL", spec.name.c_str(),
              wv.code != 0 ? "REFUSED" : bad_bytes ? "BYTES-DIFFER" : "exact",
              plan.path == 0 ? "tc" : "simt", plan.padded_head, plan.decode_splits,
              plan.prefill_splits, max_rel, max_ratio, deterministic ? "" : " NONDETERMINISTIC",
              launch_err ? " LAUNCH-ERROR" : "");
  if (bad_bytes)
    std::printf("     %lld cache bytes differ, first at %lld (got %u want %u)\n",
                static_cast<long long>(bad_bytes), static_cast<long long>(first_bad),
                got_cache[static_cast<size_t>(first_bad)],
                hc.expected_cache[static_cast<size_t>(first_bad)]);
  if (launch_err) std::printf("     launch error %d\n", launch_err);
  if (av.code) std::printf("     attention verdict %d\n", av.code);
  return ok;
}

std::vector<CaseSpec> correctness_cases() {
  std::vector<CaseSpec> cs;
  const std::vector<SeqSpec> mixed = {{1, 1328}, {5, 18}, {129, 463}};
  const std::vector<SeqSpec> decodes = {{1, 523}, {1, 37}, {1, 2011}};
  auto add = [&](std::string name, Codec c, int hq, int hkv, int d, std::vector<SeqSpec> seqs) {
    CaseSpec s;
    s.name = std::move(name);
    s.codec = c;
    s.hq = hq;
    s.hkv = hkv;
    s.d = s.dv = d;
    s.seqs = std::move(seqs);
    s.seed = static_cast<uint32_t>(cs.size() * 7919 + 1);
    cs.push_back(s);
    return &cs.back();
  };
  const Codec all[] = {Codec::kBF16, Codec::kF16, Codec::kF32, Codec::kInt8Pth,
                       Codec::kFp8Pth, Codec::kInt4Pth, Codec::kE4M3, Codec::kE5M2};
  // every codec on vLLM's mixed batch and decodes, GQA 8/2, head 128
  for (Codec c : all) {
    add(std::string(codec_name(c)) + " mixed 8/2 d128", c, 8, 2, 128, mixed);
    add(std::string(codec_name(c)) + " decodes 8/2 d128", c, 8, 2, 128, decodes);
  }
  for (Codec c : {Codec::kE4M3, Codec::kE5M2}) {  // fp8 query
    CaseSpec* s = add(std::string(codec_name(c)) + " fp8-query mixed 8/2", c, 8, 2, 128, mixed);
    s->q_dtype = 6;
    s = add(std::string(codec_name(c)) + " fp8-query decodes 4/4 per-head", c, 4, 4, 64, decodes);
    s->q_dtype = 6;
    s->per_head_scales = true;
  }
  // head layouts and sizes
  for (Codec c : {Codec::kInt8Pth, Codec::kBF16, Codec::kFp8Pth, Codec::kInt4Pth}) {
    add(std::string(codec_name(c)) + " mixed 4/4 d64", c, 4, 4, 64, mixed);
    add(std::string(codec_name(c)) + " mixed 5/1 d256", c, 5, 1, 256, mixed);
    add(std::string(codec_name(c)) + " decodes 32/8 d128", c, 32, 8, 128, decodes);
  }
  add("int8_pth decodes 64/4 d128 (16 rows: prefill path)", Codec::kInt8Pth, 64, 4, 128, decodes);
  // features
  for (Codec c : {Codec::kInt8Pth, Codec::kBF16, Codec::kInt4Pth, Codec::kE4M3}) {
    CaseSpec* s = add(std::string(codec_name(c)) + " mixed window64 softcap50", c, 8, 2, 128, mixed);
    s->window = 64;
    s->softcap = 50.0f;
    s = add(std::string(codec_name(c)) + " mixed alibi sinks window128", c, 8, 2, 128, mixed);
    s->alibi = s->sinks = true;
    s->window = 128;
  }
  {
    CaseSpec* s = add("fp8_e4m3 fp8-query alibi sinks softcap", Codec::kE4M3, 8, 2, 128, mixed);
    s->q_dtype = 6;
    s->alibi = s->sinks = true;
    s->softcap = 30.0f;
  }
  // odd shapes and dtype mixes
  add("int4_pth mixed 8/2 d36 (scale at byte 18)", Codec::kInt4Pth, 8, 2, 36, mixed);
  add("int8_pth mixed 8/2 d80 (partial chunk)", Codec::kInt8Pth, 8, 2, 80, mixed);
  add("bf16 mixed 8/2 d33 (simt)", Codec::kBF16, 8, 2, 33, mixed);
  {
    CaseSpec* s = add("int8_pth mixed d128 dv64", Codec::kInt8Pth, 8, 2, 128, mixed);
    s->dv = 64;
    s = add("int8_pth mixed f32 model (simt)", Codec::kInt8Pth, 8, 2, 128, mixed);
    s->model_dtype = s->q_dtype = 1;
    s = add("f16 mixed f16 model", Codec::kF16, 8, 2, 128, mixed);
    s->model_dtype = s->q_dtype = 2;
    s = add("fp8_e4m3 mixed f16 model", Codec::kE4M3, 8, 2, 128, mixed);
    s->model_dtype = s->q_dtype = 2;
    s = add("int8_pth mixed f16 model", Codec::kInt8Pth, 8, 2, 128, mixed);
    s->model_dtype = s->q_dtype = 2;
    s = add("int8_pth mixed block 32", Codec::kInt8Pth, 8, 2, 128, mixed);
    s->bs = 32;
    s = add("bf16 mixed sinks only (alibi off)", Codec::kBF16, 8, 2, 128, mixed);
    s->sinks = true;
  }
  // the benchmark shapes (sampled rows)
  {
    CaseSpec* s = add("int8_pth decode 1x16384 32/8", Codec::kInt8Pth, 32, 8, 128, {{1, 16384}});
    s = add("bf16 decode 1x16384 32/8", Codec::kBF16, 32, 8, 128, {{1, 16384}});
    std::vector<SeqSpec> b64(64, SeqSpec{1, 4096});
    s = add("int8_pth decode 64x4096 32/8", Codec::kInt8Pth, 32, 8, 128, b64);
    s->sample_rows = 6;
    s = add("int8_pth prefill 512x16384 32/8", Codec::kInt8Pth, 32, 8, 128, {{512, 16384}});
    s->sample_rows = 6;
  }
  return cs;
}

// ---- refusal paths -----------------------------------------------------------------

bool check(Ctx& ctx, bool cond, const char* what) {
  std::printf("%s %s\n", cond ? "PASS" : "FAIL", what);
  if (!cond) ++ctx.failures;
  return cond;
}

void run_error_tests(Ctx& ctx) {
  CaseSpec spec;
  spec.codec = Codec::kInt8Pth;
  spec.hq = 8;
  spec.hkv = 4;
  spec.d = spec.dv = 64;
  spec.seqs = {{1, 40}, {3, 70}};
  HostCase hc = build_case(spec);
  const CacheLayout& l = hc.layout;
  const size_t cache_bytes = static_cast<size_t>(l.num_blocks * l.bytes_per_block);
  DevMem cache(cache_bytes), verdict(sizeof(WriteVerdict));
  CK(launch_cache_init(spec.codec, l, cache.get<unsigned char>(), ctx.stream));
  CK(cudaStreamSynchronize(ctx.stream));
  const std::vector<unsigned char> before = download(cache, cache_bytes);
  const int64_t es = 2;
  auto poison = [&](std::vector<unsigned char>& bytes, int64_t t, int h, int i, float v) {
    const uint16_t b = codec::float_to_bf16(v);
    std::memcpy(&bytes[static_cast<size_t>((t * hc.kv_stride_token + h * hc.kv_stride_head + i) * es)], &b, 2);
  };
  auto run_write = [&](Codec codec, const std::vector<unsigned char>& k,
                       const std::vector<unsigned char>& v, const std::vector<int64_t>& sl) {
    DevMem dk = upload(k), dv = upload(v), ds = upload(sl);
    WriteArgs w{};
    w.codec = codec;
    w.layout = l;
    w.in_dtype = 3;
    w.key = dk.get();
    w.value = dv.get();
    w.key_stride_token = w.value_stride_token = hc.kv_stride_token;
    w.key_stride_head = w.value_stride_head = hc.kv_stride_head;
    w.slot_mapping = ds.get<int64_t>();
    w.num_tokens = static_cast<int64_t>(sl.size());
    w.cache = cache.get<unsigned char>();
    w.verdict = verdict.get<WriteVerdict>();
    CK(launch_cache_write(w, ctx.stream));
    CK(cudaStreamSynchronize(ctx.stream));
    WriteVerdict wv{};
    CK(cudaMemcpy(&wv, verdict.get(), sizeof(wv), cudaMemcpyDeviceToHost));
    return wv;
  };
  const int64_t capacity = l.num_blocks * l.block_size;
  {  // a bad slot (token 9) wins over an earlier NaN (token 3)
    auto k = hc.key_bytes, v = hc.value_bytes;
    auto sl = hc.slots;
    poison(k, 3, 2, 7, NAN);
    sl[9] = capacity + 3;
    sl[12] = capacity;
    const WriteVerdict wv = run_write(spec.codec, k, v, sl);
    check(ctx, wv.code == 1 && wv.token == 9 && wv.slot == capacity + 3,
          "write refuses slot >= capacity (lowest token, before NaN)");
    check(ctx, download(cache, cache_bytes) == before, "refused write leaves the cache untouched");
  }
  {  // lowest (token, head, K-before-V) non-finite row
    auto k = hc.key_bytes, v = hc.value_bytes;
    poison(k, 7, 2, 1, NAN);
    poison(v, 7, 1, 5, INFINITY);
    poison(k, 11, 0, 0, NAN);
    const WriteVerdict wv = run_write(spec.codec, k, v, hc.slots);
    check(ctx, wv.code == 2 && wv.token == 7 && wv.head == 1 && wv.is_value == 1 &&
                   std::isinf(wv.bad_value),
          "write refuses NaN/Inf: lowest (token, head, K before V), value reported");
    check(ctx, download(cache, cache_bytes) == before, "refused NaN write leaves the cache untouched");
    const WriteVerdict ok = run_write(Codec::kInt8Pth, hc.key_bytes, hc.value_bytes, hc.slots);
    check(ctx, ok.code == 0, "clean write accepted after a refusal");
  }
  {  // absmax: NaN skipped, padding tokens skipped
    std::vector<float> x(4 * 3 * 50);
    std::mt19937 rng(5);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& f : x) f = n(rng);
    x[1 * 150 + 20] = 1000.0f;  // token 1: padding
    x[2 * 150 + 7] = NAN;
    float want = 0.0f;
    for (int t = 0; t < 4; ++t)
      if (t != 1)
        for (int i = 0; i < 150; ++i)
          if (!std::isnan(x[t * 150 + i])) want = std::max(want, std::fabs(x[t * 150 + i]));
    DevMem dx = upload(x), ds = upload(std::vector<int64_t>{0, -1, 2, 3}), dout(4);
    AbsmaxArgs aa{1, dx.get(), 4, 3, 50, 150, 50, ds.get<int64_t>(), dout.get<float>()};
    CK(launch_absmax(aa, ctx.stream));
    float got = 0.0f;
    CK(cudaMemcpy(&got, dout.get(), 4, cudaMemcpyDeviceToHost));
    check(ctx, got == want, "absmax skips NaN and padding tokens");
  }
}

// ---- timings ---------------------------------------------------------------------------

__global__ void copy_kernel(uint4* dst, const uint4* src, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}
__global__ void spin_kernel(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `fn(i)` reps times back to back behind a spin kernel (so host
// launch latency never shows), median in microseconds.
template <class F>
double time_us(Ctx& ctx, int reps, F&& fn) {
  for (int i = 0; i < 3; ++i) fn(i);
  std::vector<cudaEvent_t> ev(2 * static_cast<size_t>(reps));
  for (auto& e : ev) CK(cudaEventCreate(&e));
  spin_kernel<<<1, 1, 0, ctx.stream>>>(20000000);
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(ev[2 * i], ctx.stream));
    fn(i);
    CK(cudaEventRecord(ev[2 * i + 1], ctx.stream));
  }
  CK(cudaStreamSynchronize(ctx.stream));
  std::vector<float> ms(static_cast<size_t>(reps));
  for (int i = 0; i < reps; ++i) CK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
  for (auto& e : ev) cudaEventDestroy(e);
  return median(ms) * 1000.0;
}

double copy_bandwidth(Ctx& ctx) {
  const size_t bytes = size_t{2} << 30;
  DevMem a(bytes), b(bytes);
  CK(cudaMemset(a.get(), 1, bytes));
  const size_t n = bytes / 16;
  const double us = time_us(ctx, 20, [&](int) {
    copy_kernel<<<ctx.num_sms * 8, 512, 0, ctx.stream>>>(b.get<uint4>(), a.get<uint4>(), n);
  });
  return 2.0 * bytes / (us * 1e3);  // GB/s, read + write
}

struct Bench {
  Codec codec;
  int nseq, qlen, len;
};

// Decode / prefill timing over a cache of >= 1 GiB of rotated copies.
void bench(Ctx& ctx, const Bench& bc, double copy_gbs) {
  const int hq = 32, hkv = 8, d = 128, bs = 16;
  CacheLayout l{};
  l.block_size = bs;
  l.num_kv_heads = hkv;
  l.head_size = l.head_size_v = d;
  l.row_bytes = expected_row_bytes(bc.codec, d, d);
  l.bytes_per_block = 2 * bs * hkv * l.row_bytes;
  const int64_t bps = (bc.len + bs - 1) / bs, per_copy = bc.nseq * bps;
  const int64_t copy_bytes = per_copy * l.bytes_per_block;
  const bool prefill = bc.qlen > 1;
  const int64_t copies = prefill ? 1 : std::max<int64_t>(2, ((int64_t{1} << 30) + copy_bytes - 1) / copy_bytes);
  l.num_blocks = copies * per_copy;
  DevMem cache(static_cast<size_t>(l.num_blocks * l.bytes_per_block));
  // Seed: write 4096 random tokens, then replicate those blocks.
  {
    const int64_t seed_tokens = std::min<int64_t>(4096, l.num_blocks * bs);
    std::vector<uint16_t> kv(static_cast<size_t>(seed_tokens * hkv * d));
    std::mt19937 rng(3);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto& x : kv) x = codec::float_to_bf16(n(rng));
    std::vector<int64_t> sl(static_cast<size_t>(seed_tokens));
    for (int64_t i = 0; i < seed_tokens; ++i) sl[static_cast<size_t>(i)] = i;
    std::vector<float> one(hkv, 1.0f);
    DevMem dk = upload(kv), ds = upload(sl), sc = upload(one), vd(sizeof(WriteVerdict));
    CK(launch_cache_init(bc.codec, l, cache.get<unsigned char>(), ctx.stream));
    WriteArgs w{bc.codec, l, 3, dk.get(), hkv * d, d, dk.get(), hkv * d, d, ds.get<int64_t>(),
                seed_tokens, cache.get<unsigned char>(), sc.get<float>(), sc.get<float>(), 1,
                vd.get<WriteVerdict>()};
    CK(launch_cache_write(w, ctx.stream));
    const int64_t seed_bytes = (seed_tokens / bs) * l.bytes_per_block;
    for (int64_t off = seed_bytes; off < l.num_blocks * l.bytes_per_block; off += seed_bytes)
      CK(cudaMemcpyAsync(cache.get<unsigned char>() + off, cache.get(),
                         static_cast<size_t>(std::min(seed_bytes, l.num_blocks * l.bytes_per_block - off)),
                         cudaMemcpyDeviceToDevice, ctx.stream));
  }
  std::mt19937 rng(11);
  std::vector<DevMem> tables;
  for (int64_t c = 0; c < copies; ++c) {
    std::vector<int32_t> perm(static_cast<size_t>(per_copy));
    for (int64_t i = 0; i < per_copy; ++i) perm[static_cast<size_t>(i)] = static_cast<int32_t>(c * per_copy + i);
    std::shuffle(perm.begin(), perm.end(), rng);
    tables.push_back(upload(perm));
  }
  const int64_t tokens = int64_t{bc.nseq} * bc.qlen;
  std::vector<int32_t> qsl, sl;
  for (int s = 0; s <= bc.nseq; ++s) qsl.push_back(s * bc.qlen);
  sl.assign(static_cast<size_t>(bc.nseq), bc.len);
  std::vector<uint16_t> qh(static_cast<size_t>(tokens * hq * d));
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& x : qh) x = codec::float_to_bf16(n(rng));
  std::vector<float> one(hkv, 1.0f);
  DevMem dq = upload(qh), dqsl = upload(qsl), dsl = upload(sl), dsc = upload(one);
  DevMem out(static_cast<size_t>(tokens * hq * d * 2));
  AttentionArgs a{};
  a.codec = bc.codec;
  a.layout = l;
  a.q_dtype = a.out_dtype = 3;
  a.num_heads = hq;
  a.query = dq.get();
  a.q_stride_token = hq * d;
  a.q_stride_head = d;
  a.output = out.get();
  a.o_stride_token = hq * d;
  a.o_stride_head = d;
  a.cache = cache.get<unsigned char>();
  a.block_table_stride = bps;
  a.query_start_loc = dqsl.get<int32_t>();
  a.seq_lens = dsl.get<int32_t>();
  a.num_seqs = bc.nseq;
  a.num_tokens = tokens;
  a.max_query_len = bc.qlen;
  a.max_seq_len = bc.len;
  a.softmax_scale = 1.0f / std::sqrt(static_cast<float>(d));
  a.k_scales = a.v_scales = dsc.get<float>();
  a.num_kv_scales = 1;
  a.block_table = tables[0].get<int32_t>();  // the plan checks every pointer
  const AttentionPlan plan = attention_plan(a, ctx.num_sms);
  CK(static_cast<cudaError_t>(plan.error));
  DevMem ws(static_cast<size_t>(plan.workspace_bytes));
  a.workspace = ws.get<float>();
  a.workspace_bytes = plan.workspace_bytes;
  const double us = time_us(ctx, prefill ? 10 : 30, [&](int i) {
    a.block_table = tables[static_cast<size_t>(i % copies)].get<int32_t>();
    CK(launch_attention(a, ctx.num_sms, ctx.stream));
  });
  if (!prefill) {
    const double bytes = double(bc.nseq) * bc.len * hkv * 2 * l.row_bytes + tokens * hq * d * 4.0;
    const double gbs = bytes / (us * 1e3);
    std::printf("TIME decode %-9s %4dx%-6d %8.1f us %7.0f GB/s  %.2f of copy  (splits %d, %lld MiB rotated)\n",
                codec_name(bc.codec), bc.nseq, bc.len, us, gbs, gbs / copy_gbs, plan.decode_splits,
                static_cast<long long>(l.num_blocks * l.bytes_per_block >> 20));
  } else {
    double flops = 0.0;
    for (int i = 0; i < bc.qlen; ++i) flops += 4.0 * hq * d * (bc.len - bc.qlen + i + 1);
    flops *= bc.nseq;
    const double tf = flops / (us * 1e6);
    std::printf("TIME prefill %-9s %3dx%-6d %8.1f us %7.1f TFLOP/s  %.2f of 790 (splits %d)\n",
                codec_name(bc.codec), bc.qlen, bc.len, us, tf, tf / 790.0, plan.prefill_splits);
  }
}

}  // namespace
}  // namespace kvq::cuda::check

int main(int argc, char** argv) {
  using namespace kvq::cuda;
  using namespace kvq::cuda::check;
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  bool quick = false, perf_only = false;
  Ctx ctx;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--quick") quick = true;
    if (s == "--perf") perf_only = true;
    if (s.rfind("--filter=", 0) == 0) ctx.filter = s.substr(9);
  }
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  ctx.num_sms = prop.multiProcessorCount;
  CK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
  std::printf("device: %s, %d SMs, %d MiB L2, cc %d.%d\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, prop.major, prop.minor);
  if (!perf_only) {
    for (const CaseSpec& c : correctness_cases()) {
      if (!ctx.filter.empty() && c.name.find(ctx.filter) == std::string::npos) continue;
      if (!run_case(ctx, c)) ++ctx.failures;
    }
    if (ctx.filter.empty()) run_error_tests(ctx);
  }
  if (!quick) {
    const double copy = copy_bandwidth(ctx);
    std::printf("TIME device copy bandwidth: %.0f GB/s (read + write, 2 GiB)\n", copy);
    const Bench benches[] = {
        {Codec::kInt8Pth, 64, 1, 4096}, {Codec::kInt8Pth, 256, 1, 4096},
        {Codec::kBF16, 64, 1, 4096},    {Codec::kBF16, 256, 1, 4096},
        {Codec::kInt8Pth, 1, 1, 16384}, {Codec::kBF16, 1, 1, 16384},
        {Codec::kFp8Pth, 64, 1, 4096},  {Codec::kInt4Pth, 64, 1, 4096},
        {Codec::kInt8Pth, 1, 512, 16384}, {Codec::kBF16, 1, 512, 16384}};
    for (const Bench& b : benches) bench(ctx, b, copy);
  }
  CK(cudaStreamDestroy(ctx.stream));
  std::printf("%s: %d failure(s)\n", ctx.failures ? "FAILED" : "ALL PASSED", ctx.failures);
  return ctx.failures ? 1 : 0;
}
