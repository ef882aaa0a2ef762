// The ABI 1.1 device hooks of device plugins (kvq_abi.h "DEVICE MEMORY",
// "STREAMS AND COMPLETION"): thin, checked calls into the instance's Device.
#include "kvq_sdk/abi_struct.hpp"
#include "kvq_sdk/error.hpp"

#include <kvq_abi_names.h>

#include "abi_guard.hpp"

namespace kvq::sdk::abi {
namespace {

Device& device_of(kvq_instance* inst) {
  Device* d = require(inst, "instance").instance.device();
  if (d == nullptr)
    fail(KVQ_ERR_UNSUPPORTED, "this plugin computes on the CPU: it has no device memory");
  return *d;
}

// A side of a copy: host memory or this device's.
bool on_device(int32_t device_type, const Device& d, const char* what) {
  if (device_type == KVQ_DEVICE_CPU) return false;
  if (device_type == d.type()) return true;
  fail(KVQ_ERR_INVALID_ARGUMENT,
       "{}: device type {} ({}) is neither the host's nor this plugin's ({})", what, device_type,
       kvq_device_type_name(device_type), kvq_device_type_name(d.type()));
}

}  // namespace

kvq_error* device_alloc(kvq_instance* inst, uint64_t bytes, void** out) {
  return guard([&] {
    require(out, "out");
    *out = nullptr;
    Device& d = device_of(inst);
    if (bytes == 0) fail(KVQ_ERR_INVALID_ARGUMENT, "device_alloc: 0 bytes");
    *out = d.alloc(bytes);
  });
}

void device_free(kvq_instance* inst, void* ptr) {
  if (inst == nullptr || ptr == nullptr) return;
  if (Device* d = inst->instance.device()) d->release(ptr);
}

kvq_error* device_memcpy(kvq_instance* inst, const kvq_memcpy_args* in) {
  return guard([&] {
    Device& d = device_of(inst);
    const kvq_memcpy_args a = read_struct(in, KVQ_MEMCPY_ARGS_SIZE, "memcpy args");
    if (a.bytes == 0) return;
    if (a.dst == nullptr || a.src == nullptr)
      fail(KVQ_ERR_INVALID_ARGUMENT, "device_memcpy: dst and src are required");
    d.copy(a.dst, on_device(a.dst_device_type, d, "dst"), a.src,
           on_device(a.src_device_type, d, "src"), a.bytes, a.stream);
  });
}

kvq_error* device_memset(kvq_instance* inst, const kvq_memset_args* in) {
  return guard([&] {
    Device& d = device_of(inst);
    const kvq_memset_args a = read_struct(in, KVQ_MEMSET_ARGS_SIZE, "memset args");
    if (a.bytes == 0) return;
    if (a.dst == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "device_memset: dst is NULL");
    d.fill(a.dst, a.value, a.bytes, a.stream);
  });
}

kvq_error* stream_create(kvq_instance* inst, kvq_stream** out) {
  return guard([&] {
    require(out, "out");
    *out = nullptr;
    *out = device_of(inst).create_stream();
  });
}

void stream_destroy(kvq_instance* inst, kvq_stream* stream) {
  if (inst == nullptr || stream == nullptr) return;
  if (Device* d = inst->instance.device()) d->destroy_stream(stream);
}

kvq_error* synchronize(kvq_instance* inst, kvq_stream* stream) {
  return guard([&] { device_of(inst).synchronize(stream); });
}

}  // namespace kvq::sdk::abi
