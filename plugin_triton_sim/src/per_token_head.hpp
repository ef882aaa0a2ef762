// Per-token-head quantization of one (token, head) row (spec/triton_sim.md
// §3): a dynamic scale per row, stored inline after the row's data.
#pragma once

#include <cstdint>

namespace kvq::triton {

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
