#include "cuda_device.hpp"

#include "kvq_sdk/error.hpp"

#include <algorithm>
#include <utility>

namespace kvq::cuda {

void check_cuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky-free error so later calls are not blamed
  const int32_t code =
      status == cudaErrorMemoryAllocation ? KVQ_ERR_OUT_OF_MEMORY : KVQ_ERR_INTERNAL;
  sdk::fail(code, "{}: CUDA error {} ({})", what, static_cast<int>(status),
            cudaGetErrorString(status));
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device: ") + cudaGetErrorString(status);
  }
  if (count == 0) return "no CUDA device on this machine";
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) != cudaSuccess) return "cannot read the CUDA device";
  if (props.major < 9)
    return "the kernels are built for sm_90a (Hopper); device 0 has compute capability " +
           std::to_string(props.major) + "." + std::to_string(props.minor);
  return "";
}

CudaDevice::CudaDevice(int32_t ordinal) : ordinal_(ordinal) {
  const cudaError_t status = cudaGetDeviceCount(&count_);
  if (status != cudaSuccess || count_ == 0) {
    cudaGetLastError();
    sdk::fail(KVQ_ERR_UNSUPPORTED, "kvq_cuda needs an NVIDIA GPU: {}",
              status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device found");
  }
  if (ordinal >= count_)
    sdk::fail(KVQ_ERR_OUT_OF_RANGE,
              "device_ordinal {} asks for a CUDA device this machine does not have (it has {})",
              ordinal, count_);
  cudaDeviceProp props{};
  check_cuda(cudaGetDeviceProperties(&props, ordinal), "cudaGetDeviceProperties");
  if (props.major < 9)
    sdk::fail(KVQ_ERR_UNSUPPORTED,
              "CUDA device {} ({}) has compute capability {}.{}; kvq_cuda is built for sm_90a",
              ordinal, props.name, props.major, props.minor);
  name_ = props.name;
  memory_bytes_ = props.totalGlobalMem;
  num_sms_ = props.multiProcessorCount;
  activate();
}

CudaDevice::~CudaDevice() {
  activate();
  std::lock_guard lock(streams_mutex_);
  for (auto& s : streams_) {
    cudaStreamSynchronize(s->stream);
    cudaStreamDestroy(s->stream);
  }
}

void CudaDevice::activate() const {
  check_cuda(cudaSetDevice(ordinal_), "cudaSetDevice");
}

void* CudaDevice::alloc(uint64_t bytes) {
  activate();
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    sdk::fail(KVQ_ERR_OUT_OF_MEMORY, "device_alloc of {} bytes: device {} has {} bytes free", bytes,
              ordinal_, free_bytes);
  }
  check_cuda(status, "cudaMalloc");
  return p;
}

void CudaDevice::release(void* ptr) noexcept {
  if (ptr == nullptr) return;
  cudaSetDevice(ordinal_);
  cudaFree(ptr);
}

void CudaDevice::copy(void* dst, bool dst_on_device, const void* src, bool src_on_device,
                      uint64_t bytes, kvq_stream* stream) {
  activate();
  const cudaMemcpyKind kind =
      dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                    : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  if (stream == nullptr) {
    check_cuda(cudaMemcpy(dst, src, bytes, kind), "device_memcpy");
    return;
  }
  check_cuda(cudaMemcpyAsync(dst, src, bytes, kind, stream->stream), "device_memcpy");
}

void CudaDevice::fill(void* dst, uint8_t value, uint64_t bytes, kvq_stream* stream) {
  activate();
  if (stream == nullptr) {
    check_cuda(cudaMemset(dst, value, bytes), "device_memset");
    check_cuda(cudaDeviceSynchronize(), "device_memset");
    return;
  }
  check_cuda(cudaMemsetAsync(dst, value, bytes, stream->stream), "device_memset");
}

kvq_stream* CudaDevice::create_stream() {
  activate();
  auto s = std::make_unique<kvq_stream>();
  check_cuda(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  std::lock_guard lock(streams_mutex_);
  return streams_.emplace_back(std::move(s)).get();
}

void CudaDevice::destroy_stream(kvq_stream* stream) noexcept {
  cudaSetDevice(ordinal_);
  std::lock_guard lock(streams_mutex_);
  const auto it = std::find_if(streams_.begin(), streams_.end(),
                               [stream](const auto& s) { return s.get() == stream; });
  if (it == streams_.end()) return;
  cudaStreamSynchronize(stream->stream);
  cudaStreamDestroy(stream->stream);
  streams_.erase(it);  // pending checks are dropped: nobody can ask for them now
}

void CudaDevice::wait(kvq_stream* stream) {
  activate();
  check_cuda(stream ? cudaStreamSynchronize(stream->stream) : cudaDeviceSynchronize(),
             "synchronize");
}

void CudaDevice::synchronize(kvq_stream* stream) {
  wait(stream);
  std::vector<std::function<void()>> checks;
  {
    std::lock_guard lock(streams_mutex_);
    if (stream != nullptr) {
      checks.swap(stream->pending);
    } else {
      for (auto& s : streams_)
        for (auto& c : s->pending) checks.push_back(std::move(c));
      for (auto& s : streams_) s->pending.clear();
    }
  }
  // Every check runs (each releases its verdict slot); the first error wins.
  std::exception_ptr first;
  for (auto& check : checks) {
    try {
      check();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

void CudaDevice::defer(kvq_stream* stream, std::function<void()> check) {
  if (stream == nullptr) {
    wait(nullptr);
    check();
    return;
  }
  std::lock_guard lock(streams_mutex_);
  stream->pending.push_back(std::move(check));
}

DeviceArray::~DeviceArray() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

void* DeviceArray::reserve(uint64_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr) return ptr_;
  if (ptr_ != nullptr) {
    // The old buffer may still be read by queued work: wait before freeing.
    check_cuda(cudaDeviceSynchronize(), "growing a scratch buffer");
    cudaFree(ptr_);
    ptr_ = nullptr;
  }
  check_cuda(cudaMalloc(&ptr_, std::max<uint64_t>(bytes, 256)), "cudaMalloc (scratch)");
  bytes_ = std::max<uint64_t>(bytes, 256);
  return ptr_;
}

PinnedArray::~PinnedArray() {
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
}

void* PinnedArray::reserve(uint64_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr) return ptr_;
  if (ptr_ != nullptr) {
    check_cuda(cudaDeviceSynchronize(), "growing a pinned buffer");
    cudaFreeHost(ptr_);
    ptr_ = nullptr;
  }
  check_cuda(cudaMallocHost(&ptr_, bytes), "cudaMallocHost");
  bytes_ = bytes;
  return ptr_;
}

}  // namespace kvq::cuda
