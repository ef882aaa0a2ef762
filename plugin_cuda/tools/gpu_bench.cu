// kvq_cuda_bench: the GPU benchmark of plugin_cuda's kernels (issue 13, item 6).
// Correctness is kvq_cuda_kernel_check's job; this tool only times, next to
// the device's own ceilings measured in the same run:
//
//  - read bandwidth (a read-only kernel, several independent 16-byte loads in
//    flight per thread, XOR-reduced), copy bandwidth (read + write), cuBLAS's
//    bf16 GEMM rate (8192^3, cublasGemmEx, fp32 compute) -- before and after
//    the rows;
//  - decode 1x16384, 64x4096, 256x4096 keys for bf16, int8 / fp8 / int4
//    per-token-head and fp8 (e4m3) per-tensor with a bf16 query;
//  - prefill 512 queries over 16384 keys (15872 context + 512 new, causal) and
//    8 sequences x 2048 new tokens; a mixed batch (64 decodes of 4096 keys + 2
//    chunks of 512 over 2048 context); int8 per-token-head and bf16;
//  - cache write of 65,536 tokens (bf16 K/V) for every quantized codec and bf16.
//
// 32 query / 8 KV heads, head 128, block 16. Caches are filled by
// launch_cache_write of random data, in copies of >= 1 GiB together that
// consecutive runs rotate through (block tables / slot mappings into another
// copy per run), so the 60 MB L2 holds none of a run's data. Median of >= 20
// timed samples after warm-up (CUDA events; a CUDA graph of repeated runs for
// runs under 50 us, launch gaps included otherwise). Prints a markdown table
// (see the footer for what each column counts); --json FILE writes the same
// as JSON.
//
// Options: --quick (small sizes, a few seconds), --json FILE, --filter TEXT
// (rows whose "group codec shape" contains TEXT), --reps N (>= 20, default 30),
// --graph-below US (default 50; 0: never a graph), --no-verdict (time the
// attention kernels without the plugin's verdict).
// Without a CUDA device: prints "no CUDA device" and exits 77.
#include "gpu_bench_report.hpp"
#include "gpu_bench_util.cuh"
#include "kernels.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kvq::cuda::bench {
namespace {

constexpr int kHq = 32, kHkv = 8, kD = 128, kBs = 16;
constexpr int kDtypeBF16 = 3;

struct Ctx {
  cudaStream_t stream = nullptr;
  int num_sms = 0;
  TimerOpts timer;
  size_t rotate_bytes = size_t{1} << 30;  // every row's data rotates through at least this
  int64_t fill_chunk = 65536;             // tokens per launch_cache_write when filling
  bool verdict = true;
  DevMem fp8_scales;  // [k_scale, v_scale] of the fp8 per-tensor rows
  DevMem chunk_k, chunk_v, chunk_slots, write_verdict, nonfinite;
  uint64_t seed = 1000;
};

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::kBF16: return "bf16";
    case Codec::kInt8Pth: return "int8_pth";
    case Codec::kFp8Pth: return "fp8_pth";
    case Codec::kInt4Pth: return "int4_pth";
    case Codec::kE4M3: return "fp8_e4m3";
    default: return "?";
  }
}

CacheLayout layout_for(Codec c, int64_t num_blocks) {
  CacheLayout l{};
  l.num_blocks = num_blocks;
  l.block_size = kBs;
  l.num_kv_heads = kHkv;
  l.head_size = l.head_size_v = kD;
  l.row_bytes = expected_row_bytes(c, kD, kD);
  l.bytes_per_block = 2 * kBs * kHkv * l.row_bytes;
  return l;
}

int64_t copies_for(const Ctx& ctx, double copy_bytes) {
  return std::max<int64_t>(2, static_cast<int64_t>(std::ceil(static_cast<double>(ctx.rotate_bytes) / copy_bytes)));
}

// Writes every slot of the cache with launch_cache_write of N(0,1) bf16 K/V,
// `fill_chunk` tokens a launch, each chunk new random data.
void fill_cache(Ctx& ctx, Codec codec, const CacheLayout& l, unsigned char* cache) {
  const int64_t tokens = l.num_blocks * l.block_size;
  const int64_t elems = kHkv * kD;
  for (int64_t start = 0; start < tokens; start += ctx.fill_chunk) {
    const int64_t n = std::min(ctx.fill_chunk, tokens - start);
    fill_normal_bf16(ctx.chunk_k.get<uint16_t>(), static_cast<size_t>(n * elems), ctx.seed++, 1.0f, ctx.stream);
    fill_normal_bf16(ctx.chunk_v.get<uint16_t>(), static_cast<size_t>(n * elems), ctx.seed++, 1.0f, ctx.stream);
    fill_iota_i64(ctx.chunk_slots.get<int64_t>(), static_cast<size_t>(n), start, ctx.stream);
    const float* sc = ctx.fp8_scales.get<float>();
    const WriteArgs w{codec, l, kDtypeBF16, ctx.chunk_k.get(), elems, kD, ctx.chunk_v.get(), elems, kD,
                      ctx.chunk_slots.get<int64_t>(), n, cache, sc, sc + 1, 1,
                      ctx.write_verdict.get<WriteVerdict>()};
    KVQ_CK(launch_cache_write(w, ctx.stream));
    WriteVerdict v{};
    KVQ_CK(cudaMemcpyAsync(&v, ctx.write_verdict.get(), sizeof v, cudaMemcpyDeviceToHost, ctx.stream));
    KVQ_CK(cudaStreamSynchronize(ctx.stream));
    if (v.code != 0) {
      std::fprintf(stderr, "FATAL: filling the %s cache: write verdict %d\n", codec_name(codec), v.code);
      std::exit(1);
    }
  }
}

// k/v scales of the fp8 per-tensor rows: max|x| / 448 of one chunk of the
// same N(0,1) data (what calculate_kv_scales would give on a first batch).
void make_fp8_scales(Ctx& ctx) {
  const int64_t n = ctx.fill_chunk;
  DevMem amax(2 * sizeof(float));
  fill_normal_bf16(ctx.chunk_k.get<uint16_t>(), static_cast<size_t>(n * kHkv * kD), 1, 1.0f, ctx.stream);
  fill_normal_bf16(ctx.chunk_v.get<uint16_t>(), static_cast<size_t>(n * kHkv * kD), 2, 1.0f, ctx.stream);
  float* out = amax.get<float>();
  const AbsmaxArgs ka{kDtypeBF16, ctx.chunk_k.get(), n, kHkv, kD, kHkv * kD, kD, nullptr, out};
  const AbsmaxArgs va{kDtypeBF16, ctx.chunk_v.get(), n, kHkv, kD, kHkv * kD, kD, nullptr, out + 1};
  KVQ_CK(launch_absmax(ka, ctx.stream));
  KVQ_CK(launch_absmax(va, ctx.stream));
  float m[2] = {0, 0};
  KVQ_CK(cudaMemcpyAsync(m, out, sizeof m, cudaMemcpyDeviceToHost, ctx.stream));
  KVQ_CK(cudaStreamSynchronize(ctx.stream));
  const std::vector<float> scales = {std::max(m[0], 1e-6f) / 448.0f, std::max(m[1], 1e-6f) / 448.0f};
  ctx.fp8_scales = upload(scales, ctx.stream);
}

// ---- attention rows ----------------------------------------------------------------

struct Seq {
  int qlen, len;  // new tokens, context + new tokens
};

struct AttnCase {
  const char* group;
  std::string shape;
  Codec codec;
  std::vector<Seq> seqs;
};

Row run_attention(Ctx& ctx, const AttnCase& c) {
  Row row;
  row.group = c.group;
  row.shape = c.shape;
  row.codec = codec_name(c.codec);
  const int64_t nseq = static_cast<int64_t>(c.seqs.size());
  int64_t per_copy = 0, stride = 0, tokens = 0, max_q = 0, max_len = 0;
  double ctx_keys = 0, flops = 0;
  for (const Seq& s : c.seqs) {
    const int64_t bps = (s.len + kBs - 1) / kBs;
    per_copy += bps;
    stride = std::max(stride, bps);
    tokens += s.qlen;
    max_q = std::max<int64_t>(max_q, s.qlen);
    max_len = std::max<int64_t>(max_len, s.len);
    ctx_keys += s.len;
    for (int i = 0; i < s.qlen; ++i)  // query i sees the context and new tokens 0..i
      flops += 4.0 * kHq * kD * (s.len - s.qlen + i + 1);
  }
  CacheLayout probe = layout_for(c.codec, 0);
  const double copy_bytes = static_cast<double>(per_copy * probe.bytes_per_block);
  const int64_t copies = copies_for(ctx, copy_bytes);
  const CacheLayout l = layout_for(c.codec, copies * per_copy);
  DevMem cache(static_cast<size_t>(l.num_blocks * l.bytes_per_block));
  fill_cache(ctx, c.codec, l, cache.get<unsigned char>());

  // Block tables: copy k's blocks, shuffled, handed out to the sequences in order.
  std::mt19937 rng(static_cast<uint32_t>(ctx.seed++));
  std::vector<int32_t> tables(static_cast<size_t>(copies * nseq * stride));
  for (int64_t k = 0; k < copies; ++k) {
    std::vector<int32_t> perm(static_cast<size_t>(per_copy));
    std::iota(perm.begin(), perm.end(), static_cast<int32_t>(k * per_copy));
    std::shuffle(perm.begin(), perm.end(), rng);
    size_t next = 0;
    for (int64_t s = 0; s < nseq; ++s) {
      const int64_t bps = (c.seqs[static_cast<size_t>(s)].len + kBs - 1) / kBs;
      for (int64_t j = 0; j < stride; ++j)
        tables[static_cast<size_t>((k * nseq + s) * stride + j)] = j < bps ? perm[next++] : perm[0];
    }
  }
  std::vector<int32_t> qsl(1, 0), lens;
  for (const Seq& s : c.seqs) {
    qsl.push_back(qsl.back() + s.qlen);
    lens.push_back(s.len);
  }
  DevMem d_tables = upload(tables, ctx.stream), d_qsl = upload(qsl, ctx.stream),
         d_lens = upload(lens, ctx.stream);
  const size_t q_elems = static_cast<size_t>(tokens * kHq * kD);
  DevMem q(q_elems * 2), out(q_elems * 2), verdict(sizeof(AttentionVerdict));
  fill_normal_bf16(q.get<uint16_t>(), q_elems, ctx.seed++, 1.0f, ctx.stream);
  KVQ_CK(cudaMemsetAsync(out.get(), 0xFF, q_elems * 2, ctx.stream));  // NaN: unwritten rows show

  AttentionArgs a{};
  a.codec = c.codec;
  a.layout = l;
  a.q_dtype = a.out_dtype = kDtypeBF16;
  a.num_heads = kHq;
  a.query = q.get();
  a.q_stride_token = kHq * kD;
  a.q_stride_head = kD;
  a.output = out.get();
  a.o_stride_token = kHq * kD;
  a.o_stride_head = kD;
  a.cache = cache.get<unsigned char>();
  a.block_table = d_tables.get<int32_t>();
  a.block_table_stride = stride;
  a.query_start_loc = d_qsl.get<int32_t>();
  a.seq_lens = d_lens.get<int32_t>();
  a.num_seqs = nseq;
  a.num_tokens = tokens;
  a.max_query_len = max_q;
  a.max_seq_len = max_len;
  a.softmax_scale = 1.0f / std::sqrt(static_cast<float>(kD));
  a.k_scales = ctx.fp8_scales.get<float>();
  a.v_scales = ctx.fp8_scales.get<float>() + 1;
  a.num_kv_scales = 1;
  a.verdict = ctx.verdict ? verdict.get<AttentionVerdict>() : nullptr;
  const AttentionPlan plan = attention_plan(a, ctx.num_sms);
  row.path = plan.path;
  row.padded_head = plan.padded_head;
  row.decode_splits = plan.decode_splits;
  row.prefill_splits = plan.prefill_splits;
  row.heads_per_cta = plan.heads_per_cta;
  row.workspace_bytes = plan.workspace_bytes;
  const bool prefill_kernel = max_q * (kHq / kHkv) > 8;
  char buf[160];
  if (plan.path == 1)
    std::snprintf(buf, sizeof buf, "simt");
  else
    std::snprintf(buf, sizeof buf, "tc d%d hc%d, decode splits %d%s%s, ws %.1f MB", plan.padded_head,
                  plan.heads_per_cta, plan.decode_splits, prefill_kernel ? ", prefill splits " : "",
                  prefill_kernel ? std::to_string(plan.prefill_splits).c_str() : "",
                  plan.workspace_bytes / 1e6);
  row.plan = buf;
  row.copies = static_cast<int>(copies);
  row.rotated_bytes = static_cast<double>(l.num_blocks * l.bytes_per_block);
  row.bytes_read = ctx_keys * kHkv * 2.0 * l.row_bytes + q_elems * 2.0 + 4.0 * nseq * stride +
                   4.0 * (2 * nseq + 1);
  row.bytes_written = q_elems * 2.0;
  row.bw_ref = std::string(c.group) == "prefill" ? "" : "read";
  row.flops = std::string(c.group) == "decode" ? 0.0 : flops;
  if (plan.error != 0) {
    row.problem = "attention_plan refused the call: error " + std::to_string(plan.error);
    return row;
  }
  DevMem ws(static_cast<size_t>(std::max<int64_t>(plan.workspace_bytes, 16)));
  a.workspace = ws.get<float>();
  a.workspace_bytes = plan.workspace_bytes;

  const Timing t = time_runs(ctx.stream, static_cast<int>(copies), ctx.timer, [&](long long i) {
    a.block_table = d_tables.get<int32_t>() + (i % copies) * nseq * stride;
    return launch_attention(a, ctx.num_sms, ctx.stream);
  });
  row.us = t.us;
  row.min_us = t.min_us;
  row.max_us = t.max_us;
  row.samples = t.samples;
  row.runs_per_sample = t.runs_per_sample;
  row.timing_mode = t.mode;

  // After the timing: the verdict of the last run, and no NaN/Inf left in the output.
  KVQ_CK(cudaMemsetAsync(ctx.nonfinite.get(), 0, 8, ctx.stream));
  count_nonfinite_bf16(out.get<uint16_t>(), q_elems, ctx.nonfinite.get<unsigned long long>(), ctx.stream);
  unsigned long long bad = 0;
  AttentionVerdict v{};
  KVQ_CK(cudaMemcpyAsync(&bad, ctx.nonfinite.get(), 8, cudaMemcpyDeviceToHost, ctx.stream));
  if (ctx.verdict)
    KVQ_CK(cudaMemcpyAsync(&v, verdict.get(), sizeof v, cudaMemcpyDeviceToHost, ctx.stream));
  KVQ_CK(cudaStreamSynchronize(ctx.stream));
  if (v.code != 0) row.problem = "attention verdict " + std::to_string(v.code);
  if (bad != 0) row.problem += (row.problem.empty() ? "" : "; ") + std::to_string(bad) + " NaN/Inf outputs";
  return row;
}

// ---- cache write rows --------------------------------------------------------------

Row run_write(Ctx& ctx, Codec codec, int64_t tokens) {
  Row row;
  row.group = "write";
  row.shape = std::to_string(tokens);
  row.codec = codec_name(codec);
  const int64_t per_copy = (tokens + kBs - 1) / kBs;
  const CacheLayout probe = layout_for(codec, 0);
  const int64_t copies = copies_for(ctx, static_cast<double>(per_copy * probe.bytes_per_block));
  const CacheLayout l = layout_for(codec, copies * per_copy);
  DevMem cache(static_cast<size_t>(l.num_blocks * l.bytes_per_block));
  KVQ_CK(launch_cache_init(codec, l, cache.get<unsigned char>(), ctx.stream));
  const int64_t elems = tokens * kHkv * kD;  // per K (or V) input copy
  const int64_t in_copies = copies_for(ctx, 4.0 * static_cast<double>(elems));
  DevMem k(static_cast<size_t>(in_copies * elems * 2)), v(static_cast<size_t>(in_copies * elems * 2));
  fill_normal_bf16(k.get<uint16_t>(), static_cast<size_t>(in_copies * elems), ctx.seed++, 1.0f, ctx.stream);
  fill_normal_bf16(v.get<uint16_t>(), static_cast<size_t>(in_copies * elems), ctx.seed++, 1.0f, ctx.stream);
  // Slot mappings: copy c's blocks shuffled; a block's 16 tokens consecutive (as a prefill's).
  std::mt19937 rng(static_cast<uint32_t>(ctx.seed++));
  std::vector<int64_t> slots(static_cast<size_t>(copies * tokens));
  for (int64_t c = 0; c < copies; ++c) {
    std::vector<int64_t> perm(static_cast<size_t>(per_copy));
    std::iota(perm.begin(), perm.end(), c * per_copy);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t t = 0; t < tokens; ++t)
      slots[static_cast<size_t>(c * tokens + t)] = perm[static_cast<size_t>(t / kBs)] * kBs + t % kBs;
  }
  DevMem d_slots = upload(slots, ctx.stream);
  const float* sc = ctx.fp8_scales.get<float>();
  WriteArgs w{codec, l, kDtypeBF16, k.get(), kHkv * kD, kD, v.get(), kHkv * kD, kD,
              d_slots.get<int64_t>(), tokens, cache.get<unsigned char>(), sc, sc + 1, 1,
              ctx.write_verdict.get<WriteVerdict>()};
  row.grid = (tokens * kHkv + 7) / 8;
  row.plan = "validate + write kernels, " + std::to_string(row.grid) + " CTAs x 256 each";
  row.copies = static_cast<int>(copies);
  row.rotated_bytes = static_cast<double>(l.num_blocks * l.bytes_per_block);
  row.bytes_read = 4.0 * static_cast<double>(elems) + 8.0 * tokens;
  row.bytes_written = static_cast<double>(tokens) * kHkv * 2 * l.row_bytes;
  row.bw_ref = "copy";
  const Timing t = time_runs(ctx.stream, static_cast<int>(copies), ctx.timer, [&](long long i) {
    w.key = k.get<uint16_t>() + (i % in_copies) * elems;
    w.value = v.get<uint16_t>() + (i % in_copies) * elems;
    w.slot_mapping = d_slots.get<int64_t>() + (i % copies) * tokens;
    return launch_cache_write(w, ctx.stream);
  });
  row.us = t.us;
  row.min_us = t.min_us;
  row.max_us = t.max_us;
  row.samples = t.samples;
  row.runs_per_sample = t.runs_per_sample;
  row.timing_mode = t.mode;
  WriteVerdict wv{};
  KVQ_CK(cudaMemcpyAsync(&wv, ctx.write_verdict.get(), sizeof wv, cudaMemcpyDeviceToHost, ctx.stream));
  KVQ_CK(cudaStreamSynchronize(ctx.stream));
  if (wv.code != 0) row.problem = "write verdict " + std::to_string(wv.code);
  return row;
}

// ---- the rows ------------------------------------------------------------------------

struct RowPlan {
  std::vector<AttnCase> attention;
  std::vector<std::pair<Codec, int64_t>> writes;
};

RowPlan all_rows(bool quick) {
  RowPlan p;
  const Codec decode_codecs[] = {Codec::kBF16, Codec::kInt8Pth, Codec::kFp8Pth, Codec::kInt4Pth, Codec::kE4M3};
  const Codec pair[] = {Codec::kBF16, Codec::kInt8Pth};
  auto decodes = [](int n, int len) { return std::vector<Seq>(static_cast<size_t>(n), Seq{1, len}); };
  struct Shape {
    std::string name;
    std::vector<Seq> seqs;
  };
  std::vector<Shape> dec, pre, mixed;
  if (!quick) {
    dec = {{"1x16384", decodes(1, 16384)}, {"64x4096", decodes(64, 4096)}, {"256x4096", decodes(256, 4096)}};
    pre = {{"512x16384", {{512, 16384}}}, {"8x2048", std::vector<Seq>(8, Seq{2048, 2048})}};
    std::vector<Seq> m = decodes(64, 4096);
    m.push_back({512, 2560});
    m.push_back({512, 2560});
    mixed = {{"64x4096+2x512/2560", m}};
  } else {
    dec = {{"1x2048", decodes(1, 2048)}, {"8x1024", decodes(8, 1024)}, {"32x1024", decodes(32, 1024)}};
    pre = {{"128x2048", {{128, 2048}}}, {"2x512", std::vector<Seq>(2, Seq{512, 512})}};
    std::vector<Seq> m = decodes(8, 1024);
    m.push_back({128, 640});
    mixed = {{"8x1024+1x128/640", m}};
  }
  for (const Shape& s : dec)
    for (Codec c : decode_codecs) p.attention.push_back({"decode", s.name, c, s.seqs});
  for (const Shape& s : pre)
    for (Codec c : pair) p.attention.push_back({"prefill", s.name, c, s.seqs});
  for (const Shape& s : mixed)
    for (Codec c : pair) p.attention.push_back({"mixed", s.name, c, s.seqs});
  for (Codec c : {Codec::kBF16, Codec::kInt8Pth, Codec::kFp8Pth, Codec::kInt4Pth, Codec::kE4M3})
    p.writes.push_back({c, quick ? 4096 : 65536});
  return p;
}

int usage() {
  std::fprintf(stderr,
               "usage: kvq_cuda_bench [--quick] [--json FILE] [--filter TEXT] [--reps N (>= 20)] "
               "[--graph-below US] [--no-verdict]\n");
  return 2;
}

}  // namespace
}  // namespace kvq::cuda::bench

int main(int argc, char** argv) {
  using namespace kvq::cuda;
  using namespace kvq::cuda::bench;
  bool quick = false;
  std::string json, filter;
  Ctx ctx;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--quick") {
      quick = true;
    } else if (s == "--no-verdict") {
      ctx.verdict = false;
    } else if ((s == "--json" || s == "--filter" || s == "--reps" || s == "--graph-below") &&
               i + 1 < argc) {
      const std::string v = argv[++i];
      if (s == "--json") json = v;
      if (s == "--filter") filter = v;
      if (s == "--reps") {
        ctx.timer.reps = std::atoi(v.c_str());
        if (ctx.timer.reps < 20) return usage();
      }
      if (s == "--graph-below") {
        char* end = nullptr;
        ctx.timer.graph_below_us = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !(ctx.timer.graph_below_us >= 0)) return usage();
      }
    } else {
      return usage();
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  KVQ_CK(cudaGetDeviceProperties(&prop, 0));
  ctx.num_sms = prop.multiProcessorCount;
  KVQ_CK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
  Report rep;
  rep.device = prop.name;
  rep.num_sms = prop.multiProcessorCount;
  rep.l2_mib = prop.l2CacheSize >> 20;
  rep.cc_major = prop.major;
  rep.cc_minor = prop.minor;
  rep.quick = quick;
  rep.verdict = ctx.verdict;
  rep.reps = ctx.timer.reps;
  rep.graph_below_us = ctx.timer.graph_below_us;
  if (quick) {
    ctx.rotate_bytes = size_t{256} << 20;
    ctx.fill_chunk = 16384;
  }
  const size_t ceil_bytes = quick ? size_t{256} << 20 : size_t{4} << 30;
  const int gemm_n = quick ? 4096 : 8192;
  std::fprintf(stderr, "kvq_cuda_bench: %s, %d SMs%s\n", prop.name, ctx.num_sms, quick ? " (--quick)" : "");

  rep.start = measure_ceilings(ctx.stream, ctx.num_sms, ceil_bytes, gemm_n, ctx.timer);
  std::fprintf(stderr, "ceilings: read %.0f GB/s, copy %.0f GB/s, GEMM %.1f TFLOP/s\n", rep.start.read_gbs,
               rep.start.copy_gbs, rep.start.gemm_tflops);

  const size_t chunk_elems = static_cast<size_t>(ctx.fill_chunk) * kHkv * kD;
  ctx.chunk_k = DevMem(chunk_elems * 2);
  ctx.chunk_v = DevMem(chunk_elems * 2);
  ctx.chunk_slots = DevMem(static_cast<size_t>(ctx.fill_chunk) * 8);
  ctx.write_verdict = DevMem(sizeof(WriteVerdict));
  ctx.nonfinite = DevMem(16);
  make_fp8_scales(ctx);

  const RowPlan plan = all_rows(quick);
  auto selected = [&](const char* group, Codec c, const std::string& shape) {
    return filter.empty() ||
           (std::string(group) + " " + codec_name(c) + " " + shape).find(filter) != std::string::npos;
  };
  auto done = [&](const Row& r) {
    std::fprintf(stderr, "%-8s %-9s %-20s %10.1f us  %s%s\n", r.group.c_str(), r.codec.c_str(),
                 r.shape.c_str(), r.us, r.plan.c_str(), r.problem.empty() ? "" : "  CHECK FAILED");
    rep.rows.push_back(r);
  };
  for (const AttnCase& c : plan.attention)
    if (selected(c.group, c.codec, c.shape)) done(run_attention(ctx, c));
  for (const auto& [c, tokens] : plan.writes)
    if (selected("write", c, std::to_string(tokens))) done(run_write(ctx, c, tokens));

  ctx.chunk_k = DevMem();
  ctx.chunk_v = DevMem();
  rep.end = measure_ceilings(ctx.stream, ctx.num_sms, ceil_bytes, gemm_n, ctx.timer);
  print_markdown(rep, stdout);
  int rc = 0;
  if (!json.empty() && !write_json(rep, json)) {
    std::fprintf(stderr, "cannot write %s\n", json.c_str());
    rc = 1;
  }
  for (const Row& r : rep.rows)
    if (!r.problem.empty()) rc = 1;
  ctx.fp8_scales = DevMem();
  KVQ_CK(cudaStreamDestroy(ctx.stream));
  return rc;
}
