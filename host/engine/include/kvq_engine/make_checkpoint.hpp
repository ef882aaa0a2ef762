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
//   FAKQuant (MLA, spec/ascend.md §7): num_kv_heads must be 1 (one latent
//        "KV head") and head_size = kv_lora_rank + qk_rope_head_dim (L + R).
//        config.json adds kv_lora_rank and qk_rope_head_dim. Description
//        {"model_quant_type": "W8A8", "version": "1.0.0", "fa_quant_type":
//        "FAKQuant", "model.layers.N.self_attn.fa_{q,k,v}.{scale,offset}":
//        "FAQuant"}; tensors model.layers.N.self_attn.fa_q.{scale,offset}
//        [num_heads, 1] and fa_{k,v}.{scale,offset} [1, 1]: scales in the
//        model dtype, offsets I8 (all 0: symmetric). The generator has no
//        MLA, so the latent is derived from it: with the generator shaped
//        {layers, num_heads, 1 KV head, head_size L + R, head_size_v L}, a
//        token's latent c_kv is its V of the one KV head (per-channel-scaled
//        normals without outliers, like an RMS-normed latent times its norm
//        weight), k_pe is channels [L, L + R) of its K, and head h's
//        absorbed query q_nope is channels [0, L) of its Q. Scales:
//        fa_k = fa_v = max|c_kv| / 127 over the sample (the value of MLA is
//        the latent); fa_q[h] = max|q_nope_h| / 127 (declared by vllm-ascend;
//        the decode quantizes the query dynamically). Each is computed in
//        float64, rounded to float32, then to the model dtype (RNE).
//   INT8_DYNAMIC (the lightning indexer, spec/ascend.md §8): num_kv_heads
//        must be 1 and head_size (= index_head_dim) a power of two; config.json
//        adds index_head_dim, index_n_heads (= num_heads) and index_topk.
//        Description {"model_quant_type": "W8A8_DYNAMIC", "version": "1.0.0",
//        "indexer_quant_type": "INT8_DYNAMIC", "model.layers.N.self_attn.
//        indexer.quant_type": "INT8_DYNAMIC", "model.layers.N.self_attn.
//        indexer.{q,k}_rot": "FLOAT"}; tensors model.layers.N.self_attn.
//        indexer.{q,k}_rot, F32 [D, D], both the seeded random Hadamard of
//        indexer_rotation(). The indexer's int8 keys and queries are quantized
//        dynamically (per token), so there is nothing to calibrate.
// The calibration sample is `calibration_tokens` tokens of texts no workload
// uses, at positions spread over [0, kCalibrationPositions). The generator's
// outlier channels depend on its seed: a deployment must use the same
// workload.seed as --seed (config.json records it as kvq_activation_seed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kvq_engine/activation_generator.hpp"
#include "kvq_files/dtype.hpp"

namespace kvq::host {

// The default calibration sample. Fewer tokens clip the heavy-tailed tokens
// a run meets (the default deployment's cosine drops from 0.9988 at 32768
// to 0.9963 at 8192 and 0.9898 at 2048 tokens); positions cover a 4096-token
// context, so the outlier channels are seen at every rotary angle up to it.
inline constexpr int64_t kDefaultCalibrationTokens = 32768;
inline constexpr int64_t kCalibrationPositions = 4096;
// Token i of a sample of n tokens: content kCalibrationContent + i %
// kCalibrationTexts, position i * kCalibrationPositions / n. The content ids
// are no workload request's (those count from 0, plus kSharedPrefixContent).
inline constexpr uint64_t kCalibrationContent = 0x6B76715F63616C00ull;  // "kvq_cal\0"
inline constexpr int64_t kCalibrationTexts = 8;

struct MakeCheckpointOptions {
  std::string mode = "C8";  // "C8", "fp8", "FAKQuant" or "INT8_DYNAMIC"
  int64_t num_layers = 4;
  int64_t num_heads = 16;
  int64_t num_kv_heads = 4;
  int64_t head_size = 128;
  ModelDtype dtype = ModelDtype::kBf16;
  uint64_t seed = 0;
  bool asymmetric = false;        // C8 only
  int64_t kv_lora_rank = 512;     // FAKQuant only (DeepSeek's values)
  int64_t qk_rope_head_dim = 64;  // FAKQuant only
  int64_t index_topk = 2048;      // INT8_DYNAMIC only (vLLM's value)
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

// FAKQuant's static scales of one layer, before rounding to the model dtype:
// fa_q [num_heads] and the latent's fa_k (= fa_v).
struct FakQuantScales {
  std::vector<float> q_scale;
  float k_scale = 0.0f;
};
// `generator` must have the MLA shape described above (one KV head,
// head_size_v = kv_lora_rank < head_size).
FakQuantScales calibrate_fakquant(const ActivationGenerator& generator, int64_t layer,
                                  int64_t calibration_tokens = kDefaultCalibrationTokens);

// The INT8_DYNAMIC rotation of one layer, F32 [dim][dim] row-major:
// R[i][j] = s_i * (-1)^popcount(i & j) / sqrt(dim) (float64, then float32),
// s_i = +1 or -1 from bit 63 of the i-th output of std::mt19937_64 seeded
// with seed ^ (0x9E3779B97F4A7C15 * (layer + 1)). Orthogonal (a Sylvester
// Hadamard with rows negated), so q.k is unchanged when q and k share it.
// `dim` must be a power of two.
std::vector<float> indexer_rotation(uint64_t seed, int64_t layer, int64_t dim);

// The quantization the plugin applies (ignoring its bf16 rounding steps):
// q = clamp(round_half_even(x / scale + offset), -128, 127).
int8_t c8_quantize_reference(double x, double scale, double offset);

// Writes the three files into `out_dir` (created if needed). Throws Error
// for bad options or when `out_dir` already holds a checkpoint (unless
// options.force).
void make_checkpoint(const std::filesystem::path& out_dir, const MakeCheckpointOptions& options);

}  // namespace kvq::host
