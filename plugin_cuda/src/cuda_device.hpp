// One NVIDIA GPU as the SDK's Device (ABI 1.1 device memory and streams):
// cudaMalloc'd memory, copies and fills, streams, and the device-side verdicts
// of stream-ordered calls, reported by the next synchronize of their stream
// (kvq_abi.h "STREAMS AND COMPLETION").
#pragma once

#include "kvq_sdk/device.hpp"

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

// A plugin stream: the CUDA stream and the checks owed to its synchronize.
struct kvq_stream {
  cudaStream_t stream = nullptr;
  // Each check reads a verdict copied to pinned host memory on this stream
  // and throws the call's error; run in order after the stream is idle.
  std::vector<std::function<void()>> pending;
};

namespace kvq::cuda {

// Throws sdk::Error (INTERNAL, or OUT_OF_MEMORY) naming `what` when status
// is not cudaSuccess.
void check_cuda(cudaError_t status, const char* what);

// Why no device can be used here ("" when one can): the plugin's probe.
std::string unavailable_reason();

class CudaDevice final : public sdk::Device {
 public:
  explicit CudaDevice(int32_t ordinal);  // OUT_OF_RANGE / UNSUPPORTED when absent
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  int32_t type() const override { return KVQ_DEVICE_CUDA; }
  int32_t ordinal() const override { return ordinal_; }
  int32_t count() const override { return count_; }
  std::string name() const override { return name_; }
  uint64_t memory_bytes() const override { return memory_bytes_; }
  int num_sms() const { return num_sms_; }

  void* alloc(uint64_t bytes) override;
  void release(void* ptr) noexcept override;
  void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, uint64_t bytes,
            kvq_stream* stream) override;
  void fill(void* dst, uint8_t value, uint64_t bytes, kvq_stream* stream) override;
  kvq_stream* create_stream() override;
  void destroy_stream(kvq_stream* stream) noexcept override;
  void synchronize(kvq_stream* stream) override;
  void wait(kvq_stream* stream) override;
  void* host_address(const void*, uint64_t) const override { return nullptr; }

  // Makes this device current on the calling thread (every entry does).
  void activate() const;
  // The CUDA stream of a plugin stream (nullptr: the legacy default stream).
  static cudaStream_t native(kvq_stream* stream) { return stream ? stream->stream : nullptr; }
  // A check owed to `stream`'s next synchronize; with no stream the caller
  // waits and checks at once.
  void defer(kvq_stream* stream, std::function<void()> check);

 private:
  int32_t ordinal_;
  int32_t count_ = 0;
  int num_sms_ = 0;
  std::string name_;
  uint64_t memory_bytes_ = 0;
  std::mutex streams_mutex_;
  std::vector<std::unique_ptr<kvq_stream>> streams_;
};

// Device memory owned by a layer (scratch, scales, verdicts); freed with it.
class DeviceArray {
 public:
  DeviceArray() = default;
  ~DeviceArray();
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  // At least `bytes`, contents undefined after growth.
  void* reserve(uint64_t bytes);
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};

// Pinned host memory (verdict mirrors), page-locked so an async copy lands
// there in stream order.
class PinnedArray {
 public:
  PinnedArray() = default;
  ~PinnedArray();
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  void* reserve(uint64_t bytes);
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace kvq::cuda
