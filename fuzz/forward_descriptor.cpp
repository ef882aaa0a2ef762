// Fuzzes the ABI's descriptor validation (plugin_sdk batch.cpp, tensor.cpp)
// and everything behind it, through the triton_sim plugin's C ABI (linked
// statically): fuzzer-built cache_write and forward arguments over real
// buffers. The layer and its cache come from the client library; the
// argument structs are built field by field here on purpose (struct sizes,
// NULLs and enums are what is fuzzed). Every tensor's buffer is exactly as large as its descriptor
// says (ASan catches a read or write past it); a descriptor that is malformed by the ABI's rules
// gets a tiny buffer, so a plugin that accepts it reads out of bounds. Invariants: no crash, never
// INTERNAL, a refused cache_write leaves the cache unchanged, and supports() refusing means forward
// refuses with the same code.
#include <fuzzer/FuzzedDataProvider.h>
#include <kvq_abi.h>
#include <kvq_abi_names.h>
#include <kvq_client/buffer.hpp>
#include <kvq_client/tensor.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fuzz_support.hpp"

namespace {

using kvq::fuzz::invariant_failed;

constexpr int64_t kMaxSpanBytes = int64_t{1} << 22;

using kvq::fuzz::api;
using kvq::fuzz::instance;

// The layers a run may pick: every cache family, both layouts of options.
struct LayerChoice {
  const char* mode;
  int32_t model_dtype;
  int64_t head_size, head_size_v;
  int64_t sliding_window;
  double softcap;
  const char* option_key;  // one layer option or nullptr
  const char* option_value;
};
constexpr LayerChoice kLayers[] = {
    {"bfloat16", KVQ_DTYPE_BF16, 32, 32, 0, 0.0, nullptr, nullptr},
    {"int8_per_token_head", KVQ_DTYPE_BF16, 32, 32, 0, 0.0, nullptr, nullptr},
    {"fp8", KVQ_DTYPE_BF16, 32, 32, 0, 0.0, nullptr, nullptr},
    {"int4_per_token_head", KVQ_DTYPE_F16, 36, 36, 0, 0.0, nullptr, nullptr},
    {"fp8_per_token_head", KVQ_DTYPE_F32, 32, 32, 5, 20.0, nullptr, nullptr},
    {"float16", KVQ_DTYPE_F16, 32, 16, 0, 0.0, nullptr, nullptr},
    {"fp8_e5m2", KVQ_DTYPE_BF16, 32, 32, 0, 0.0, "calculate_kv_scales", "true"},
};
constexpr int64_t kHeads = 4, kKvHeads = 2, kBlockSize = 16;

// A layer (client RAII) and its 64-byte aligned cache (a client Buffer of
// host memory, the plugin being a CPU plugin).
struct LayerUnderTest {
  kvq::client::Layer layer;
  kvq_cache_geometry geometry{};
  int64_t num_blocks = 0;
  kvq::client::Buffer cache;
  kvq_tensor cache_t{};
};

// A tensor descriptor plus a buffer exactly as large as it claims.
struct Tensor {
  kvq_tensor t{};
  std::vector<unsigned char> storage;
};

kvq_tensor contiguous(int32_t dtype, std::initializer_list<int64_t> shape) {
  return kvq::client::describe(nullptr, dtype, shape);
}

int64_t interesting(FuzzedDataProvider& fdp) {
  static constexpr int64_t kValues[] = {0,
                                        1,
                                        2,
                                        3,
                                        7,
                                        8,
                                        33,
                                        -1,
                                        -2,
                                        std::numeric_limits<int32_t>::max(),
                                        std::numeric_limits<int64_t>::max(),
                                        std::numeric_limits<int64_t>::min(),
                                        int64_t{1} << 32,
                                        int64_t{1} << 62};
  if (fdp.ConsumeBool()) return fdp.PickValueInArray(kValues);
  return fdp.ConsumeIntegral<int64_t>();
}

// Sometimes breaks one thing about a descriptor (the ABI's bad-input rows).
void maybe_break(FuzzedDataProvider& fdp, kvq_tensor& t, int& misalign) {
  if (fdp.ConsumeIntegralInRange<int>(0, 15) != 0) return;
  const int dim = fdp.ConsumeIntegralInRange<int>(0, KVQ_MAX_DIMS - 1);
  switch (fdp.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: t.dtype = fdp.ConsumeIntegralInRange<int32_t>(-1, 12); break;
    case 1: t.ndim = fdp.ConsumeIntegralInRange<int32_t>(-2, 10); break;
    case 2: t.shape[dim] = interesting(fdp); break;
    case 3: t.strides[dim] = interesting(fdp); break;
    case 4: t.struct_size = fdp.PickValueInArray<uint64_t>({0, 8, 152, 160, 4096}); break;
    case 5: t.device_type = fdp.ConsumeIntegralInRange<int32_t>(0, 3); break;
    case 6: misalign = fdp.ConsumeIntegralInRange<int>(1, 7); break;
    default: t.shape[dim] = fdp.ConsumeIntegralInRange<int64_t>(0, 9); break;
  }
}

// What the plugin may touch: nullopt for a descriptor the ABI calls malformed.
std::optional<int64_t> span_bytes(const kvq_tensor& t) {
  const int64_t es = kvq_dtype_size(t.dtype);
  if (t.struct_size < KVQ_TENSOR_SIZE || t.device_type != KVQ_DEVICE_CPU || es == 0 || t.ndim < 0 ||
      t.ndim > KVQ_MAX_DIMS)
    return std::nullopt;
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0 || t.strides[i] < 0) return std::nullopt;
    if (t.shape[i] == 0) return 0;
  }
  for (int i = 0; i < t.ndim; ++i) {
    int64_t step = 0;
    if (__builtin_mul_overflow(t.shape[i] - 1, t.strides[i], &step) ||
        __builtin_add_overflow(last, step, &last))
      return std::nullopt;
  }
  int64_t bytes = 0;
  if (__builtin_add_overflow(last, 1, &last) || __builtin_mul_overflow(last, es, &bytes))
    return std::nullopt;
  return bytes;
}

// Gives `t` a buffer of exactly its span (ordinary finite values, or the
// fuzzer's raw bytes), a tiny one when malformed, or NULL data when too
// large to allocate honestly.
void materialize(FuzzedDataProvider& fdp, Tensor& x, std::mt19937& rng, bool raw_values,
                 int misalign) {
  const std::optional<int64_t> span = span_bytes(x.t);
  const int64_t bytes = !span ? 16 : *span;
  if (span && bytes > kMaxSpanBytes) {
    x.t.data = nullptr;
    return;
  }
  x.storage.assign(static_cast<size_t>(std::max<int64_t>(bytes + misalign, 1)), 0);
  unsigned char* p = x.storage.data() + misalign;
  x.t.data = p;
  if (raw_values) {
    const std::vector<uint8_t> raw = fdp.ConsumeBytes<uint8_t>(static_cast<size_t>(bytes));
    if (!raw.empty()) std::memcpy(p, raw.data(), raw.size());
    return;
  }
  if (!span) return;
  // Values of magnitude 1/4..4 with random signs and mantissas.
  const int64_t es = kvq_dtype_size(x.t.dtype);
  for (int64_t i = 0; i + es <= bytes; i += es) {
    const uint32_t r = static_cast<uint32_t>(rng());
    switch (x.t.dtype) {
      case KVQ_DTYPE_F32: {
        const uint32_t bits = (r & 0x807FFFFFu) | ((125u + (r >> 23) % 4u) << 23);
        std::memcpy(p + i, &bits, 4);
        break;
      }
      case KVQ_DTYPE_BF16: {
        const auto bits = static_cast<uint16_t>((r & 0x807Fu) | ((125u + (r >> 8) % 4u) << 7));
        std::memcpy(p + i, &bits, 2);
        break;
      }
      case KVQ_DTYPE_F16: {
        const auto bits = static_cast<uint16_t>((r & 0x83FFu) | ((13u + (r >> 10) % 4u) << 10));
        std::memcpy(p + i, &bits, 2);
        break;
      }
      default: p[i] = static_cast<unsigned char>(r); break;
    }
  }
}

// True when element i (of `size` bytes) of a 1-D or 2-D tensor lies in its
// buffer (shapes may be anything the fuzzer chose, so no product may overflow).
bool holds(const Tensor& x, int32_t dtype, int64_t i, int64_t size) {
  if (x.t.dtype != dtype || x.t.ndim < 1 || x.t.data == nullptr || i < 0 || x.storage.empty())
    return false;
  int64_t n = x.t.shape[0];
  if (x.t.ndim == 2 && __builtin_mul_overflow(x.t.shape[0], x.t.shape[1], &n)) return false;
  if (i >= n) return false;
  const auto offset = static_cast<const unsigned char*>(x.t.data) - x.storage.data();
  const auto room = static_cast<int64_t>(x.storage.size()) - offset;
  return i < room / size;
}

Tensor make(FuzzedDataProvider& fdp, kvq_tensor t, std::mt19937& rng, bool raw_values) {
  Tensor x{t, {}};
  int misalign = 0;
  maybe_break(fdp, x.t, misalign);
  materialize(fdp, x, rng, raw_values, misalign);
  return x;
}

void set_i32(Tensor& x, int64_t i, int64_t v) {
  if (!holds(x, KVQ_DTYPE_I32, i, 4)) return;
  const auto w = static_cast<int32_t>(v);
  std::memcpy(static_cast<unsigned char*>(x.t.data) + 4 * i, &w, 4);
}

// Takes ownership of an error; returns its code (0 = success).
int32_t take(kvq_error* e, const char* call) {
  if (e == nullptr) return 0;
  const int32_t code = api().error_code(e);
  if (code == KVQ_ERR_INTERNAL) invariant_failed(call, api().error_message(e));
  api().error_destroy(e);
  return code;
}

// An args struct inside a larger, poisoned buffer, so struct_size may claim
// more than the v1.0 size (a newer host) without lying about memory.
template <typename Args>
struct Padded {
  Args args{};
  std::array<unsigned char, 64> tail{};
  Padded() { tail.fill(0xFF); }
  void size_from(FuzzedDataProvider& fdp, uint64_t v1) {
    args.struct_size = fdp.ConsumeIntegralInRange<int>(0, 15) != 0
                           ? v1
                           : fdp.PickValueInArray<uint64_t>({0, 8, v1 - 8, v1 + 64});
  }
};

void cache_write(FuzzedDataProvider& fdp, LayerUnderTest& l, const LayerChoice& c,
                 std::mt19937& rng) {
  const int64_t t = fdp.ConsumeIntegralInRange<int64_t>(0, 10);
  const bool raw = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
  Tensor key = make(fdp, contiguous(c.model_dtype, {t, kKvHeads, c.head_size}), rng, raw);
  Tensor value = make(fdp, contiguous(c.model_dtype, {t, kKvHeads, c.head_size_v}), rng, raw);
  Tensor slots = make(fdp, contiguous(KVQ_DTYPE_I64, {t}), rng, false);
  for (int64_t i = 0; holds(slots, KVQ_DTYPE_I64, i, 8); ++i) {
    int64_t s = fdp.ConsumeIntegralInRange<int64_t>(-1, l.num_blocks * kBlockSize - 1);
    if (fdp.ConsumeIntegralInRange<int>(0, 31) == 0) s = interesting(fdp);
    std::memcpy(static_cast<unsigned char*>(slots.t.data) + 8 * i, &s, 8);
  }
  Padded<kvq_cache_write_args> w;
  w.size_from(fdp, KVQ_CACHE_WRITE_ARGS_SIZE);
  w.args.key = fdp.ConsumeIntegralInRange<int>(0, 31) ? &key.t : nullptr;
  w.args.value = fdp.ConsumeIntegralInRange<int>(0, 31) ? &value.t : nullptr;
  w.args.slot_mapping = &slots.t;
  w.args.kv_cache = &l.cache_t;
  w.args.num_tokens = fdp.ConsumeIntegralInRange<int>(0, 7) ? 0 : interesting(fdp) % 12;

  const size_t cache_bytes = static_cast<size_t>(l.num_blocks * l.geometry.bytes_per_block);
  const std::byte* bytes = l.cache.host_data();
  const std::vector<std::byte> before(bytes, bytes + cache_bytes);
  if (take(api().cache_write(l.layer.get(), &w.args), "cache_write") != 0 &&
      std::memcmp(before.data(), bytes, cache_bytes) != 0)
    invariant_failed("a refused cache_write changed the cache");
}

void forward(FuzzedDataProvider& fdp, LayerUnderTest& l, const LayerChoice& c, std::mt19937& rng) {
  // A batch description that is valid before maybe_break and the edits below.
  const int64_t seqs = fdp.ConsumeIntegralInRange<int64_t>(0, 4);
  std::vector<int64_t> qlen(static_cast<size_t>(seqs)), len(static_cast<size_t>(seqs));
  int64_t tokens = 0, max_blocks = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    qlen[static_cast<size_t>(s)] = fdp.ConsumeIntegralInRange<int64_t>(0, 5);
    len[static_cast<size_t>(s)] =
        qlen[static_cast<size_t>(s)] + fdp.ConsumeIntegralInRange<int64_t>(0, 12);
    tokens += qlen[static_cast<size_t>(s)];
    max_blocks = std::max(max_blocks, (len[static_cast<size_t>(s)] + kBlockSize - 1) / kBlockSize);
  }
  max_blocks += fdp.ConsumeIntegralInRange<int64_t>(0, 1);
  const bool raw = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
  Tensor query = make(fdp, contiguous(c.model_dtype, {tokens, kHeads, c.head_size}), rng, raw);
  Tensor output = make(fdp, contiguous(c.model_dtype, {tokens, kHeads, c.head_size_v}), rng, false);
  Tensor qsl = make(fdp, contiguous(KVQ_DTYPE_I32, {seqs + 1}), rng, false);
  Tensor lens = make(fdp, contiguous(KVQ_DTYPE_I32, {seqs}), rng, false);
  Tensor table = make(fdp, contiguous(KVQ_DTYPE_I32, {seqs, max_blocks}), rng, false);
  int64_t start = 0;
  set_i32(qsl, 0, 0);
  for (int64_t s = 0; s < seqs; ++s) {
    start += qlen[static_cast<size_t>(s)];
    set_i32(qsl, s + 1, start);
    set_i32(lens, s, len[static_cast<size_t>(s)]);
  }
  for (int64_t i = 0; i < seqs * max_blocks; ++i)
    set_i32(table, i, fdp.ConsumeIntegralInRange<int64_t>(0, l.num_blocks - 1));
  // A few edits of the description itself.
  for (int edits =
           fdp.ConsumeIntegralInRange<int>(0, 3) == 0 ? fdp.ConsumeIntegralInRange<int>(1, 3) : 0;
       edits > 0; --edits) {
    Tensor* target = fdp.PickValueInArray<Tensor*>({&qsl, &lens, &table});
    set_i32(*target, fdp.ConsumeIntegralInRange<int64_t>(0, 8), interesting(fdp));
  }
  Tensor key, value, alibi, sinks;
  Padded<kvq_forward_args> f;
  f.size_from(fdp, KVQ_FORWARD_ARGS_SIZE);
  f.args.attention_state = fdp.ConsumeIntegralInRange<int>(0, 15)
                               ? fdp.ConsumeIntegralInRange<int32_t>(1, 5)
                               : fdp.ConsumeIntegral<int32_t>();
  f.args.query = fdp.ConsumeIntegralInRange<int>(0, 31) ? &query.t : nullptr;
  f.args.output = fdp.ConsumeIntegralInRange<int>(0, 31) ? &output.t : nullptr;
  f.args.kv_cache = &l.cache_t;
  f.args.query_start_loc = &qsl.t;
  f.args.seq_lens = &lens.t;
  f.args.block_table = &table.t;
  if (fdp.ConsumeBool()) {
    key = make(fdp, contiguous(c.model_dtype, {tokens, kKvHeads, c.head_size}), rng, raw);
    value = make(fdp, contiguous(c.model_dtype, {tokens, kKvHeads, c.head_size_v}), rng, raw);
    f.args.key = &key.t;
    f.args.value = fdp.ConsumeIntegralInRange<int>(0, 15) ? &value.t : nullptr;
  }
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) {
    alibi = make(fdp, contiguous(KVQ_DTYPE_F32, {kHeads}), rng, false);
    f.args.alibi_slopes = &alibi.t;
  }
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) {
    sinks = make(fdp, contiguous(KVQ_DTYPE_F32, {kHeads}), rng, false);
    f.args.sinks = &sinks.t;
  }
  if (fdp.ConsumeIntegralInRange<int>(0, 31) == 0) f.args.head_weights = &query.t;

  // Kept (not taken) so a mismatch can print both messages.
  kvq_error* supported = api().supports(l.layer.get(), &f.args);
  kvq_error* ran = api().forward(l.layer.get(), &f.args);
  // supports() may be given NULL data pointers, so it can only promise
  // forward's answer when every tensor forward reads has its data.
  bool all_data = true;
  for (const kvq_tensor* t : {f.args.query, f.args.output, f.args.key, f.args.value,
                              f.args.alibi_slopes, f.args.sinks, f.args.head_weights})
    all_data &= t == nullptr || t->data != nullptr;
  if (all_data && supported != nullptr && api().error_code(ran) != api().error_code(supported)) {
    const std::string both = std::string("supports: ") + api().error_message(supported) +
                             " | forward: " + (ran ? api().error_message(ran) : "success");
    invariant_failed("supports() refused but forward answered differently:", both.c_str());
  }
  take(supported, "supports");
  take(ran, "forward");
}

// The layer of `c` with a cache of `num_blocks` blocks, created and
// initialised through the client (these are valid inputs: any refusal is a
// broken invariant).
LayerUnderTest make_layer(const LayerChoice& c, int64_t num_blocks) {
  kvq::client::LayerConfig config;
  config.backend = "triton";
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = c.mode;
  config.model_dtype = c.model_dtype;
  config.num_heads = kHeads;
  config.num_kv_heads = kKvHeads;
  config.head_size = c.head_size;
  config.head_size_v = c.head_size_v;
  config.block_size = kBlockSize;
  config.sliding_window = c.sliding_window;
  config.softcap = c.softcap;
  if (c.option_key != nullptr) config.options = {{c.option_key, c.option_value}};
  try {
    LayerUnderTest l{kvq::fuzz::plugin().create_layer(config), {}, num_blocks, {}, {}};
    l.geometry = l.layer.cache_geometry();
    l.cache = kvq::client::Buffer(
        kvq::fuzz::plugin(), static_cast<uint64_t>(num_blocks * l.geometry.bytes_per_block), 64);
    l.cache_t = l.cache.tensor(KVQ_DTYPE_U8, {num_blocks, l.geometry.bytes_per_block});
    l.layer.cache_init(l.cache_t);
    return l;
  } catch (const kvq::client::Error& e) {
    invariant_failed("a valid layer was refused:", e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const LayerChoice& c = kLayers[fdp.ConsumeIntegralInRange<size_t>(0, std::size(kLayers) - 1)];
  std::mt19937 rng(fdp.ConsumeIntegral<uint32_t>());

  LayerUnderTest l = make_layer(c, fdp.ConsumeIntegralInRange<int64_t>(1, 6));
  for (int op = 0; op < 4 && fdp.remaining_bytes() > 0; ++op) {
    if (fdp.ConsumeBool())
      cache_write(fdp, l, c, rng);
    else
      forward(fdp, l, c, rng);
  }
  return 0;
}
