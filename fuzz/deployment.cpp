// Fuzzes the deployment YAML loader (host/src/deployment.cpp and
// yaml_mapping.cpp): any text as a deployment. It must be accepted or
// refused with kvq::host::Error (a DeploymentError naming line and column);
// any other exception escapes and libFuzzer reports it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.hpp"
#include "kvq_files/deployment.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvq;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The plugin file is not checked: no file system state, every input is
  // judged on its text alone.
  const host::DeploymentParseOptions options{"/opt/kvq/bin", false};
  try {
    const host::Deployment d = host::parse_deployment(text, "fuzz.yaml", "/fuzz", options);
    // Accepted values keep their documented ranges.
    if (d.kv_cache.block_size < 1 || d.kv_cache.block_size > 1024)
      fuzz::invariant_failed("block_size out of range");
    if (d.kv_cache.memory_gib.has_value() == d.kv_cache.num_blocks.has_value())
      fuzz::invariant_failed("exactly one of memory_gib and num_blocks");
    if (d.model.has_value() == d.checkpoint.has_value())
      fuzz::invariant_failed("exactly one of model and checkpoint");
  } catch (const host::DeploymentError& e) {
    if (e.location().line < 1 || e.location().column < 1)
      fuzz::invariant_failed("a location before line 1, column 1:", e.what());
  } catch (const host::Error&) {
    // Refused with a message.
  }
  return 0;
}
