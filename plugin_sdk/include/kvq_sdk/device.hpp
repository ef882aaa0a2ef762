// ABI 1.1 device support: where a plugin computes and how the SDK reaches
// that memory. A CPU plugin has no Device (host memory only). A device plugin
// (plugin_cuda, the arena test plugin) gives its PluginDefinition an
// open_device factory; each negotiated Instance opens the device of the
// ordinal the host chose, and the ABI's device hooks (device_alloc,
// device_memcpy, stream_create, synchronize, ...) call into it.
#pragma once

#include <kvq_abi.h>

#include <cstdint>
#include <string>

namespace kvq::sdk {

class Device {
 public:
  virtual ~Device() = default;

  virtual int32_t type() const = 0;  // KVQ_DEVICE_* other than CPU
  virtual int32_t ordinal() const = 0;
  virtual int32_t count() const = 0;  // devices of this type the plugin sees
  virtual std::string name() const = 0;
  virtual uint64_t memory_bytes() const = 0;

  // 256-byte aligned, uninitialised; OUT_OF_MEMORY when the device is full.
  virtual void* alloc(uint64_t bytes) = 0;
  virtual void release(void* ptr) noexcept = 0;
  // Each side is host memory (on_device false) or this device's memory.
  virtual void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device,
                    uint64_t bytes, kvq_stream* stream) = 0;
  virtual void fill(void* dst, uint8_t value, uint64_t bytes, kvq_stream* stream) = 0;

  virtual kvq_stream* create_stream() = 0;
  virtual void destroy_stream(kvq_stream* stream) noexcept = 0;
  // Waits for `stream` (nullptr: all work) and throws the first error found
  // on the device by a call enqueued there since the last synchronize.
  virtual void synchronize(kvq_stream* stream) = 0;
  // Waits for `stream`'s work without reporting device errors (the SDK's own
  // metadata downloads).
  virtual void wait(kvq_stream* stream) = 0;

  // The host address of [ptr, ptr + bytes) when the CPU can read it directly
  // (the arena test plugin's memory), else nullptr (a GPU's): the SDK then
  // neither reads nor validates those bytes on the host.
  virtual void* host_address(const void* ptr, uint64_t bytes) const = 0;
};

// Where a call's tensors may live: host memory always (small metadata), and
// the instance's device memory when it has a device.
struct MemorySpace {
  Device* device = nullptr;  // nullptr: a CPU plugin, host memory only

  int32_t device_type() const { return device ? device->type() : KVQ_DEVICE_CPU; }
};

}  // namespace kvq::sdk
