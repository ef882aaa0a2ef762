// `kvq bench`: the machine's read bandwidth, then every attention and
// cache-write kernel of the plugins next to it, as one table. The plugins are
// driven only through the C ABI (Plugin / Layer), as an engine would.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kvq::host {

// args: [--quick] [--plugin-dir DIR] [--filter TEXT] [--threads N[,N...]]
//       [--min-time SECONDS]
// --quick: small shapes, a few seconds (the table has the same rows).
// Throws Error on a bad option; returns an exit code.
int command_bench(const std::vector<std::string>& args, std::ostream& out);

}  // namespace kvq::host
