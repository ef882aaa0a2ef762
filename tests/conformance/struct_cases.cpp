// Contract cases of ABI 1.1's structs: the host_info a 1.0 host (smaller)
// and a newer host (larger) sends, the device ordinal, out-structs at their
// 1.0 and 1.1 sizes with poisoned tails (plugin_info, param_info,
// scheme_choice), the 1.1 record fields read within struct_size, a backend's
// layer options, the struct variants of the positional functions
// (param_info2 / param_load2 / param_read2 / select_scheme2), and
// cache_write / forward argument structs from a 1.0 host (their stream field
// then lies in poisoned memory the plugin must not read).
#include <kvq_abi_names.h>

#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"
#include "poisoned.hpp"
#include "record_checks.hpp"
#include "sample_layers.hpp"

namespace kvq::conform {
namespace {

// The first parameter a loader fills (not derived), or nullptr.
const client::ParamInfo* loadable(const std::vector<client::ParamInfo>& params) {
  for (const auto& p : params)
    if (!p.loader.empty() && !p.derived) return &p;
  return nullptr;
}

// Writes the random batch's context and new tokens, then runs the batch's
// forward with both argument structs at their 1.0 sizes, each inside
// poisoned memory; returns the output bytes.
std::vector<unsigned char> run_as_1_0_host(const Session& session, const client::Layer& layer,
                                           RandomBatch& r, HostTensor& cache) {
  const kvq_plugin_api& api = session.api();
  for (auto [key, value, slots] : {std::tuple{&r.context_key, &r.context_value, &r.context_slots},
                                   std::tuple{&r.batch.key, &r.batch.value, &r.new_slots}}) {
    client::CacheWriteArgs w;
    w.key(*key->tensor()).value(value->tensor()).slot_mapping(*slots->tensor());
    w.kv_cache(*cache.tensor()).struct_size(KVQ_CACHE_WRITE_ARGS_SIZE_1_0);
    PoisonedStruct raw(KVQ_CACHE_WRITE_ARGS_SIZE_1_0, kHostPoison);
    const kvq_cache_write_args full = w.c_struct();
    std::memcpy(raw.as<kvq_cache_write_args>(), &full, KVQ_CACHE_WRITE_ARGS_SIZE_1_0);
    require_ok(Error(&api, api.cache_write(layer.get(), raw.as<kvq_cache_write_args>())),
               "cache_write with a 1.0-sized struct");
  }
  r.batch.output.fill(std::numeric_limits<double>::quiet_NaN());
  r.batch.upload();
  client::ForwardArgs f = r.batch.args(cache, KVQ_ATTN_CHUNKED_PREFILL);
  f.struct_size(KVQ_FORWARD_ARGS_SIZE_1_0);
  const kvq_forward_args full = f.c_struct();
  PoisonedStruct raw(KVQ_FORWARD_ARGS_SIZE_1_0, kHostPoison);
  std::memcpy(raw.as<kvq_forward_args>(), &full, KVQ_FORWARD_ARGS_SIZE_1_0);
  require_ok(Error(&api, api.forward(layer.get(), raw.as<kvq_forward_args>())),
             "forward with a 1.0-sized struct");
  r.batch.output.download();
  return {r.batch.output.bytes(), r.batch.output.bytes() + r.batch.output.byte_size()};
}

}  // namespace

void run_struct_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info) {
  const kvq_plugin_api* api = plugin.api;
  const bool v1_1 = info.abi_minor >= 1;

  log.run("contract.host_info_1_0_size", [&] {
    // A 1.0 host: its struct ends before device_ordinal, which lies in
    // poisoned bytes (0xAB...: a negative ordinal if read).
    PoisonedStruct s(KVQ_HOST_INFO_SIZE_1_0, kHostPoison);
    const kvq_host_info host = host_info();
    std::memcpy(s.as<kvq_host_info>(), &host, KVQ_HOST_INFO_SIZE_1_0);
    s.as<kvq_host_info>()->struct_size = KVQ_HOST_INFO_SIZE_1_0;
    kvq_instance* out = nullptr;
    Error error(api, api->negotiate(s.as<kvq_host_info>(), &out));
    Instance instance(api, error ? nullptr : out);
    require_ok(error, "negotiate with a 1.0-sized host_info");
    const kvq_plugin_info i = plugin_info(api, instance.get());
    if (i.abi_minor >= 1 && i.device_ordinal != 0)
      return fail("a 1.0 host got device ordinal " + std::to_string(i.device_ordinal) +
                  ", the header says 0");
    return pass("accepted; device ordinal 0");
  });

  log.run("contract.device_ordinal", [&] {
    if (!v1_1) return skip("the plugin implements 1.0 (no device ordinal)");
    kvq_host_info host = host_info();
    host.device_ordinal = info.device_count;  // one past the last device
    kvq_instance* out = nullptr;
    Error error(api, api->negotiate(&host, &out));
    Instance instance(api, error ? nullptr : out);
    if (info.device_type == KVQ_DEVICE_CPU) {
      require_ok(error, "a CPU plugin must ignore the device ordinal");
      return pass("ordinal " + std::to_string(host.device_ordinal) + " ignored (CPU plugin)");
    }
    if (const std::string m = expect_code(error, KVQ_ERR_OUT_OF_RANGE); !m.empty()) return fail(m);
    if (error.message().find(std::to_string(info.device_count)) == std::string::npos)
      return fail("the refusal does not name how many devices the plugin sees: \"" +
                  error.message() + "\"");
    return pass(error.describe());
  });

  log.run("contract.out_struct.plugin_info_1_0", [&] {
    Instance instance = negotiate(api);
    PoisonedStruct s(KVQ_PLUGIN_INFO_SIZE_1_0, kOutPoison);
    require_ok(Error(api, api->get_info(instance.get(), s.as<kvq_plugin_info>())), "get_info");
    const std::string d = s.tail_damage();
    return d.empty() ? pass("a 1.0 host's record: no byte past struct_size written") : fail(d);
  });

  log.run("contract.records_1_1", [&] {
    if (!v1_1) return skip("the plugin implements 1.0 (no 1.1 fields)");
    const std::string problems = well_formed_1_1(info, *api);
    return problems.empty() ? pass(std::string("device ") + kvq_device_type_name(info.device_type))
                            : fail(problems);
  });

  log.run("contract.layer_options", [&] {
    const ModeChoice choice = first_unquantized(info);
    if (!choice.backend) return skip("no supported unquantized mode");
    const Session session = open_session(plugin);
    client::LayerConfig config =
        layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 32);
    config.options = {{"kvq_conform_no_such_option", "1"}};
    try {
      create_layer(session, config);
      return fail("an unknown layer option was accepted");
    } catch (const client::PluginError& e) {
      if (e.code() != KVQ_ERR_INVALID_ARGUMENT)
        return fail(std::string("unknown option: ") + e.what());
      if (e.plugin_message().find("kvq_conform_no_such_option") == std::string::npos)
        return fail("the refusal does not name the key: \"" + e.plugin_message() + "\"");
    }
    // Every listed option at its default value is accepted by a mode that reads it.
    int accepted = 0;
    for (const client::BackendInfo& backend : session.info().backends) {
      for (const client::OptionInfo& option : backend.layer_options) {
        std::string mode = option.kv_modes.substr(0, option.kv_modes.find(' '));
        if (mode.empty()) mode = choice.mode;
        const client::KvModeInfo* m = backend.find_mode(mode);
        if (!m || !m->supported || m->needs_scheme) continue;
        client::LayerConfig c =
            layer_config(backend.name.c_str(), mode.c_str(), KVQ_DTYPE_BF16, 4, 2, 64, 32);
        c.options = {{option.name, option.default_value}};
        create_layer(session, c);
        ++accepted;
      }
    }
    return pass("unknown key refused by name; " + std::to_string(accepted) +
                " listed option(s) accepted at their defaults");
  });

  log.run("contract.param_info2", [&] {
    if (!KVQ_API_HAS(api, param_info2)) return skip("param_info2 not provided");
    const Session session = open_session(plugin);
    const client::Layer layer = layer_with_params(session, info);
    const int64_t n = layer.info().num_params;
    for (int64_t i = 0; i < n; ++i) {
      for (uint64_t size : {KVQ_PARAM_INFO_SIZE_1_0, KVQ_PARAM_INFO_SIZE}) {
        PoisonedStruct q(KVQ_PARAM_QUERY_SIZE, kHostPoison);  // a newer host's larger query
        q.as<kvq_param_query>()->struct_size = KVQ_PARAM_QUERY_SIZE + kTail;
        q.as<kvq_param_query>()->index = i;
        q.as<kvq_param_query>()->name = nullptr;
        PoisonedStruct out(size, kOutPoison);
        require_ok(Error(api, api->param_info2(layer.get(), q.as<kvq_param_query>(),
                                               out.as<kvq_param_info>())),
                   "param_info2 " + std::to_string(i));
        if (const std::string d = out.tail_damage(); !d.empty())
          return fail("param " + std::to_string(i) + " at size " + std::to_string(size) + ": " + d);
        const kvq_param_info* p = out.as<kvq_param_info>();
        if (!p->name) return fail("param_info2 left a NULL name");
        if (size == KVQ_PARAM_INFO_SIZE) {
          if (p->role < KVQ_PARAM_ROLE_OTHER || p->role > KVQ_PARAM_ROLE_DERIVED)
            return fail(std::string(p->name) + ": role " + std::to_string(p->role));
          if (!p->load_shapes) return fail(std::string(p->name) + ": load_shapes is NULL");
        }
        // The same record by name.
        kvq_param_query by_name{KVQ_PARAM_QUERY_SIZE, -1, p->name};
        kvq_param_info again{};
        again.struct_size = KVQ_PARAM_INFO_SIZE_1_0;
        require_ok(Error(api, api->param_info2(layer.get(), &by_name, &again)),
                   std::string("param_info2 by name ") + p->name);
        if (!again.name || std::strcmp(again.name, p->name) != 0)
          return fail(std::string("by name ") + p->name + " gives another parameter");
      }
    }
    kvq_param_info out{};
    out.struct_size = KVQ_PARAM_INFO_SIZE;
    const kvq_param_query unknown{KVQ_PARAM_QUERY_SIZE, 0, "kvq_conform.no_such_param"};
    if (std::string m = expect_code(Error(api, api->param_info2(layer.get(), &unknown, &out)),
                                    KVQ_ERR_NOT_FOUND);
        !m.empty())
      return fail("unknown name: " + m);
    if (std::string m = expect_code(Error(api, api->param_info2(layer.get(), nullptr, &out)),
                                    KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("NULL query: " + m);
    const kvq_param_query tiny{0, 0, nullptr};
    if (std::string m = expect_code(Error(api, api->param_info2(layer.get(), &tiny, &out)),
                                    KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("query struct_size 0: " + m);
    return pass(std::to_string(n) + " parameters at both sizes, by index and by name");
  });

  log.run("contract.out_struct.param_info_1_0", [&] {
    const Session session = open_session(plugin);
    const client::Layer layer = layer_with_params(session, info);
    PoisonedStruct s(KVQ_PARAM_INFO_SIZE_1_0, kOutPoison);
    require_ok(Error(api, api->param_info(layer.get(), 0, s.as<kvq_param_info>())), "param_info");
    const std::string d = s.tail_damage();
    return d.empty() ? pass("a 1.0 host's param_info: no byte past struct_size written") : fail(d);
  });

  log.run("contract.param_load2_read2", [&] {
    if (!KVQ_API_HAS(api, param_load2) || !KVQ_API_HAS(api, param_read2))
      return skip("param_load2 / param_read2 not provided");
    const Session session = open_session(plugin);
    client::Layer layer = layer_with_params(session, info);
    const std::vector<client::ParamInfo> params = layer.params();
    const client::ParamInfo* p = loadable(params);
    if (!p) return skip("no loadable parameter");
    HostTensor first(p->dtype, p->shape), second(p->dtype, p->shape);
    const std::string name = p->name;
    // Both structs inside poisoned memory claiming a newer host's size.
    PoisonedStruct read(KVQ_PARAM_READ_ARGS_SIZE, kHostPoison);
    *read.as<kvq_param_read_args>() = {KVQ_PARAM_READ_ARGS_SIZE + kTail, name.c_str(),
                                       first.tensor()};
    require_ok(Error(api, api->param_read2(layer.get(), read.as<kvq_param_read_args>())),
               "param_read2 " + name);
    PoisonedStruct load(KVQ_PARAM_LOAD_ARGS_SIZE, kHostPoison);
    *load.as<kvq_param_load_args>() = {KVQ_PARAM_LOAD_ARGS_SIZE + kTail, name.c_str(),
                                       first.tensor(), 0, 1};
    require_ok(Error(api, api->param_load2(layer.get(), load.as<kvq_param_load_args>())),
               "param_load2 " + name + " (the value just read)");
    const kvq_param_read_args again{KVQ_PARAM_READ_ARGS_SIZE, name.c_str(), second.tensor()};
    require_ok(Error(api, api->param_read2(layer.get(), &again)), "param_read2 after the load");
    if (std::memcmp(first.bytes(), second.bytes(), first.byte_size()) != 0)
      return fail(name + " changed by loading its own value back");
    const kvq_param_read_args tiny{0, name.c_str(), second.tensor()};
    if (std::string m =
            expect_code(Error(api, api->param_read2(layer.get(), &tiny)), KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("param_read2 struct_size 0: " + m);
    if (std::string m = expect_code(Error(api, api->param_load2(layer.get(), nullptr)),
                                    KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("param_load2 NULL args: " + m);
    return pass(name + " read, loaded back and read again through the struct variants");
  });

  log.run("contract.select_scheme2", [&] {
    if (!KVQ_API_HAS(api, select_scheme2)) return skip("select_scheme2 not provided");
    Instance instance = negotiate(api);
    const char* description = "{}";
    PoisonedStruct args(KVQ_SELECT_SCHEME_ARGS_SIZE, kHostPoison);
    *args.as<kvq_select_scheme_args>() = {KVQ_SELECT_SCHEME_ARGS_SIZE + kTail, description,
                                          "conform.json", "model.layers.0.self_attn", "attention"};
    PoisonedStruct choice(KVQ_SCHEME_CHOICE_SIZE, kOutPoison);
    const Error two(api, api->select_scheme2(instance.get(), args.as<kvq_select_scheme_args>(),
                                             choice.as<kvq_scheme_choice>()));
    if (const std::string d = choice.tail_damage(); !d.empty()) return fail(d);
    if (KVQ_API_HAS(api, select_scheme)) {
      const char* chosen = nullptr;
      const Error one(api, api->select_scheme(instance.get(), description, "conform.json",
                                              "model.layers.0.self_attn", "attention", &chosen));
      if (one.code() != two.code())
        return fail("select_scheme says " + one.describe() + ", select_scheme2 " + two.describe());
      if (!two && std::string(chosen ? chosen : "(NULL)") !=
                      std::string(choice.as<kvq_scheme_choice>()->quant_type
                                      ? choice.as<kvq_scheme_choice>()->quant_type
                                      : "(NULL)"))
        return fail("the two variants choose different schemes");
    }
    kvq_scheme_choice out{};
    out.struct_size = KVQ_SCHEME_CHOICE_SIZE;
    if (std::string m = expect_code(Error(api, api->select_scheme2(instance.get(), nullptr, &out)),
                                    KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("NULL args: " + m);
    return pass(two ? "both answer " + two.describe() : "both choose the same scheme");
  });

  log.run("contract.args_from_a_1_0_host", [&] {
    const ModeChoice choice = first_unquantized(info);
    if (!choice.backend) return skip("no supported unquantized mode");
    const Session session = open_session(plugin);
    const client::LayerConfig config =
        layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 16);
    std::vector<unsigned char> outputs[2];
    for (int run = 0; run < 2; ++run) {
      client::Layer layer = create_layer(session, config);
      RandomBatch r = make_random_batch({choice.model_dtype, 4, 2, 64, 16}, {{1, 21}, {4, 9}},
                                        0x6B7671'0009ull, 1);
      r.bind(session);
      HostTensor cache = allocate_cache(session, layer, layer.cache_geometry(), r.num_blocks);
      if (run == 0) {
        outputs[0] = run_as_1_0_host(session, layer, r, cache);
      } else {
        require_ok(
            write_cache(session, layer, r.context_key, r.context_value, r.context_slots, cache),
            "cache_write");
        require_ok(write_cache(session, layer, r.batch.key, r.batch.value, r.new_slots, cache),
                   "cache_write");
        forward_checked(session, layer, r.batch, cache, KVQ_ATTN_CHUNKED_PREFILL, false);
        outputs[1].assign(r.batch.output.bytes(),
                          r.batch.output.bytes() + r.batch.output.byte_size());
      }
    }
    if (outputs[0] != outputs[1])
      return fail("forward from a 1.0-sized struct gives other bytes than from a 1.1 one");
    return pass("cache_write and forward at their 1.0 sizes (poisoned tails) give the same bytes");
  });
}

}  // namespace kvq::conform
