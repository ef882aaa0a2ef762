#include "kvq_host/host_tensor.hpp"

#include "kvq_host/dtype.hpp"
#include "kvq_host/errors.hpp"

namespace kvq::host {

void HostTensor::reshape(int32_t dtype, std::initializer_list<int64_t> shape) {
  element_size_ = abi_dtype_size(dtype);
  if (element_size_ == 0 || shape.size() > KVQ_MAX_DIMS)
    throw Error("HostTensor: bad dtype or rank");
  view_ = kvq_tensor{};
  view_.struct_size = KVQ_TENSOR_SIZE;
  view_.device_type = KVQ_DEVICE_CPU;
  view_.dtype = dtype;
  view_.ndim = static_cast<int32_t>(shape.size());
  num_elements_ = 1;
  int i = 0;
  for (const int64_t extent : shape) {
    view_.shape[i++] = extent;
    num_elements_ *= extent;
  }
  int64_t stride = 1;
  for (int d = view_.ndim - 1; d >= 0; --d) {
    view_.strides[d] = stride;
    stride *= view_.shape[d];
  }
  const int64_t bytes = num_elements_ * element_size_;
  storage_.resize(static_cast<size_t>((bytes + 7) / 8));
  view_.data = storage_.data();
}

}  // namespace kvq::host
