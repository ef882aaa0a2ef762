#include "kvq_client/buffer.hpp"

#include <kvq_abi_names.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "kvq_client/error.hpp"
#include "kvq_client/plugin.hpp"
#include "kvq_client/tensor.hpp"
#include "session.hpp"
#include "text.hpp"

namespace kvq::client {

using detail::cat;

namespace {

// Device memory is 256-byte aligned (kvq_abi.h device_alloc); a larger
// alignment cannot be promised for it.
constexpr uint64_t kDeviceAlignment = 256;

kvq_stream* stream_of(const Stream* stream) {
  return stream != nullptr ? stream->get() : nullptr;
}

}  // namespace

Buffer::Buffer(const Plugin& plugin, uint64_t bytes, uint64_t alignment)
    : session_(plugin.session_),
      size_(bytes),
      device_type_(session_->device_type),
      device_id_(session_->device_id) {
  if (bytes == 0) throw Error(session_->describe("Buffer of 0 bytes (allocate at least one)"));
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw Error(session_->describe(cat("Buffer alignment ", alignment, " is not a power of two")));
  if (!on_device()) {
    // aligned_alloc needs a size that is a multiple of the alignment, and an
    // alignment of at least a pointer's size.
    const uint64_t align = alignment < 64 ? 64 : alignment;
    if (bytes > UINT64_MAX - align) throw Error(cat("Buffer of ", bytes, " bytes overflows"));
    const uint64_t rounded = (bytes + align - 1) / align * align;
    data_ = std::aligned_alloc(static_cast<size_t>(align), static_cast<size_t>(rounded));
    if (data_ == nullptr)
      throw Error(cat("cannot allocate ", bytes, " bytes of host memory for a Buffer"));
    return;
  }
  if (alignment > kDeviceAlignment)
    throw Error(session_->describe(cat("Buffer alignment ", alignment, " exceeds the ",
                                       kDeviceAlignment, " bytes device_alloc guarantees")));
  const kvq_plugin_api& api = session_->api();
  void* out = nullptr;
  session_->check(api.device_alloc(session_->instance.get(), bytes, &out),
                  cat("device_alloc (", bytes, " bytes)"));
  if (out == nullptr) throw Error(session_->describe("device_alloc succeeded but returned NULL"));
  data_ = out;
}

Buffer::Buffer(Buffer&& other) noexcept
    : session_(std::move(other.session_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      device_type_(other.device_type_),
      device_id_(other.device_id_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    session_ = std::move(other.session_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    device_type_ = other.device_type_;
    device_id_ = other.device_id_;
  }
  return *this;
}

Buffer::~Buffer() {
  release();
}

void Buffer::release() noexcept {
  if (data_ == nullptr) return;
  if (on_device()) {
    session_->api().device_free(session_->instance.get(), data_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  size_ = 0;
}

std::byte* Buffer::host_data() const {
  return on_device() ? nullptr : static_cast<std::byte*>(data_);
}

void Buffer::check_range(uint64_t offset, uint64_t bytes, const char* what) const {
  if (offset > size_ || bytes > size_ - offset) {
    throw Error(cat("Buffer::", what, ": ", bytes, " bytes at offset ", offset, " overrun the ",
                    size_, "-byte buffer"));
  }
}

void Buffer::upload(std::span<const std::byte> source, uint64_t offset, const Stream* stream) {
  check_range(offset, source.size(), "upload");
  if (source.empty()) return;
  std::byte* base = static_cast<std::byte*>(data_) + offset;
  if (!on_device()) {
    std::memcpy(base, source.data(), source.size());
    return;
  }
  kvq_memcpy_args args{};
  args.struct_size = KVQ_MEMCPY_ARGS_SIZE;
  args.dst = base;
  args.dst_device_type = device_type_;
  args.src = source.data();
  args.src_device_type = KVQ_DEVICE_CPU;
  args.bytes = source.size();
  args.stream = stream_of(stream);
  session_->check(session_->api().device_memcpy(session_->instance.get(), &args),
                  cat("device_memcpy (upload of ", source.size(), " bytes)"));
}

void Buffer::download(std::span<std::byte> destination, uint64_t offset,
                      const Stream* stream) const {
  check_range(offset, destination.size(), "download");
  if (destination.empty()) return;
  const std::byte* base = static_cast<const std::byte*>(data_) + offset;
  if (!on_device()) {
    std::memcpy(destination.data(), base, destination.size());
    return;
  }
  kvq_memcpy_args args{};
  args.struct_size = KVQ_MEMCPY_ARGS_SIZE;
  args.dst = destination.data();
  args.dst_device_type = KVQ_DEVICE_CPU;
  args.src = base;
  args.src_device_type = device_type_;
  args.bytes = destination.size();
  args.stream = stream_of(stream);
  session_->check(session_->api().device_memcpy(session_->instance.get(), &args),
                  cat("device_memcpy (download of ", destination.size(), " bytes)"));
}

void Buffer::fill(uint8_t value, uint64_t offset, uint64_t bytes, const Stream* stream) {
  if (bytes == UINT64_MAX) bytes = offset <= size_ ? size_ - offset : 0;
  check_range(offset, bytes, "fill");
  if (bytes == 0) return;
  std::byte* base = static_cast<std::byte*>(data_) + offset;
  if (!on_device()) {
    std::memset(base, value, bytes);
    return;
  }
  kvq_memset_args args{};
  args.struct_size = KVQ_MEMSET_ARGS_SIZE;
  args.dst = base;
  args.bytes = bytes;
  args.value = value;
  args.stream = stream_of(stream);
  session_->check(session_->api().device_memset(session_->instance.get(), &args),
                  cat("device_memset (", bytes, " bytes)"));
}

kvq_tensor Buffer::tensor(int32_t dtype, std::span<const int64_t> shape,
                          uint64_t byte_offset) const {
  const int64_t bytes = byte_size(dtype, shape);
  const auto element = static_cast<uint64_t>(kvq_dtype_size(dtype));
  if (byte_offset % element != 0) {
    throw Error(cat("Buffer::tensor: offset ", byte_offset, " is not a multiple of the ", element,
                    "-byte ", kvq_dtype_name(dtype), " elements"));
  }
  if (byte_offset > size_ || static_cast<uint64_t>(bytes) > size_ - byte_offset) {
    throw Error(cat("Buffer::tensor: ", shape_string(shape), " of ", kvq_dtype_name(dtype),
                    " needs ", bytes, " bytes at offset ", byte_offset, ", the buffer has ",
                    size_));
  }
  return describe(static_cast<const std::byte*>(data_) + byte_offset, dtype, shape, device_type_,
                  device_id_);
}

// ---- Stream -------------------------------------------------------------------

Stream::Stream(const Plugin& plugin) : session_(plugin.session_) {
  const kvq_plugin_api* api = &session_->api();
  if (!KVQ_API_HAS(api, stream_create) || !KVQ_API_HAS(api, stream_destroy)) {
    throw Error(session_->describe(
        "has no streams (stream_create/stream_destroy are missing): pass no stream, its calls "
        "complete before they return"));
  }
  kvq_stream* out = nullptr;
  session_->check(api->stream_create(session_->instance.get(), &out), "stream_create");
  if (out == nullptr) throw Error(session_->describe("stream_create succeeded but returned NULL"));
  stream_ = out;
}

Stream::Stream(Stream&& other) noexcept
    : session_(std::move(other.session_)), stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    release();
    session_ = std::move(other.session_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

Stream::~Stream() {
  release();
}

void Stream::release() noexcept {
  if (stream_ == nullptr) return;
  session_->api().stream_destroy(session_->instance.get(), stream_);
  stream_ = nullptr;
}

void Stream::synchronize() const {
  const kvq_plugin_api* api = &session_->api();
  session_->require(KVQ_API_HAS(api, synchronize), "synchronize");
  session_->check(api->synchronize(session_->instance.get(), stream_), "synchronize");
}

}  // namespace kvq::client
