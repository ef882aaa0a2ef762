// Host side of kvq_cuda_kernel_check: test cases, random inputs, the cache
// bytes the CPU plugin would write (from the shared codecs), and a float64
// attention reference computed from the same (quantized) cache bytes.
#pragma once

#include "kernels.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace kvq::cuda::check {

struct SeqSpec {
  int qlen, seq_len;
};

struct CaseSpec {
  std::string name;
  Codec codec = Codec::kInt8Pth;
  int model_dtype = 3;  // dtype of K/V inputs and output: 1 F32, 2 F16, 3 BF16
  int q_dtype = 3;      // model dtype, or 6 (e4m3 query, fp8 per-tensor codecs)
  int hq = 8, hkv = 2, d = 128, dv = 128, bs = 16;
  std::vector<SeqSpec> seqs;
  int window = 0;
  float softcap = 0.0f;
  bool alibi = false, sinks = false;
  bool per_head_scales = false;  // fp8 per-tensor: one k/v scale per KV head, q per head
  int sample_rows = 0;           // > 0: check this many random query tokens only
  uint32_t seed = 1;
};

// Everything of a case that lives on the host.
struct HostCase {
  CaseSpec spec;
  CacheLayout layout{};
  int64_t num_tokens = 0;  // query tokens
  int64_t bt_stride = 0;
  std::vector<int32_t> block_table, qsl, seq_lens;
  // cache write batch: all keys of all sequences plus padding tokens
  int64_t write_tokens = 0;
  int64_t kv_stride_token = 0, kv_stride_head = 0;  // elements (padded)
  std::vector<unsigned char> key_bytes, value_bytes;  // model dtype
  std::vector<float> key_f, value_f;                  // same values as float
  std::vector<int64_t> slots;
  std::vector<unsigned char> expected_cache;  // init + write, as the CPU plugin
  // query
  int64_t q_stride_token = 0, q_stride_head = 0;
  std::vector<unsigned char> q_bytes;
  std::vector<float> q_f;  // element values (fp8 query: code values)
  float softmax_scale = 0.0f;
  std::vector<float> k_scales, v_scales, q_scales, alibi, sinks;
};

HostCase build_case(const CaseSpec& spec);

// Rows (token * hq + head) to check: all, or spec.sample_rows random tokens.
std::vector<int64_t> rows_to_check(const HostCase& hc);

// float64 attention of `rows` over the cache bytes `cache`; out[i][dv].
// vmax: the largest |V| (dequantized) any of the rows sees.
void reference(const HostCase& hc, const std::vector<unsigned char>& cache,
               const std::vector<int64_t>& rows, std::vector<double>* out, double* vmax);

// Host value of output element bytes of `dtype`.
double output_value(int dtype, const unsigned char* p);
// One unit in the last place of `dtype` at magnitude |x|.
double ulp_of(int dtype, double x);

const char* codec_name(Codec c);
int64_t element_size(int dtype);

}  // namespace kvq::cuda::check
