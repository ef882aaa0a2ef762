// Memory handed to a plugin: every buffer is surrounded by guard bytes so a
// write outside it is caught. A HostTensor lives in host memory; bound to a
// device plugin's session it also gets a guarded mirror in the plugin's
// memory (a client Buffer, moved through the plugin's device_memcpy), and
// its descriptor then names that mirror. Cases read and write the host bytes
// and move them with upload() / download().
#pragma once

#include <kvq_abi.h>
#include <kvq_client/buffer.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plugin_session.hpp"

namespace kvq::conform {

inline constexpr size_t kGuard = 64;
inline constexpr unsigned char kGuardPattern = 0xA5;

class GuardedBuffer {
 public:
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

// `bytes` of device memory between guard regions filled with kGuardPattern
// (through device_memset), the data start aligned as asked (at most 256).
class DeviceGuardedBuffer {
 public:
  DeviceGuardedBuffer(const Session& session, size_t bytes, size_t alignment);
  const client::Buffer& buffer() const { return buffer_; }
  client::Buffer& buffer() { return buffer_; }
  uint64_t offset() const { return offset_; }
  // Downloads the guard regions (through the hooks) and compares them.
  bool guards_intact() const;

 private:
  client::Buffer buffer_;
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
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

  // For a device plugin's session: allocates the guarded mirror in its
  // memory and uploads the host bytes. A CPU plugin's session leaves the
  // tensor in host memory (the plugin reads it there).
  void bind(const Session& session);
  bool on_device() const { return device_ != nullptr; }
  // Host bytes -> mirror, mirror -> host bytes (no-ops without a mirror).
  void upload();
  void download();

  // The descriptor the plugin gets (the mirror's when bound); valid as long
  // as this object (it points into it).
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
  // Host guards, and the mirror's (read through the hooks) when bound.
  bool guards_intact() const;

  std::vector<double> to_doubles() const;
  void fill(double value);  // e.g. NaN before a forward (then upload)

 private:
  void refresh();

  int32_t dtype_ = 0;
  std::vector<int64_t> shape_;
  size_t alignment_ = 64;
  GuardedBuffer buffer_;
  std::unique_ptr<DeviceGuardedBuffer> device_;
  kvq_tensor desc_{};
};

// A host descriptor without data, e.g. for a deliberately broken tensor.
kvq_tensor describe(void* data, int32_t dtype, const std::vector<int64_t>& shape);

// Names the buffers (by `names`) whose guard bytes were overwritten; "" if none.
std::string damaged_guards(const std::vector<std::pair<std::string, const HostTensor*>>& buffers);

}  // namespace kvq::conform
