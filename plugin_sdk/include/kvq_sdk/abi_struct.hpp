// Tolerant reading and writing of the ABI's versioned structs (spec/abi.md
// rule 4): accept a larger struct (ignore the unknown tail), refuse one smaller
// than its v1.0 size, and never write past the caller's struct_size.
#pragma once

#include "kvq_sdk/error.hpp"

#include <algorithm>
#include <cstring>

namespace kvq::sdk {

// Copies an input struct the caller compiled with struct_size bytes.
template <typename T>
T read_struct(const T* in, size_t v1_size, const char* what) {
  if (in == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "{} is NULL", what);
  if (in->struct_size < v1_size)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: struct_size {} is smaller than the v1.0 size {}", what,
         in->struct_size, v1_size);
  T copy{};
  std::memcpy(&copy, in, std::min<size_t>(sizeof(T), static_cast<size_t>(in->struct_size)));
  copy.struct_size = sizeof(T);
  return copy;
}

// Checks an out-struct before the plugin fills it.
template <typename T>
void check_out_struct(const T* out, size_t v1_size, const char* what) {
  if (out == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "{} is NULL", what);
  if (out->struct_size < v1_size)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: struct_size {} is smaller than the v1.0 size {}", what,
         out->struct_size, v1_size);
}

// Writes `value` into the caller's out-struct, no byte past its struct_size.
template <typename T>
void write_struct(T* out, T value) {
  const size_t n = std::min<size_t>(sizeof(T), static_cast<size_t>(out->struct_size));
  value.struct_size = n;
  std::memcpy(out, &value, n);
}

}  // namespace kvq::sdk
