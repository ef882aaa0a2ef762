// Reading the small text inputs a user hands to kvq (deployment YAML,
// config.json, quant_model_description.json, kvq compare reports): only a
// regular file is read, never more than a size cap, so a FIFO cannot block
// the host and /dev/zero cannot exhaust its memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace kvq::host {

// The cap of every text input: far above any real deployment or checkpoint
// description, far below what would hurt.
inline constexpr int64_t kMaxTextFileBytes = 16 << 20;

// The file's bytes. Throws Error naming `what` and the path for a missing
// file, a directory, a FIFO, device or socket ("not a regular file"), a file
// over max_bytes, or a read failure.
std::string read_text_file(const std::filesystem::path& file, const std::string& what,
                           int64_t max_bytes = kMaxTextFileBytes);

}  // namespace kvq::host
