// Bad checkpoint directories: config.json, the quantization description and
// tensors that fail part-way through loading a layer. Each row: an Error
// naming the file (and tensor, and layer), no layer handed out (a layer that
// failed part-way is destroyed, never half-loaded in use), files unchanged.
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "bad_input.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_files/errors.hpp"
#include "kvq_files/safetensors.hpp"
#include "test_support.hpp"

namespace kvq::bad_input {
namespace {

using host::NamedTensor;
using host::testing::ScratchDir;
namespace fs = std::filesystem;

constexpr int64_t kKvHeads = 2, kHeadSize = 16, kChannels = kKvHeads * kHeadSize;

// A valid one-layer C8 checkpoint for the Ascend plugin; rows edit one part.
struct Ckpt {
  nlohmann::json config = {{"num_hidden_layers", 1},
                           {"num_attention_heads", 4},
                           {"num_key_value_heads", 2},
                           {"head_dim", kHeadSize},
                           {"torch_dtype", "bfloat16"}};
  std::string description = R"({"kv_cache_type": "C8"})";
  std::vector<NamedTensor> tensors;

  Ckpt() {
    const std::vector<float> scale(kChannels, 0.05f), offset(kChannels, 1.0f);
    for (const char* proj : {"k_proj", "v_proj"}) {
      const std::string p = std::string("model.layers.0.self_attn.") + proj;
      tensors.push_back(NamedTensor::f32(p + ".kv_cache_scale", {kChannels}, scale));
      tensors.push_back(NamedTensor::f32(p + ".kv_cache_offset", {kChannels}, offset));
    }
  }
  fs::path write(const fs::path& dir) const {
    std::ofstream(dir / "config.json") << config.dump();
    std::ofstream(dir / "quant_model_description.json") << description;
    host::write_safetensors(dir / "model.safetensors", tensors);
    return dir;
  }
};

struct CheckpointRow {
  std::string name;
  std::function<void(Ckpt&)> breaks;
  std::vector<std::string> message;
  std::function<void(const fs::path&)> after_write = nullptr;
  bool on_triton = false;  // served by the triton plugin (backend "triton") instead
};
void PrintTo(const CheckpointRow& row, std::ostream* os) {
  *os << row.name;
}

void set_tensor(Ckpt& c, const std::string& suffix, std::vector<int64_t> shape,
                std::vector<float> values) {
  for (auto& t : c.tensors)
    if (t.name.ends_with(suffix)) t = NamedTensor::f32(t.name, std::move(shape), values);
}

// A tensor of `dtype` (I8 / I32 / F32) holding `values` converted.
NamedTensor typed(const std::string& name, int32_t dtype, std::vector<int64_t> shape,
                  const std::vector<float>& values) {
  NamedTensor t{name, dtype, std::move(shape), {}};
  for (float v : values) {
    if (dtype == KVQ_DTYPE_I8) {
      t.bytes.push_back(static_cast<std::byte>(static_cast<int8_t>(v)));
    } else {
      const int32_t i = static_cast<int32_t>(v);
      const auto* p = reinterpret_cast<const std::byte*>(&i);
      t.bytes.insert(t.bytes.end(), p, p + 4);
    }
  }
  return t;
}

void replace_tensor(Ckpt& c, const std::string& suffix, NamedTensor with) {
  for (auto& t : c.tensors)
    if (t.name.ends_with(suffix)) t = with;
}

// A one-layer fp8 checkpoint for the triton plugin with these k/v scales.
void make_fp8(Ckpt& c, float k_scale, float v_scale) {
  c.description = R"({"model_quant_type": "FLOAT", "kv_cache_scheme": "fp8"})";
  c.config["head_dim"] = 64;  // the triton backend's minimum is 32
  c.tensors = {NamedTensor::f32("model.layers.0.self_attn.k_scale", {}, std::vector{k_scale}),
               NamedTensor::f32("model.layers.0.self_attn.v_scale", {}, std::vector{v_scale})};
}

const std::vector<CheckpointRow>& rows() {
  using C = Ckpt&;
  static const std::vector<CheckpointRow> kRows = {
      {"ConfigNotJson",
       [](C) {},
       {"config.json: not valid JSON"},
       [](const fs::path& d) { std::ofstream(d / "config.json") << "{num_hidden_layers: 1"; }},
      {"ConfigMissingLayers",
       [](C c) { c.config.erase("num_hidden_layers"); },
       {"config.json: missing required key \"num_hidden_layers\""}},
      {"ConfigHeadDimOutOfRange",
       [](C c) { c.config["head_dim"] = 100000; },
       {"config.json: key \"head_dim\" is 100000; expected 1..4096"}},
      {"ConfigHeadsAsString",
       [](C c) { c.config["num_attention_heads"] = "four"; },
       {"config.json: key \"num_attention_heads\" must be an integer, not \"four\""}},
      {"ConfigUnknownTorchDtype",
       [](C c) { c.config["torch_dtype"] = "int4"; },
       {"config.json: key \"torch_dtype\" is \"int4\""}},
      {"DescriptionNotJson",
       [](C c) { c.description = "{\"kv_cache_type\": "; },
       {"quant_model_description.json: not valid JSON"}},
      {"DescriptionSchemeNotAString",
       [](C c) { c.description = R"({"kv_cache_scheme": 8})"; },
       {"quant_model_description.json: key \"kv_cache_scheme\" must be a string, not 8"}},
      {"TensorInTwoFiles",
       [](C) {},
       {"tensor 'model.layers.0.self_attn.k_proj.kv_cache_scale' is in both"},
       [](const fs::path& d) {
         const std::vector<float> v(kChannels, 0.05f);
         host::write_safetensors(
             d / "model-2.safetensors",
             {NamedTensor::f32("model.layers.0.self_attn.k_proj.kv_cache_scale", {kChannels}, v)});
       }},
      {"ScaleOfTheWrongLengthFailsPartWay",
       [](C c) {
         set_tensor(c, "v_proj.kv_cache_scale", {3}, {0.1f, 0.1f, 0.1f});
       },
       {"layer model.layers.0.self_attn.attn", "cannot run after loading",
        "'model.layers.0.self_attn.v_proj.kv_cache_scale' from", "v_cache_scale has 3 values"}},
      {"NanScaleFailsAfterLoading",
       [](C c) {
         std::vector<float> v(kChannels, 0.05f);
         v[5] = std::numeric_limits<float>::quiet_NaN();
         set_tensor(c, "k_proj.kv_cache_scale", {kChannels}, v);
       },
       {"layer model.layers.0.self_attn.attn", "channel 5 has scale nan"}},
      // Issue #17, class 5: checkpoints that loaded and served before.
      {"C8ScaleOfDtypeI8",
       [](C c) {
         const std::string n = "model.layers.0.self_attn.k_proj.kv_cache_scale";
         replace_tensor(c, "k_proj.kv_cache_scale",
                        typed(n, KVQ_DTYPE_I8, {kChannels}, std::vector<float>(kChannels, 1)));
       },
       {"k_cache_scale: dtype", "C8 scales and offsets are F32, F16 or BF16"}},
      {"C8OffsetOfDtypeI32",
       [](C c) {
         const std::string n = "model.layers.0.self_attn.v_proj.kv_cache_offset";
         replace_tensor(c, "v_proj.kv_cache_offset",
                        typed(n, KVQ_DTYPE_I32, {kChannels}, std::vector<float>(kChannels, 1)));
       },
       {"v_cache_offset: dtype", "C8 scales and offsets are F32, F16 or BF16"}},
      {"C8ScaleTwiceTheModelsLength",
       [](C c) {
         set_tensor(c, "k_proj.kv_cache_scale", {2 * kChannels},
                    std::vector<float>(2 * kChannels, 0.05f));
       },
       {"k_cache_scale holds 4 KV heads x head_size 16, but this rank has 2 and tp size 1 makes "
        "the model's 2"}},
      {"C8NegativeScale",
       [](C c) {
         std::vector<float> v(kChannels, 0.05f);
         v[3] = -0.05f;
         set_tensor(c, "v_proj.kv_cache_scale", {kChannels}, v);
       },
       {"channel 3 has scale -0.05", "a scale is a normal float in"}},
      {"C8SubnormalScale",
       [](C c) {
         std::vector<float> v(kChannels, 0.05f);
         v[7] = 1e-40f;
         set_tensor(c, "k_proj.kv_cache_scale", {kChannels}, v);
       },
       {"channel 7 has scale 1e-40"}},
      {"C8AstronomicalScale",
       [](C c) {
         set_tensor(c, "k_proj.kv_cache_scale", {kChannels}, std::vector(kChannels, 1e30f));
       },
       {"channel 0 has scale 1e+30"}},
      {"C8AstronomicalOffset",
       [](C c) {
         set_tensor(c, "v_proj.kv_cache_offset", {kChannels}, std::vector(kChannels, 1e30f));
       },
       {"offset 1e+30", "an offset finite within +-256"}},
      {"TensorForALayerTheModelLacks",
       [](C c) {
         c.tensors.push_back(NamedTensor::f32("model.layers.5.self_attn.k_proj.kv_cache_scale",
                                              {kChannels}, std::vector(kChannels, 0.05f)));
       },
       {"tensor 'model.layers.5.self_attn.k_proj.kv_cache_scale'", "is for layer 5",
        "gives the model 1 layers (0..0)"}},
      {"DescriptionEntryForALayerTheModelLacks",
       [](C c) {
         c.description =
             R"({"kv_cache_type": "C8", "model.layers.3.self_attn.fa_k.scale": "FLOAT"})";
       },
       {"quant_model_description.json: entry \"model.layers.3.self_attn.fa_k.scale\" is for layer "
        "3"}},
      {"C8CheckpointOnAPluginWithoutTheScheme",
       [](C) {},
       {"quant_model_description.json asks for \"kv_cache_type\": \"C8\"",
        "plugin 'kvq_triton_sim' does not read quantization descriptions"},
       nullptr,
       true},
      {"Fp8ScaleBelowTheNormalRange",
       [](C c) { make_fp8(c, 1e-40f, 0.5f); },
       {"scale model.layers.0.self_attn.attn.k_scale[0] = 1e-40 must be finite and at least"},
       nullptr,
       true},
      {"Fp8ScaleOfDtypeI32",
       [](C c) {
         make_fp8(c, 0.5f, 0.5f);
         replace_tensor(c, ".v_scale",
                        typed("model.layers.0.self_attn.v_scale", KVQ_DTYPE_I32, {}, {2}));
       },
       {"v_scale: dtype", "a scale is F32, F16 or BF16"},
       nullptr,
       true},
      {"MissingScalesFailAfterLoading",
       [](C c) { std::erase_if(c.tensors, [](auto& t) { return t.name.ends_with("offset"); }); },
       {"not in the checkpoint: model.layers.0.self_attn.attn.k_cache_offset", "never loaded"}},
  };
  return kRows;
}

class CheckpointRowTest : public ::testing::TestWithParam<CheckpointRow> {};

TEST_P(CheckpointRowTest, IsRefusedNamingTheFileAndNoLayerIsHandedOut) {
  const CheckpointRow& row = GetParam();
  if (host::testing::ascend_plugin().empty()) GTEST_SKIP() << "no ascend plugin in this build";
  const host::Plugin plugin = host::open_plugin(
      row.on_triton ? host::testing::triton_plugin() : host::testing::ascend_plugin(), {0, 1});
  ScratchDir dir;
  Ckpt ckpt;
  row.breaks(ckpt);
  const fs::path path = ckpt.write(dir.path());
  if (row.after_write) row.after_write(path);
  const DirSnapshot before = snapshot_dir(dir.path());

  std::optional<host::LoadedLayer> made;
  try {
    const host::Checkpoint checkpoint = host::Checkpoint::open(path);
    made.emplace(host::create_checkpoint_layer(
        plugin, checkpoint, 0,
        host::CheckpointLayerSpec{row.on_triton ? "triton" : "ascend", "", 32, 0, 1}));
    ADD_FAILURE() << "accepted";
  } catch (const host::Error& e) {
    expect_message(e.what(), row.message);
  }
  EXPECT_FALSE(made.has_value());
  EXPECT_EQ(snapshot_dir(dir.path()), before);
}

INSTANTIATE_TEST_SUITE_P(Checkpoint, CheckpointRowTest, ::testing::ValuesIn(rows()), RowName());

// The unbroken checkpoint loads: each row fails because of its one change.
TEST(CheckpointRowBaseline, TheUnbrokenCheckpointLoadsAsC8) {
  if (host::testing::ascend_plugin().empty()) GTEST_SKIP() << "no ascend plugin in this build";
  const host::Plugin plugin = host::open_plugin(host::testing::ascend_plugin(), {0, 1});
  ScratchDir dir;
  const host::Checkpoint checkpoint = host::Checkpoint::open(Ckpt().write(dir.path()));
  const host::LoadedLayer loaded = host::create_checkpoint_layer(
      plugin, checkpoint, 0, host::CheckpointLayerSpec{"ascend", "", 32, 0, 1});
  EXPECT_EQ(loaded.report.scheme, "C8");
  EXPECT_EQ(loaded.report.loaded_params.size(), 4u);
}

}  // namespace
}  // namespace kvq::bad_input
