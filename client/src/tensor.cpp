#include "kvq_client/tensor.hpp"

#include <kvq_abi_names.h>

#include <limits>

#include "kvq_client/error.hpp"
#include "text.hpp"

namespace kvq::client {

using detail::cat;

kvq_tensor describe(const void* data, int32_t dtype, std::span<const int64_t> shape,
                    int32_t device_type, int32_t device_id) {
  if (kvq_dtype_size(dtype) == 0) throw Error(cat("tensor descriptor: unknown dtype ", dtype));
  if (shape.size() > KVQ_MAX_DIMS)
    throw Error(cat("tensor descriptor: ", shape.size(), " dimensions, at most ", KVQ_MAX_DIMS));
  kvq_tensor t{};
  t.struct_size = KVQ_TENSOR_SIZE;
  // The ABI passes borrowed tensors as non-const data; the plugin writes only
  // to the tensors the call documents as outputs.
  t.data = const_cast<void*>(data);
  t.device_type = device_type;
  t.device_id = device_id;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] < 0)
      throw Error(cat("tensor descriptor: dimension ", i, " of ", shape_string(shape), " < 0"));
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
  return t;
}

int64_t num_elements(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

int64_t byte_size(int32_t dtype, std::span<const int64_t> shape) {
  const int64_t element = kvq_dtype_size(dtype);
  if (element == 0) throw Error(cat("tensor size: unknown dtype ", dtype));
  int64_t bytes = element;
  for (const int64_t d : shape) {
    if (d < 0) throw Error(cat("tensor size: negative dimension in ", shape_string(shape)));
    if (d != 0 && bytes > std::numeric_limits<int64_t>::max() / d)
      throw Error(
          cat("tensor size: ", shape_string(shape), " of ", kvq_dtype_name(dtype), " overflows"));
    bytes *= d;
  }
  return bytes;
}

std::vector<int64_t> shape_of(const kvq_tensor& t) {
  const int32_t ndim = t.ndim < 0 ? 0 : (t.ndim > KVQ_MAX_DIMS ? KVQ_MAX_DIMS : t.ndim);
  return std::vector<int64_t>(t.shape, t.shape + ndim);
}

std::string shape_string(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

kvq_tensor host_vector(const std::vector<int32_t>& values) {
  return describe(values.data(), KVQ_DTYPE_I32, {static_cast<int64_t>(values.size())});
}

kvq_tensor host_vector(const std::vector<int64_t>& values) {
  return describe(values.data(), KVQ_DTYPE_I64, {static_cast<int64_t>(values.size())});
}

}  // namespace kvq::client
