#include "kvq_engine/plugin_tensor.hpp"

#include <kvq_abi_names.h>
#include <kvq_client/tensor.hpp>

#include <algorithm>
#include <span>

namespace kvq::host {

void PluginTensor::reshape(int32_t dtype, std::initializer_list<int64_t> shape) {
  const std::span<const int64_t> dims(shape.begin(), shape.size());
  element_size_ = kvq_dtype_size(dtype);
  num_elements_ = client::num_elements(dims);
  const auto bytes = static_cast<uint64_t>(client::byte_size(dtype, dims));
  // Grows geometrically, so a batch that grows step by step allocates
  // O(log n) times; a Buffer holds at least one byte, so a 0-element tensor
  // still gets a valid (never read) address.
  if (buffer_.size() < bytes || buffer_.size() == 0) {
    const uint64_t grown = std::max<uint64_t>({bytes, buffer_.size() + buffer_.size() / 2, 64});
    buffer_ = Buffer();  // free the old memory before asking for more
    buffer_ = Buffer(*plugin_, grown);
  }
  if (buffer_.on_device()) {
    if (staging_.size() * 8 < bytes) staging_.resize((bytes + 7) / 8);
    host_ = reinterpret_cast<std::byte*>(staging_.data());
  } else {
    host_ = buffer_.host_data();
  }
  view_ = buffer_.tensor(dtype, dims);
  host_view_ = client::describe(host_, dtype, dims);
}

void PluginTensor::upload() {
  if (buffer_.on_device())
    buffer_.upload(std::span<const std::byte>(host_, static_cast<size_t>(byte_size())));
}

void PluginTensor::download() {
  if (buffer_.on_device())
    buffer_.download(std::span<std::byte>(host_, static_cast<size_t>(byte_size())));
}

}  // namespace kvq::host
