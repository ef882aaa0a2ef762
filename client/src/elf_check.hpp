// The plugin file's ELF header and segments checked against its size before
// dlopen maps it (see elf_check.cpp for why).
#pragma once

#include <cstdint>
#include <filesystem>

namespace kvq::client::detail {

// Throws Error naming the file when it is not a 64-bit shared library for
// this machine, or when its header, program headers, loadable segments or
// section headers reach past file_size (a truncated copy).
void check_elf_library(const std::filesystem::path& path, uint64_t file_size);

}  // namespace kvq::client::detail
