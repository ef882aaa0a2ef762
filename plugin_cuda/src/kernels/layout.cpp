// Cache-layout checks (spec/triton_sim.md §2).
#include "layout.hpp"

namespace kvq::cuda {

int64_t expected_row_bytes(Codec codec, int64_t d, int64_t dv) {
  const int64_t m = d > dv ? d : dv;
  switch (codec) {
    case Codec::kInt4Pth: return (m + 1) / 2 + 8;
    case Codec::kInt8Pth:
    case Codec::kFp8Pth: return m + 4;
    default: return m * detail::element_bytes(codec);
  }
}

bool detail::layout_ok(Codec codec, const CacheLayout& l) {
  return valid_codec(codec) && l.num_blocks >= 0 && l.block_size > 0 && l.block_size % 16 == 0 &&
         l.num_kv_heads > 0 && l.head_size > 0 && l.head_size_v > 0 &&
         l.row_bytes == expected_row_bytes(codec, l.head_size, l.head_size_v) &&
         l.bytes_per_block == 2 * l.block_size * l.num_kv_heads * l.row_bytes &&
         l.num_kv_heads < (int64_t{1} << 25);
}

}  // namespace kvq::cuda
