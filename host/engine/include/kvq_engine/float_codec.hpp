// Fast conversions between float32 and the model dtypes (bf16, fp16, fp32),
// round-to-nearest-even like the hardware and PyTorch. The host uses them to
// hand the plugin activations in the model dtype and to read outputs back;
// the float64 reference (kvq_reference) checks them in the tests.
#pragma once

#include <cstdint>
#include <span>

namespace kvq::host {

uint16_t float_to_bf16_bits(float value) noexcept;
float bf16_bits_to_float(uint16_t bits) noexcept;
uint16_t float_to_fp16_bits(float value) noexcept;
float fp16_bits_to_float(uint16_t bits) noexcept;

// Stores `values` as consecutive elements of `dtype` (KVQ_DTYPE_BF16, F16 or
// F32) at `destination`. Throws Error for another dtype.
void encode_floats(int32_t dtype, std::span<const float> values, void* destination);
// Reads `count` consecutive elements of `dtype` from `source` into `out`.
void decode_to_doubles(int32_t dtype, const void* source, std::span<double> out);

}  // namespace kvq::host
