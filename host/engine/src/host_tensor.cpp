#include "kvq_engine/host_tensor.hpp"

#include <kvq_client/tensor.hpp>

#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {

void HostTensor::reshape(int32_t dtype, std::initializer_list<int64_t> shape) {
  element_size_ = abi_dtype_size(dtype);
  if (element_size_ == 0 || shape.size() > KVQ_MAX_DIMS)
    throw Error("HostTensor: bad dtype or rank");
  num_elements_ = 1;
  for (const int64_t extent : shape) num_elements_ *= extent;
  const int64_t bytes = num_elements_ * element_size_;
  storage_.resize(static_cast<size_t>((bytes + 7) / 8));
  view_ = client::describe(storage_.data(), dtype, shape);
}

}  // namespace kvq::host
