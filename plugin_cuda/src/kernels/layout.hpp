// Codec and cache-layout facts shared by the launchers, the planner and the
// tests (plain C++: no CUDA header).
#pragma once

#include "kernels.hpp"

#include <cstdint>

namespace kvq::cuda::detail {

inline int64_t dtype_bytes(int32_t dtype) {
  switch (dtype) {
    case 1: return 4;
    case 2:
    case 3: return 2;
    case 6:
    case 7: return 1;
    default: return 0;
  }
}
inline bool is_model_dtype(int32_t dtype) {
  return dtype == 1 || dtype == 2 || dtype == 3;
}
inline bool per_token_head(Codec c) {
  return c == Codec::kInt8Pth || c == Codec::kFp8Pth || c == Codec::kInt4Pth;
}
inline bool quantized(Codec c) {
  return c == Codec::kE4M3 || c == Codec::kE5M2 || per_token_head(c);
}
inline bool valid_codec(Codec c) {
  return static_cast<int32_t>(c) >= 1 && static_cast<int32_t>(c) <= 8;
}
// Byte size of one stored element (int4: 0, rows are nibbles).
inline int64_t element_bytes(Codec c) {
  switch (c) {
    case Codec::kF32: return 4;
    case Codec::kBF16:
    case Codec::kF16: return 2;
    case Codec::kInt4Pth: return 0;
    default: return 1;
  }
}
// True when the layout is self-consistent and matches the codec's rows.
bool layout_ok(Codec codec, const CacheLayout& l);

}  // namespace kvq::cuda::detail
