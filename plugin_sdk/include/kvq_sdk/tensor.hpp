// A checked, read-only view of a borrowed kvq_tensor. Construction validates
// the descriptor (struct_size, device, dtype, ndim, shapes, strides) so the
// kernels can index without further checks.
#pragma once

#include "kvq_sdk/device.hpp"

#include <kvq_abi.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace kvq::sdk {

// Where a tensor may live (ABI 1.1, kvq_abi.h "DEVICE MEMORY"): bulk data
// (caches, activations, block tables, slot mappings) in the plugin's memory
// space, small batch metadata in either host or device memory.
enum class Placement { kPluginMemory, kHostOrDevice };

class TensorView {
 public:
  TensorView() = default;
  // `what` names the argument in error messages ("query", "slot_mapping").
  // With need_data false a NULL data pointer is accepted (supports()).
  // `space` is the instance's memory space (default: host memory only).
  TensorView(const kvq_tensor* t, const char* what, bool need_data = true,
             const MemorySpace& space = {}, Placement placement = Placement::kPluginMemory);

  bool present() const { return present_; }
  // What the plugin computes on: a host address when host_accessible(),
  // else the device address (only device code may read it).
  void* data() const { return data_; }
  bool on_device() const { return on_device_; }
  bool host_accessible() const { return host_accessible_; }
  int64_t span_bytes() const { return span_bytes_; }  // bytes from data() to the last element
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
  bool on_device_ = false;
  bool host_accessible_ = true;
  int64_t span_bytes_ = 0;
  void* data_ = nullptr;
  int32_t dtype_ = 0;
  int32_t ndim_ = 0;
  int64_t elem_bytes_ = 0;
  std::array<int64_t, KVQ_MAX_DIMS> shape_{};
  std::array<int64_t, KVQ_MAX_DIMS> strides_{};
  std::string what_;
};

// An optional tensor: NULL pointer -> !present().
TensorView optional_view(const kvq_tensor* t, const char* what, bool need_data = true,
                         const MemorySpace& space = {},
                         Placement placement = Placement::kPluginMemory);

// The n leading integers of a 1-D I32/I64 tensor, downloaded first when it
// lives in device memory (ordered after `stream`'s work).
std::vector<int64_t> read_integers(const TensorView& t, int64_t n, const MemorySpace& space,
                                   kvq_stream* stream);

}  // namespace kvq::sdk
