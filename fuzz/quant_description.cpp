// Fuzzes quantization-description parsing: the Ascend plugin's select_scheme
// hook through the client library (the plugin linked statically), and the host's
// checkpoint reader of config.json and quant_model_description.json. The
// first byte chooses which; the rest is the text. The plugin must answer a
// registered scheme, "" or INVALID_ARGUMENT (never INTERNAL: that is a bug);
// the host must answer or throw kvq::host::Error.
#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "fuzz_support.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_files/errors.hpp"

namespace {

void select(const std::string& text, const char* prefix, const char* layer_type) {
  std::optional<std::string> chosen;
  try {
    chosen = kvq::fuzz::plugin().select_scheme(text, "fuzz.json", prefix, layer_type);
  } catch (const kvq::client::PluginError& e) {
    if (e.code() != KVQ_ERR_INVALID_ARGUMENT)
      kvq::fuzz::invariant_failed("select_scheme: unexpected code:", e.what());
    if (e.plugin_message().find("fuzz.json") == std::string::npos)
      kvq::fuzz::invariant_failed("select_scheme: message does not name the source:", e.what());
    return;
  }
  if (!chosen) kvq::fuzz::invariant_failed("select_scheme: the Ascend plugin has the hook");
  const std::string& s = *chosen;
  if (!s.empty() && s != "C8" && s != "FAKQuant" && s != "INT8_DYNAMIC")
    kvq::fuzz::invariant_failed("select_scheme: unknown scheme", s.c_str());
}

void open_checkpoint(const std::string& config, const std::string* description) {
  const auto dir = kvq::fuzz::scratch_dir() / "ckpt";
  std::filesystem::create_directories(dir);
  kvq::fuzz::write_file(dir / "config.json", config);
  std::error_code ignored;
  std::filesystem::remove(dir / "quant_model_description.json", ignored);
  if (description != nullptr)
    kvq::fuzz::write_file(dir / "quant_model_description.json", *description);
  try {
    const kvq::host::Checkpoint c = kvq::host::Checkpoint::open(dir);
    const kvq::host::CheckpointConfig& cfg = c.config();
    if (cfg.num_layers < 1 || cfg.num_heads < 1 || cfg.num_kv_heads < 1 || cfg.head_size < 1 ||
        cfg.num_heads % cfg.num_kv_heads != 0)
      kvq::fuzz::invariant_failed("checkpoint config accepted out of range");
    (void)c.scheme_options();
  } catch (const kvq::host::Error&) {
    // Refused with a message naming the file.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      select(text, "model.layers.0.self_attn", "attention");
      select(text, "model.layers.17.self_attn", "attention");
      select(text, "model.layers.0.mlp", "linear");
      break;
    case 1: open_checkpoint(text, nullptr); break;
    default: {
      const std::string config =
          R"({"num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,)"
          R"( "head_dim": 64, "torch_dtype": "bfloat16"})";
      open_checkpoint(config, &text);
      break;
    }
  }
  return 0;
}
