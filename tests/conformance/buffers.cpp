#include "buffers.hpp"

#include <kvq_client/tensor.hpp>

#include <algorithm>
#include <cstring>
#include <span>
#include <stdexcept>

#include "case_log.hpp"
#include "kvq_ref/reference.hpp"

namespace kvq::conform {

GuardedBuffer::GuardedBuffer(size_t bytes, size_t alignment)
    : storage_(bytes + 2 * kGuard + alignment, kGuardPattern), size_(bytes) {
  const auto base = reinterpret_cast<uintptr_t>(storage_.data()) + kGuard;
  offset_ = kGuard + ((alignment - base % alignment) % alignment);
  // Fresh data is zero; only the guards carry the pattern.
  std::memset(storage_.data() + offset_, 0, size_);
}

bool GuardedBuffer::guards_intact() const {
  const unsigned char* before = storage_.data() + offset_ - kGuard;
  const unsigned char* after = storage_.data() + offset_ + size_;
  for (size_t i = 0; i < kGuard; ++i)
    if (before[i] != kGuardPattern || after[i] != kGuardPattern) return false;
  return true;
}

DeviceGuardedBuffer::DeviceGuardedBuffer(const Session& session, size_t bytes, size_t alignment)
    : offset_(std::max<uint64_t>(kGuard, alignment)), size_(bytes) {
  // device_alloc's start is 256-byte aligned, so an offset that is a
  // multiple of the alignment keeps the data aligned.
  buffer_ = client::Buffer(session, offset_ + size_ + kGuard);
  buffer_.fill(kGuardPattern, 0, offset_);
  buffer_.fill(0, offset_, size_);
  buffer_.fill(kGuardPattern, offset_ + size_, kGuard);
}

bool DeviceGuardedBuffer::guards_intact() const {
  std::vector<std::byte> before(offset_), after(kGuard);
  buffer_.download(before, 0);
  buffer_.download(after, offset_ + size_);
  const auto intact = [](const std::vector<std::byte>& v) {
    return std::all_of(v.begin(), v.end(),
                       [](std::byte b) { return b == std::byte{kGuardPattern}; });
  };
  return intact(before) && intact(after);
}

kvq_tensor describe(void* data, int32_t dtype, const std::vector<int64_t>& shape) {
  return client::describe(data, dtype, shape);
}

HostTensor::HostTensor(int32_t dtype, std::vector<int64_t> shape, size_t alignment)
    : dtype_(dtype), shape_(std::move(shape)), alignment_(alignment) {
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

void HostTensor::bind(const Session& session) {
  if (!session.on_device()) return;
  if (alignment_ > 256)
    throw CaseFailure("the plugin asks for " + std::to_string(alignment_) +
                      "-byte alignment, more than device_alloc's 256");
  device_ = std::make_unique<DeviceGuardedBuffer>(session, buffer_.size(), alignment_);
  upload();
  // Checked here once, so a later guard failure is the plugin call's, not
  // a copy that wrote past its destination.
  if (!device_->guards_intact())
    throw CaseFailure("device_memset / device_memcpy wrote past the " +
                      std::to_string(buffer_.size()) +
                      "-byte range they were given (the guard bytes of a device buffer changed "
                      "while it was filled and uploaded)");
}

void HostTensor::upload() {
  if (device_)
    device_->buffer().upload(std::as_bytes(std::span(buffer_.data(), buffer_.size())),
                             device_->offset());
}

void HostTensor::download() {
  if (device_)
    device_->buffer().download(std::as_writable_bytes(std::span(buffer_.data(), buffer_.size())),
                               device_->offset());
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

bool HostTensor::guards_intact() const {
  return buffer_.guards_intact() && (!device_ || device_->guards_intact());
}

void HostTensor::refresh() {
  desc_ = device_ ? device_->buffer().tensor(dtype_, shape_, device_->offset())
                  : describe(buffer_.data(), dtype_, shape_);
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
