// Bad checkpoint directories: config.json, the quantization description and
// tensors that fail part-way through loading a layer. Each row: an Error
// naming the file (and tensor, and layer), no layer handed out (a layer that
// failed part-way is destroyed, never half-loaded in use), files unchanged.
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "bad_input.hpp"
#include "kvq_host/checkpoint.hpp"
#include "kvq_host/errors.hpp"
#include "kvq_host/safetensors.hpp"
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
};
void PrintTo(const CheckpointRow& row, std::ostream* os) {
  *os << row.name;
}

void set_tensor(Ckpt& c, const std::string& suffix, std::vector<int64_t> shape,
                std::vector<float> values) {
  for (auto& t : c.tensors)
    if (t.name.ends_with(suffix)) t = NamedTensor::f32(t.name, std::move(shape), values);
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
  const host::Plugin plugin = host::open_plugin(host::testing::ascend_plugin(), {0, 1});
  ScratchDir dir;
  Ckpt ckpt;
  row.breaks(ckpt);
  const fs::path path = ckpt.write(dir.path());
  if (row.after_write) row.after_write(path);
  const DirSnapshot before = snapshot_dir(dir.path());

  std::optional<host::LoadedLayer> made;
  try {
    const host::Checkpoint checkpoint = host::Checkpoint::open(path);
    made.emplace(host::create_checkpoint_layer(plugin, checkpoint, 0,
                                               host::CheckpointLayerSpec{"ascend", "", 32, 0, 1}));
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
