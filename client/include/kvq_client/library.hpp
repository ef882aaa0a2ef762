// Opening a plugin shared library: dlopen, resolve the entry symbol, and
// check the api table before anything in it is called (ABI rule 12).
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <filesystem>

namespace kvq::client {

// The major version this client speaks.
inline constexpr uint32_t kAbiMajor = KVQ_ABI_MAJOR;
// The highest minor this client knows (offered at negotiation).
inline constexpr uint32_t kAbiMinor = KVQ_ABI_MINOR;

// An opened plugin library. The dlopen handle is intentionally never closed
// (see library.cpp), so copying this struct is harmless.
struct Library {
  std::filesystem::path path;
  const kvq_plugin_api* api = nullptr;  // static table inside the library
};

// Opens `path` and returns its api table after checking that the file is a
// kvq plugin of ABI major 1 with the functions every host needs (negotiate,
// error accessors, instance_destroy, get_info). Throws Error naming the path
// for: a missing file, a directory or other non-regular file, a world-writable
// file (refused: anyone could swap the code), a dlopen failure (with dlerror),
// a missing entry symbol, an entry returning NULL, a truncated table, another
// ABI major.
Library open_library(const std::filesystem::path& path);

}  // namespace kvq::client
