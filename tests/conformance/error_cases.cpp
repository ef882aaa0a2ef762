// Exact error codes for bad input (spec/abi.md "Conformance suite"), on a
// layer of the first backend with a supported unquantized mode.
#include <kvq_abi_names.h>

#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"

namespace kvq::conform {
namespace {

constexpr uint64_t kSeed = 0x6B7671'0001ull;

// A small layer with every position of a two-sequence batch written, ready
// for a forward that would succeed.
struct Bench {
  Bench(const Plugin& plugin, const ModeChoice& choice)
      : session(open_session(plugin)),
        layer(create_layer(session, bench_config(choice))),
        geometry(layer.cache_geometry()) {}

  static client::LayerConfig bench_config(const ModeChoice& choice) {
    return layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 32);
  }
  const kvq_plugin_api& api() const { return session.api(); }

  Session session;
  client::Layer layer;
  kvq_cache_geometry geometry{};
  RandomBatch data;
  HostTensor cache;
};

std::unique_ptr<Bench> make_bench(const Plugin& plugin, const ModeChoice& choice) {
  auto b = std::make_unique<Bench>(plugin, choice);
  b->data = make_random_batch({choice.model_dtype, 4, 2, 64, 32}, {{1, 40}, {3, 3}}, kSeed, 1);
  b->data.bind(b->session);
  b->cache = allocate_cache(b->session, b->layer, b->geometry, b->data.num_blocks);
  require_ok(write_cache(b->session, b->layer, b->data.context_key, b->data.context_value,
                         b->data.context_slots, b->cache),
             "cache_write (context)");
  require_ok(write_cache(b->session, b->layer, b->data.batch.key, b->data.batch.value,
                         b->data.new_slots, b->cache),
             "cache_write (new tokens)");
  return b;
}

Outcome verdict(const Error& error, int32_t code) {
  const std::string mismatch = expect_code(error, code);
  return mismatch.empty() ? pass(error.describe()) : fail(mismatch);
}

// Creates a layer from a broken config (the raw struct, broken by `mutate`);
// the plugin must refuse with `code`.
Outcome create_expecting(const kvq_plugin_api* api, const client::LayerConfig& config, int32_t code,
                         const std::function<void(kvq_layer_config&)>& mutate = {}) {
  Instance instance = negotiate(api);
  std::vector<const char*> options;
  kvq_layer_config raw = config.c_struct(options);
  if (mutate) mutate(raw);
  kvq_layer* out = nullptr;
  Error error(api, api->layer_create(instance.get(), &raw, &out));
  Layer leaked(api, error ? nullptr : out);  // destroyed if the plugin accepted wrongly
  return verdict(error, code);
}

// Runs forward on the bench batch after `mutate` broke one argument (a
// descriptor of the builder, or bytes of the batch, uploaded after).
Outcome forward_expecting(const Plugin& plugin, const ModeChoice& choice, int32_t code,
                          const std::function<void(Bench&, client::ForwardArgs&)>& mutate) {
  std::unique_ptr<Bench> b = make_bench(plugin, choice);
  client::ForwardArgs args = b->data.batch.args(b->cache, KVQ_ATTN_CHUNKED_PREFILL);
  mutate(*b, args);
  b->data.batch.upload();
  const kvq_forward_args raw = args.c_struct();
  Error error(&b->api(), b->api().forward(b->layer.get(), &raw));
  b->data.batch.output.download();
  b->cache.download();
  if (const std::string damaged = b->data.batch.damaged_guards(b->cache); !damaged.empty())
    return fail("guard bytes overwritten: " + damaged);
  return verdict(error, code);
}

int32_t other_float_dtype(int32_t dtype) {
  return dtype == KVQ_DTYPE_BF16 ? KVQ_DTYPE_F16 : KVQ_DTYPE_BF16;
}

}  // namespace

void run_error_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info) {
  const kvq_plugin_api* api = plugin.api;
  const ModeChoice choice = first_unquantized(info);
  if (!choice.backend) {
    log.report("errors", skip("no backend lists a supported unquantized mode"));
    return;
  }

  log.run("errors.layer_create_null_config", [&] {
    Instance instance = negotiate(api);
    kvq_layer* out = nullptr;
    Error error(api, api->layer_create(instance.get(), nullptr, &out));
    Layer leaked(api, error ? nullptr : out);
    return verdict(error, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.unknown_backend", [&] {
    client::LayerConfig c = Bench::bench_config(choice);
    c.backend = "no_such_backend";
    return create_expecting(api, c, KVQ_ERR_NOT_FOUND);
  });

  log.run("errors.unknown_kv_cache_dtype", [&] {
    client::LayerConfig c = Bench::bench_config(choice);
    c.kv_cache_dtype = "no_such_mode";
    return create_expecting(api, c, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.heads_not_divisible", [&] {
    client::LayerConfig c = Bench::bench_config(choice);
    c.num_heads = 6;
    c.num_kv_heads = 4;
    return create_expecting(api, c, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.config_struct_size_0", [&] {
    return create_expecting(api, Bench::bench_config(choice), KVQ_ERR_INVALID_ARGUMENT,
                            [](kvq_layer_config& c) { c.struct_size = 0; });
  });

  log.run("errors.cache_write_slot_out_of_range", [&] {
    std::unique_ptr<Bench> bench = make_bench(plugin, choice);
    Bench& b = *bench;
    const std::vector<unsigned char> before(b.cache.bytes(), b.cache.bytes() + b.cache.byte_size());
    // Two good rows before the bad one: validation must come before writing.
    const int64_t bad = b.data.num_blocks * 32;
    HostTensor key = HostTensor::from_doubles(choice.model_dtype, {3, 2, 64},
                                              std::vector<double>(3 * 2 * 64, 0.5));
    HostTensor value = HostTensor::from_doubles(choice.model_dtype, {3, 2, 64},
                                                std::vector<double>(3 * 2 * 64, -0.5));
    HostTensor slots = HostTensor::from_ints(KVQ_DTYPE_I64, {3}, std::vector<int64_t>{0, 5, bad});
    Error error = write_cache(b.session, b.layer, key, value, slots, b.cache);
    if (!b.cache.guards_intact()) return fail("guard bytes around the cache overwritten");
    if (std::memcmp(before.data(), b.cache.bytes(), before.size()) != 0)
      return fail("cache bytes changed by a refused write (" + error.describe() + ")");
    return verdict(error, KVQ_ERR_OUT_OF_RANGE);
  });

  log.run("errors.forward_block_out_of_range", [&] {
    return forward_expecting(
        plugin, choice, KVQ_ERR_OUT_OF_RANGE, [](Bench& b, client::ForwardArgs&) {
          const auto bad = static_cast<int32_t>(b.data.num_blocks);
          std::memcpy(b.data.batch.block_table.bytes(), &bad, sizeof bad);  // sequence 0, block 0
        });
  });

  log.run("errors.forward_seq_len_too_long", [&] {
    return forward_expecting(
        plugin, choice, KVQ_ERR_OUT_OF_RANGE, [](Bench& b, client::ForwardArgs&) {
          const int64_t max_blocks = b.data.batch.block_table.shape()[1];
          const auto too_long = static_cast<int32_t>(max_blocks * 32 + 1);
          std::memcpy(b.data.batch.seq_lens.bytes(), &too_long, sizeof too_long);
        });
  });

  log.run("errors.forward_query_start_loc_decreasing", [&] {
    return forward_expecting(plugin, choice, KVQ_ERR_INVALID_ARGUMENT,
                             [](Bench& b, client::ForwardArgs&) {
                               // [0, 1, 4] -> [0, 5, 4]: the total stays right.
                               const int32_t five = 5;
                               std::memcpy(b.data.batch.query_start_loc.bytes() + 4, &five, 4);
                             });
  });

  log.run("errors.forward_query_wrong_dtype", [&] {
    return forward_expecting(
        plugin, choice, KVQ_ERR_INVALID_ARGUMENT, [&](Bench&, client::ForwardArgs& args) {
          args.tensor(client::ForwardArgs::kQuery)->dtype = other_float_dtype(choice.model_dtype);
        });
  });

  log.run("errors.tensor_ndim_9", [&] {
    return forward_expecting(plugin, choice, KVQ_ERR_INVALID_ARGUMENT,
                             [&](Bench&, client::ForwardArgs& args) {
                               args.tensor(client::ForwardArgs::kQuery)->ndim = KVQ_MAX_DIMS + 1;
                             });
  });

  log.run("errors.forward_null_args", [&] {
    std::unique_ptr<Bench> b = make_bench(plugin, choice);
    return verdict(Error(api, api->forward(b->layer.get(), nullptr)), KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.apply_scheme_unknown", [&] {
    std::unique_ptr<Bench> b = make_bench(plugin, choice);
    kvq_scheme_args args{};
    args.struct_size = KVQ_SCHEME_ARGS_SIZE;
    args.quant_type = "NO_SUCH_QUANT";
    args.layer_type = "attention";
    return verdict(Error(api, api->apply_scheme(b->layer.get(), &args)), KVQ_ERR_NOT_FOUND);
  });

  log.run("errors.param_read_unknown", [&] {
    std::unique_ptr<Bench> b = make_bench(plugin, choice);
    float value = 0.0f;  // param_read always takes host memory
    const kvq_tensor dst = describe(&value, KVQ_DTYPE_F32, {1});
    const std::string name = std::string(kLayerName) + ".no_such_param";
    return verdict(Error(api, api->param_read(b->layer.get(), name.c_str(), &dst)),
                   KVQ_ERR_NOT_FOUND);
  });

  log.run("errors.supports_agrees_with_forward", [&] {
    std::unique_ptr<Bench> bench = make_bench(plugin, choice);
    Bench& b = *bench;
    // supports() reads shapes, dtypes and the batch description only: the
    // bulk data pointers may be NULL.
    ForwardBatch& batch = b.data.batch;
    client::ForwardArgs shapes = batch.args(b.cache, KVQ_ATTN_CHUNKED_PREFILL);
    using F = client::ForwardArgs;
    for (F::Slot slot : {F::kQuery, F::kKey, F::kValue, F::kOutput, F::kKvCache})
      shapes.tensor(slot)->data = nullptr;
    const kvq_forward_args without_data = shapes.c_struct();
    require_ok(Error(api, api->supports(b.layer.get(), &without_data)),
               "supports() on a valid batch without data");
    const auto bad = static_cast<int32_t>(b.data.num_blocks);
    std::memcpy(batch.block_table.bytes(), &bad, sizeof bad);
    batch.block_table.upload();
    const Error said(api, api->supports(b.layer.get(), &without_data));
    const client::ForwardArgs real_args = batch.args(b.cache, KVQ_ATTN_CHUNKED_PREFILL);
    const kvq_forward_args real = real_args.c_struct();
    const Error did(api, api->forward(b.layer.get(), &real));
    if (!said) return fail("supports() accepts a block index out of range");
    if (said.code() != did.code())
      return fail("supports() says " + said.describe() + " but forward says " + did.describe());
    return pass("both " + std::string(kvq_error_code_name(said.code())));
  });
}

}  // namespace kvq::conform
