// Exact error codes for bad input (spec/abi.md "Conformance suite"), on a
// layer of the first backend with a supported unquantized mode.
#include <cstring>
#include <functional>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"

namespace kvq::conform {
namespace {

constexpr uint64_t kSeed = 0x6B7671'0001ull;

// A small layer with every position of a two-sequence batch written, ready
// for a forward that would succeed.
struct Bench {
  Instance instance;
  Layer layer;
  kvq_cache_geometry geometry{};
  RandomBatch data;
  HostTensor cache;
};

kvq_layer_config bench_config(const ModeChoice& choice) {
  return layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 32);
}

Bench make_bench(const kvq_plugin_api* api, const ModeChoice& choice) {
  Bench b;
  b.instance = negotiate(api);
  b.layer = create_layer(api, b.instance.get(), bench_config(choice));
  b.geometry = cache_geometry(api, b.layer.get());
  b.data = make_random_batch({choice.model_dtype, 4, 2, 64, 32}, {{1, 40}, {3, 3}}, kSeed, 1);
  b.cache = allocate_cache(api, b.layer.get(), b.geometry, b.data.num_blocks);
  require_ok(write_cache(api, b.layer.get(), b.data.context_key, b.data.context_value,
                         b.data.context_slots, b.cache),
             "cache_write (context)");
  require_ok(write_cache(api, b.layer.get(), b.data.batch.key, b.data.batch.value, b.data.new_slots,
                         b.cache),
             "cache_write (new tokens)");
  return b;
}

Outcome verdict(const Error& error, int32_t code) {
  const std::string mismatch = expect_code(error, code);
  return mismatch.empty() ? pass(error.describe()) : fail(mismatch);
}

// Creates a layer from a broken config; the plugin must refuse with `code`.
Outcome create_expecting(const kvq_plugin_api* api, const kvq_layer_config* config, int32_t code) {
  Instance instance = negotiate(api);
  kvq_layer* out = nullptr;
  Error error(api, api->layer_create(instance.get(), config, &out));
  Layer leaked(api, error ? nullptr : out);  // destroyed if the plugin accepted wrongly
  return verdict(error, code);
}

// Runs forward on the bench batch after `mutate` broke one argument.
Outcome forward_expecting(const kvq_plugin_api* api, const ModeChoice& choice, int32_t code,
                          const std::function<void(Bench&, kvq_forward_args&)>& mutate) {
  Bench b = make_bench(api, choice);
  kvq_forward_args args = b.data.batch.args(b.cache, KVQ_ATTN_CHUNKED_PREFILL);
  mutate(b, args);
  Error error(api, api->forward(b.layer.get(), &args));
  if (const std::string damaged = b.data.batch.damaged_guards(b.cache); !damaged.empty())
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

  log.run("errors.layer_create_null_config",
          [&] { return create_expecting(api, nullptr, KVQ_ERR_INVALID_ARGUMENT); });

  log.run("errors.unknown_backend", [&] {
    kvq_layer_config c = bench_config(choice);
    c.backend = "no_such_backend";
    return create_expecting(api, &c, KVQ_ERR_NOT_FOUND);
  });

  log.run("errors.unknown_kv_cache_dtype", [&] {
    kvq_layer_config c = bench_config(choice);
    c.kv_cache_dtype = "no_such_mode";
    return create_expecting(api, &c, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.heads_not_divisible", [&] {
    kvq_layer_config c = bench_config(choice);
    c.num_heads = 6;
    c.num_kv_heads = 4;
    return create_expecting(api, &c, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.config_struct_size_0", [&] {
    kvq_layer_config c = bench_config(choice);
    c.struct_size = 0;
    return create_expecting(api, &c, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.cache_write_slot_out_of_range", [&] {
    Bench b = make_bench(api, choice);
    const std::vector<unsigned char> before(b.cache.bytes(), b.cache.bytes() + b.cache.byte_size());
    // Two good rows before the bad one: validation must come before writing.
    const int64_t bad = b.data.num_blocks * 32;
    HostTensor key = HostTensor::from_doubles(choice.model_dtype, {3, 2, 64},
                                              std::vector<double>(3 * 2 * 64, 0.5));
    HostTensor value = HostTensor::from_doubles(choice.model_dtype, {3, 2, 64},
                                                std::vector<double>(3 * 2 * 64, -0.5));
    HostTensor slots = HostTensor::from_ints(KVQ_DTYPE_I64, {3}, std::vector<int64_t>{0, 5, bad});
    Error error = write_cache(api, b.layer.get(), key, value, slots, b.cache);
    if (!b.cache.guards_intact()) return fail("guard bytes around the cache overwritten");
    if (std::memcmp(before.data(), b.cache.bytes(), before.size()) != 0)
      return fail("cache bytes changed by a refused write (" + error.describe() + ")");
    return verdict(error, KVQ_ERR_OUT_OF_RANGE);
  });

  log.run("errors.forward_block_out_of_range", [&] {
    return forward_expecting(api, choice, KVQ_ERR_OUT_OF_RANGE, [](Bench& b, kvq_forward_args&) {
      const auto bad = static_cast<int32_t>(b.data.num_blocks);
      std::memcpy(b.data.batch.block_table.bytes(), &bad, sizeof bad);  // sequence 0, block 0
    });
  });

  log.run("errors.forward_seq_len_too_long", [&] {
    return forward_expecting(api, choice, KVQ_ERR_OUT_OF_RANGE, [](Bench& b, kvq_forward_args&) {
      const int64_t max_blocks = b.data.batch.block_table.shape()[1];
      const auto too_long = static_cast<int32_t>(max_blocks * 32 + 1);
      std::memcpy(b.data.batch.seq_lens.bytes(), &too_long, sizeof too_long);
    });
  });

  log.run("errors.forward_query_start_loc_decreasing", [&] {
    return forward_expecting(api, choice, KVQ_ERR_INVALID_ARGUMENT,
                             [](Bench& b, kvq_forward_args&) {
                               // [0, 1, 4] -> [0, 5, 4]: the total stays right.
                               const int32_t five = 5;
                               std::memcpy(b.data.batch.query_start_loc.bytes() + 4, &five, 4);
                             });
  });

  log.run("errors.forward_query_wrong_dtype", [&] {
    kvq_tensor broken{};
    return forward_expecting(api, choice, KVQ_ERR_INVALID_ARGUMENT,
                             [&](Bench& b, kvq_forward_args& args) {
                               broken = b.data.batch.query.descriptor();
                               broken.dtype = other_float_dtype(choice.model_dtype);
                               args.query = &broken;
                             });
  });

  log.run("errors.tensor_ndim_9", [&] {
    kvq_tensor broken{};
    return forward_expecting(api, choice, KVQ_ERR_INVALID_ARGUMENT,
                             [&](Bench& b, kvq_forward_args& args) {
                               broken = b.data.batch.query.descriptor();
                               broken.ndim = KVQ_MAX_DIMS + 1;
                               args.query = &broken;
                             });
  });

  log.run("errors.forward_null_args", [&] {
    Bench b = make_bench(api, choice);
    return verdict(Error(api, api->forward(b.layer.get(), nullptr)), KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("errors.apply_scheme_unknown", [&] {
    Bench b = make_bench(api, choice);
    kvq_scheme_args args{};
    args.struct_size = KVQ_SCHEME_ARGS_SIZE;
    args.quant_type = "NO_SUCH_QUANT";
    args.layer_type = "attention";
    return verdict(Error(api, api->apply_scheme(b.layer.get(), &args)), KVQ_ERR_NOT_FOUND);
  });

  log.run("errors.param_read_unknown", [&] {
    Bench b = make_bench(api, choice);
    HostTensor dst(KVQ_DTYPE_F32, {1});
    const std::string name = std::string(kLayerName) + ".no_such_param";
    return verdict(Error(api, api->param_read(b.layer.get(), name.c_str(), dst.tensor())),
                   KVQ_ERR_NOT_FOUND);
  });

  log.run("errors.supports_agrees_with_forward", [&] {
    Bench b = make_bench(api, choice);
    // supports() reads shapes, dtypes and the batch description only: the
    // bulk data pointers may be NULL.
    ForwardBatch& batch = b.data.batch;
    kvq_tensor q = batch.query.descriptor(), k = batch.key.descriptor(),
               v = batch.value.descriptor(), o = batch.output.descriptor(),
               c = b.cache.descriptor();
    for (kvq_tensor* t : {&q, &k, &v, &o, &c}) t->data = nullptr;
    kvq_forward_args args = batch.args(b.cache, KVQ_ATTN_CHUNKED_PREFILL);
    args.query = &q;
    args.key = &k;
    args.value = &v;
    args.output = &o;
    args.kv_cache = &c;
    require_ok(Error(api, api->supports(b.layer.get(), &args)),
               "supports() on a valid batch without data");
    const auto bad = static_cast<int32_t>(b.data.num_blocks);
    std::memcpy(batch.block_table.bytes(), &bad, sizeof bad);
    const Error said(api, api->supports(b.layer.get(), &args));
    kvq_forward_args real = batch.args(b.cache, KVQ_ATTN_CHUNKED_PREFILL);
    const Error did(api, api->forward(b.layer.get(), &real));
    if (!said) return fail("supports() accepts a block index out of range");
    if (said.code() != did.code())
      return fail("supports() says " + said.describe() + " but forward says " + did.describe());
    return pass("both " + std::string(error_code_name(said.code())));
  });
}

}  // namespace kvq::conform
