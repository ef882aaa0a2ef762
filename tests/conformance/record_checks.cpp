#include "record_checks.hpp"

#include <set>
#include <sstream>
#include <vector>

#include "plugin_session.hpp"

namespace kvq::conform {

// Why `s` is not a readable record string, or "". Names must be printable
// ASCII; free text may be any UTF-8 without control characters. A string
// that points into freed or moved-from memory usually fails this.
std::string bad_string(const char* s, bool free_text) {
  if (!s) return "is NULL";
  if (!free_text && !*s) return "is empty";
  size_t continuation = 0;
  for (size_t i = 0; s[i]; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (i >= 4096) return "is longer than 4096 bytes";
    if (continuation > 0) {
      if ((c & 0xC0) != 0x80) return "is not valid UTF-8";
      --continuation;
    } else if (c < 0x20 || c == 0x7F) {
      return "holds control character " + std::to_string(c);
    } else if (c >= 0x80) {
      if (!free_text) return "holds non-ASCII byte " + std::to_string(c);
      if ((c & 0xE0) == 0xC0) {
        continuation = 1;
      } else if ((c & 0xF0) == 0xE0) {
        continuation = 2;
      } else if ((c & 0xF8) == 0xF0) {
        continuation = 3;
      } else {
        return "is not valid UTF-8";
      }
    }
  }
  return continuation ? "is not valid UTF-8" : "";
}

namespace {

bool has_all_hooks(const kvq_plugin_api& table) {
  const kvq_plugin_api* api = &table;
  return KVQ_API_HAS(api, device_alloc) && KVQ_API_HAS(api, device_free) &&
         KVQ_API_HAS(api, device_memcpy) && KVQ_API_HAS(api, device_memset) &&
         KVQ_API_HAS(api, stream_create) && KVQ_API_HAS(api, stream_destroy) &&
         KVQ_API_HAS(api, synchronize);
}

}  // namespace

std::string well_formed_1_1(const kvq_plugin_info& info, const kvq_plugin_api& api) {
  std::string problems;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) problems += (problems.empty() ? "" : "; ") + what;
  };
  auto expect_string = [&](const char* s, bool free_text, const std::string& what) {
    const std::string bad = bad_string(s, free_text);
    expect(bad.empty(), what + " " + bad);
  };
  expect(info.device_type >= KVQ_DEVICE_CPU && info.device_type <= KVQ_DEVICE_OPAQUE,
         "device_type " + std::to_string(info.device_type) + " is not a KVQ_DEVICE_*");
  expect_string(info.device_name, true, "device_name");
  expect(info.device_count >= 1, "device_count " + std::to_string(info.device_count) + " < 1");
  expect(info.device_ordinal >= 0 && info.device_ordinal < info.device_count,
         "device_ordinal " + std::to_string(info.device_ordinal) + " outside 0.." +
             std::to_string(info.device_count - 1));
  expect(info.has_device_memory <= 1, "has_device_memory outside 0/1");
  if (info.device_type != KVQ_DEVICE_CPU) {
    expect(info.has_device_memory == 1, "a device plugin must say has_device_memory = 1");
    expect(has_all_hooks(api),
           "a device plugin must implement device_alloc ... synchronize (KVQ_API_HAS)");
  } else if (info.has_device_memory) {
    const kvq_plugin_api* a = &api;
    expect(KVQ_API_HAS(a, device_alloc) && KVQ_API_HAS(a, device_free) &&
               KVQ_API_HAS(a, device_memcpy) && KVQ_API_HAS(a, device_memset),
           "has_device_memory = 1 without the device memory hooks");
  }
  std::set<std::string> backend_names;
  for (int64_t b = 0; info.backends && b < info.num_backends; ++b)
    if (info.backends[b] && info.backends[b]->name) backend_names.insert(info.backends[b]->name);

  for (int64_t b = 0; info.backends && b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    if (!backend || backend->struct_size < KVQ_BACKEND_INFO_SIZE) continue;
    const std::string where = "backend " + std::to_string(b) + " layer options";
    expect(backend->num_layer_options >= 0 &&
               (backend->num_layer_options == 0 || backend->layer_options),
           where + ": array missing");
    std::set<std::string> modes, names;
    for (int64_t m = 0; backend->kv_modes && m < backend->num_kv_modes; ++m)
      if (backend->kv_modes[m] && backend->kv_modes[m]->name)
        modes.insert(backend->kv_modes[m]->name);
    for (int64_t o = 0; backend->layer_options && o < backend->num_layer_options; ++o) {
      const kvq_option_info* option = backend->layer_options[o];
      const std::string owhere = where + " " + std::to_string(o);
      if (!option || option->struct_size < KVQ_OPTION_INFO_SIZE) {
        expect(false, owhere + " is NULL or smaller than its 1.1 size");
        continue;
      }
      expect_string(option->name, false, owhere + " name");
      expect_string(option->description, true, owhere + " description");
      expect_string(option->default_value, true, owhere + " default_value");
      expect_string(option->kv_modes, true, owhere + " kv_modes");
      if (option->name) expect(names.insert(option->name).second, owhere + " name is a duplicate");
      if (!option->kv_modes) continue;
      std::istringstream listed(option->kv_modes);
      for (std::string mode; listed >> mode;)
        expect(modes.count(mode) == 1, owhere + " names mode '" + mode + "' the backend lacks");
    }
  }
  for (int64_t s = 0; info.schemes && s < info.num_schemes; ++s) {
    const kvq_scheme_info* scheme = info.schemes[s];
    if (!scheme || scheme->struct_size < KVQ_SCHEME_INFO_SIZE) continue;
    const std::string where = "scheme " + std::to_string(s) + " backend";
    expect_string(scheme->backend, false, where);
    if (scheme->backend)
      expect(backend_names.count(scheme->backend) == 1,
             where + " '" + scheme->backend + "' is not a listed backend");
  }
  return problems;
}

}  // namespace kvq::conform
