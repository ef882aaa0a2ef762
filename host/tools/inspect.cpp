#include "inspect.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <kvq_abi_names.h>

#include <algorithm>

#include "kvq_engine/report.hpp"
#include "kvq_files/dtype.hpp"
#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

const char* yes_no(bool value) {
  return value ? "yes" : "no";
}

void print_field(std::ostream& out, std::string_view label, std::string_view value) {
  fmt::print(out, "{:<14}{}\n", label, value.empty() ? "-" : value);
}

}  // namespace

void print_inspection(const Plugin& plugin, std::ostream& out) {
  const PluginInfo& info = plugin.info();
  print_field(out, "plugin", plugin.path().string());
  print_field(out, "name", info.name);
  print_field(out, "version", info.version);
  print_field(out, "vendor", info.vendor);
  print_field(out, "ABI",
              fmt::format("{}.{} negotiated (plugin implements {}.{}, host {}.{})", info.abi_major,
                          info.abi_minor, info.abi_major, info.plugin_abi_minor, kHostAbiMajor,
                          kHostAbiMinor));
  print_field(out, "SIMD level", info.simd_level);
  print_field(out, "CPU features", info.cpu_features);
  std::string device = fmt::format("{} {} of {}", kvq_device_type_name(info.device_type),
                                   info.device_ordinal, info.device_count);
  if (!info.device_name.empty()) device += fmt::format(" ({})", info.device_name);
  if (info.device_memory_bytes > 0)
    device += fmt::format(", {:.1f} GiB",
                          static_cast<double>(info.device_memory_bytes) / (1024.0 * 1024 * 1024));
  device += info.has_device_memory ? ", device memory hooks" : ", host memory";
  print_field(out, "device", device);
  std::string probe_text = "not implemented";
  try {
    if (const auto probe = plugin.probe()) {
      probe_text = probe->can_run ? fmt::format("can run (SIMD level {})", probe->simd_level)
                                  : fmt::format("cannot run: {}", probe->reason);
    }
  } catch (const PluginError& error) {
    probe_text = fmt::format("failed: {}", error.what());
  }
  print_field(out, "probe", probe_text);

  fmt::print(out, "\nbackends ({}):\n", info.backends.size());
  for (const auto& backend : info.backends) {
    fmt::print(out, "  {}{}\n", backend.name,
               backend.description.empty() ? "" : " - " + backend.description);
    if (backend.attention_states != 0) {
      std::string states;
      for (int32_t s = KVQ_ATTN_PREFILL_NO_CACHE; s <= KVQ_ATTN_SPEC_DECODING; ++s)
        if (backend.attention_states & (1u << s))
          states += (states.empty() ? "" : ", ") + attention_state_name(s);
      fmt::print(out, "    attention states: {}\n", states);
    }
    size_t width = 8;
    for (const auto& mode : backend.kv_modes) width = std::max(width, mode.name.size());
    fmt::print(out, "    {:<{}}  {:<11}  {:<9}  {:<14}  {:<12}  {}\n", "KV mode", width, "element",
               "supported", "per-token-head", "needs-scheme", "description");
    for (const auto& mode : backend.kv_modes) {
      fmt::print(out, "    {:<{}}  {:<11}  {:<9}  {:<14}  {:<12}  {}\n", mode.name, width,
                 abi_dtype_name(mode.element_dtype), yes_no(mode.supported),
                 yes_no(mode.per_token_head), yes_no(mode.needs_scheme), mode.description);
    }
    if (!backend.layer_options.empty()) fmt::print(out, "    layer options:\n");
    for (const auto& option : backend.layer_options) {
      fmt::print(out, "      {} (default {}{}): {}\n", option.name,
                 option.default_value.empty() ? "-" : option.default_value,
                 option.kv_modes.empty() ? "" : ", modes " + option.kv_modes, option.description);
    }
  }

  fmt::print(out, "\nschemes ({}):\n", info.schemes.size());
  if (info.schemes.empty()) return;
  size_t width = 6;
  for (const auto& scheme : info.schemes) {
    width = std::max(width, scheme.quant_type.size() + 3 + scheme.layer_type.size());
  }
  fmt::print(out, "    {:<{}}  {:<9}  {}\n", "scheme", width, "supported", "description");
  for (const auto& scheme : info.schemes) {
    fmt::print(out, "    {:<{}}  {:<9}  {}{}\n", scheme.quant_type + " / " + scheme.layer_type,
               width, yes_no(scheme.supported), scheme.description,
               scheme.backend.empty() ? "" : " [backend " + scheme.backend + "]");
    for (const auto& rule : scheme.name_rules) {
      fmt::print(out, "      name rule: *{} -> *{}\n", rule.checkpoint_suffix, rule.param_suffix);
    }
  }
}

}  // namespace kvq::host
