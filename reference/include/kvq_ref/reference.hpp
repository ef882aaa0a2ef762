// kvq reference math: plain float64 attention and element codecs written
// independently of the plugins (no code shared with plugin_sdk), so tests,
// the conformance suite and the host's accuracy report judge the plugins
// against something they did not compute themselves.
#pragma once

#include <cstdint>
#include <vector>

namespace kvq::ref {

// ---- element codecs (the ABI's KVQ_DTYPE_* values) ----------------------

// Size in bytes of one element of an ABI dtype; 0 for an unknown dtype.
int64_t dtype_size(int32_t dtype);
// Reads element `index` of a buffer of `dtype` as float64 (fp8 and bf16 are
// decoded exactly).
double load(int32_t dtype, const void* data, int64_t index);
// Stores `value` as element `index`, rounding to nearest-even, saturating fp8.
void store(int32_t dtype, void* data, int64_t index, double value);

// Rounds a float64 to the nearest representable value of `dtype`
// (round-to-nearest-even; fp8 saturates to ±max), returned as float64.
double round_to(int32_t dtype, double value);

// fp8 by search over the decoded values of the codes: nearest finite value,
// ties to the code with an even mantissa, saturating to ±max (written from
// the format's definition, independently of the plugins' bit arithmetic).
uint8_t encode_fp8(int32_t dtype, double value);
double decode_fp8(int32_t dtype, uint8_t code);

// ---- attention -----------------------------------------------------------

struct AttentionProblem {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t head_size_v = 0;               // 0 = head_size
  std::vector<int32_t> query_start_loc;  // [S+1]
  std::vector<int32_t> seq_lens;         // [S]
  double softmax_scale = 0.0;            // 0 = 1/sqrt(head_size)
  int64_t sliding_window = 0;            // 0 = none
  double softcap = 0.0;                  // 0 = none
  std::vector<double> alibi_slopes;      // [num_heads] or empty
  std::vector<double> sinks;             // [num_heads] or empty
  // The fp8-query path (spec/triton_sim.md §4): the numerator's
  // probabilities exp(s - m) are rounded to e4m3 before the P·V product, with
  // m the row's maximum over its keys (sinks excluded); the denominator sums
  // them unrounded. Matches a kernel whose running maximum is final from the
  // first key tile on (a test keeps every row within one tile).
  bool round_p_e4m3 = false;
};

// Causal (bottom-right aligned) GQA attention in float64.
//   query: [T][num_heads][head_size]
//   keys[s]: [seq_lens[s]][num_kv_heads][head_size]   (all keys of sequence s)
//   values[s]: [seq_lens[s]][num_kv_heads][head_size_v]
// Returns [T][num_heads][head_size_v]. Throws std::invalid_argument on a
// malformed problem.
std::vector<double> attention(const AttentionProblem& problem, const std::vector<double>& query,
                              const std::vector<std::vector<double>>& keys,
                              const std::vector<std::vector<double>>& values);

// ---- comparison ----------------------------------------------------------

struct Comparison {
  double nmse = 0.0;  // sum (a-b)^2 / sum b^2
  double max_abs_error = 0.0;
  int64_t worst_index = -1;  // element with the largest error beyond atol + rtol|ref|
  int64_t violations = 0;    // elements outside atol + rtol|ref|
  int64_t non_finite = 0;    // NaN/Inf in `actual`
  double cosine = 0.0;
};
Comparison compare(const std::vector<double>& actual, const std::vector<double>& expected,
                   double atol, double rtol);

}  // namespace kvq::ref
