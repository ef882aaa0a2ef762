// What a token "says": the activation generator is keyed by a content id per
// token (and its position), standing in for token ids. Requests share a
// prefix by sharing its content id, as the same text would; the prefix cache
// hashes these ids.
#pragma once

#include <cstdint>

namespace kvq::host {

// Content id of the prefix every request shares (workload.shared_prefix_len).
inline constexpr uint64_t kSharedPrefixContent = ~uint64_t{0};

struct TokenContent {
  uint64_t own = 0;  // the request's own text (its id)
  uint64_t prefix = kSharedPrefixContent;
  int64_t prefix_len = 0;  // positions [0, prefix_len) carry `prefix`

  uint64_t at(int64_t position) const { return position < prefix_len ? prefix : own; }
};

}  // namespace kvq::host
