// Contract cases of the ABI 1.1 device hooks (kvq_abi.h "DEVICE MEMORY",
// "STREAMS AND COMPLETION"): exact codes for bad arguments, copies and fills
// that round-trip, streams, synchronize, a stream-ordered forward that
// equals the synchronous one, and host memory refused by a device plugin.
// A CPU plugin without hooks skips them (they are optional for it).
#include <kvq_abi_names.h>

#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "batch.hpp"
#include "cases.hpp"
#include "poisoned.hpp"
#include "verdict.hpp"

namespace kvq::conform {
namespace {

constexpr uint64_t kSeed = 0x6B7671'0005ull;

Outcome verdict(const Error& error, int32_t code) {
  const std::string mismatch = expect_code(error, code);
  return mismatch.empty() ? pass(error.describe()) : fail(mismatch);
}

bool has_memory_hooks(const kvq_plugin_api* api) {
  return KVQ_API_HAS(api, device_alloc) && KVQ_API_HAS(api, device_free) &&
         KVQ_API_HAS(api, device_memcpy) && KVQ_API_HAS(api, device_memset);
}

bool has_stream_hooks(const kvq_plugin_api* api) {
  return KVQ_API_HAS(api, stream_create) && KVQ_API_HAS(api, stream_destroy) &&
         KVQ_API_HAS(api, synchronize);
}

// One device allocation of a raw instance, freed with it.
class DeviceMemory {
 public:
  DeviceMemory(const kvq_plugin_api* api, kvq_instance* instance, uint64_t bytes)
      : api_(api), instance_(instance) {
    require_ok(Error(api, api->device_alloc(instance, bytes, &ptr_)),
               "device_alloc(" + std::to_string(bytes) + ")");
    if (!ptr_) throw CaseFailure("device_alloc succeeded but returned NULL");
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { api_->device_free(instance_, ptr_); }
  void* get() const { return ptr_; }
  unsigned char* at(uint64_t offset) const { return static_cast<unsigned char*>(ptr_) + offset; }

 private:
  const kvq_plugin_api* api_;
  kvq_instance* instance_;
  void* ptr_ = nullptr;
};

kvq_memcpy_args copy_args(void* dst, int32_t dst_type, const void* src, int32_t src_type,
                          uint64_t bytes, kvq_stream* stream = nullptr) {
  return {KVQ_MEMCPY_ARGS_SIZE, dst, dst_type, 0, src, src_type, 0, bytes, stream};
}

std::vector<unsigned char> pattern(size_t n, unsigned seed) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((i * 131 + seed) & 0xFF);
  return v;
}

// Runs a random batch through a layer of `choice` with or without a stream
// (then synchronize) and returns the output bytes.
std::vector<unsigned char> forward_bytes(const Plugin& plugin, const ModeChoice& choice,
                                         bool on_stream) {
  const Session session = open_session(plugin);
  client::Layer layer = create_layer(
      session, layer_config(choice.backend, choice.mode, choice.model_dtype, 8, 2, 64, 16));
  RandomBatch r =
      make_random_batch({choice.model_dtype, 8, 2, 64, 16}, {{1, 37}, {6, 20}}, kSeed, 2);
  r.bind(session);
  HostTensor cache = allocate_cache(session, layer, layer.cache_geometry(), r.num_blocks);
  std::optional<client::Stream> stream;
  if (on_stream) stream.emplace(session);
  for (auto [key, value, slots] : {std::tuple{&r.context_key, &r.context_value, &r.context_slots},
                                   std::tuple{&r.batch.key, &r.batch.value, &r.new_slots}}) {
    client::CacheWriteArgs w;
    w.key(*key->tensor()).value(value->tensor()).slot_mapping(*slots->tensor());
    w.kv_cache(*cache.tensor()).stream(stream ? stream->get() : nullptr);
    layer.cache_write(w);
  }
  r.batch.output.fill(std::numeric_limits<double>::quiet_NaN());
  r.batch.upload();
  client::ForwardArgs f = r.batch.args(cache, KVQ_ATTN_CHUNKED_PREFILL);
  f.stream(stream ? stream->get() : nullptr);
  layer.forward(f);
  if (stream) stream->synchronize();
  r.batch.output.download();
  if (const std::string damaged = r.batch.damaged_guards(cache); !damaged.empty())
    throw CaseFailure("guard bytes overwritten: " + damaged);
  return {r.batch.output.bytes(), r.batch.output.bytes() + r.batch.output.byte_size()};
}

}  // namespace

void run_device_cases(CaseLog& log, const Plugin& plugin, const kvq_plugin_info& info) {
  const kvq_plugin_api* api = plugin.api;
  const bool v1_1 = info.abi_minor >= 1;
  const bool device = v1_1 && info.device_type != KVQ_DEVICE_CPU;
  if (!has_memory_hooks(api)) {
    log.report("device", device ? fail("a device plugin without the device memory hooks")
                                : skip("no device memory hooks (optional for a CPU plugin)"));
    return;
  }

  log.run("device.alloc_zero_bytes", [&] {
    Instance instance = negotiate(api);
    void* out = nullptr;
    Error error(api, api->device_alloc(instance.get(), 0, &out));
    if (!error) api->device_free(instance.get(), out);
    return verdict(error, KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("device.alloc_null_out", [&] {
    Instance instance = negotiate(api);
    return verdict(Error(api, api->device_alloc(instance.get(), 64, nullptr)),
                   KVQ_ERR_INVALID_ARGUMENT);
  });

  log.run("device.alloc_more_than_the_device", [&] {
    if (!v1_1 || info.device_memory_bytes == 0) return skip("the device memory size is unknown");
    Instance instance = negotiate(api);
    const uint64_t bytes = info.device_memory_bytes + 1;
    void* out = nullptr;
    Error error(api, api->device_alloc(instance.get(), bytes, &out));
    if (!error) api->device_free(instance.get(), out);
    if (std::string m = expect_code(error, KVQ_ERR_OUT_OF_MEMORY); !m.empty()) return fail(m);
    if (error.message().find(std::to_string(bytes)) == std::string::npos)
      return fail("the refusal does not name the size: \"" + error.message() + "\"");
    return pass(error.describe());
  });

  log.run("device.alloc_aligned_and_free_null", [&] {
    Instance instance = negotiate(api);
    for (uint64_t bytes : {1u, 1000u, 4097u}) {
      DeviceMemory m(api, instance.get(), bytes);
      if (reinterpret_cast<uintptr_t>(m.get()) % 256 != 0)
        return fail(std::to_string(bytes) + " bytes at an address not 256-byte aligned");
    }
    api->device_free(instance.get(), nullptr);
    return pass("1, 1000, 4097 bytes 256-byte aligned; device_free(NULL) returns");
  });

  log.run("device.memcpy_round_trip", [&] {
    Instance instance = negotiate(api);
    const int32_t type = v1_1 ? info.device_type : KVQ_DEVICE_CPU;
    DeviceMemory a(api, instance.get(), 4096), b(api, instance.get(), 4096);
    const std::vector<unsigned char> in = pattern(4096, 7);
    std::vector<unsigned char> out(4096, 0);
    kvq_memcpy_args c = copy_args(a.get(), type, in.data(), KVQ_DEVICE_CPU, 4096);
    require_ok(Error(api, api->device_memcpy(instance.get(), &c)), "memcpy host -> device");
    const kvq_memset_args clear{KVQ_MEMSET_ARGS_SIZE, b.get(), 4096, 0x3C, {}, nullptr};
    require_ok(Error(api, api->device_memset(instance.get(), &clear)), "memset");
    c = copy_args(b.at(256), type, a.at(100), type, 2000);  // device -> device
    require_ok(Error(api, api->device_memcpy(instance.get(), &c)), "memcpy device -> device");
    // Nothing outside [256, 2256) of b may have changed.
    std::vector<unsigned char> whole(4096);
    c = copy_args(whole.data(), KVQ_DEVICE_CPU, b.get(), type, 4096);
    require_ok(Error(api, api->device_memcpy(instance.get(), &c)), "memcpy device -> host");
    for (size_t i = 0; i < whole.size(); ++i)
      if ((i < 256 || i >= 2256) && whole[i] != 0x3C)
        return fail("device_memcpy wrote outside its range: byte " + std::to_string(i) +
                    " of the destination buffer is " + hex_byte(whole[i]));
    // A newer host's larger args, its tail poisoned.
    PoisonedStruct larger(KVQ_MEMCPY_ARGS_SIZE, kHostPoison);
    *larger.as<kvq_memcpy_args>() = copy_args(out.data(), KVQ_DEVICE_CPU, b.at(256), type, 2000);
    larger.as<kvq_memcpy_args>()->struct_size = KVQ_MEMCPY_ARGS_SIZE + kTail;
    require_ok(Error(api, api->device_memcpy(instance.get(), larger.as<kvq_memcpy_args>())),
               "memcpy device -> host (larger struct)");
    if (std::memcmp(out.data(), in.data() + 100, 2000) != 0)
      return fail("bytes differ after host -> device -> device -> host");
    return pass("4096 bytes up, 2000 across at offsets, 2000 down: equal");
  });

  log.run("device.memcpy_bad_arguments", [&] {
    Instance instance = negotiate(api);
    const int32_t type = v1_1 ? info.device_type : KVQ_DEVICE_CPU;
    DeviceMemory a(api, instance.get(), 64);
    std::vector<unsigned char> host(64);
    struct Row {
      const char* what;
      kvq_memcpy_args args;
    };
    const Row rows[] = {
        {"struct_size 0", {0, a.get(), type, 0, host.data(), KVQ_DEVICE_CPU, 0, 16, nullptr}},
        {"dst NULL", copy_args(nullptr, type, host.data(), KVQ_DEVICE_CPU, 16)},
        {"src NULL", copy_args(a.get(), type, nullptr, KVQ_DEVICE_CPU, 16)},
        {"dst device type 77", copy_args(a.get(), 77, host.data(), KVQ_DEVICE_CPU, 16)},
        {"src device type 0", copy_args(host.data(), KVQ_DEVICE_CPU, a.get(), 0, 16)},
    };
    for (const Row& row : rows) {
      const Error error(api, api->device_memcpy(instance.get(), &row.args));
      if (std::string m = expect_code(error, KVQ_ERR_INVALID_ARGUMENT); !m.empty())
        return fail(std::string(row.what) + ": " + m);
    }
    if (std::string m = expect_code(Error(api, api->device_memcpy(instance.get(), nullptr)),
                                    KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("NULL args: " + m);
    return pass("NULL args, struct_size 0, NULL pointers, unknown device types: INVALID_ARGUMENT");
  });

  log.run("device.memset", [&] {
    Instance instance = negotiate(api);
    const int32_t type = v1_1 ? info.device_type : KVQ_DEVICE_CPU;
    DeviceMemory a(api, instance.get(), 300);
    kvq_memset_args s{KVQ_MEMSET_ARGS_SIZE, a.get(), 300, 0x11, {}, nullptr};
    require_ok(Error(api, api->device_memset(instance.get(), &s)), "memset 300 bytes");
    s = {KVQ_MEMSET_ARGS_SIZE, a.at(10), 20, 0xEE, {}, nullptr};
    require_ok(Error(api, api->device_memset(instance.get(), &s)), "memset 20 bytes at 10");
    std::vector<unsigned char> out(300);
    const kvq_memcpy_args c = copy_args(out.data(), KVQ_DEVICE_CPU, a.get(), type, 300);
    require_ok(Error(api, api->device_memcpy(instance.get(), &c)), "memcpy device -> host");
    for (size_t i = 0; i < out.size(); ++i) {
      const unsigned char want = i >= 10 && i < 30 ? 0xEE : 0x11;
      if (out[i] != want) return fail("byte " + std::to_string(i) + " is " + hex_byte(out[i]));
    }
    const kvq_memset_args no_dst{KVQ_MEMSET_ARGS_SIZE, nullptr, 8, 0, {}, nullptr};
    const kvq_memset_args tiny{0, a.get(), 8, 0, {}, nullptr};
    for (const auto* args : {&no_dst, &tiny, static_cast<const kvq_memset_args*>(nullptr)}) {
      if (std::string m = expect_code(Error(api, api->device_memset(instance.get(), args)),
                                      KVQ_ERR_INVALID_ARGUMENT);
          !m.empty())
        return fail(std::string(args == &no_dst ? "dst NULL"
                                : args          ? "struct_size 0"
                                                : "NULL") +
                    ": " + m);
    }
    return pass("fills exact; bad arguments INVALID_ARGUMENT");
  });

  if (!has_stream_hooks(api)) {
    log.report("device.streams", device ? fail("a device plugin without stream hooks")
                                        : skip("no stream hooks (optional for a CPU plugin)"));
    return;
  }

  log.run("device.streams", [&] {
    Instance instance = negotiate(api);
    const int32_t type = v1_1 ? info.device_type : KVQ_DEVICE_CPU;
    if (std::string m = expect_code(Error(api, api->stream_create(instance.get(), nullptr)),
                                    KVQ_ERR_INVALID_ARGUMENT);
        !m.empty())
      return fail("stream_create(NULL out): " + m);
    kvq_stream* s1 = nullptr;
    kvq_stream* s2 = nullptr;
    require_ok(Error(api, api->stream_create(instance.get(), &s1)), "stream_create");
    require_ok(Error(api, api->stream_create(instance.get(), &s2)), "stream_create (second)");
    DeviceMemory a(api, instance.get(), 512);
    const std::vector<unsigned char> in = pattern(512, 3);
    std::vector<unsigned char> out(512);
    kvq_memcpy_args c = copy_args(a.get(), type, in.data(), KVQ_DEVICE_CPU, 512, s1);
    Error up(api, api->device_memcpy(instance.get(), &c));
    c = copy_args(out.data(), KVQ_DEVICE_CPU, a.get(), type, 512, s1);
    Error down(api, api->device_memcpy(instance.get(), &c));
    Error synced(api, api->synchronize(instance.get(), s1));
    Error all(api, api->synchronize(instance.get(), nullptr));
    api->stream_destroy(instance.get(), s1);
    api->stream_destroy(instance.get(), s2);
    api->stream_destroy(instance.get(), nullptr);
    require_ok(up, "memcpy on a stream");
    require_ok(down, "memcpy on a stream");
    require_ok(synced, "synchronize(stream)");
    require_ok(all, "synchronize(NULL)");
    if (out != in) return fail("stream-ordered copies lost bytes");
    return pass("two streams; ordered copies; synchronize(stream) and (NULL); destroy(NULL)");
  });

  log.run("device.stream_ordered_forward", [&] {
    const ModeChoice choice = first_unquantized(info);
    if (!choice.backend) return skip("no supported unquantized mode");
    const std::vector<unsigned char> direct = forward_bytes(plugin, choice, false);
    const std::vector<unsigned char> streamed = forward_bytes(plugin, choice, true);
    if (direct != streamed) return fail("forward on a stream gives other bytes");
    return pass("cache_write + forward on a stream, then synchronize: the same bytes");
  });

  log.run("device.host_memory_refused", [&] {
    if (!device) return skip("a CPU plugin reads host memory");
    const ModeChoice choice = first_unquantized(info);
    if (!choice.backend) return skip("no supported unquantized mode");
    const Session session = open_session(plugin);
    client::Layer layer = create_layer(
        session, layer_config(choice.backend, choice.mode, choice.model_dtype, 4, 2, 64, 16));
    const kvq_cache_geometry g = layer.cache_geometry();
    HostTensor host_cache(KVQ_DTYPE_U8, {2, g.bytes_per_block});  // not bound: host memory
    const Error error(api, api->cache_init(layer.get(), host_cache.tensor()));
    if (!error) return fail("cache_init accepted a KV cache in host memory");
    if (error.code() == KVQ_ERR_INTERNAL) return fail(error.describe());
    if (!host_cache.guards_intact()) return fail("the host buffer's guard bytes were written");
    return pass(error.describe());
  });
}

}  // namespace kvq::conform
