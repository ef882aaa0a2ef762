// Shared bits of the client library's tests: plugin paths from the build and
// a small attention batch every plugin of the "triton" backend can run.
#pragma once

#include <kvq_client/buffer.hpp>
#include <kvq_client/error.hpp>
#include <kvq_client/plugin.hpp>
#include <kvq_client/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvq::client::testing {

inline std::string triton_plugin() {
  return KVQ_TEST_TRITON_PLUGIN;
}
inline std::string ascend_plugin() {
  return KVQ_TEST_ASCEND_PLUGIN;
}
inline std::string arena_plugin() {
  return KVQ_TEST_ARENA_PLUGIN;
}
inline std::string stub_plugin() {
  return KVQ_TEST_STUB_PLUGIN;
}

// The message of the Error `body` throws ("" when it throws none).
template <typename Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A two-sequence batch (a decode over 20 keys and a 3-token prefill) on a
// layer of `mode` (4 query / 2 KV heads, head 64, block 16), run through
// cache_write and forward with every bulk tensor in the plugin's memory
// space. Returns the output bytes.
std::vector<std::byte> run_small_batch(const Plugin& plugin, const std::string& mode);

}  // namespace kvq::client::testing
