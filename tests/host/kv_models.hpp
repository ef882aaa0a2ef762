// Independent models of what a KV cache mode stores (RunOptions::kv_model),
// written from spec/triton_sim.md in float arithmetic with kvq_reference's
// codecs, so a host test can bound the plugin's accuracy by what the same
// quantization costs in float64, not by a guessed cosine.
#pragma once

#include <filesystem>
#include <string>

#include "kvq_engine/accuracy.hpp"

namespace kvq::host::testing {

// int8_per_token_head / fp8_per_token_head (§3): one fp32 scale per row,
// absmax * fp32(1/QMAX), reciprocal then multiply, RNE (int8) or e4m3.
KvRowModel per_token_head_model(const std::string& mode);

// int4_per_token_head (§3, last paragraph): asymmetric, scale = max((max -
// min) / 15, 1e-6), zp = clamp(rne(-min / scale), 0, 15).
KvRowModel int4_per_token_head_model();

// fp8 per-tensor e4m3 with the k_scale / v_scale of each layer in a
// checkpoint made by `kvq make-checkpoint --mode fp8`: e4m3(x / scale) * scale
// rounded to `model_dtype` (the read path for a bf16/fp16 query, §4).
KvRowModel fp8_checkpoint_model(const std::filesystem::path& checkpoint, int32_t model_dtype);

}  // namespace kvq::host::testing
