// kvq_cuda_bench's results and how they are reported (plain C++, no CUDA
// header): the markdown table with its footer (ceilings, definitions, vLLM
// comparison, issue 13's targets) and the same as JSON.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kvq::cuda::bench {

struct Ceilings {
  double read_gbs = 0;  // bytes read / time
  std::string read_how;
  double copy_gbs = 0;  // (bytes read + bytes written) / time
  std::string copy_how;
  double gemm_tflops = 0;
  std::string gemm_how;
};

struct Row {
  std::string group;  // decode, prefill, mixed, write
  std::string shape;  // e.g. 64x4096
  std::string codec;  // bf16, int8_pth, fp8_pth, int4_pth, fp8_e4m3
  std::string plan;   // launch configuration, human-readable
  // attention plan (path -1: a cache write)
  int path = -1, padded_head = 0, decode_splits = 0, prefill_splits = 0, heads_per_cta = 0;
  int64_t workspace_bytes = 0;
  int64_t grid = 0;  // cache write: CTAs of each of its two kernels
  // timing
  std::string timing_mode;
  double us = 0, min_us = 0, max_us = 0;
  int samples = 0, runs_per_sample = 1;
  // work
  double bytes_read = 0, bytes_written = 0;  // compulsory DRAM bytes (see the footer)
  double flops = 0;                          // 0: not a compute row
  double rotated_bytes = 0;                  // cache bytes the runs rotate through
  int copies = 0;
  std::string bw_ref;   // "read", "copy", or "" (no bandwidth fraction)
  std::string problem;  // non-empty: a check after the timing failed
};

struct Report {
  std::string device;
  int num_sms = 0, l2_mib = 0, cc_major = 0, cc_minor = 0;
  bool quick = false, verdict = true;
  int reps = 0;
  double graph_below_us = 0;
  Ceilings start, end;  // measured before and after the rows
  std::vector<Row> rows;
};

// Derived values (the ceilings used are the higher of start and end).
double gbs(const Row& r);
double frac_bw(const Report& rep, const Row& r);  // < 0: none
double tflops(const Row& r);
double frac_gemm(const Report& rep, const Row& r);  // < 0: none
double vs_bf16(const Report& rep, const Row& r);    // bf16 time / this time; < 0: none

void print_markdown(const Report& rep, std::FILE* out);
// Writes path through a temporary file and a rename; false on failure.
bool write_json(const Report& rep, const std::string& path);

}  // namespace kvq::cuda::bench
