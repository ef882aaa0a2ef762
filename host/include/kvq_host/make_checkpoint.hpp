// `kvq make-checkpoint`: a real checkpoint directory for the synthetic model
// (config.json, quant_model_description.json, model.safetensors) whose KV
// scales are calibrated on the host's activation generator, so the whole
// loading path runs without downloading a model.
//
// Modes and what they write (N = layer, H*D = num_kv_heads * head_dim):
//   C8   description {"model_quant_type": "W8A8", "version": "1.0.0",
//        "kv_cache_type": "C8", "model.layers.N.self_attn.{k,v}_proj.
//        kv_cache_{scale,offset}": "C8"}; tensors model.layers.N.self_attn.
//        {k,v}_proj.kv_cache_{scale,offset}, F32 [H*D] (all KV heads).
//        Symmetric (default): scale_c = max|x_c| / 127, offset_c = 0.
//        Asymmetric: lo = min(0, min x_c), hi = max(0, max x_c),
//        scale_c = (hi - lo) / 255, offset_c = round(-lo / scale_c) - 128;
//        the range includes 0, so the offset is an integer in [-128, 127]
//        (exact in the plugin's bf16 arithmetic) and q = round(x / scale +
//        offset) maps lo..hi onto -128..127; the plugin dequantizes
//        (q - offset) * scale.
//   fp8  description {"model_quant_type": "FLOAT", "version": "1.0.0",
//        "kv_cache_scheme": "fp8"} (kv_cache_type absent: the host reads
//        kv_cache_scheme when the plugin selects no scheme); tensors
//        model.layers.N.self_attn.{k,v}_scale, F32 scalars = max|x| / 448
//        over the layer (vLLM's per-tensor e4m3 scale).
// The calibration sample is `calibration_tokens` tokens of texts no workload
// uses, at positions spread over [0, kCalibrationPositions). The generator's
// outlier channels depend on its seed: a deployment must use the same
// workload.seed as --seed (config.json records it as kvq_activation_seed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kvq_host/activation_generator.hpp"
#include "kvq_host/dtype.hpp"

namespace kvq::host {

// The default calibration sample. Fewer tokens clip the heavy-tailed tokens
// a run meets (the default deployment's cosine drops from 0.9988 at 32768
// to 0.9963 at 8192 and 0.9898 at 2048 tokens); positions cover a 4096-token
// context, so the outlier channels are seen at every rotary angle up to it.
inline constexpr int64_t kDefaultCalibrationTokens = 32768;
inline constexpr int64_t kCalibrationPositions = 4096;

struct MakeCheckpointOptions {
  std::string mode = "C8";  // "C8" or "fp8"
  int64_t num_layers = 4;
  int64_t num_heads = 16;
  int64_t num_kv_heads = 4;
  int64_t head_size = 128;
  ModelDtype dtype = ModelDtype::kBf16;
  uint64_t seed = 0;
  bool asymmetric = false;  // C8 only
  int64_t calibration_tokens = kDefaultCalibrationTokens;
  bool force = false;  // overwrite an existing checkpoint in the folder
};

// Per-channel C8 parameters of one projection (K or V) of one layer, over
// all KV heads: channel c = head * head_size + d.
struct C8Scales {
  std::vector<float> scale;
  std::vector<float> offset;
};
C8Scales calibrate_c8(const ActivationGenerator& generator, Projection projection, int64_t layer,
                      bool asymmetric, int64_t calibration_tokens = kDefaultCalibrationTokens);
// max|x| / 448 over every head and channel of one projection of one layer.
float calibrate_fp8(const ActivationGenerator& generator, Projection projection, int64_t layer,
                    int64_t calibration_tokens = kDefaultCalibrationTokens);

// The quantization the plugin applies (ignoring its bf16 rounding steps):
// q = clamp(round_half_even(x / scale + offset), -128, 127).
int8_t c8_quantize_reference(double x, double scale, double offset);

// Writes the three files into `out_dir` (created if needed). Throws Error
// for bad options or when `out_dir` already holds a checkpoint (unless
// options.force).
void make_checkpoint(const std::filesystem::path& out_dir, const MakeCheckpointOptions& options);

}  // namespace kvq::host
