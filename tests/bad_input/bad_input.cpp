#include "bad_input.hpp"

#include <fstream>
#include <sstream>

namespace kvq::bad_input {
namespace {

// Walks by hand, deciding on each entry's own type (symlink_status): the
// standard recursive iterator stats link targets, which fails on a link loop
// (itself a row's input).
void snapshot_into(const std::filesystem::path& root, const std::filesystem::path& dir,
                   DirSnapshot& out) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    // lexically: relative() would resolve links, which fails on a loop.
    const std::string key = entry.path().lexically_relative(root).string();
    const std::filesystem::file_status st = entry.symlink_status();
    std::string value = "perms " + std::to_string(static_cast<unsigned>(st.permissions())) + "\n";
    if (std::filesystem::is_symlink(st)) {
      // The link itself (its target may be a device, or a loop).
      value += "link " + std::filesystem::read_symlink(entry.path()).string();
    } else if (std::filesystem::is_regular_file(st)) {
      // Sparse test files can be large; their size and first bytes suffice.
      const auto size = entry.file_size();
      value += "size " + std::to_string(size) + "\n";
      std::ifstream in(entry.path(), std::ios::binary);
      std::string head(static_cast<size_t>(std::min<uintmax_t>(size, 1 << 20)), '\0');
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      value += head;
    } else if (std::filesystem::is_directory(st)) {
      value += "dir";
      snapshot_into(root, entry.path(), out);
    } else {
      value += "special";
    }
    out.emplace(key, std::move(value));
  }
}

}  // namespace

DirSnapshot snapshot_dir(const std::filesystem::path& dir) {
  DirSnapshot out;
  snapshot_into(dir, dir, out);
  return out;
}

}  // namespace kvq::bad_input
