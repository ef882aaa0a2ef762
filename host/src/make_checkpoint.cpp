#include "kvq_host/make_checkpoint.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "kvq_host/checkpoint.hpp"
#include "kvq_host/errors.hpp"
#include "kvq_host/safetensors.hpp"

namespace kvq::host {
namespace {

using nlohmann::ordered_json;

// Content ids of the calibration texts: no workload request has them (those
// are request ids counting from 0, and kSharedPrefixContent).
constexpr uint64_t kCalibrationContent = 0x6B76715F63616C00ull;  // "kvq_cal\0"
constexpr int64_t kCalibrationTexts = 8;
// Keeps a scale of an all-zero channel usable (1 / scale stays finite in bf16).
constexpr double kMinScale = 1e-6;

// Calls `visit(token values)` for each calibration token, values laid out
// [kv head][channel].
template <typename Visit>
void for_each_calibration_token(const ActivationGenerator& generator, Projection projection,
                                int64_t layer, int64_t tokens, Visit&& visit) {
  const int64_t width = generator.heads(projection) * generator.width(projection);
  std::vector<float> values(static_cast<size_t>(width));
  for (int64_t i = 0; i < tokens; ++i) {
    const uint64_t content = kCalibrationContent + static_cast<uint64_t>(i % kCalibrationTexts);
    const int64_t position = i * kCalibrationPositions / tokens;
    generator.fill_token(projection, content, position, layer, values);
    visit(values);
  }
}

void write_json(const std::filesystem::path& file, const ordered_json& j) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(fmt::format("{}: cannot create the file", file.string()));
  out << j.dump(2) << "\n";
  out.close();
  if (!out) throw Error(fmt::format("{}: writing failed", file.string()));
}

std::string hf_dtype_name(ModelDtype dtype) {
  switch (dtype) {
    case ModelDtype::kBf16: return "bfloat16";
    case ModelDtype::kFp16: return "float16";
    case ModelDtype::kFp32: return "float32";
  }
  return "bfloat16";
}

void check_options(const MakeCheckpointOptions& o) {
  const auto in_range = [](const char* what, int64_t value, int64_t max) {
    if (value < 1 || value > max) {
      throw Error(fmt::format("make-checkpoint: {} is {}; expected 1..{}", what, value, max));
    }
  };
  in_range("--layers", o.num_layers, 4096);
  in_range("--heads", o.num_heads, 65536);
  in_range("--kv-heads", o.num_kv_heads, 65536);
  in_range("--head-size", o.head_size, 4096);
  if (o.num_heads % o.num_kv_heads != 0) {
    throw Error(fmt::format("make-checkpoint: --heads ({}) must be a multiple of --kv-heads ({})",
                            o.num_heads, o.num_kv_heads));
  }
  if (o.mode != "C8" && o.mode != "fp8") {
    throw Error(
        fmt::format("make-checkpoint: --mode '{}' is not built yet (built: C8, fp8)", o.mode));
  }
  in_range("--calibration-tokens", o.calibration_tokens, int64_t{1} << 24);
  if (o.asymmetric && o.mode != "C8") {
    throw Error("make-checkpoint: --asymmetric applies to --mode C8 only");
  }
}

}  // namespace

C8Scales calibrate_c8(const ActivationGenerator& generator, Projection projection, int64_t layer,
                      bool asymmetric, int64_t calibration_tokens) {
  const size_t width =
      static_cast<size_t>(generator.heads(projection) * generator.width(projection));
  std::vector<double> lo(width, std::numeric_limits<double>::infinity());
  std::vector<double> hi(width, -std::numeric_limits<double>::infinity());
  for_each_calibration_token(generator, projection, layer, calibration_tokens,
                             [&](const std::vector<float>& values) {
                               for (size_t c = 0; c < width; ++c) {
                                 lo[c] = std::min(lo[c], static_cast<double>(values[c]));
                                 hi[c] = std::max(hi[c], static_cast<double>(values[c]));
                               }
                             });
  C8Scales out;
  out.scale.resize(width);
  out.offset.resize(width);
  for (size_t c = 0; c < width; ++c) {
    if (asymmetric) {
      const double low = std::min(lo[c], 0.0);
      const double high = std::max(hi[c], 0.0);
      const double scale = std::max((high - low) / 255.0, kMinScale);
      out.scale[c] = static_cast<float>(scale);
      out.offset[c] = static_cast<float>(std::clamp(
          std::nearbyint(-low / static_cast<double>(out.scale[c])) - 128.0, -128.0, 127.0));
    } else {
      const double amax = std::max(std::abs(lo[c]), std::abs(hi[c]));
      out.scale[c] = static_cast<float>(std::max(amax / 127.0, kMinScale));
      out.offset[c] = 0.0f;
    }
  }
  return out;
}

float calibrate_fp8(const ActivationGenerator& generator, Projection projection, int64_t layer,
                    int64_t calibration_tokens) {
  double amax = 0.0;
  for_each_calibration_token(generator, projection, layer, calibration_tokens,
                             [&](const std::vector<float>& values) {
                               for (const float v : values)
                                 amax = std::max(amax, static_cast<double>(std::abs(v)));
                             });
  return static_cast<float>(std::max(amax / 448.0, kMinScale));
}

int8_t c8_quantize_reference(double x, double scale, double offset) {
  const double t = std::nearbyint(x / scale + offset);  // ties to even (default rounding mode)
  return static_cast<int8_t>(std::clamp(t, -128.0, 127.0));
}

void make_checkpoint(const std::filesystem::path& out_dir, const MakeCheckpointOptions& o) {
  check_options(o);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    throw Error(
        fmt::format("make-checkpoint: cannot create {}: {}", out_dir.string(), ec.message()));
  }
  if (!o.force && std::filesystem::exists(out_dir / kCheckpointConfigFile)) {
    throw Error(
        fmt::format("make-checkpoint: {} already holds a checkpoint ({}); pass --force "
                    "to overwrite it",
                    out_dir.string(), kCheckpointConfigFile));
  }
  if (o.force) {
    // A stale shard from an earlier run would be loaded too.
    for (const auto& entry : std::filesystem::directory_iterator(out_dir, ec)) {
      if (entry.path().extension() == ".safetensors") std::filesystem::remove(entry.path(), ec);
    }
  }

  const ActivationGenerator generator(
      o.seed, ActivationShape{o.num_layers, o.num_heads, o.num_kv_heads, o.head_size, 0});
  const int64_t channels = o.num_kv_heads * o.head_size;

  ordered_json config = {
      {"architectures", ordered_json::array({"KvqSyntheticForCausalLM"})},
      {"model_type", "kvq_synthetic"},
      {"num_hidden_layers", o.num_layers},
      {"num_attention_heads", o.num_heads},
      {"num_key_value_heads", o.num_kv_heads},
      {"head_dim", o.head_size},
      {"hidden_size", o.num_heads * o.head_size},
      {"torch_dtype", hf_dtype_name(o.dtype)},
      {"kvq_activation_seed", o.seed},
  };
  ordered_json description;
  std::vector<NamedTensor> tensors;
  if (o.mode == "C8") {
    description = {{"model_quant_type", "W8A8"}, {"version", "1.0.0"}, {"kv_cache_type", "C8"}};
    for (int64_t layer = 0; layer < o.num_layers; ++layer) {
      for (const auto& [proj, projection] :
           {std::pair{"k_proj", Projection::kKey}, std::pair{"v_proj", Projection::kValue}}) {
        const C8Scales scales =
            calibrate_c8(generator, projection, layer, o.asymmetric, o.calibration_tokens);
        const std::string base = fmt::format("{}.{}.", attention_layer_prefix(layer), proj);
        tensors.push_back(NamedTensor::f32(base + "kv_cache_scale", {channels}, scales.scale));
        tensors.push_back(NamedTensor::f32(base + "kv_cache_offset", {channels}, scales.offset));
        description[base + "kv_cache_scale"] = "C8";
        description[base + "kv_cache_offset"] = "C8";
      }
    }
  } else {
    description = {
        {"model_quant_type", "FLOAT"}, {"version", "1.0.0"}, {kDescriptionKvCacheSchemeKey, "fp8"}};
    for (int64_t layer = 0; layer < o.num_layers; ++layer) {
      for (const auto& [name, projection] :
           {std::pair{"k_scale", Projection::kKey}, std::pair{"v_scale", Projection::kValue}}) {
        const float scale = calibrate_fp8(generator, projection, layer, o.calibration_tokens);
        tensors.push_back(NamedTensor::f32(
            fmt::format("{}.{}", attention_layer_prefix(layer), name), {}, std::span(&scale, 1)));
      }
    }
  }

  write_json(out_dir / kCheckpointConfigFile, config);
  write_json(out_dir / kQuantDescriptionFile, description);
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"kvq_mode", o.mode},
      {"kvq_calibration", fmt::format("{} tokens of the activation generator (seed {}), {}",
                                      o.calibration_tokens, o.seed,
                                      o.mode == "fp8" ? "max|x|/448 per tensor"
                                      : o.asymmetric  ? "asymmetric per channel"
                                                      : "symmetric per channel max|x|/127")}};
  write_safetensors(out_dir / "model.safetensors", tensors, metadata);
  spdlog::info(
      "wrote {} checkpoint to {}: {} layers, {} heads, {} KV heads, head size {}, {} "
      "tensors",
      o.mode, out_dir.string(), o.num_layers, o.num_heads, o.num_kv_heads, o.head_size,
      tensors.size());
}

}  // namespace kvq::host
