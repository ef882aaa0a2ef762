#include "buffers.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "kvq_ref/reference.hpp"

namespace kvq::conform {

GuardedBuffer::GuardedBuffer(size_t bytes, size_t alignment)
    : storage_(bytes + 2 * kGuard + alignment, kPattern), size_(bytes) {
  const auto base = reinterpret_cast<uintptr_t>(storage_.data()) + kGuard;
  offset_ = kGuard + ((alignment - base % alignment) % alignment);
  // Fresh data is zero; only the guards carry the pattern.
  std::memset(storage_.data() + offset_, 0, size_);
}

bool GuardedBuffer::guards_intact() const {
  const unsigned char* before = storage_.data() + offset_ - kGuard;
  const unsigned char* after = storage_.data() + offset_ + size_;
  for (size_t i = 0; i < kGuard; ++i)
    if (before[i] != kPattern || after[i] != kPattern) return false;
  return true;
}

kvq_tensor describe(void* data, int32_t dtype, const std::vector<int64_t>& shape) {
  if (shape.size() > KVQ_MAX_DIMS) throw std::invalid_argument("describe: too many dimensions");
  kvq_tensor t{};
  t.struct_size = KVQ_TENSOR_SIZE;
  t.data = data;
  t.device_type = KVQ_DEVICE_CPU;
  t.device_id = 0;
  t.dtype = dtype;
  t.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
  return t;
}

HostTensor::HostTensor(int32_t dtype, std::vector<int64_t> shape, size_t alignment)
    : dtype_(dtype), shape_(std::move(shape)) {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  const int64_t element = kvq::ref::dtype_size(dtype_);
  if (element <= 0) throw std::invalid_argument("HostTensor: unknown dtype");
  buffer_ = GuardedBuffer(static_cast<size_t>(n * element), alignment);
}

HostTensor HostTensor::from_doubles(int32_t dtype, std::vector<int64_t> shape,
                                    const std::vector<double>& values) {
  HostTensor t(dtype, std::move(shape));
  if (static_cast<int64_t>(values.size()) != t.numel())
    throw std::invalid_argument("HostTensor::from_doubles: size mismatch");
  for (size_t i = 0; i < values.size(); ++i)
    kvq::ref::store(dtype, t.bytes(), static_cast<int64_t>(i), values[i]);
  return t;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

void HostTensor::refresh() {
  desc_ = describe(buffer_.data(), dtype_, shape_);
}

std::vector<double> HostTensor::to_doubles() const {
  std::vector<double> out(static_cast<size_t>(numel()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = kvq::ref::load(dtype_, bytes(), static_cast<int64_t>(i));
  return out;
}

void HostTensor::fill(double value) {
  for (int64_t i = 0; i < numel(); ++i) kvq::ref::store(dtype_, bytes(), i, value);
}

std::string damaged_guards(const std::vector<std::pair<std::string, const HostTensor*>>& buffers) {
  std::string out;
  for (const auto& [name, t] : buffers) {
    if (t && !t->guards_intact()) out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

}  // namespace kvq::conform
