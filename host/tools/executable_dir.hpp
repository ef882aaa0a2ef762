// The folder of the running executable (for ${exe_dir} and for finding
// kvq-conform next to kvq), from /proc/self/exe.
#pragma once

#include <filesystem>

namespace kvq::host {

// Empty when it cannot be determined.
std::filesystem::path executable_dir();

}  // namespace kvq::host
