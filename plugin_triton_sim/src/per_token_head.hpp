// Per-token-head quantization of one (token, head) row (spec/triton_sim.md
// §3): a dynamic scale per row, stored inline after the row's data.
#pragma once

#include "kv_modes.hpp"

#include "kvq_sdk/paged_attention.hpp"

#include <cstdint>

namespace kvq::triton {

// One per-token-head mode's row codec: the single description of how the
// mode stores a (token, head) row, which geometry, cache_init, cache_write
// and forward all use (plugin_cuda's kernels write the same bytes).
// A row is [codes][fp32 scale] (int4: [codes][fp32 scale][fp32 zero point]).
struct RowCodec {
  int32_t stored_dtype;  // the cache's element dtype (U8: two int4 codes per byte)
  int64_t (*code_bytes)(int64_t n);
  int64_t trailer_bytes;  // the fp32 scale (and zero point) after the codes
  // Quantizes n finite floats into a row (the functions below).
  void (*quantize)(const float* x, int64_t n, unsigned char* row);
  sdk::RowEncoding read_encoding;  // how the SDK kernels read the row in place

  int64_t row_bytes(int64_t n) const { return code_bytes(n) + trailer_bytes; }
  // Makes a zeroed row the empty row: scale 1.0 (codes and zero point stay 0).
  void set_unit_scale(unsigned char* row, int64_t n) const;
};
// The codec of a per-token-head mode; nullptr for the others.
const RowCodec* row_codec(KvMode mode);

// Inputs must be finite (cache_write refuses NaN/Inf before quantizing).
// scale = max(absmax * fp32(1/127), 1e-6); q = clamp(rne(x * (1 / scale)), -128, 127).
void quantize_row_int8(const float* x, int64_t n, unsigned char* row);
// scale = max(absmax * fp32(1/448), 1e-6); q = e4m3(clamp(x * (1 / scale), ±448)).
void quantize_row_fp8(const float* x, int64_t n, unsigned char* row);

// INT4, asymmetric (vLLM's later design): scale = max((max - min) / 15, 1e-6),
// zp = clamp(rne(-min / scale), 0, 15), q = clamp(rne(x / scale + zp), 0, 15);
// two nibbles per byte, even index in the low nibble. The row is
// [n/2 bytes of nibbles][fp32 scale][fp32 zero point].
void quantize_row_int4(const float* x, int64_t n, unsigned char* row);
// Read in place by the SDK's kernels (RowEncoding::kU4): (q - zp) * scale.
int64_t int4_row_bytes(int64_t head_size);

}  // namespace kvq::triton
