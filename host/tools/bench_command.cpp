#include "bench_command.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "kvq_engine/float_codec.hpp"
#include "kvq_engine/host_tensor.hpp"
#include "kvq_engine/kv_cache_buffer.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_files/errors.hpp"
#include "memory_bandwidth.hpp"

namespace kvq::host {
namespace {

constexpr int64_t kHeadSize = 128;
constexpr int64_t kBlockSize = 32;  // C8 needs a multiple of 32; every mode uses the same
constexpr const char* kLayerName = "model.layers.0.self_attn.attn";

// A KV cache mode and how a layer gets into it through the ABI.
struct ModeSpec {
  const char* label;
  const char* library;  // file name next to kvq's lib/ directory
  const char* backend;
  const char* kv_cache_dtype;
  const char* scheme;  // "" = none
};

// bf16 first: the other modes' ratios are taken against it.
constexpr ModeSpec kModes[] = {
    {"bf16", "libkvq_triton_sim.so", "triton", "bfloat16", ""},
    {"fp8_per_tensor", "libkvq_triton_sim.so", "triton", "fp8", ""},
    {"int8_pth", "libkvq_triton_sim.so", "triton", "int8_per_token_head", ""},
    {"fp8_pth", "libkvq_triton_sim.so", "triton", "fp8_per_token_head", ""},
    {"int4_pth", "libkvq_triton_sim.so", "triton", "int4_per_token_head", ""},
    {"C8", "libkvq_ascend.so", "ascend", "auto", "C8"},
};

struct Gqa {
  int64_t heads, kv_heads;
};
constexpr Gqa kGqas[] = {{32, 8}, {8, 8}};

enum class Kind { kDecode, kPrefill, kMixed, kWrite };

// One row group of the table. Decode: `seqs` sequences of one token over
// `ctx` keys. Prefill: one sequence, `q_len` new tokens, `ctx` keys in all.
// Mixed: seqs - 1 decodes over ctx keys, then one prefill chunk of q_len
// tokens ending at ctx keys. Write: q_len tokens into the cache.
struct CaseSpec {
  Kind kind;
  int64_t seqs, ctx, q_len;
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kDecode: return "decode";
    case Kind::kPrefill: return "prefill";
    case Kind::kMixed: return "mixed";
    case Kind::kWrite: return "write";
  }
  return "?";
}

std::string case_shape(const CaseSpec& c) {
  switch (c.kind) {
    case Kind::kDecode: return fmt::format("{} seq x {} keys", c.seqs, c.ctx);
    case Kind::kPrefill: return fmt::format("{} q x {} keys", c.q_len, c.ctx);
    case Kind::kMixed:
      return fmt::format("{} dec + {} q, {} keys each", c.seqs - 1, c.q_len, c.ctx);
    case Kind::kWrite: return fmt::format("{} tokens", c.q_len);
  }
  return "";
}

struct Sizes {
  int64_t ctx_short, ctx_long, many_seqs, prefill_q, write_tokens;
  size_t pool_bytes;   // the cache pool a case's copies rotate through (>> L3)
  size_t flush_bytes;  // written before a case's timed runs to evict the caches
  size_t bandwidth_bytes;
  double min_seconds;  // timed runs per case add up to at least this
};

constexpr Sizes kFull{
    4096, 16384, 16, 512, 2048, size_t{1} << 30, size_t{512} << 20, size_t{1} << 30, 0.5};
constexpr Sizes kQuick{256, 512, 16, 32, 256, size_t{16} << 20, 0, size_t{64} << 20, 0.005};

std::vector<CaseSpec> cases(const Sizes& s) {
  return {{Kind::kDecode, 1, s.ctx_short, 1},
          {Kind::kDecode, 1, s.ctx_long, 1},
          {Kind::kDecode, s.many_seqs, s.ctx_short, 1},
          {Kind::kDecode, s.many_seqs, s.ctx_long, 1},
          {Kind::kPrefill, 1, s.ctx_long, s.prefill_q},
          {Kind::kMixed, s.many_seqs, s.ctx_short, s.prefill_q},
          {Kind::kWrite, 0, 0, s.write_tokens}};
}

// Deterministic bf16 values, uniform in [-1, 1).
void fill_bf16(HostTensor& t, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  auto* p = t.as<uint16_t>();
  for (int64_t i = 0; i < t.num_elements(); ++i) p[i] = float_to_bf16_bits(dist(rng));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A layer of one mode and head layout on one plugin session, ready to run.
Layer make_layer(const Plugin& plugin, const ModeSpec& mode, const Gqa& gqa) {
  client::LayerConfig c;
  c.backend = mode.backend;
  c.layer_name = kLayerName;
  c.kv_cache_dtype = mode.kv_cache_dtype;
  c.model_dtype = KVQ_DTYPE_BF16;
  c.num_heads = gqa.heads;
  c.num_kv_heads = gqa.kv_heads;
  c.head_size = kHeadSize;
  c.block_size = kBlockSize;
  Layer layer = plugin.create_layer(c);
  if (mode.scheme[0] != '\0') {
    layer.apply_scheme(mode.scheme, "attention");
    // C8: symmetric per-channel scales for inputs in [-1, 1) (max / 127), offset 0.
    HostTensor values(KVQ_DTYPE_F32, {gqa.kv_heads * kHeadSize});
    for (const ParamInfo& p : layer.params()) {
      if (p.loader.empty()) continue;
      const bool scale = p.name.ends_with("scale");
      std::fill_n(values.as<float>(), values.num_elements(), scale ? 1.0f / 127.0f : 0.0f);
      layer.param_load(p.name, values.view(), 0, 1);
    }
  }
  layer.process_weights();  // fp8 per-tensor: the default scales; C8: prepares its scales
  return layer;
}

// The cache pool of one (mode, head layout): every block filled with real
// quantized rows, written once through cache_write and copied, so the
// timed calls read data the plugin itself encoded.
struct Pool {
  std::unique_ptr<KvCacheBuffer> cache;
  int64_t blocks = 0, bytes_per_block = 0;
  int64_t rotation = 0;        // blocks the copies of a case rotate through
  std::vector<int32_t> order;  // a fixed random permutation of the blocks
};

Pool make_pool(const Plugin& plugin, Layer& layer, const Gqa& gqa, const Sizes& s) {
  const kvq_cache_geometry g = layer.cache_geometry();
  Pool pool;
  pool.bytes_per_block = g.bytes_per_block;
  const int64_t largest = s.many_seqs * s.ctx_long / kBlockSize;
  const auto by_bytes = static_cast<int64_t>(s.pool_bytes / static_cast<size_t>(g.bytes_per_block));
  pool.blocks = std::max(largest, by_bytes);
  pool.rotation = std::max<int64_t>(1, by_bytes);
  pool.cache = std::make_unique<KvCacheBuffer>(plugin, pool.blocks, g);
  layer.cache_init(pool.cache->tensor());

  // One pattern of `n` tokens, then copied block by block over the pool.
  const int64_t n = std::min<int64_t>(2048, pool.blocks * kBlockSize);
  HostTensor key(KVQ_DTYPE_BF16, {n, gqa.kv_heads, kHeadSize});
  HostTensor value(KVQ_DTYPE_BF16, {n, gqa.kv_heads, kHeadSize});
  fill_bf16(key, 1);
  fill_bf16(value, 2);
  HostTensor slots(KVQ_DTYPE_I64, {n});
  std::iota(slots.as<int64_t>(), slots.as<int64_t>() + n, int64_t{0});
  layer.cache_write(client::CacheWriteArgs()
                        .key(key.view())
                        .value(value.view())
                        .slot_mapping(slots.view())
                        .kv_cache(pool.cache->tensor()));
  // Copies of the written pattern, through the buffer (the plugin's memory).
  const int64_t pattern = n / kBlockSize;
  std::vector<std::byte> bytes(static_cast<size_t>(pattern * g.bytes_per_block));
  Buffer& memory = pool.cache->buffer();
  memory.download(bytes);
  for (int64_t b = pattern; b < pool.blocks; ++b)
    memory.upload(std::span(bytes).subspan(static_cast<size_t>((b % pattern) * g.bytes_per_block),
                                           static_cast<size_t>(g.bytes_per_block)),
                  static_cast<uint64_t>(b * g.bytes_per_block));

  pool.order.resize(static_cast<size_t>(pool.blocks));
  std::iota(pool.order.begin(), pool.order.end(), 0);
  std::shuffle(pool.order.begin(), pool.order.end(), std::mt19937_64(7));
  return pool;
}

// The forward arguments of one attention case, with one block table per
// copy of its blocks in the pool (consecutive runs rotate through copies, so
// the data comes from memory, not from the last-level cache).
struct AttentionRun {
  HostTensor query, output, qsl, seq_lens;
  std::vector<HostTensor> tables;
  client::ForwardArgs args;
  double kv_bytes = 0.0, flops = 0.0;
};

AttentionRun make_attention(const CaseSpec& c, const Gqa& gqa, const Pool& pool) {
  struct Seq {
    int64_t q_len, seq_len;
  };
  std::vector<Seq> seqs;
  int32_t state = KVQ_ATTN_DECODE_ONLY;
  if (c.kind == Kind::kDecode) {
    seqs.assign(static_cast<size_t>(c.seqs), {1, c.ctx});
  } else if (c.kind == Kind::kPrefill) {
    seqs.push_back({c.q_len, c.ctx});
    state = KVQ_ATTN_PREFILL_CACHE_HIT;
  } else {
    seqs.assign(static_cast<size_t>(c.seqs - 1), {1, c.ctx});
    seqs.push_back({c.q_len, c.ctx});
    state = KVQ_ATTN_CHUNKED_PREFILL;
  }
  AttentionRun r;
  const auto num_seqs = static_cast<int64_t>(seqs.size());
  int64_t tokens = 0, blocks = 0, max_blocks = 0;
  for (const Seq& s : seqs) {
    tokens += s.q_len;
    const int64_t nb = (s.seq_len + kBlockSize - 1) / kBlockSize;
    blocks += nb;
    max_blocks = std::max(max_blocks, nb);
    r.kv_bytes += static_cast<double>(nb * pool.bytes_per_block);
    // Each query token sees its causal prefix: Q·K and P·V, 2 FLOP per MAC.
    for (int64_t i = 0; i < s.q_len; ++i)
      r.flops += 2.0 * 2.0 * static_cast<double>(gqa.heads * kHeadSize) *
                 static_cast<double>(s.seq_len - s.q_len + i + 1);
  }
  r.query.reshape(KVQ_DTYPE_BF16, {tokens, gqa.heads, kHeadSize});
  fill_bf16(r.query, 3);
  r.output.reshape(KVQ_DTYPE_BF16, {tokens, gqa.heads, kHeadSize});
  r.qsl.reshape(KVQ_DTYPE_I32, {num_seqs + 1});
  r.seq_lens.reshape(KVQ_DTYPE_I32, {num_seqs});
  r.qsl.as<int32_t>()[0] = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    r.qsl.as<int32_t>()[s + 1] =
        r.qsl.as<int32_t>()[s] + static_cast<int32_t>(seqs[static_cast<size_t>(s)].q_len);
    r.seq_lens.as<int32_t>()[s] = static_cast<int32_t>(seqs[static_cast<size_t>(s)].seq_len);
  }
  const int64_t copies = std::max<int64_t>(1, std::min(pool.blocks, pool.rotation) / blocks);
  for (int64_t copy = 0; copy < copies; ++copy) {
    HostTensor t(KVQ_DTYPE_I32, {num_seqs, max_blocks});
    std::fill_n(t.as<int32_t>(), t.num_elements(), 0);
    const int32_t* next = pool.order.data() + copy * blocks;
    for (int64_t s = 0; s < num_seqs; ++s) {
      const int64_t nb = (seqs[static_cast<size_t>(s)].seq_len + kBlockSize - 1) / kBlockSize;
      std::copy(next, next + nb, t.as<int32_t>() + s * max_blocks);
      next += nb;
    }
    r.tables.push_back(std::move(t));
  }
  r.args.attention_state(state)
      .query(r.query.view())
      .kv_cache(pool.cache->tensor())
      .query_start_loc(r.qsl.view())
      .seq_lens(r.seq_lens.view())
      .output(r.output.view());
  return r;
}

// Cache write of q_len tokens into blocks of the pool, a different set of
// blocks for each copy.
struct WriteRun {
  HostTensor key, value;
  std::vector<HostTensor> slots;
  client::CacheWriteArgs args;
  double bytes = 0.0;
};

WriteRun make_write(const CaseSpec& c, const Gqa& gqa, const Pool& pool) {
  WriteRun r;
  r.key.reshape(KVQ_DTYPE_BF16, {c.q_len, gqa.kv_heads, kHeadSize});
  r.value.reshape(KVQ_DTYPE_BF16, {c.q_len, gqa.kv_heads, kHeadSize});
  fill_bf16(r.key, 4);
  fill_bf16(r.value, 5);
  r.bytes = static_cast<double>(2 * c.q_len * gqa.kv_heads * kHeadSize * 2);  // bf16 K and V
  const int64_t blocks = (c.q_len + kBlockSize - 1) / kBlockSize;
  const int64_t copies = std::max<int64_t>(1, std::min(pool.blocks, pool.rotation) / blocks);
  for (int64_t copy = 0; copy < copies; ++copy) {
    HostTensor s(KVQ_DTYPE_I64, {c.q_len});
    for (int64_t t = 0; t < c.q_len; ++t)
      s.as<int64_t>()[t] =
          int64_t{pool.order[static_cast<size_t>(copy * blocks + t / kBlockSize)]} * kBlockSize +
          t % kBlockSize;
    r.slots.push_back(std::move(s));
  }
  r.args.key(r.key.view()).value(r.value.view()).kv_cache(pool.cache->tensor());
  return r;
}

// Median seconds of run(copy) over copies in rotation: one untimed warm-up
// (thread pool, page faults), a cache flush, then runs until min_seconds.
template <class Run>
double time_runs(Run run, int64_t copies, double min_seconds, std::vector<unsigned char>& flush) {
  double t0 = now_seconds();
  run(copies - 1);
  const double warm = now_seconds() - t0;
  if (!flush.empty()) std::memset(flush.data(), static_cast<int>(flush[0]) + 1, flush.size());
  std::vector<double> times;
  const size_t wanted = warm > 2 * min_seconds ? 1 : 3;
  double total = 0.0;
  for (int64_t i = 0; times.size() < wanted || (total < min_seconds && times.size() < 200); ++i) {
    t0 = now_seconds();
    run(i % copies);
    times.push_back(now_seconds() - t0);
    total += times.back();
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Row {
  size_t gqa = 0, kase = 0, mode = 0;
  int threads = 1;
  double seconds = 0.0, kv_bytes = 0.0, flops = 0.0;
  std::string error;
};

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("model name")) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return fmt::format("{} {} {}", a, b, c);
}

void print_table(std::ostream& out, std::vector<Row> rows, const std::vector<CaseSpec>& cs,
                 const std::map<int, double>& bw) {
  // Grouped by head layout, case and threads, the modes of a group together.
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(a.gqa, a.kase, a.threads, a.mode) < std::tie(b.gqa, b.kase, b.threads, b.mode);
  });
  fmt::print(out,
             "| case | shape | heads q/kv | mode | thr | time ms | KV MB | GB/s | of bw | "
             "GFLOP/s | vs bf16 |\n"
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    const CaseSpec& c = cs[r.kase];
    const Gqa& g = kGqas[r.gqa];
    const std::string head =
        fmt::format("| {} | {} | {}/{} | {} | {} |", kind_name(c.kind), case_shape(c), g.heads,
                    g.kv_heads, kModes[r.mode].label, r.threads);
    if (!r.error.empty()) {
      fmt::print(out, "{} error: {} | | | | | |\n", head, r.error);
      continue;
    }
    const double rate = r.kv_bytes / r.seconds;
    const auto b = bw.find(r.threads);
    const std::string frac = b == bw.end() ? "-" : fmt::format("{:.2f}", rate / b->second);
    const std::string gflops =
        r.flops > 0 ? fmt::format("{:.1f}", r.flops / r.seconds / 1e9) : std::string("-");
    std::string ratio = "-";
    for (const Row& base : rows)
      if (base.mode == 0 && base.gqa == r.gqa && base.kase == r.kase && base.threads == r.threads &&
          base.error.empty() && r.mode != 0)
        ratio = fmt::format("{:.2f}x", base.seconds / r.seconds);
    fmt::print(out, "{} {:.3f} | {:.1f} | {:.1f} | {} | {} | {} |\n", head, r.seconds * 1e3,
               r.kv_bytes / 1e6, rate / 1e9, frac, gflops, ratio);
  }
}

}  // namespace

int command_bench(const BenchOptions& o, std::ostream& out) {
  Sizes s = o.quick ? kQuick : kFull;
  if (o.pool_mib) {
    s.pool_bytes = *o.pool_mib << 20;
    s.flush_bytes = 0;
  }
  const double min_seconds = o.min_seconds.value_or(s.min_seconds);
  const std::vector<CaseSpec> cs = cases(s);
  // A filter that matches nothing would print an empty table and exit 0.
  if (!o.filter.empty()) {
    std::vector<std::string> labels;
    for (const ModeSpec& mode : kModes)
      for (const CaseSpec& c : cs) {
        const std::string label = fmt::format("{} {}", kind_name(c.kind), mode.label);
        if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
      }
    if (std::none_of(labels.begin(), labels.end(),
                     [&](const std::string& l) { return l.find(o.filter) != std::string::npos; }))
      throw Error(fmt::format("bench: --filter '{}' matches no case; rows are named: {}", o.filter,
                              fmt::join(labels, ", ")));
  }

  // Plugin sessions per (library, threads); the thread count is fixed at negotiation.
  std::map<std::pair<std::string, int>, Plugin> plugins;
  const auto plugin = [&](const char* library, int threads) -> const Plugin& {
    const auto key = std::make_pair(std::string(library), threads);
    auto it = plugins.find(key);
    if (it == plugins.end())
      it = plugins.emplace(key, open_plugin(o.plugin_dir / library, {0, threads})).first;
    return it->second;
  };

  fmt::print(out, "kvq bench{}: {}\n", o.quick ? " --quick" : "", cpu_model());
  fmt::print(out, "load average at start: {}\n", load_average());
  for (const char* lib : {"libkvq_triton_sim.so", "libkvq_ascend.so"}) {
    const PluginInfo& info = plugin(lib, o.threads[0]).info();
    fmt::print(out, "{} {}: simd {} (cpu: {})\n", info.name, info.version, info.simd_level,
               info.cpu_features);
  }

  // The read loop is built for the kernels' SIMD level (see memory_bandwidth.hpp).
  const ReadIsa isa = read_isa_for(plugin(kModes[0].library, o.threads[0]).info().simd_level);
  std::map<int, double> bandwidth;  // bytes/s the kernels are compared with: the read
  fmt::print(out, "\n| threads | read GB/s | triad GB/s |\n|---:|---:|---:|\n");
  for (int t : o.threads) {
    const Bandwidth b = measure_bandwidth(t, s.bandwidth_bytes, o.quick ? 2 : 5, isa);
    bandwidth[t] = b.read;
    fmt::print(out, "| {} | {:.1f} | {:.1f} |\n", t, b.read / 1e9, b.triad / 1e9);
  }
  fmt::print(out,
             "\nread: {} loop, 8 register accumulators, best of {} over {} MiB; triad: a = b + "
             "s*c over 3 arrays (2 read + 1 written, counted as 3). of bw = GB/s / read at the "
             "same thread count; heads of size {}, block {}, bf16 queries; decode KV MB = every "
             "stored K/V byte of the context; write GB/s = bf16 K/V input.\n\n",
             read_isa_name(isa), o.quick ? 2 : 5, s.bandwidth_bytes >> 20, kHeadSize, kBlockSize);
  out.flush();

  std::vector<unsigned char> flush(s.flush_bytes);
  std::vector<Row> rows;
  for (size_t gi = 0; gi < std::size(kGqas); ++gi) {
    if (!o.heads.empty() && o.heads != fmt::format("{}/{}", kGqas[gi].heads, kGqas[gi].kv_heads))
      continue;
    for (size_t mi = 0; mi < std::size(kModes); ++mi) {
      const ModeSpec& mode = kModes[mi];
      const auto wanted = [&](const CaseSpec& c) {
        return (o.filter.empty() ||
                fmt::format("{} {}", kind_name(c.kind), mode.label).find(o.filter) !=
                    std::string::npos) &&
               (o.shape.empty() || case_shape(c).find(o.shape) != std::string::npos);
      };
      if (std::none_of(cs.begin(), cs.end(), wanted)) continue;
      std::vector<Layer> layers;
      std::optional<Pool> pool;
      std::string setup_error;
      try {
        for (int t : o.threads)
          layers.push_back(make_layer(plugin(mode.library, t), mode, kGqas[gi]));
        pool = make_pool(plugin(mode.library, o.threads[0]), layers[0], kGqas[gi], s);
      } catch (const std::exception& e) {
        setup_error = e.what();
      }
      for (size_t ci = 0; ci < cs.size(); ++ci) {
        if (!wanted(cs[ci])) continue;
        for (size_t ti = 0; ti < o.threads.size(); ++ti) {
          Row row;
          row.gqa = gi;
          row.kase = ci;
          row.mode = mi;
          row.threads = o.threads[ti];
          spdlog::info("bench: {} {} {} q{}/kv{} threads {}", kind_name(cs[ci].kind),
                       case_shape(cs[ci]), mode.label, kGqas[gi].heads, kGqas[gi].kv_heads,
                       o.threads[ti]);
          try {
            if (!setup_error.empty()) throw Error(setup_error);
            Layer& layer = layers[ti];
            if (cs[ci].kind == Kind::kWrite) {
              WriteRun w = make_write(cs[ci], kGqas[gi], *pool);
              row.kv_bytes = w.bytes;
              row.seconds = time_runs(
                  [&](int64_t copy) {
                    w.args.slot_mapping(w.slots[static_cast<size_t>(copy)].view());
                    layer.cache_write(w.args);
                  },
                  static_cast<int64_t>(w.slots.size()), min_seconds, flush);
            } else {
              AttentionRun a = make_attention(cs[ci], kGqas[gi], *pool);
              row.kv_bytes = a.kv_bytes;
              row.flops = a.flops;
              row.seconds = time_runs(
                  [&](int64_t copy) {
                    a.args.block_table(a.tables[static_cast<size_t>(copy)].view());
                    layer.forward(a.args);
                  },
                  static_cast<int64_t>(a.tables.size()), min_seconds, flush);
            }
          } catch (const std::exception& e) {
            row.error = e.what();
          }
          rows.push_back(std::move(row));
        }
      }
    }
  }
  print_table(out, rows, cs, bandwidth);
  fmt::print(out, "\nload average at end: {}\n", load_average());
  const bool failed =
      std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.error.empty(); });
  return failed ? 1 : 0;
}

}  // namespace kvq::host
