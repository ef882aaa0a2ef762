// `kvq bench`: the machine's read bandwidth, then every attention and
// cache-write kernel of the plugins next to it, as one table. The plugins are
// driven only through the C ABI (Plugin / Layer), as an engine would.
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace kvq::host {

// The command line's choices (cli.cpp parses and checks them).
struct BenchOptions {
  bool quick = false;                // small shapes, a few seconds (the table has the same rows)
  std::filesystem::path plugin_dir;  // where libkvq_triton_sim.so and libkvq_ascend.so are
  std::string filter;                // substring of "kind mode" a row must contain
  std::string shape;                 // substring of the case's shape ("1 seq x 16384 keys")
  std::string heads;                 // "Q/KV": only that head layout
  // Cache pool per (mode, head layout) in MiB: a small pool keeps a case's
  // K/V in the caches (compute-bound speed) instead of coming from DRAM.
  std::optional<size_t> pool_mib;
  std::vector<int> threads{1, 2};     // plugin thread counts, each a column of runs
  std::optional<double> min_seconds;  // timed runs per case add up to at least this
};

// Throws Error when --filter matches no row or a plugin cannot be opened;
// returns an exit code.
int command_bench(const BenchOptions& options, std::ostream& out);

}  // namespace kvq::host
