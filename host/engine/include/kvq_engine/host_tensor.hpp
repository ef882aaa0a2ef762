// A contiguous tensor that owns its memory, with the borrowed kvq_tensor
// view the ABI takes. Reshaping keeps the allocation, so per-step buffers do
// not reallocate once they reached their largest size.
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace kvq::host {

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(int32_t dtype, std::initializer_list<int64_t> shape) { reshape(dtype, shape); }

  // Row-major contiguous; contents are unspecified after a reshape.
  void reshape(int32_t dtype, std::initializer_list<int64_t> shape);

  const kvq_tensor& view() const { return view_; }
  int64_t num_elements() const { return num_elements_; }
  int64_t element_size() const { return element_size_; }
  void* data() { return storage_.data(); }
  const void* data() const { return storage_.data(); }
  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(storage_.data());
  }
  template <typename T>
  const T* as() const {
    return reinterpret_cast<const T*>(storage_.data());
  }

 private:
  // uint64_t storage keeps every element type (up to 8 bytes) aligned.
  std::vector<uint64_t> storage_;
  kvq_tensor view_{};
  int64_t num_elements_ = 0;
  int64_t element_size_ = 0;
};

}  // namespace kvq::host
