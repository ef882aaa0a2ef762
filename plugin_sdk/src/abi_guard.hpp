// Internal to the SDK's ABI glue (abi_export*.cpp): the opaque ABI types and
// the wrapper that turns every exception into a kvq_error value (spec/abi.md
// rule 6).
#pragma once

#include "kvq_sdk/error.hpp"
#include "kvq_sdk/plugin.hpp"

#include <kvq_abi.h>

#include <memory>
#include <new>
#include <string>
#include <utility>

// The opaque ABI types. Instances and layers are the framework objects.
struct kvq_error {
  int32_t code;
  bool is_static;  // the preallocated out-of-memory error is never freed
  std::string message;
};
// Constructed in place: an Instance's C views point into the object itself.
struct kvq_instance {
  template <typename... Args>
  explicit kvq_instance(Args&&... args) : instance(std::forward<Args>(args)...) {}
  kvq::sdk::Instance instance;
};
struct kvq_layer {
  template <typename... Args>
  explicit kvq_layer(Args&&... args) : layer(std::forward<Args>(args)...) {}
  kvq::sdk::Layer layer;
};

namespace kvq::sdk::abi {

inline kvq_error* make_error(int32_t code, const char* message) noexcept {
  static kvq_error out_of_memory{KVQ_ERR_OUT_OF_MEMORY, true, "out of memory"};
  try {
    return std::make_unique<kvq_error>(kvq_error{code, false, message}).release();
  } catch (...) {
    return &out_of_memory;
  }
}

// Runs `body`; every exception becomes an error value (spec/abi.md rule 6).
template <typename Body>
kvq_error* guard(Body&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const Error& e) {
    return make_error(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return make_error(KVQ_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return make_error(KVQ_ERR_INTERNAL, (std::string("internal error: ") + e.what()).c_str());
  } catch (...) {
    return make_error(KVQ_ERR_INTERNAL, "internal error: unknown exception");
  }
}

template <typename T>
T& require(T* p, const char* what) {
  if (p == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "{} is NULL", what);
  return *p;
}

inline const char* require_string(const char* s, const char* what) {
  if (s == nullptr) fail(KVQ_ERR_INVALID_ARGUMENT, "{} is NULL", what);
  return s;
}

}  // namespace kvq::sdk::abi

namespace kvq::sdk::abi {

// The 1.1 device hooks (abi_export_device.cpp), served by the instance's Device.
kvq_error* device_alloc(kvq_instance* instance, uint64_t bytes, void** out);
void device_free(kvq_instance* instance, void* ptr);
kvq_error* device_memcpy(kvq_instance* instance, const kvq_memcpy_args* args);
kvq_error* device_memset(kvq_instance* instance, const kvq_memset_args* args);
kvq_error* stream_create(kvq_instance* instance, kvq_stream** out);
void stream_destroy(kvq_instance* instance, kvq_stream* stream);
kvq_error* synchronize(kvq_instance* instance, kvq_stream* stream);

}  // namespace kvq::sdk::abi
