// Helpers shared by the fuzz targets: a private scratch folder, and a trap
// that makes libFuzzer keep the input that broke an invariant.
#pragma once

#include <kvq_abi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace kvq::fuzz {

// A folder for this process's files, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "kvq_fuzz_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return std::filesystem::path(pattern);
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// An invariant the code under test broke: print why, then crash so libFuzzer
// saves the input.
[[noreturn]] inline void invariant_failed(const char* what, const char* detail = "") {
  std::fprintf(stderr, "kvq fuzz invariant failed: %s %s\n", what, detail);
  std::abort();
}

// The plugin linked into this target (each target links one plugin
// statically) and one instance of it for the whole run.
extern "C" const kvq_plugin_api* kvq_plugin_entry(void);
inline const kvq_plugin_api& api() {
  static const kvq_plugin_api* a = kvq_plugin_entry();
  return *a;
}
inline kvq_instance* instance() {
  static kvq_instance* inst = [] {
    kvq_host_info host{};
    host.struct_size = KVQ_HOST_INFO_SIZE;
    host.abi_major = KVQ_ABI_MAJOR;
    host.abi_minor = KVQ_ABI_MINOR;
    host.num_threads = 1;
    kvq_instance* out = nullptr;
    if (api().negotiate(&host, &out) != nullptr) invariant_failed("negotiate");
    return out;
  }();
  return inst;
}

}  // namespace kvq::fuzz
