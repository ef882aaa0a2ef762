// Contract layer: the rules of spec/abi.md that hold whatever the plugin
// computes — loading, exports, negotiation, struct sizes, NULL handling,
// capability records, leaks.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"
#include "poisoned.hpp"
#include "record_checks.hpp"
#include "sample_layers.hpp"

namespace kvq::conform {
namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

Outcome check_exports(const std::string& path) {
  const std::string cmd = "nm -D --defined-only " + shell_quote(path) + " 2>&1";
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return fail("cannot run nm");
  std::string text;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) text.append(buf, n);
  const int status = ::pclose(pipe);
  if (status != 0) return fail("nm failed: " + text.substr(0, 200));
  std::istringstream lines(text);
  std::vector<std::string> extra;
  bool entry = false;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.size() < 2) continue;
    const std::string& type = f[f.size() - 2];
    std::string name = f.back();
    if (type == "A") continue;  // absolute/version-node symbols are not code
    name = name.substr(0, name.find('@'));
    if (name == KVQ_PLUGIN_ENTRY_SYMBOL) {
      entry = true;
    } else {
      extra.push_back(name);
    }
  }
  if (!entry) return fail("kvq_plugin_entry is not exported");
  if (!extra.empty()) {
    std::string names;
    for (size_t i = 0; i < extra.size() && i < 8; ++i) names += (i ? ", " : "") + extra[i];
    return fail(std::to_string(extra.size()) + " other exported symbols: " + names);
  }
  return pass("exports only kvq_plugin_entry");
}

Outcome check_table(const kvq_plugin_api* api, kvq_plugin_entry_fn entry) {
  if (!api) return fail("kvq_plugin_entry returned NULL");
  if (entry() != api) return fail("kvq_plugin_entry returned a different table on a second call");
  if (api->abi_major != KVQ_ABI_MAJOR)
    return fail("abi_major " + std::to_string(api->abi_major) + ", expected 1");
  if (api->struct_size < KVQ_PLUGIN_API_SIZE_1_0)
    return fail("struct_size " + std::to_string(api->struct_size) + " < v1.0 size " +
                std::to_string(KVQ_PLUGIN_API_SIZE_1_0));
  const std::pair<const char*, bool> required[] = {
      {"negotiate", api->negotiate != nullptr},
      {"error_code", api->error_code != nullptr},
      {"error_message", api->error_message != nullptr},
      {"error_destroy", api->error_destroy != nullptr},
      {"instance_destroy", api->instance_destroy != nullptr},
      {"get_info", api->get_info != nullptr},
      {"layer_create", api->layer_create != nullptr},
      {"layer_destroy", api->layer_destroy != nullptr},
      {"layer_info", api->layer_info != nullptr},
      {"cache_geometry", api->cache_geometry != nullptr},
      {"cache_init", api->cache_init != nullptr},
      {"cache_write", api->cache_write != nullptr},
      {"supports", api->supports != nullptr},
      {"forward", api->forward != nullptr},
      {"apply_scheme", api->apply_scheme != nullptr},
      {"scheme_apply", api->scheme_apply != nullptr},
      {"param_info", api->param_info != nullptr},
      {"param_read", api->param_read != nullptr},
      {"param_load", api->param_load != nullptr},
      {"process_weights", api->process_weights != nullptr},
  };
  std::string missing;
  for (const auto& [name, present] : required)
    if (!present) missing += (missing.empty() ? "" : ", ") + std::string(name);
  if (!missing.empty()) return fail("required functions are NULL: " + missing);
  return pass("abi " + std::to_string(api->abi_major) + "." + std::to_string(api->abi_minor) +
              ", table " + std::to_string(api->struct_size) + " bytes");
}

std::string well_formed(const kvq_plugin_info& info) {
  std::string problems;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) problems += (problems.empty() ? "" : "; ") + what;
  };
  auto expect_string = [&](const char* s, bool free_text, const std::string& what) {
    const std::string bad = bad_string(s, free_text);
    expect(bad.empty(), what + " " + bad);
  };
  expect_string(info.name, false, "name");
  expect_string(info.version, false, "version");
  expect_string(info.vendor, true, "vendor");
  expect_string(info.simd_level, false, "simd_level");
  expect_string(info.cpu_features, true, "cpu_features");
  expect(info.abi_major == KVQ_ABI_MAJOR, "abi_major " + std::to_string(info.abi_major));
  expect(info.num_backends >= 0 && (info.num_backends == 0 || info.backends),
         "backend array missing");
  std::set<std::string> backend_names, scheme_keys;
  for (int64_t b = 0; b < info.num_backends && info.backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    const std::string where = "backend " + std::to_string(b);
    if (!backend) {
      expect(false, where + " is NULL");
      continue;
    }
    expect(backend->struct_size >= KVQ_BACKEND_INFO_SIZE_1_0, where + " struct_size too small");
    expect_string(backend->name, false, where + " name");
    expect_string(backend->description, true, where + " description");
    if (backend->name)
      expect(backend_names.insert(backend->name).second, where + " name is a duplicate");
    expect(backend->num_kv_modes >= 0 && (backend->num_kv_modes == 0 || backend->kv_modes),
           where + " mode array missing");
    for (int64_t m = 0; m < backend->num_kv_modes && backend->kv_modes; ++m) {
      const kvq_kv_mode_info* mode = backend->kv_modes[m];
      const std::string mwhere = where + " mode " + std::to_string(m);
      if (!mode) {
        expect(false, mwhere + " is NULL");
        continue;
      }
      expect(mode->struct_size >= KVQ_KV_MODE_INFO_SIZE, mwhere + " struct_size too small");
      expect_string(mode->name, false, mwhere + " name");
      expect_string(mode->description, true, mwhere + " description");
      expect(mode->supported <= 1 && mode->per_token_head <= 1 && mode->needs_scheme <= 1,
             mwhere + " has a boolean outside 0/1");
    }
  }
  expect(info.num_schemes >= 0 && (info.num_schemes == 0 || info.schemes), "scheme array missing");
  for (int64_t s = 0; s < info.num_schemes && info.schemes; ++s) {
    const kvq_scheme_info* scheme = info.schemes[s];
    const std::string where = "scheme " + std::to_string(s);
    if (!scheme) {
      expect(false, where + " is NULL");
      continue;
    }
    expect(scheme->struct_size >= KVQ_SCHEME_INFO_SIZE_1_0, where + " struct_size too small");
    expect_string(scheme->quant_type, false, where + " quant_type");
    expect_string(scheme->layer_type, false, where + " layer_type");
    expect_string(scheme->description, true, where + " description");
    if (scheme->quant_type && scheme->layer_type)
      expect(scheme_keys.insert(std::string(scheme->quant_type) + "/" + scheme->layer_type).second,
             where + " key is a duplicate");
    expect(scheme->supported <= 1, where + " supported outside 0/1");
    expect(scheme->num_name_rules >= 0 && (scheme->num_name_rules == 0 || scheme->name_rules),
           where + " name-rule array missing");
    for (int64_t r = 0; r < scheme->num_name_rules && scheme->name_rules; ++r) {
      const kvq_name_rule* rule = scheme->name_rules[r];
      const std::string rwhere = where + " name rule " + std::to_string(r);
      expect(rule && rule->struct_size >= KVQ_NAME_RULE_SIZE, rwhere + " missing or too small");
      if (!rule) continue;
      expect_string(rule->checkpoint_suffix, false, rwhere + " checkpoint_suffix");
      expect_string(rule->param_suffix, false, rwhere + " param_suffix");
    }
  }
  return problems;
}

// Every string of the record, in a fixed order.
std::vector<std::string> record_strings(const kvq_plugin_info& info) {
  std::vector<std::string> out;
  auto add = [&](const char* s) { out.emplace_back(s ? s : "(NULL)"); };
  for (const char* s : {info.name, info.version, info.vendor, info.simd_level, info.cpu_features})
    add(s);
  for (int64_t b = 0; info.backends && b < info.num_backends; ++b) {
    const kvq_backend_info* backend = info.backends[b];
    if (!backend) continue;
    add(backend->name);
    add(backend->description);
    for (int64_t m = 0; backend->kv_modes && m < backend->num_kv_modes; ++m)
      if (const kvq_kv_mode_info* mode = backend->kv_modes[m]) {
        add(mode->name);
        add(mode->description);
      }
  }
  for (int64_t s = 0; info.schemes && s < info.num_schemes; ++s)
    if (const kvq_scheme_info* scheme = info.schemes[s]) {
      add(scheme->quant_type);
      add(scheme->layer_type);
      add(scheme->description);
    }
  return out;
}

// Overwrites a large stretch of stack below the caller, so a record string
// that points into a stack frame the plugin has left changes visibly.
[[gnu::noinline]] void scribble_stack() {
  volatile unsigned char buf[1 << 16];
  for (size_t i = 0; i < sizeof buf; ++i) buf[i] = 0xEE;
}

int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

Outcome negotiate_expecting(const kvq_plugin_api* api, const kvq_host_info* host,
                            kvq_instance** out, int32_t code) {
  Error error(api, api->negotiate(host, out));
  // Destroy what a wrongly accepting plugin created; after an error *out is
  // unspecified and must not be touched.
  Instance leaked(api, !error && out ? *out : nullptr);
  const std::string mismatch = expect_code(error, code);
  return mismatch.empty() ? pass(error.describe()) : fail(mismatch);
}

}  // namespace

bool run_load_cases(CaseLog& log, Plugin& plugin) {
  kvq_plugin_entry_fn entry = nullptr;
  log.run("contract.dlopen", [&] {
    ::dlerror();
    plugin.handle = ::dlopen(plugin.path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!plugin.handle) return fail(std::string("dlopen: ") + ::dlerror());
    void* symbol = ::dlsym(plugin.handle, KVQ_PLUGIN_ENTRY_SYMBOL);
    if (!symbol) return fail("no symbol kvq_plugin_entry");
    entry = reinterpret_cast<kvq_plugin_entry_fn>(symbol);
    return pass("RTLD_NOW | RTLD_LOCAL");
  });
  log.run("contract.exports", [&] { return check_exports(plugin.path); });
  if (!entry) return false;
  bool table_ok = false;
  log.run("contract.entry_table", [&] {
    const kvq_plugin_api* api = entry();
    Outcome outcome = check_table(api, entry);
    table_ok = outcome.status == Status::kPass;
    if (table_ok) plugin.api = api;
    return outcome;
  });
  return table_ok;
}

void run_contract_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info) {
  const kvq_plugin_api* api = plugin.api;

  log.run("contract.probe", [&] {
    if (!KVQ_API_HAS(api, probe)) return skip("probe not provided (optional)");
    PoisonedStruct s(KVQ_PROBE_RESULT_SIZE, kOutPoison);
    auto* r = s.as<kvq_probe_result>();
    require_ok(Error(api, api->probe(r)), "probe");
    if (const std::string d = s.tail_damage(); !d.empty()) return fail(d);
    if (!r->reason || !r->simd_level) return fail("probe left a NULL string");
    if (r->can_run != 1) return skip(std::string("cannot run on this machine: ") + r->reason);
    return pass(std::string("can_run, simd ") + r->simd_level);
  });

  log.run("contract.negotiate_major2", [&] {
    kvq_host_info host = host_info();
    host.abi_major = 2;
    kvq_instance* out = nullptr;
    Error error(api, api->negotiate(&host, &out));
    Instance leaked(api, error ? nullptr : out);
    if (const std::string m = expect_code(error, KVQ_ERR_VERSION_MISMATCH); !m.empty())
      return fail(m);
    const std::string message = error.message();
    if (message.find('1') == std::string::npos || message.find('2') == std::string::npos)
      return fail("message does not name both majors: \"" + message + "\"");
    return pass("\"" + message + "\"");
  });

  log.run("contract.negotiate_older_host", [&] {
    // A plugin that computes on a device needs the 1.1 memory hooks: it must
    // refuse a 1.0 host (UNSUPPORTED) instead of handing it device tensors.
    // (A 1.0 plugin leaves device_type 0: it computes on the CPU.)
    const int32_t device = plugin_info(api, negotiate(api).get()).device_type;
    const bool on_device = device != 0 && device != KVQ_DEVICE_CPU;
    if (on_device) {
      const kvq_host_info host = host_info(0);
      kvq_instance* out = nullptr;
      return negotiate_expecting(api, &host, &out, KVQ_ERR_UNSUPPORTED);
    }
    Instance instance = negotiate(api, 0);
    const kvq_plugin_info i = plugin_info(api, instance.get());
    if (i.abi_minor != 0) return fail("host minor 0 got abi_minor " + std::to_string(i.abi_minor));
    return pass("abi_minor 0");
  });

  log.run("contract.negotiate_newer_host", [&] {
    Instance instance = negotiate(api, 1000);
    const kvq_plugin_info i = plugin_info(api, instance.get());
    if (i.abi_minor != api->abi_minor)
      return fail("host minor 1000 got abi_minor " + std::to_string(i.abi_minor) +
                  ", the table says " + std::to_string(api->abi_minor));
    return pass("abi_minor " + std::to_string(i.abi_minor));
  });

  log.run("contract.host_info_size_0", [&] {
    kvq_host_info host = host_info();
    host.struct_size = 0;
    kvq_instance* out = nullptr;
    return negotiate_expecting(api, &host, &out, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("contract.host_info_too_small", [&] {
    kvq_host_info host = host_info();
    host.struct_size = KVQ_HOST_INFO_SIZE_1_0 - 8;
    kvq_instance* out = nullptr;
    return negotiate_expecting(api, &host, &out, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("contract.host_info_larger", [&] {
    // A newer host: its struct carries fields this plugin does not know.
    PoisonedStruct s(KVQ_HOST_INFO_SIZE + kTail, kHostPoison);
    const kvq_host_info host = host_info();
    std::memcpy(s.as<kvq_host_info>(), &host, KVQ_HOST_INFO_SIZE);
    s.as<kvq_host_info>()->struct_size = KVQ_HOST_INFO_SIZE + kTail;
    kvq_instance* out = nullptr;
    Error error(api, api->negotiate(s.as<kvq_host_info>(), &out));
    Instance instance(api, error ? nullptr : out);
    require_ok(error, "negotiate with a larger host_info");
    plugin_info(api, instance.get());
    return pass("unknown tail ignored");
  });

  log.run("contract.negotiate_null_out", [&] {
    const kvq_host_info host = host_info();
    return negotiate_expecting(api, &host, nullptr, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("contract.negotiate_null_host", [&] {
    kvq_instance* out = nullptr;
    return negotiate_expecting(api, nullptr, &out, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("contract.out_struct.plugin_info", [&] {
    Instance instance = negotiate(api);
    PoisonedStruct s(KVQ_PLUGIN_INFO_SIZE, kOutPoison);
    require_ok(Error(api, api->get_info(instance.get(), s.as<kvq_plugin_info>())), "get_info");
    const std::string d = s.tail_damage();
    return d.empty() ? pass("no byte past struct_size written") : fail(d);
  });

  log.run("contract.out_struct.too_small", [&] {
    Instance instance = negotiate(api);
    PoisonedStruct s(KVQ_PLUGIN_INFO_SIZE_1_0 - 8, kOutPoison);
    Error error(api, api->get_info(instance.get(), s.as<kvq_plugin_info>()));
    const std::string m = expect_code(error, KVQ_ERR_INVALID_ARGUMENT);
    return m.empty() ? pass("get_info refuses a struct below its v1.0 size") : fail(m);
  });

  log.run("contract.out_struct.layer_info", [&] {
    const Session session = open_session(plugin);
    const client::Layer layer = any_layer(session, info);
    PoisonedStruct s(KVQ_LAYER_INFO_SIZE, kOutPoison);
    require_ok(Error(api, api->layer_info(layer.get(), s.as<kvq_layer_info>())), "layer_info");
    if (const std::string d = s.tail_damage(); !d.empty()) return fail(d);
    const auto* li = s.as<kvq_layer_info>();
    if (!li->impl_name || !li->kv_cache_dtype || !li->scheme)
      return fail("layer_info left a NULL string");
    return pass(std::string("impl ") + li->impl_name);
  });

  log.run("contract.out_struct.cache_geometry", [&] {
    const Session session = open_session(plugin);
    const client::Layer layer = any_layer(session, info);
    PoisonedStruct s(KVQ_CACHE_GEOMETRY_SIZE, kOutPoison);
    require_ok(Error(api, api->cache_geometry(layer.get(), s.as<kvq_cache_geometry>())),
               "cache_geometry");
    if (const std::string d = s.tail_damage(); !d.empty()) return fail(d);
    const std::string problems = check_geometry(*s.as<kvq_cache_geometry>(), 2, 64, 32);
    return problems.empty() ? pass("no byte past struct_size written") : fail(problems);
  });

  log.run("contract.out_struct.param_info", [&] {
    const Session session = open_session(plugin);
    const client::Layer layer = layer_with_params(session, info);
    const int64_t n = layer.info().num_params;
    for (int64_t i = 0; i < n; ++i) {
      PoisonedStruct s(KVQ_PARAM_INFO_SIZE, kOutPoison);
      require_ok(Error(api, api->param_info(layer.get(), i, s.as<kvq_param_info>())),
                 "param_info " + std::to_string(i));
      if (const std::string d = s.tail_damage(); !d.empty())
        return fail("param " + std::to_string(i) + ": " + d);
      const auto* p = s.as<kvq_param_info>();
      if (!p->name || !p->loader) return fail("param_info left a NULL string");
    }
    return pass(std::to_string(n) + " parameters");
  });

  log.run("contract.null_destroy", [&] {
    api->error_destroy(nullptr);
    api->instance_destroy(nullptr);
    api->layer_destroy(nullptr);
    return pass("error/instance/layer_destroy(NULL) return");
  });

  log.run("contract.null_error_accessors", [&] {
    if (api->error_code(nullptr) != 0)
      return fail("error_code(NULL) = " + std::to_string(api->error_code(nullptr)));
    if (!api->error_message(nullptr)) return fail("error_message(NULL) is NULL");
    return pass("error_code(NULL) == 0, error_message(NULL) is a string");
  });

  log.run("contract.info_well_formed", [&] {
    // A fresh record, read at once and again after stack and heap churn:
    // its strings must live as long as the instance.
    Instance instance = negotiate(api);
    const kvq_plugin_info fresh = plugin_info(api, instance.get());
    const std::vector<std::string> before = record_strings(fresh);
    if (const std::string problems = well_formed(fresh); !problems.empty()) return fail(problems);
    scribble_stack();
    {
      Instance other = negotiate(api);
      plugin_info(api, other.get());
    }
    const std::vector<std::string> after = record_strings(fresh);
    for (size_t i = 0; i < before.size(); ++i)
      if (before[i] != after[i])
        return fail("record string \"" + before[i] +
                    "\" changed while the instance lives (points into freed or stack memory?)");
    return pass(std::to_string(fresh.num_backends) + " backends, " +
                std::to_string(fresh.num_schemes) + " schemes");
  });

  log.run("contract.create_destroy_cycles", [&] {
    const ModeChoice choice = first_unquantized(info);
    if (!choice.backend) return skip("no supported unquantized mode");
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer keeps freed memory in its quarantine, so RSS grows
    // without a leak; in that build LeakSanitizer checks leaks at exit instead.
    return skip("RSS is not a leak measure under AddressSanitizer (LeakSanitizer checks)");
#endif
    const client::LayerConfig config =
        layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 32);
    auto cycle = [&] {
      const Session session = open_session(plugin);
      const client::Layer layer = create_layer(session, config);
      layer.cache_geometry();
    };
    for (int i = 0; i < 5; ++i) cycle();  // let allocator pools settle first
    const int64_t before = resident_bytes();
    for (int i = 0; i < 200; ++i) cycle();
    const int64_t growth = resident_bytes() - before;
    const std::string kib = std::to_string(growth / 1024) + " KiB";
    if (growth >= 4 << 20) return fail("RSS grew by " + kib + " over 200 cycles");
    return pass("RSS growth " + kib + " over 200 instance+layer cycles");
  });
}

}  // namespace kvq::conform
