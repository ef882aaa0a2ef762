// A tensor the plugin reads or writes, in the plugin's memory space (a
// client::Buffer), with the host bytes the engine generates and reads. For a
// CPU plugin both are the same host memory and upload/download do nothing;
// for a device plugin the host bytes are a staging copy moved through the
// plugin's device_memcpy. Reshaping keeps the allocation once it reached its
// largest size, so per-step tensors do not reallocate.
#pragma once

#include <kvq_abi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "kvq_engine/plugin.hpp"

namespace kvq::host {

class PluginTensor {
 public:
  explicit PluginTensor(const Plugin& plugin) : plugin_(&plugin) {}

  // Row-major contiguous; contents are unspecified after a reshape.
  void reshape(int32_t dtype, std::initializer_list<int64_t> shape);

  // What the plugin is given (its memory space).
  const kvq_tensor& view() const { return view_; }
  // The same shape over the host bytes (host-side code, e.g. param_read).
  const kvq_tensor& host_view() const { return host_view_; }
  std::byte* host() { return host_; }
  const std::byte* host() const { return host_; }
  template <typename T>
  T* as() {
    return reinterpret_cast<T*>(host_);
  }
  int64_t num_elements() const { return num_elements_; }
  int64_t element_size() const { return element_size_; }
  int64_t byte_size() const { return num_elements_ * element_size_; }

  // Host bytes -> plugin memory, and back; no-ops when they are the same memory.
  void upload();
  void download();

 private:
  const Plugin* plugin_;
  Buffer buffer_;
  std::vector<uint64_t> staging_;  // device plugins only; uint64_t keeps any element aligned
  std::byte* host_ = nullptr;
  kvq_tensor view_{};
  kvq_tensor host_view_{};
  int64_t num_elements_ = 0;
  int64_t element_size_ = 0;
};

}  // namespace kvq::host
