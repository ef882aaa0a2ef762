// Fuzzes whole checkpoint directories (issue #17): config.json, the
// quantization description and a safetensors file, read by the host's
// Checkpoint::open and loaded into layers of the Ascend plugin (C8 scales,
// FAKQuant / INT8_DYNAMIC parameters) through its weight loaders. Input:
// [u16 config length][u16 description length][config][description][rest =
// model.safetensors]; a length of 0 leaves that file out. Every refusal must
// be a kvq::host::Error (an escaping exception or a crash is a bug) and a
// refused layer is never handed out.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "kvq_engine/checkpoint.hpp"
#include "kvq_engine/plugin.hpp"
#include "kvq_files/errors.hpp"

#ifndef KVQ_FUZZ_ASCEND_PLUGIN
#error "KVQ_FUZZ_ASCEND_PLUGIN must name the Ascend plugin library"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvq;
  if (size < 4) return 0;
  const size_t config_len = data[0] | (size_t{data[1]} << 8);
  const size_t description_len = data[2] | (size_t{data[3]} << 8);
  if (4 + config_len + description_len > size) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::filesystem::path dir = fuzz::scratch_dir() / "ckpt";
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  std::filesystem::create_directories(dir);
  if (config_len > 0) fuzz::write_file(dir / "config.json", bytes.substr(4, config_len));
  if (description_len > 0)
    fuzz::write_file(dir / "quant_model_description.json",
                     bytes.substr(4 + config_len, description_len));
  if (4 + config_len + description_len < size)
    fuzz::write_file(dir / "model.safetensors", bytes.substr(4 + config_len + description_len));

  static const host::Plugin plugin = host::open_plugin(KVQ_FUZZ_ASCEND_PLUGIN, {0, 1});
  try {
    const host::Checkpoint checkpoint = host::Checkpoint::open(dir);
    const int64_t layers = std::min<int64_t>(checkpoint.config().num_layers, 2);
    for (int64_t i = 0; i < layers; ++i) {
      const host::LoadedLayer loaded = host::create_checkpoint_layer(
          plugin, checkpoint, i, host::CheckpointLayerSpec{"ascend", "", 32, 0, 1});
      if (loaded.layer.name().empty()) fuzz::invariant_failed("a loaded layer has no name");
    }
  } catch (const host::Error&) {
    // Refused with a message: the expected outcome for bad files.
  }
  return 0;
}
