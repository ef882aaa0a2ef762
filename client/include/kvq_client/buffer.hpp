// Memory in a plugin's memory space, and its streams. For a CPU plugin a
// Buffer is aligned host memory; for a device plugin (plugin_info.device_type
// other than CPU) it is device memory from the plugin's device_alloc, which
// this process never dereferences: bytes move through device_memcpy /
// device_memset. Callers write the same code for both.
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>

namespace kvq::client {

class Plugin;
class Stream;

namespace detail {
struct Session;
}  // namespace detail

class Buffer {
 public:
  // An empty buffer (size 0, no memory).
  Buffer() = default;
  // `bytes` (> 0) of uninitialised memory aligned to `alignment` (a power of
  // two; device memory is 256-byte aligned, so a device plugin serves at most
  // that). Throws Error for 0 bytes or a bad alignment, PluginError when the
  // plugin cannot allocate, Error when host memory runs out.
  Buffer(const Plugin& plugin, uint64_t bytes, uint64_t alignment = 256);

  Buffer(Buffer&&) noexcept;
  Buffer& operator=(Buffer&&) noexcept;
  ~Buffer();

  uint64_t size() const { return size_; }
  // What tensors carry: a host pointer, or an address in the plugin's memory.
  void* data() const { return data_; }
  // Host memory the caller may read and write directly; nullptr for device
  // memory.
  std::byte* host_data() const;
  bool on_device() const { return device_type_ != KVQ_DEVICE_CPU; }

  // Copies between host memory and [offset, offset + bytes) of the buffer.
  // Without a stream the copy is complete on return; with one it is ordered
  // with the stream's work (the host memory must stay valid until then).
  // Throws Error when the range overruns the buffer.
  void upload(std::span<const std::byte> source, uint64_t offset = 0,
              const Stream* stream = nullptr);
  void download(std::span<std::byte> destination, uint64_t offset = 0,
                const Stream* stream = nullptr) const;
  // Every byte of [offset, offset + bytes) = value; bytes UINT64_MAX = to the end.
  void fill(uint8_t value, uint64_t offset = 0, uint64_t bytes = UINT64_MAX,
            const Stream* stream = nullptr);

  // A contiguous descriptor of `shape` starting `byte_offset` bytes into the
  // buffer, with the plugin's device type and ordinal. Throws Error when it
  // does not fit or the offset is not a multiple of the element size.
  kvq_tensor tensor(int32_t dtype, std::span<const int64_t> shape, uint64_t byte_offset = 0) const;
  kvq_tensor tensor(int32_t dtype, std::initializer_list<int64_t> shape,
                    uint64_t byte_offset = 0) const {
    return tensor(dtype, std::span<const int64_t>(shape.begin(), shape.size()), byte_offset);
  }

 private:
  void check_range(uint64_t offset, uint64_t bytes, const char* what) const;
  void release() noexcept;

  std::shared_ptr<detail::Session> session_;
  void* data_ = nullptr;
  uint64_t size_ = 0;
  int32_t device_type_ = KVQ_DEVICE_CPU;
  int32_t device_id_ = 0;
};

// A plugin's queue of device work (1.1 stream_create). Destroying it waits
// for its work.
class Stream {
 public:
  // Throws Error when the plugin has no streams (a CPU plugin's calls
  // complete before they return: pass no stream).
  explicit Stream(const Plugin& plugin);
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  ~Stream();

  kvq_stream* get() const { return stream_; }
  // Waits for the stream's work; throws the first PluginError found on the
  // device since the last synchronize.
  void synchronize() const;

 private:
  void release() noexcept;
  std::shared_ptr<detail::Session> session_;
  kvq_stream* stream_ = nullptr;
};

}  // namespace kvq::client
