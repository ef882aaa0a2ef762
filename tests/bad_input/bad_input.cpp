#include "bad_input.hpp"

#include <fstream>
#include <sstream>

namespace kvq::bad_input {

DirSnapshot snapshot_dir(const std::filesystem::path& dir) {
  DirSnapshot out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    const std::string key = std::filesystem::relative(entry.path(), dir).string();
    const auto perms = static_cast<unsigned>(entry.symlink_status().permissions());
    std::string value = "perms " + std::to_string(perms) + "\n";
    if (entry.is_regular_file()) {
      // Sparse test files can be large; their size and first bytes suffice.
      const auto size = entry.file_size();
      value += "size " + std::to_string(size) + "\n";
      std::ifstream in(entry.path(), std::ios::binary);
      std::string head(static_cast<size_t>(std::min<uintmax_t>(size, 1 << 20)), '\0');
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      value += head;
    } else if (entry.is_directory()) {
      value += "dir";
    }
    out.emplace(key, std::move(value));
  }
  return out;
}

}  // namespace kvq::bad_input
