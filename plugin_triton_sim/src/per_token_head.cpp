#include "per_token_head.hpp"

#include "kvq_sdk/dtype.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace kvq::triton {
namespace {

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace

void quantize_row_int8(const float* x, int64_t n, unsigned char* row) {
  const float scale = std::max(absmax(x, n) / 127.0f, 1e-6f);
  const float inv = 1.0f / scale;  // reciprocal, then multiply: two roundings, as vLLM
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(x[i] * inv), -128.0f, 127.0f);  // ties to even
    row[i] = static_cast<unsigned char>(static_cast<int8_t>(q));
  }
  std::memcpy(row + n, &scale, 4);
}

void quantize_row_fp8(const float* x, int64_t n, unsigned char* row) {
  const float scale = std::max(absmax(x, n) / 448.0f, 1e-6f);
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i)
    row[i] = sdk::float_to_e4m3(std::clamp(x[i] * inv, -448.0f, 448.0f));
  std::memcpy(row + n, &scale, 4);
}

int64_t int4_row_bytes(int64_t head_size) {
  return (head_size + 1) / 2 + 8;
}

void quantize_row_int4(const float* x, int64_t n, unsigned char* row) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const float scale = std::max((hi - lo) / 15.0f, 1e-6f);
  const float zp = std::clamp(std::nearbyint(-lo / scale), 0.0f, 15.0f);
  const int64_t bytes = (n + 1) / 2;
  std::memset(row, 0, static_cast<size_t>(bytes));
  for (int64_t i = 0; i < n; ++i) {
    const auto q =
        static_cast<unsigned>(std::clamp(std::nearbyint(x[i] / scale + zp), 0.0f, 15.0f));
    row[i / 2] = static_cast<unsigned char>(row[i / 2] | (i % 2 == 0 ? q : q << 4));
  }
  std::memcpy(row + bytes, &scale, 4);
  std::memcpy(row + bytes + 4, &zp, 4);
}

void decode_row_int4(const unsigned char* row, int64_t n, float, float* out) {
  const int64_t bytes = (n + 1) / 2;
  float scale, zp;
  std::memcpy(&scale, row + bytes, 4);
  std::memcpy(&zp, row + bytes + 4, 4);
  for (int64_t i = 0; i < n; ++i) {
    const unsigned q = i % 2 == 0 ? (row[i / 2] & 0x0Fu) : (row[i / 2] >> 4);
    out[i] = (static_cast<float>(q) - zp) * scale;
  }
}

}  // namespace kvq::triton
