// Tensor descriptors (kvq_tensor) without hand-filled structs: row-major
// contiguous descriptors over any memory (host, or a plugin's device memory
// through Buffer::tensor), and the few sizes callers compute from them.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

namespace kvq::client {

// A row-major contiguous descriptor of `shape` at `data` (which may be
// NULL: supports() reads shapes only). Throws Error for an unknown dtype, more
// than KVQ_MAX_DIMS dimensions or a negative dimension.
kvq_tensor describe(const void* data, int32_t dtype, std::span<const int64_t> shape,
                    int32_t device_type = KVQ_DEVICE_CPU, int32_t device_id = 0);
inline kvq_tensor describe(const void* data, int32_t dtype, std::initializer_list<int64_t> shape,
                           int32_t device_type = KVQ_DEVICE_CPU, int32_t device_id = 0) {
  return describe(data, dtype, std::span<const int64_t>(shape.begin(), shape.size()), device_type,
                  device_id);
}

// The product of the dimensions (1 for a scalar).
int64_t num_elements(std::span<const int64_t> shape);
// Bytes of a contiguous tensor of `dtype` and `shape`; throws Error for an
// unknown dtype or a size that overflows.
int64_t byte_size(int32_t dtype, std::span<const int64_t> shape);
// The shape of a descriptor, e.g. for messages or for resizing.
std::vector<int64_t> shape_of(const kvq_tensor& t);
// "[2, 8, 64]"
std::string shape_string(std::span<const int64_t> shape);

// 1-D descriptor over a host vector of I32/I64 (metadata such as
// query_start_loc or seq_lens, which may live in host memory).
kvq_tensor host_vector(const std::vector<int32_t>& values);
kvq_tensor host_vector(const std::vector<int64_t>& values);

}  // namespace kvq::client
