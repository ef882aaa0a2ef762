// Helpers shared by the fuzz targets: a private scratch folder, a trap that
// makes libFuzzer keep the input that broke an invariant, and the client
// session of the plugin a target links.
#pragma once

#include <kvq_abi.h>
#include <unistd.h>
#include <kvq_client/error.hpp>
#include <kvq_client/plugin.hpp>

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
// statically) and one client session of it for the whole run.
extern "C" const kvq_plugin_api* kvq_plugin_entry(void);
inline const kvq::client::Plugin& plugin() {
  static const kvq::client::Plugin p = [] {
    kvq::client::PluginOptions options;
    options.num_threads = 1;
    try {
      return kvq::client::Plugin::open(
          kvq::client::Library{"(linked into this fuzz target)", kvq_plugin_entry()}, options);
    } catch (const kvq::client::Error& e) {
      invariant_failed("negotiate", e.what());
    }
  }();
  return p;
}
// The raw table and instance, for targets that build C structs themselves.
inline const kvq_plugin_api& api() {
  return plugin().api();
}
inline kvq_instance* instance() {
  return plugin().instance();
}

}  // namespace kvq::fuzz
