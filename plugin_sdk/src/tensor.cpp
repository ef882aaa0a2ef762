#include "kvq_sdk/tensor.hpp"

#include "kvq_sdk/abi_struct.hpp"
#include "kvq_sdk/dtype.hpp"
#include "kvq_sdk/error.hpp"

#include <kvq_abi_names.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace kvq::sdk {

TensorView::TensorView(const kvq_tensor* t, const char* what, bool need_data,
                       const MemorySpace& space, Placement placement)
    : what_(what) {
  const kvq_tensor d = read_struct(t, KVQ_TENSOR_SIZE, what);
  if (d.device_type == KVQ_DEVICE_CPU) {
    if (space.device != nullptr && placement == Placement::kPluginMemory)
      fail(KVQ_ERR_INVALID_ARGUMENT,
           "{}: host memory, but this plugin computes on {} {}: allocate it with device_alloc",
           what, kvq_device_type_name(space.device_type()), space.device->ordinal());
  } else if (space.device != nullptr && d.device_type == space.device_type()) {
    if (d.device_id != space.device->ordinal())
      fail(KVQ_ERR_INVALID_ARGUMENT, "{}: memory of {} device {}, but this session uses device {}",
           what, kvq_device_type_name(d.device_type), d.device_id, space.device->ordinal());
    on_device_ = true;
  } else {
    fail(KVQ_ERR_UNSUPPORTED, "{}: device type {} ({}) is not this plugin's ({})", what,
         d.device_type, kvq_device_type_name(d.device_type),
         kvq_device_type_name(space.device_type()));
  }
  elem_bytes_ = dtype_size(d.dtype);
  if (elem_bytes_ == 0) fail(KVQ_ERR_INVALID_ARGUMENT, "{}: unknown dtype {}", what, d.dtype);
  if (d.ndim < 0 || d.ndim > KVQ_MAX_DIMS)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: ndim {} is outside 0..{}", what, d.ndim, KVQ_MAX_DIMS);
  if (need_data && d.data == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "{}: data is NULL", what);
  // Kernels load whole elements: a misaligned pointer is undefined behaviour
  // (and a fault on some targets), so it is refused like any malformed input.
  if (reinterpret_cast<uintptr_t>(d.data) % static_cast<uintptr_t>(elem_bytes_) != 0)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: data is not aligned to its {}-byte elements", what,
         elem_bytes_);
  // Reject shapes whose byte span would overflow: every index must be addressable.
  int64_t span = 1;
  for (int i = 0; i < d.ndim; ++i) {
    const int64_t n = d.shape[i], s = d.strides[i];
    if (n < 0) fail(KVQ_ERR_INVALID_ARGUMENT, "{}: negative dimension {} = {}", what, i, n);
    if (s < 0) fail(KVQ_ERR_INVALID_ARGUMENT, "{}: negative stride {} = {}", what, i, s);
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 16;
    if (n > 0 && s > 0 && (n - 1) > (kMax - span) / s)
      fail(KVQ_ERR_INVALID_ARGUMENT, "{}: shape and strides overflow", what);
    if (n > 0) span += (n - 1) * s;
  }
  if (span > std::numeric_limits<int64_t>::max() / 16 / elem_bytes_)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: tensor too large", what);
  present_ = true;
  span_bytes_ = span * elem_bytes_;
  data_ = d.data;
  if (on_device_ && d.data != nullptr) {
    // Memory the CPU can reach through the device (the arena) is computed on
    // at its host address; a GPU's stays a device address.
    void* host = space.device->host_address(d.data, static_cast<uint64_t>(span_bytes_));
    host_accessible_ = host != nullptr;
    if (host != nullptr) data_ = host;
  }
  dtype_ = d.dtype;
  ndim_ = d.ndim;
  for (int i = 0; i < d.ndim; ++i) {
    shape_[static_cast<size_t>(i)] = d.shape[i];
    strides_[static_cast<size_t>(i)] = d.strides[i];
  }
}

TensorView optional_view(const kvq_tensor* t, const char* what, bool need_data,
                         const MemorySpace& space, Placement placement) {
  return t == nullptr ? TensorView() : TensorView(t, what, need_data, space, placement);
}

std::vector<int64_t> read_integers(const TensorView& t, int64_t n, const MemorySpace& space,
                                   kvq_stream* stream) {
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (t.host_accessible()) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = t.i64(i);
    return out;
  }
  if (t.dtype() != KVQ_DTYPE_I32 && t.dtype() != KVQ_DTYPE_I64)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: integer dtype required, got {}", t.what(),
         dtype_name(t.dtype()));
  if (n > 0 && t.stride(0) != 1)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: device metadata must be contiguous", t.what());
  const auto es = static_cast<size_t>(dtype_size(t.dtype()));
  std::vector<unsigned char> raw(static_cast<size_t>(n) * es);
  if (n > 0) {
    space.device->copy(raw.data(), false, t.data(), true, raw.size(), stream);
    space.device->wait(stream);
  }
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* p = raw.data() + static_cast<size_t>(i) * es;
    if (t.dtype() == KVQ_DTYPE_I32) {
      int32_t v;
      std::memcpy(&v, p, 4);
      out[static_cast<size_t>(i)] = v;
    } else {
      std::memcpy(&out[static_cast<size_t>(i)], p, 8);
    }
  }
  return out;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape_[static_cast<size_t>(i)];
  return n;
}

bool TensorView::contiguous() const {
  int64_t expect = 1;
  for (int i = ndim_ - 1; i >= 0; --i) {
    if (shape_[static_cast<size_t>(i)] != 1 && strides_[static_cast<size_t>(i)] != expect)
      return false;
    expect *= shape_[static_cast<size_t>(i)];
  }
  return true;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < ndim_; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape_[static_cast<size_t>(i)]);
  }
  return s + "]";
}

void TensorView::expect_dtype(int32_t dtype) const {
  if (dtype_ != dtype)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: dtype {} where {} is required", what_, dtype_name(dtype_),
         dtype_name(dtype));
}

void TensorView::expect_ndim(int ndim) const {
  if (ndim_ != ndim)
    fail(KVQ_ERR_INVALID_ARGUMENT, "{}: {} dimensions where {} are required (shape {})", what_,
         ndim_, ndim, shape_string());
}

void TensorView::expect(int32_t dtype, std::initializer_list<int64_t> shape) const {
  expect(dtype, std::vector<int64_t>(shape));
}

void TensorView::expect(int32_t dtype, const std::vector<int64_t>& shape) const {
  expect_dtype(dtype);
  expect_ndim(static_cast<int>(shape.size()));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] >= 0 && shape_[i] != shape[i]) {
      std::string want = "[";
      for (size_t k = 0; k < shape.size(); ++k)
        want += (k ? ", " : "") + (shape[k] < 0 ? std::string("*") : std::to_string(shape[k]));
      fail(KVQ_ERR_INVALID_ARGUMENT, "{}: shape {} where {}] is required", what_, shape_string(),
           want);
    }
  }
}

int64_t TensorView::offset(std::initializer_list<int64_t> index) const {
  int64_t off = 0;
  int i = 0;
  for (int64_t x : index) off += x * strides_[static_cast<size_t>(i++)];
  return off;
}

const unsigned char* TensorView::at(std::initializer_list<int64_t> index) const {
  return static_cast<const unsigned char*>(data_) + offset(index) * elem_bytes_;
}

unsigned char* TensorView::at_mut(std::initializer_list<int64_t> index) const {
  return static_cast<unsigned char*>(data_) + offset(index) * elem_bytes_;
}

int64_t TensorView::i64(int64_t i) const {
  if (!host_accessible_)
    fail(KVQ_ERR_INTERNAL, "{}: device memory read on the host (read_integers downloads it)",
         what_);
  const unsigned char* p = static_cast<const unsigned char*>(data_) + i * strides_[0] * elem_bytes_;
  if (dtype_ == KVQ_DTYPE_I32) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (dtype_ == KVQ_DTYPE_I64) {
    int64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  fail(KVQ_ERR_INVALID_ARGUMENT, "{}: integer dtype required, got {}", what_, dtype_name(dtype_));
}

}  // namespace kvq::sdk
