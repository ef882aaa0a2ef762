// Host memory handed to a plugin: every buffer is surrounded by guard bytes
// so a write outside it is caught, and wrapped in a kvq_tensor.
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvq::conform {

class GuardedBuffer {
 public:
  static constexpr size_t kGuard = 64;
  static constexpr unsigned char kPattern = 0xA5;

  // `alignment` must be a power of two; the data start is aligned to it.
  explicit GuardedBuffer(size_t bytes = 0, size_t alignment = 64);
  // Move-only: a copy would lose the alignment of the data start.
  GuardedBuffer(GuardedBuffer&&) = default;
  GuardedBuffer& operator=(GuardedBuffer&&) = default;
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  unsigned char* data() { return storage_.data() + offset_; }
  const unsigned char* data() const { return storage_.data() + offset_; }
  size_t size() const { return size_; }
  bool guards_intact() const;

 private:
  std::vector<unsigned char> storage_;
  size_t offset_ = 0;
  size_t size_ = 0;
};

// Row-major contiguous tensor in a guarded buffer.
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(int32_t dtype, std::vector<int64_t> shape, size_t alignment = 64);
  // Encodes `values` (rounding as ref::store does).
  static HostTensor from_doubles(int32_t dtype, std::vector<int64_t> shape,
                                 const std::vector<double>& values);
  template <typename T>
  static HostTensor from_ints(int32_t dtype, std::vector<int64_t> shape,
                              const std::vector<T>& values) {
    std::vector<double> d(values.begin(), values.end());
    return from_doubles(dtype, std::move(shape), d);
  }

  // The descriptor; valid as long as this object (it points into it).
  const kvq_tensor* tensor() {
    refresh();
    return &desc_;
  }
  kvq_tensor descriptor() {
    refresh();
    return desc_;
  }
  int32_t dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;
  unsigned char* bytes() { return buffer_.data(); }
  const unsigned char* bytes() const { return buffer_.data(); }
  size_t byte_size() const { return buffer_.size(); }
  bool guards_intact() const { return buffer_.guards_intact(); }

  std::vector<double> to_doubles() const;
  void fill(double value);  // e.g. NaN before a forward

 private:
  void refresh();

  int32_t dtype_ = 0;
  std::vector<int64_t> shape_;
  GuardedBuffer buffer_;
  kvq_tensor desc_{};
};

// A descriptor without data, e.g. for supports() or a deliberately broken
// tensor.
kvq_tensor describe(void* data, int32_t dtype, const std::vector<int64_t>& shape);

// Names the buffers (by `names`) whose guard bytes were overwritten; "" if none.
std::string damaged_guards(const std::vector<std::pair<std::string, const HostTensor*>>& buffers);

}  // namespace kvq::conform
