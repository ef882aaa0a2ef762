#include "kvq_host/plugin_library.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstddef>
#include <system_error>

#include "kvq_host/errors.hpp"

namespace kvq::host {
namespace {

// Every ABI 1.x table holds at least the v1.0 fields, which end at
// process_weights. KVQ_PLUGIN_API_SIZE grows with later minors, so the v1.0
// floor is spelled out here; functions added later are checked with
// KVQ_API_HAS where they are called.
constexpr uint64_t kApiV1_0Size = KVQ_STRUCT_SIZE(kvq_plugin_api, process_weights);

// The file dlopen will map must be a regular file that only its owner (and
// group) can change: code loaded into the engine's process runs with the
// engine's rights, so a library anyone may overwrite is an open door.
void check_is_safe_regular_file(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    throw Error(fmt::format("plugin {}: no such file", path.string()));
  }
  if (std::filesystem::is_directory(status)) {
    throw Error(fmt::format("plugin {}: is a directory, not a plugin library", path.string()));
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw Error(fmt::format("plugin {}: not a regular file", path.string()));
  }
  if ((status.permissions() & std::filesystem::perms::others_write) !=
      std::filesystem::perms::none) {
    throw Error(fmt::format(
        "plugin {}: refusing a world-writable plugin library (anyone could replace the code "
        "this process runs); remove the write bit for others (chmod o-w)",
        path.string()));
  }
}

void require_function(const std::filesystem::path& path, bool present, const char* name) {
  if (!present) {
    throw Error(fmt::format("plugin {}: the api table lacks the required function {}",
                            path.string(), name));
  }
}

}  // namespace

PluginLibrary open_plugin_library(const std::filesystem::path& path) {
  check_is_safe_regular_file(path);

  // RTLD_NOW: resolve every symbol up front, so a plugin with a missing
  // dependency fails here with a clear dlerror instead of in the middle of a
  // run. RTLD_LOCAL: the plugin's symbols stay private, so two plugins that
  // bundle different copies of a library do not interpose on each other.
  //
  // The handle is deliberately never passed to dlclose. Objects the plugin
  // created (instances, layers, errors, the strings of get_info, its worker
  // threads and thread-local storage) may outlive any scope the host can
  // prove, and unloading code that is still referenced crashes at exit or
  // later (SOCI#744). A plugin costs one mapping for the process lifetime.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw Error(fmt::format("plugin {}: cannot load: {}", path.string(),
                            why ? why : "unknown dlopen error"));
  }

  dlerror();  // clear any stale error before dlsym, as dlsym(3) recommends
  void* symbol = dlsym(handle, KVQ_PLUGIN_ENTRY_SYMBOL);
  if (symbol == nullptr) {
    const char* why = dlerror();
    throw Error(fmt::format("plugin {}: not a kvq plugin: it does not export {} ({})",
                            path.string(), KVQ_PLUGIN_ENTRY_SYMBOL, why ? why : "symbol is NULL"));
  }
  // POSIX guarantees that a data pointer from dlsym converts to a function pointer.
  const auto entry = reinterpret_cast<kvq_plugin_entry_fn>(symbol);
  const kvq_plugin_api* api = entry();
  if (api == nullptr) {
    throw Error(fmt::format("plugin {}: {} returned NULL", path.string(), KVQ_PLUGIN_ENTRY_SYMBOL));
  }
  if (api->struct_size < offsetof(kvq_plugin_api, abi_minor) + sizeof(api->abi_minor)) {
    throw Error(fmt::format("plugin {}: api table of {} bytes is too small to hold a version",
                            path.string(), api->struct_size));
  }
  if (api->abi_major != kHostAbiMajor) {
    throw Error(fmt::format("plugin {} speaks ABI major {}; this host speaks {}", path.string(),
                            api->abi_major, kHostAbiMajor));
  }
  if (api->struct_size < kApiV1_0Size) {
    throw Error(
        fmt::format("plugin {}: api table of {} bytes is smaller than the ABI 1.0 table ({} bytes)",
                    path.string(), api->struct_size, kApiV1_0Size));
  }
  require_function(path, api->negotiate != nullptr, "negotiate");
  require_function(path, api->error_code != nullptr, "error_code");
  require_function(path, api->error_message != nullptr, "error_message");
  require_function(path, api->error_destroy != nullptr, "error_destroy");
  require_function(path, api->instance_destroy != nullptr, "instance_destroy");
  require_function(path, api->get_info != nullptr, "get_info");
  return PluginLibrary{path, api};
}

}  // namespace kvq::host
