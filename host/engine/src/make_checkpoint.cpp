#include "kvq_engine/make_checkpoint.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>

#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/float_codec.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"

namespace kvq::host {
namespace {

using nlohmann::ordered_json;

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
  if (o.mode != "C8" && o.mode != "fp8" && o.mode != "FAKQuant" && o.mode != "INT8_DYNAMIC") {
    throw Error(fmt::format(
        "make-checkpoint: unknown --mode '{}' (C8, fp8, FAKQuant, INT8_DYNAMIC)", o.mode));
  }
  in_range("--calibration-tokens", o.calibration_tokens, int64_t{1} << 24);
  if (o.asymmetric && o.mode != "C8") {
    throw Error("make-checkpoint: --asymmetric applies to --mode C8 only");
  }
  // The MLA latent and the indexer keys are one KV head (spec/ascend.md §7, §8).
  if ((o.mode == "FAKQuant" || o.mode == "INT8_DYNAMIC") && o.num_kv_heads != 1) {
    throw Error(fmt::format(
        "make-checkpoint: --mode {} needs --kv-heads 1 (one latent / indexer key head), got {}",
        o.mode, o.num_kv_heads));
  }
  if (o.mode == "FAKQuant") {
    in_range("--kv-lora-rank", o.kv_lora_rank, 4096);
    if (o.qk_rope_head_dim < 0 || o.qk_rope_head_dim > 4096) {
      throw Error(fmt::format("make-checkpoint: --qk-rope-head-dim is {}; expected 0..4096",
                              o.qk_rope_head_dim));
    }
    if (o.head_size != o.kv_lora_rank + o.qk_rope_head_dim) {
      throw Error(fmt::format(
          "make-checkpoint: --mode FAKQuant needs --head-size = --kv-lora-rank + "
          "--qk-rope-head-dim = {} + {} = {}, got {}",
          o.kv_lora_rank, o.qk_rope_head_dim, o.kv_lora_rank + o.qk_rope_head_dim, o.head_size));
    }
  }
  if (o.mode == "INT8_DYNAMIC") {
    if ((o.head_size & (o.head_size - 1)) != 0) {
      throw Error(fmt::format(
          "make-checkpoint: --mode INT8_DYNAMIC needs a power-of-two --head-size (the indexer's "
          "index_head_dim, rotated by a Hadamard matrix), got {}",
          o.head_size));
    }
    in_range("--index-topk", o.index_topk, int64_t{1} << 24);
  }
}

// `values` in `dtype` (KVQ_DTYPE_BF16/F16/F32, round to nearest even).
NamedTensor model_dtype_tensor(std::string name, std::vector<int64_t> shape, int32_t dtype,
                               const std::vector<float>& values) {
  NamedTensor t{std::move(name), dtype, std::move(shape), {}};
  t.bytes.resize(values.size() * static_cast<size_t>(abi_dtype_size(dtype)));
  encode_floats(dtype, values, t.bytes.data());
  return t;
}

NamedTensor zero_i8_tensor(std::string name, std::vector<int64_t> shape, int64_t count) {
  return NamedTensor{std::move(name), KVQ_DTYPE_I8, std::move(shape),
                     std::vector<std::byte>(static_cast<size_t>(count), std::byte{0})};
}

// FAKQuant: fa_q/fa_k/fa_v scales (model dtype) and zero offsets per layer.
void add_fakquant_layer(const MakeCheckpointOptions& o, const ActivationGenerator& generator,
                        int64_t layer, ordered_json& description,
                        std::vector<NamedTensor>& tensors) {
  const FakQuantScales scales = calibrate_fakquant(generator, layer, o.calibration_tokens);
  const int32_t dtype = abi_dtype(o.dtype);
  for (const char* prefix : {"fa_q", "fa_k", "fa_v"}) {
    const bool is_q = std::string_view(prefix) == "fa_q";
    const int64_t rows = is_q ? o.num_heads : 1;
    const std::string base = fmt::format("{}.{}.", attention_layer_prefix(layer), prefix);
    tensors.push_back(model_dtype_tensor(base + "scale", {rows, 1}, dtype,
                                         is_q ? scales.q_scale : std::vector{scales.k_scale}));
    tensors.push_back(zero_i8_tensor(base + "offset", {rows, 1}, rows));
    description[base + "scale"] = "FAQuant";
    description[base + "offset"] = "FAQuant";
  }
}

// INT8_DYNAMIC: the indexer's per-layer quant type and its two rotations.
void add_indexer_layer(const MakeCheckpointOptions& o, int64_t layer, ordered_json& description,
                       std::vector<NamedTensor>& tensors) {
  const std::string base = attention_layer_prefix(layer) + ".indexer.";
  description[base + "quant_type"] = "INT8_DYNAMIC";
  const std::vector<float> rotation = indexer_rotation(o.seed, layer, o.head_size);
  for (const char* name : {"q_rot", "k_rot"}) {
    tensors.push_back(NamedTensor::f32(base + name, {o.head_size, o.head_size}, rotation));
    description[base + name] = "FLOAT";
  }
}

std::string calibration_text(const MakeCheckpointOptions& o) {
  if (o.mode == "INT8_DYNAMIC") {
    return fmt::format("none (dynamic int8); rotations: seeded random Hadamard (seed {})", o.seed);
  }
  const std::string method = o.mode == "fp8"        ? "max|x|/448 per tensor"
                             : o.mode == "FAKQuant" ? "max|latent|/127 per layer, max|q_nope|/127 "
                                                      "per head"
                             : o.asymmetric         ? "asymmetric per channel"
                                                    : "symmetric per channel max|x|/127";
  return fmt::format("{} tokens of the activation generator (seed {}), {}", o.calibration_tokens,
                     o.seed, method);
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

FakQuantScales calibrate_fakquant(const ActivationGenerator& generator, int64_t layer,
                                  int64_t calibration_tokens) {
  const ActivationShape& shape = generator.shape();
  const int64_t lora = shape.head_size_v;
  if (shape.num_kv_heads != 1 || lora >= shape.head_size) {
    throw Error("calibrate_fakquant: the generator needs one KV head and head_size_v < head_size");
  }
  double latent_max = 0.0;
  for_each_calibration_token(generator, Projection::kValue, layer, calibration_tokens,
                             [&](const std::vector<float>& latent) {
                               for (const float v : latent)
                                 latent_max = std::max(latent_max, std::abs(double{v}));
                             });
  std::vector<double> query_max(static_cast<size_t>(shape.num_heads), 0.0);
  for_each_calibration_token(
      generator, Projection::kQuery, layer, calibration_tokens, [&](const std::vector<float>& q) {
        for (int64_t h = 0; h < shape.num_heads; ++h) {
          const float* q_nope = q.data() + h * shape.head_size;  // channels [0, L) of head h
          double& m = query_max[static_cast<size_t>(h)];
          for (int64_t c = 0; c < lora; ++c) m = std::max(m, std::abs(double{q_nope[c]}));
        }
      });
  FakQuantScales out;
  out.k_scale = static_cast<float>(std::max(latent_max / 127.0, kMinScale));
  for (const double m : query_max)
    out.q_scale.push_back(static_cast<float>(std::max(m / 127.0, kMinScale)));
  return out;
}

std::vector<float> indexer_rotation(uint64_t seed, int64_t layer, int64_t dim) {
  if (dim < 1 || (dim & (dim - 1)) != 0) {
    throw Error(fmt::format("indexer_rotation: dimension {} is not a power of two", dim));
  }
  std::mt19937_64 bits(seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(layer + 1)));
  const double norm = 1.0 / std::sqrt(static_cast<double>(dim));
  std::vector<float> r(static_cast<size_t>(dim * dim));
  for (int64_t i = 0; i < dim; ++i) {
    const double sign = (bits() >> 63) != 0 ? -1.0 : 1.0;
    for (int64_t j = 0; j < dim; ++j) {
      const double h = (std::popcount(static_cast<uint64_t>(i & j)) % 2) != 0 ? -1.0 : 1.0;
      r[static_cast<size_t>(i * dim + j)] = static_cast<float>(sign * h * norm);
    }
  }
  return r;
}

int8_t c8_quantize_reference(double x, double scale, double offset) {
  const double t = std::nearbyint(x / scale + offset);  // ties to even (default rounding mode)
  return static_cast<int8_t>(std::clamp(t, -128.0, 127.0));
}

// The checkpoint is written into a staging folder beside OUT_DIR and moved
// into place whole: a failure part-way leaves OUT_DIR as it was (no
// config.json without its tensors, no old files mixed with new ones).
class StagedDirectory {
 public:
  StagedDirectory(std::filesystem::path target, bool force) : target_(std::move(target)) {
    std::error_code ec;
    const auto status = std::filesystem::symlink_status(target_, ec);
    if (std::filesystem::exists(status)) {
      if (!std::filesystem::is_directory(status))
        throw Error(
            fmt::format("make-checkpoint: {} exists and is not a directory", target_.string()));
      if (!force && !std::filesystem::is_empty(target_, ec))
        throw Error(fmt::format(
            "make-checkpoint: {} is not empty{}; pass --force to replace it", target_.string(),
            std::filesystem::exists(target_ / kCheckpointConfigFile)
                ? fmt::format(" (it holds a checkpoint: {})", kCheckpointConfigFile)
                : ""));
    }
    const std::filesystem::path parent =
        target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
    std::filesystem::create_directories(parent, ec);
    staging_ = parent / fmt::format(".{}.partial-{}", target_.filename().string(), ::getpid());
    std::filesystem::remove_all(staging_, ec);
    if (!std::filesystem::create_directory(staging_, ec) || ec)
      throw Error(fmt::format("make-checkpoint: cannot create {}: {}", staging_.string(),
                              ec ? ec.message() : "it exists"));
  }
  ~StagedDirectory() {
    std::error_code ignored;
    if (!committed_) std::filesystem::remove_all(staging_, ignored);
  }
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  const std::filesystem::path& path() const { return staging_; }

  // Replaces the target: the old one is moved aside first and removed only
  // once the new one is in place.
  void commit() {
    std::error_code ec;
    std::filesystem::path old;
    if (std::filesystem::exists(target_, ec)) {
      old = target_;
      old += fmt::format(".old-{}", ::getpid());
      std::filesystem::rename(target_, old, ec);
      if (ec)
        throw Error(fmt::format("make-checkpoint: cannot move the old {} aside: {}",
                                target_.string(), ec.message()));
    }
    std::filesystem::rename(staging_, target_, ec);
    if (ec) {
      std::error_code ignored;
      if (!old.empty()) std::filesystem::rename(old, target_, ignored);
      throw Error(fmt::format("make-checkpoint: cannot move {} into place: {}", staging_.string(),
                              ec.message()));
    }
    committed_ = true;
    if (!old.empty()) std::filesystem::remove_all(old, ec);
  }

 private:
  std::filesystem::path target_, staging_;
  bool committed_ = false;
};

void make_checkpoint(const std::filesystem::path& out_dir, const MakeCheckpointOptions& o) {
  check_options(o);
  StagedDirectory staged(out_dir, o.force);

  // FAKQuant: V of the one latent KV head is the latent (kv_lora_rank wide).
  const ActivationGenerator generator(
      o.seed, ActivationShape{o.num_layers, o.num_heads, o.num_kv_heads, o.head_size,
                              o.mode == "FAKQuant" ? o.kv_lora_rank : 0});
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
  if (o.mode == "FAKQuant") {
    config["kv_lora_rank"] = o.kv_lora_rank;
    config["qk_rope_head_dim"] = o.qk_rope_head_dim;
  } else if (o.mode == "INT8_DYNAMIC") {
    config["index_head_dim"] = o.head_size;
    config["index_n_heads"] = o.num_heads;
    config["index_topk"] = o.index_topk;
  }
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
  } else if (o.mode == "FAKQuant") {
    description = {
        {"model_quant_type", "W8A8"}, {"version", "1.0.0"}, {"fa_quant_type", "FAKQuant"}};
    for (int64_t layer = 0; layer < o.num_layers; ++layer) {
      add_fakquant_layer(o, generator, layer, description, tensors);
    }
  } else if (o.mode == "INT8_DYNAMIC") {
    description = {{"model_quant_type", "W8A8_DYNAMIC"},
                   {"version", "1.0.0"},
                   {"indexer_quant_type", "INT8_DYNAMIC"}};
    for (int64_t layer = 0; layer < o.num_layers; ++layer) {
      add_indexer_layer(o, layer, description, tensors);
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

  write_json(staged.path() / kCheckpointConfigFile, config);
  write_json(staged.path() / kQuantDescriptionFile, description);
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"kvq_mode", o.mode}, {"kvq_calibration", calibration_text(o)}};
  write_safetensors(staged.path() / "model.safetensors", tensors, metadata);
  staged.commit();
  spdlog::info(
      "wrote {} checkpoint to {}: {} layers, {} heads, {} KV heads, head size {}, {} "
      "tensors",
      o.mode, out_dir.string(), o.num_layers, o.num_heads, o.num_kv_heads, o.head_size,
      tensors.size());
}

}  // namespace kvq::host
