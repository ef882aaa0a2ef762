#include "kvq_client/library.hpp"

#include <dlfcn.h>

#include <cstddef>
#include <string>
#include <system_error>

#include "elf_check.hpp"
#include "kvq_client/error.hpp"
#include "text.hpp"

namespace kvq::client {
namespace {

using detail::cat;

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
  if (ec && ec != std::errc::no_such_file_or_directory) {
    // ELOOP (a symbolic link loop), EACCES on a parent folder, ...
    throw Error(cat("plugin ", path.string(), ": ", ec.message()));
  }
  if (ec || !std::filesystem::exists(status)) {
    throw Error(cat("plugin ", path.string(), ": no such file"));
  }
  if (std::filesystem::is_directory(status)) {
    throw Error(cat("plugin ", path.string(), ": is a directory, not a plugin library"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw Error(cat("plugin ", path.string(), ": not a regular file"));
  }
  if ((status.permissions() & std::filesystem::perms::others_write) !=
      std::filesystem::perms::none) {
    throw Error(cat("plugin ", path.string(),
                    ": refusing a world-writable plugin library (anyone could replace the code "
                    "this process runs); remove the write bit for others (chmod o-w)"));
  }
}

void require_function(const std::filesystem::path& path, bool present, const char* name) {
  if (!present) {
    throw Error(
        cat("plugin ", path.string(), ": the api table lacks the required function ", name));
  }
}

}  // namespace

Library open_library(const std::filesystem::path& path) {
  check_is_safe_regular_file(path);
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(cat("plugin ", path.string(), ": ", ec.message()));
  detail::check_elf_library(path, size);

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
    throw Error(
        cat("plugin ", path.string(), ": cannot load: ", (why ? why : "unknown dlopen error")));
  }

  dlerror();  // clear any stale error before dlsym, as dlsym(3) recommends
  void* symbol = dlsym(handle, KVQ_PLUGIN_ENTRY_SYMBOL);
  if (symbol == nullptr) {
    const char* why = dlerror();
    throw Error(cat("plugin ", path.string(), ": not a kvq plugin: it does not export ",
                    KVQ_PLUGIN_ENTRY_SYMBOL, " (", (why ? why : "symbol is NULL"), ")"));
  }
  // POSIX guarantees that a data pointer from dlsym converts to a function pointer.
  const auto entry = reinterpret_cast<kvq_plugin_entry_fn>(symbol);
  const kvq_plugin_api* api = entry();
  if (api == nullptr) {
    throw Error(cat("plugin ", path.string(), ": ", KVQ_PLUGIN_ENTRY_SYMBOL, " returned NULL"));
  }
  if (api->struct_size < offsetof(kvq_plugin_api, abi_minor) + sizeof(api->abi_minor)) {
    throw Error(cat("plugin ", path.string(), ": api table of ", api->struct_size,
                    " bytes is too small to hold a version"));
  }
  if (api->abi_major != kAbiMajor) {
    throw Error(cat("plugin ", path.string(), " speaks ABI major ", api->abi_major,
                    "; this host speaks ", kAbiMajor));
  }
  if (api->struct_size < kApiV1_0Size) {
    throw Error(cat("plugin ", path.string(), ": api table of ", api->struct_size,
                    " bytes is smaller than the ABI 1.0 table (", kApiV1_0Size, " bytes)"));
  }
  require_function(path, api->negotiate != nullptr, "negotiate");
  require_function(path, api->error_code != nullptr, "error_code");
  require_function(path, api->error_message != nullptr, "error_message");
  require_function(path, api->error_destroy != nullptr, "error_destroy");
  require_function(path, api->instance_destroy != nullptr, "instance_destroy");
  require_function(path, api->get_info != nullptr, "get_info");
  return Library{path, api};
}

}  // namespace kvq::client
