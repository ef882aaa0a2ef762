// kvq_cuda_bench's table, footer and JSON (see gpu_bench_report.hpp).
#include "gpu_bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace kvq::cuda::bench {
namespace {

double best(double a, double b) {
  return std::max(a, b);
}
double read_ceiling(const Report& rep) {
  return best(rep.start.read_gbs, rep.end.read_gbs);
}
double copy_ceiling(const Report& rep) {
  return best(rep.start.copy_gbs, rep.end.copy_gbs);
}
double gemm_ceiling(const Report& rep) {
  return best(rep.start.gemm_tflops, rep.end.gemm_tflops);
}

const Row* find(const Report& rep, const std::string& group, const std::string& codec,
                const std::string& shape) {
  for (const Row& r : rep.rows)
    if (r.group == group && r.codec == codec && r.shape == shape) return &r;
  return nullptr;
}

// vLLM's Triton kernels on an H200 (issue 13; decode, 32/8 heads, head 128,
// block 16; copy bandwidth in that run ~4.2 TB/s).
struct VllmPoint {
  const char* codec;
  const char* shape;
  double us;
};
constexpr VllmPoint kVllm[] = {
    {"bf16", "1x16384", 86},        {"bf16", "64x4096", 282},       {"bf16", "256x4096", 1107},
    {"int8_pth", "1x16384", 157},   {"int8_pth", "64x4096", 810},   {"int8_pth", "256x4096", 3251},
    {"fp8_pth", "1x16384", 164},    {"fp8_pth", "64x4096", 832},    {"fp8_pth", "256x4096", 3327},
};

struct Target {
  std::string what;
  double value;  // NaN: row missing
  double goal;
  bool at_least;  // value >= goal (else value <= goal)
  bool met() const { return std::isfinite(value) && (at_least ? value >= goal : value <= goal); }
};

std::vector<Target> targets(const Report& rep) {
  std::vector<Target> t;
  const double nan = std::nan("");
  auto frac = [&](const char* codec, const char* shape) {
    const Row* r = find(rep, "decode", codec, shape);
    return r ? frac_bw(rep, *r) : nan;
  };
  for (const char* shape : {"64x4096", "256x4096"}) {
    for (const char* c : {"int8_pth", "fp8_pth", "int4_pth"})
      t.push_back({std::string("decode ") + c + " " + shape + ": of read bw", frac(c, shape), 0.85, true});
    t.push_back({std::string("decode bf16 ") + shape + ": of read bw", frac("bf16", shape), 0.90, true});
    const Row* r = find(rep, "decode", "int8_pth", shape);
    t.push_back({std::string("decode int8_pth ") + shape + ": x faster than bf16",
                 r ? vs_bf16(rep, *r) : nan, 1.8, true});
  }
  for (const auto& [c, goal] : {std::pair<const char*, double>{"int8_pth", 20.0}, {"bf16", 30.0}}) {
    const Row* r = find(rep, "decode", c, "1x16384");
    t.push_back({std::string("decode ") + c + " 1x16384: us", r ? r->us : nan, goal, false});
  }
  const Row* p = find(rep, "prefill", "int8_pth", "512x16384");
  t.push_back({"prefill int8_pth 512x16384: of GEMM rate", p ? frac_gemm(rep, *p) : nan, 0.40, true});
  for (const Row& r : rep.rows)
    if (r.group == "write")
      t.push_back({"write " + r.codec + " " + r.shape + ": of copy bw", frac_bw(rep, r), 0.80, true});
  return t;
}

std::string num(double v, const char* f) {
  if (!std::isfinite(v) || v < 0) return "-";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// ---- JSON ---------------------------------------------------------------------------

std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += ch;
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += ch;
    }
  }
  return o + "\"";
}
std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}
std::string jopt(double v) {  // negative: not applicable
  return v < 0 ? "null" : jnum(v);
}
std::string jceil(const Ceilings& c) {
  return "{\"read_gbs\": " + jnum(c.read_gbs) + ", \"read_how\": " + jstr(c.read_how) +
         ", \"copy_gbs\": " + jnum(c.copy_gbs) + ", \"copy_how\": " + jstr(c.copy_how) +
         ", \"gemm_tflops\": " + jnum(c.gemm_tflops) + ", \"gemm_how\": " + jstr(c.gemm_how) + "}";
}

}  // namespace

double gbs(const Row& r) {
  return r.us > 0 ? (r.bytes_read + r.bytes_written) / (r.us * 1e3) : -1.0;
}
double frac_bw(const Report& rep, const Row& r) {
  const double c = r.bw_ref == "read" ? read_ceiling(rep) : r.bw_ref == "copy" ? copy_ceiling(rep) : 0;
  return c > 0 && r.us > 0 ? gbs(r) / c : -1.0;
}
double tflops(const Row& r) {
  return r.flops > 0 && r.us > 0 ? r.flops / (r.us * 1e6) : -1.0;
}
double frac_gemm(const Report& rep, const Row& r) {
  const double g = gemm_ceiling(rep);
  return g > 0 && tflops(r) > 0 ? tflops(r) / g : -1.0;
}
double vs_bf16(const Report& rep, const Row& r) {
  if (r.codec == "bf16") return -1.0;
  const Row* b = find(rep, r.group, "bf16", r.shape);
  return b && b->us > 0 && r.us > 0 ? b->us / r.us : -1.0;
}

void print_markdown(const Report& rep, std::FILE* out) {
  std::fprintf(out, "\n## kvq_cuda_bench: %s, %d SMs, %d MiB L2, cc %d.%d%s\n\n", rep.device.c_str(),
               rep.num_sms, rep.l2_mib, rep.cc_major, rep.cc_minor,
               rep.quick ? " (--quick: small sizes, not comparable)" : "");
  std::fprintf(out,
               "| case | plan | time us | timing | MB | GB/s | of bw | TFLOP/s | of GEMM | vs bf16 |\n"
               "|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rep.rows) {
    const std::string timing =
        r.runs_per_sample > 1
            ? "graph " + std::to_string(r.runs_per_sample) + "x, " + std::to_string(r.samples)
            : r.timing_mode + ", " + std::to_string(r.samples);
    const double f = frac_bw(rep, r);
    std::fprintf(out, "| %s %s %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.group.c_str(),
                 r.codec.c_str(), r.shape.c_str(), r.problem.empty() ? "" : " **CHECK FAILED**",
                 r.plan.c_str(), num(r.us, "%.1f").c_str(), timing.c_str(),
                 num((r.bytes_read + r.bytes_written) / 1e6, "%.1f").c_str(), num(gbs(r), "%.0f").c_str(),
                 f < 0 ? "-" : (num(f, "%.3f") + " " + r.bw_ref).c_str(), num(tflops(r), "%.1f").c_str(),
                 num(frac_gemm(rep, r), "%.3f").c_str(), num(vs_bf16(rep, r), "%.2fx").c_str());
  }
  for (const Row& r : rep.rows)
    if (!r.problem.empty())
      std::fprintf(out, "\nCHECK FAILED: %s %s %s: %s\n", r.group.c_str(), r.codec.c_str(),
                   r.shape.c_str(), r.problem.c_str());

  std::fprintf(out, "\nCeilings, measured in this run (start / end; fractions use the higher):\n");
  std::fprintf(out, "- read bandwidth: %.0f / %.0f GB/s (%s)\n", rep.start.read_gbs, rep.end.read_gbs,
               rep.start.read_how.c_str());
  std::fprintf(out, "- copy bandwidth: %.0f / %.0f GB/s, bytes read + written (%s)\n",
               rep.start.copy_gbs, rep.end.copy_gbs, rep.start.copy_how.c_str());
  std::fprintf(out, "- cuBLAS bf16 GEMM: %.1f / %.1f TFLOP/s (%s)\n", rep.start.gemm_tflops,
               rep.end.gemm_tflops, rep.start.gemm_how.c_str());
  std::fprintf(
      out,
      "\nShapes: decode NxL = N sequences of 1 query over L keys; prefill 512x16384 = 1 sequence of\n"
      "512 new tokens over 16384 keys (15872 context), 8x2048 = 8 sequences of 2048 new tokens, no\n"
      "context (causal); mixed 64x4096+2x512/2560 = 64 decodes of 4096 keys + 2 chunks of 512 new\n"
      "tokens over 2048 context, one call; write N = N tokens (bf16 K/V input) into shuffled blocks.\n"
      "How: 32 query / 8 KV heads, head 128, block 16, bf16 query and output. Each row's cache is\n"
      "filled by launch_cache_write of N(0,1) bf16 K/V (real scales and codes), in copies adding up\n"
      "to >= %s that the runs rotate through (the block tables of consecutive runs point into\n"
      "different copies, blocks shuffled within a copy), so the L2 holds none of a run's K/V.\n"
      "time = median of %d samples after warm-up, CUDA events; runs under %.0f us are captured\n"
      "repeatedly in a CUDA graph (a multiple of the copies, >= 300 us per sample) and the graph time divided.\n"
      "Attention is timed as the plugin launches it: %s.\n"
      "MB (decode, prefill, mixed): every K/V byte of the context once (row scales included) + query +\n"
      "output + block tables; split partials in the workspace are not counted. MB (write): bf16 K/V\n"
      "input + slot mapping read + cache rows written; the launcher's validation pass reads the\n"
      "input again and is not counted. of bw: decode and mixed vs the read bandwidth, write vs the\n"
      "copy bandwidth (both count read + written bytes). TFLOP/s: 4 x 32 heads x 128 per (query,\n"
      "visible key), causal (Q.K and P.V). vs bf16: bf16 time / this time, same case.\n",
      rep.quick ? "256 MiB" : "1 GiB", rep.reps, rep.graph_below_us,
      rep.verdict ? "verdict memset, decode and/or prefill kernels, split merge, verdict kernel"
                  : "kernels only (--no-verdict)");
  if (rep.quick) return;

  std::fprintf(out,
               "\nvs vLLM's Triton kernels on an H200 (issue 13; its run's copy bandwidth ~4200 GB/s, "
               "this run's %.0f):\n\n| case | vLLM us | kvq us | kvq faster |\n|---|---:|---:|---:|\n",
               copy_ceiling(rep));
  for (const VllmPoint& v : kVllm) {
    const Row* r = find(rep, "decode", v.codec, v.shape);
    std::fprintf(out, "| decode %s %s | %.0f | %s | %s |\n", v.codec, v.shape, v.us,
                 r ? num(r->us, "%.1f").c_str() : "-", r ? num(v.us / r->us, "%.2fx").c_str() : "-");
  }
  std::fprintf(out, "\nTargets (issue 13):\n\n| target | goal | here | |\n|---|---:|---:|---|\n");
  for (const Target& t : targets(rep))
    std::fprintf(out, "| %s | %s %.3g | %s | %s |\n", t.what.c_str(), t.at_least ? ">=" : "<=", t.goal,
                 num(t.value, "%.3f").c_str(), std::isfinite(t.value) ? (t.met() ? "met" : "MISSED") : "not run");
}

bool write_json(const Report& rep, const std::string& path) {
  std::string j = "{\n";
  j += "  \"tool\": \"kvq_cuda_bench\",\n";
  j += "  \"device\": {\"name\": " + jstr(rep.device) + ", \"sms\": " + std::to_string(rep.num_sms) +
       ", \"l2_mib\": " + std::to_string(rep.l2_mib) + ", \"cc\": \"" + std::to_string(rep.cc_major) +
       "." + std::to_string(rep.cc_minor) + "\"},\n";
  j += std::string("  \"options\": {\"quick\": ") + (rep.quick ? "true" : "false") +
       ", \"verdict\": " + (rep.verdict ? "true" : "false") + ", \"reps\": " + std::to_string(rep.reps) +
       ", \"graph_below_us\": " + jnum(rep.graph_below_us) + "},\n";
  j += "  \"ceilings_start\": " + jceil(rep.start) + ",\n";
  j += "  \"ceilings_end\": " + jceil(rep.end) + ",\n";
  j += "  \"rows\": [";
  for (size_t i = 0; i < rep.rows.size(); ++i) {
    const Row& r = rep.rows[i];
    j += i ? ",\n    {" : "\n    {";
    j += "\"group\": " + jstr(r.group) + ", \"codec\": " + jstr(r.codec) + ", \"shape\": " + jstr(r.shape);
    j += ", \"plan\": " + jstr(r.plan);
    if (r.path >= 0)
      j += ", \"attention_plan\": {\"path\": " + std::to_string(r.path) +
           ", \"padded_head\": " + std::to_string(r.padded_head) +
           ", \"decode_splits\": " + std::to_string(r.decode_splits) +
           ", \"prefill_splits\": " + std::to_string(r.prefill_splits) +
           ", \"heads_per_cta\": " + std::to_string(r.heads_per_cta) +
           ", \"workspace_bytes\": " + std::to_string(r.workspace_bytes) + "}";
    else
      j += ", \"write_grid\": " + std::to_string(r.grid);
    j += ", \"time_us\": " + jnum(r.us) + ", \"min_us\": " + jnum(r.min_us) + ", \"max_us\": " + jnum(r.max_us);
    j += ", \"timing\": " + jstr(r.timing_mode) + ", \"samples\": " + std::to_string(r.samples) +
         ", \"runs_per_sample\": " + std::to_string(r.runs_per_sample);
    j += ", \"bytes_read\": " + jnum(r.bytes_read) + ", \"bytes_written\": " + jnum(r.bytes_written);
    j += ", \"gbs\": " + jopt(gbs(r)) + ", \"bw_ref\": " + (r.bw_ref.empty() ? "null" : jstr(r.bw_ref)) +
         ", \"frac_bw\": " + jopt(frac_bw(rep, r));
    j += ", \"frac_read_bw\": " + jopt(gbs(r) / read_ceiling(rep)) +
         ", \"frac_copy_bw\": " + jopt(gbs(r) / copy_ceiling(rep));
    j += ", \"flops\": " + jnum(r.flops) + ", \"tflops\": " + jopt(tflops(r)) +
         ", \"frac_gemm\": " + jopt(frac_gemm(rep, r));
    j += ", \"vs_bf16\": " + jopt(vs_bf16(rep, r));
    j += ", \"rotated_bytes\": " + jnum(r.rotated_bytes) + ", \"copies\": " + std::to_string(r.copies);
    j += ", \"problem\": " + (r.problem.empty() ? std::string("null") : jstr(r.problem)) + "}";
  }
  j += "\n  ]";
  if (!rep.quick) {
    j += ",\n  \"vllm_triton\": [";
    bool first = true;
    for (const VllmPoint& v : kVllm) {
      const Row* r = find(rep, "decode", v.codec, v.shape);
      j += first ? "\n    " : ",\n    ";
      first = false;
      j += std::string("{\"case\": ") + jstr(std::string("decode ") + v.codec + " " + v.shape) +
           ", \"vllm_us\": " + jnum(v.us) + ", \"kvq_us\": " + (r ? jnum(r->us) : "null") +
           ", \"kvq_faster\": " + (r && r->us > 0 ? jnum(v.us / r->us) : "null") + "}";
    }
    j += "\n  ],\n  \"targets\": [";
    first = true;
    for (const Target& t : targets(rep)) {
      j += first ? "\n    " : ",\n    ";
      first = false;
      j += "{\"target\": " + jstr(t.what) + ", \"goal\": " + jnum(t.goal) +
           ", \"at_least\": " + (t.at_least ? "true" : "false") + ", \"value\": " + jnum(t.value) +
           ", \"met\": " + (std::isfinite(t.value) ? (t.met() ? "true" : "false") : "null") + "}";
    }
    j += "\n  ]";
  }
  j += "\n}\n";
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(j.data(), 1, j.size(), f) == j.size();
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace kvq::cuda::bench
