// A checked, read-only view of a borrowed kvq_tensor. Construction validates
// the descriptor (struct_size, device, dtype, ndim, shapes, strides) so the
// kernels can index without further checks.
#pragma once

#include <kvq_abi.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace kvq::sdk {

class TensorView {
 public:
  TensorView() = default;
  // `what` names the argument in error messages ("query", "slot_mapping").
  // With need_data false a NULL data pointer is accepted (supports()).
  TensorView(const kvq_tensor* t, const char* what, bool need_data = true);

  bool present() const { return present_; }
  void* data() const { return data_; }
  int32_t dtype() const { return dtype_; }
  int32_t ndim() const { return ndim_; }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int64_t stride(int i) const { return strides_[static_cast<size_t>(i)]; }
  int64_t numel() const;
  bool contiguous() const;
  const std::string& what() const { return what_; }
  std::string shape_string() const;

  // Fails with INVALID_ARGUMENT unless dtype and shape match (-1 = any).
  void expect(int32_t dtype, std::initializer_list<int64_t> shape) const;
  void expect(int32_t dtype, const std::vector<int64_t>& shape) const;
  void expect_dtype(int32_t dtype) const;
  void expect_ndim(int ndim) const;

  // Element at a multi-index (ndim entries), as a byte pointer.
  const unsigned char* at(std::initializer_list<int64_t> index) const;
  unsigned char* at_mut(std::initializer_list<int64_t> index) const;
  int64_t offset(std::initializer_list<int64_t> index) const;  // in elements

  int64_t i64(int64_t i) const;  // 1-D integer tensors (I32 or I64)

 private:
  bool present_ = false;
  void* data_ = nullptr;
  int32_t dtype_ = 0;
  int32_t ndim_ = 0;
  int64_t elem_bytes_ = 0;
  std::array<int64_t, KVQ_MAX_DIMS> shape_{};
  std::array<int64_t, KVQ_MAX_DIMS> strides_{};
  std::string what_;
};

// An optional tensor: NULL pointer -> !present().
TensorView optional_view(const kvq_tensor* t, const char* what, bool need_data = true);

}  // namespace kvq::sdk
