// A triton_sim layer with a written, guarded KV cache and a valid cache-write
// batch and forward batch over it: the starting point of every call row. A
// row breaks one thing in the batch; the test then checks that the call
// fails as expected and that the cache (and its guard bytes), the layer's
// state and the output buffer are exactly as before.
#pragma once

#include <kvq_abi.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.hpp"

namespace kvq::bad_input {

// The shared, negotiated triton_sim instance (one worker thread per call).
test::Plugin& triton();

struct Scene {
  static constexpr int64_t kHeads = 4, kKvHeads = 2, kHeadSize = 32, kBlockSize = 16;
  // Two sequences (5 and 3 tokens) in shuffled blocks, plus spare blocks.
  const std::vector<test::Seq> seqs = {{5, 5}, {3, 3}};

  explicit Scene(const std::string& mode);
  Scene(const Scene&) = delete;
  Scene& operator=(const Scene&) = delete;

  test::Plugin& plugin;
  test::LayerSpec spec;
  test::LayerPtr layer;
  test::PagedBatch pb;
  std::unique_ptr<test::Cache> cache;
  // The row's cache write: fresh K/V for every written slot (so a write that
  // should not happen would change the cache).
  test::OwnedTensor key, value, slots;
  // The row's forward: every token of both sequences as one chunked batch.
  test::OwnedTensor query, output;
  // The row's calls, built with the client's argument builders, which own
  // the tensor descriptors.
  client::CacheWriteArgs write_args;
  client::ForwardArgs forward_args;
  // Those descriptors (inside the builders); rows edit them.
  kvq_tensor *key_t = nullptr, *value_t = nullptr, *slots_t = nullptr, *cache_t = nullptr,
             *query_t = nullptr, *output_t = nullptr, *qsl_t = nullptr, *lens_t = nullptr,
             *table_t = nullptr;
  // The C structs the calls get (pointing at the descriptors above): rows
  // break their fields, which is what the table tests, so they stay raw.
  kvq_cache_write_args write{};
  kvq_forward_args forward{};
  kvq_layer* layer_arg = nullptr;  // what the call gets as its layer (rows may pass NULL)
  bool null_args = false;          // pass NULL instead of &write / &forward

  int64_t tokens() const { return 8; }
  // Slot of token i of the write batch (sequence 0 then sequence 1).
  int64_t slot(int64_t i) const;
  // A descriptor whose data is `t`'s data shifted by `bytes` (into spare room
  // allocated for it), keeping shape and dtype.
  kvq_tensor shifted(const test::OwnedTensor& t, int64_t bytes);

 private:
  std::vector<std::unique_ptr<unsigned char[]>> spare_;
};

// Everything a failed call must leave alone.
struct SceneState {
  std::vector<unsigned char> cache, guard, output;
  std::string impl, mode, scheme;
  bool operator==(const SceneState&) const = default;
};
SceneState state_of(const Scene& s);

}  // namespace kvq::bad_input
