/*
 * c_loader_test.c — drives kvq plugins exactly as a plain C host would.
 *
 * Usage: c_loader_test PLUGIN.so [PLUGIN.so ...]
 *
 * For each plugin: dlopen(RTLD_NOW | RTLD_LOCAL), dlsym the entry point,
 * negotiate (also as a host of another major and of an older minor), create a
 * layer on the first backend, size/allocate/initialise the KV cache, write 3
 * tokens, run one prefill forward and compare against a float64 attention
 * computed right here. Written in C11 (not C++) on purpose: it proves the
 * header and the plugins are usable from C with nothing but libc and libdl.
 */
#define _POSIX_C_SOURCE 200809L /* dlopen & co. under -std=c11 */

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvq_abi.h"

/* The problem: 4 query heads sharing 2 KV heads (GQA), head size 32, one
 * block of 16 tokens, 3 tokens written and attended to. */
enum { NUM_HEADS = 4, NUM_KV_HEADS = 2, HEAD_SIZE = 32, BLOCK_SIZE = 16, NUM_TOKENS = 3 };
enum { NUM_BLOCKS = 4, USED_BLOCK = 2 }; /* tokens go to block 2: exercises block_table */

static int failures;
static int skipped;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      ++failures;                                          \
    }                                                      \
  } while (0)

/* ------------------------------------------------------------ helpers */

/* Consumes an error: reports it when it is unexpected, returns its code. */
static int32_t take(const kvq_plugin_api* api, kvq_error* error, const char* what) {
  if (error == NULL) return 0;
  int32_t code = api->error_code(error);
  fprintf(stderr, "  %s -> error %d: %s\n", what, code, api->error_message(error));
  api->error_destroy(error);
  return code;
}

/* Fills a contiguous descriptor for a CPU tensor. */
static kvq_tensor make_tensor(void* data, int32_t dtype, int32_t ndim, const int64_t* shape) {
  kvq_tensor t;
  memset(&t, 0, sizeof t);
  t.struct_size = KVQ_TENSOR_SIZE;
  t.data = data;
  t.device_type = KVQ_DEVICE_CPU;
  t.dtype = dtype;
  t.ndim = ndim;
  int64_t stride = 1;
  for (int32_t i = ndim - 1; i >= 0; --i) {
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
  return t;
}

static kvq_host_info make_host(uint32_t major, uint32_t minor) {
  kvq_host_info host;
  memset(&host, 0, sizeof host);
  host.struct_size = KVQ_HOST_INFO_SIZE;
  host.abi_major = major;
  host.abi_minor = minor;
  return host; /* no log callback: the plugin must stay silent */
}

/* Deterministic inputs in [-1, 1) without rand()'s global state. */
static double next_uniform(uint64_t* state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* Model-dtype element codecs (round to nearest even), so the test also
 * works for a plugin that only offers bfloat16 or float16 caches. */
static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static float f16_to_f32(uint16_t h) {
  int exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  double magnitude = exponent == 0    ? ldexp(mantissa, -24)
                     : exponent == 31 ? (mantissa ? NAN : INFINITY)
                                      : ldexp(mantissa | 0x400, exponent - 25);
  return (float)((h & 0x8000) ? -magnitude : magnitude);
}
/* Only used on inputs in [-1, 1]: normal or subnormal, never overflowing. */
static uint16_t f32_to_f16(float f) {
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  double a = fabs((double)f);
  if (a < ldexp(1, -14)) return (uint16_t)(sign | (uint16_t)nearbyint(a * ldexp(1, 24)));
  int e;
  frexp(a, &e);                           /* a = m * 2^e, m in [0.5, 1) */
  double m = nearbyint(ldexp(a, 11 - e)); /* 11 significant bits, ties to even */
  if (m >= 2048) {
    m /= 2;
    ++e;
  }
  return (uint16_t)(sign | (uint16_t)((e + 14) << 10) | ((uint16_t)m & 0x3FF));
}

static size_t dtype_bytes(int32_t dtype) {
  return dtype == KVQ_DTYPE_F32 ? 4 : 2;
}

/* Stores x as element i of a model-dtype buffer and returns the stored value
 * (the reference must see exactly what the plugin sees). */
static double store(int32_t dtype, void* buffer, size_t i, double x) {
  if (dtype == KVQ_DTYPE_F32) {
    ((float*)buffer)[i] = (float)x;
    return ((float*)buffer)[i];
  }
  uint16_t h = dtype == KVQ_DTYPE_BF16 ? f32_to_bf16((float)x) : f32_to_f16((float)x);
  ((uint16_t*)buffer)[i] = h;
  return dtype == KVQ_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

static double load(int32_t dtype, const void* buffer, size_t i) {
  if (dtype == KVQ_DTYPE_F32) return ((const float*)buffer)[i];
  uint16_t h = ((const uint16_t*)buffer)[i];
  return dtype == KVQ_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

/* Causal GQA attention in float64 for one sequence whose query_len equals
 * its seq_len: query i sees keys 0..i. */
static void reference_attention(const double* q, const double* k, const double* v, double* out) {
  const double scale = 1.0 / sqrt((double)HEAD_SIZE);
  for (int i = 0; i < NUM_TOKENS; ++i) {
    for (int h = 0; h < NUM_HEADS; ++h) {
      const int kvh = h / (NUM_HEADS / NUM_KV_HEADS);
      double scores[NUM_TOKENS], max = -INFINITY, sum = 0.0;
      for (int j = 0; j <= i; ++j) {
        double s = 0.0;
        for (int d = 0; d < HEAD_SIZE; ++d)
          s += q[(i * NUM_HEADS + h) * HEAD_SIZE + d] * k[(j * NUM_KV_HEADS + kvh) * HEAD_SIZE + d];
        scores[j] = s * scale;
        if (scores[j] > max) max = scores[j];
      }
      for (int j = 0; j <= i; ++j) sum += (scores[j] = exp(scores[j] - max));
      for (int d = 0; d < HEAD_SIZE; ++d) {
        double acc = 0.0;
        for (int j = 0; j <= i; ++j) acc += scores[j] * v[(j * NUM_KV_HEADS + kvh) * HEAD_SIZE + d];
        out[(i * NUM_HEADS + h) * HEAD_SIZE + d] = acc / sum;
      }
    }
  }
}

/* ------------------------------------------------------------ steps */

static void check_version_rules(const kvq_plugin_api* api) {
  /* A host of another major is refused, with a message. */
  kvq_host_info host = make_host(KVQ_ABI_MAJOR + 1, 0);
  kvq_instance* instance = NULL;
  kvq_error* error = api->negotiate(&host, &instance);
  CHECK(error != NULL, "negotiate with major %d succeeded", KVQ_ABI_MAJOR + 1);
  if (error) {
    CHECK(api->error_code(error) == KVQ_ERR_VERSION_MISMATCH, "major 2: code %d, want %d",
          api->error_code(error), KVQ_ERR_VERSION_MISMATCH);
    const char* message = api->error_message(error);
    CHECK(message != NULL && message[0] != '\0', "major 2: empty error message");
    api->error_destroy(error);
  }
  CHECK(instance == NULL, "major 2: an instance was returned");
  api->instance_destroy(instance); /* NULL is accepted */

  /* An older host (minor 0) is served at minor 0. */
  host = make_host(KVQ_ABI_MAJOR, 0);
  instance = NULL;
  if (take(api, api->negotiate(&host, &instance), "negotiate(minor 0)") == 0) {
    kvq_plugin_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = KVQ_PLUGIN_INFO_SIZE;
    CHECK(take(api, api->get_info(instance, &info), "get_info") == 0, "get_info failed");
    CHECK(info.abi_major == KVQ_ABI_MAJOR, "abi_major %u", info.abi_major);
    CHECK(info.abi_minor == 0, "older host: negotiated minor %u, want 0", info.abi_minor);
    api->instance_destroy(instance);
  } else {
    CHECK(0, "negotiate as a minor-0 host failed");
  }

  /* A newer host is served at the plugin's own minor. */
  host = make_host(KVQ_ABI_MAJOR, api->abi_minor + 7);
  instance = NULL;
  if (take(api, api->negotiate(&host, &instance), "negotiate(newer minor)") == 0) {
    kvq_plugin_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = KVQ_PLUGIN_INFO_SIZE;
    CHECK(take(api, api->get_info(instance, &info), "get_info") == 0, "get_info failed");
    CHECK(info.abi_minor == api->abi_minor, "newer host: negotiated minor %u, want %u",
          info.abi_minor, api->abi_minor);
    api->instance_destroy(instance);
  } else {
    CHECK(0, "negotiate as a newer-minor host failed");
  }
}

/* Picks the backend's mode: "float32" if supported, else the first supported
 * of bfloat16/float16/float32 (each with its own model dtype). */
static const char* pick_mode(const kvq_backend_info* backend, int32_t* model_dtype) {
  static const struct {
    const char* name;
    int32_t dtype;
  } wanted[] = {{"float32", KVQ_DTYPE_F32},
                {"bfloat16", KVQ_DTYPE_BF16},
                {"float16", KVQ_DTYPE_F16},
                {"float32", KVQ_DTYPE_F32}};
  for (size_t w = 0; w < sizeof wanted / sizeof wanted[0]; ++w)
    for (int64_t m = 0; m < backend->num_kv_modes; ++m) {
      const kvq_kv_mode_info* mode = backend->kv_modes[m];
      if (mode->supported && strcmp(mode->name, wanted[w].name) == 0) {
        *model_dtype = wanted[w].dtype;
        return mode->name;
      }
    }
  return NULL;
}

/* Layer, cache, write, forward, compare. */
static void check_attention(const kvq_plugin_api* api, kvq_instance* instance,
                            const kvq_plugin_info* info) {
  CHECK(info->num_backends >= 1, "no backends");
  if (info->num_backends < 1) return;
  const kvq_backend_info* backend = info->backends[0];
  int32_t dtype = 0;
  const char* mode = pick_mode(backend, &dtype);
  CHECK(mode != NULL, "backend %s offers none of float32/bfloat16/float16", backend->name);
  if (mode == NULL) return;
  printf("  backend %s, mode %s\n", backend->name, mode);

  kvq_layer_config config;
  memset(&config, 0, sizeof config);
  config.struct_size = KVQ_LAYER_CONFIG_SIZE;
  config.backend = backend->name;
  config.layer_name = "model.layers.0.self_attn.attn";
  config.kv_cache_dtype = mode;
  config.model_dtype = dtype;
  config.num_heads = NUM_HEADS;
  config.num_kv_heads = NUM_KV_HEADS;
  config.head_size = HEAD_SIZE;
  config.block_size = BLOCK_SIZE;
  config.tp_size = 1;
  kvq_layer* layer = NULL;
  if (take(api, api->layer_create(instance, &config, &layer), "layer_create") != 0) {
    CHECK(0, "layer_create failed");
    return;
  }

  kvq_cache_geometry geometry;
  memset(&geometry, 0, sizeof geometry);
  geometry.struct_size = KVQ_CACHE_GEOMETRY_SIZE;
  void* cache = NULL;
  void *query = NULL, *key = NULL, *value = NULL, *output = NULL;
  if (take(api, api->cache_geometry(layer, &geometry), "cache_geometry") != 0) {
    CHECK(0, "cache_geometry failed");
    goto done;
  }
  CHECK(geometry.layout == KVQ_CACHE_LAYOUT_BLOCK_KV_SLOT_HEAD, "layout %d", geometry.layout);
  CHECK(geometry.bytes_per_block == 2 * BLOCK_SIZE * NUM_KV_HEADS * geometry.row_bytes,
        "bytes_per_block %lld != 2 * block * kv_heads * row_bytes %lld",
        (long long)geometry.bytes_per_block, (long long)geometry.row_bytes);
  CHECK(geometry.alignment > 0 && (geometry.alignment & (geometry.alignment - 1)) == 0,
        "alignment %lld is not a power of two", (long long)geometry.alignment);
  if (geometry.bytes_per_block <= 0 || geometry.alignment <= 0) goto done;

  /* The host owns the cache: size it from the geometry, align it as asked
   * (aligned_alloc wants a multiple of the alignment). */
  size_t alignment = geometry.alignment < 64 ? 64 : (size_t)geometry.alignment;
  size_t cache_bytes = (size_t)(NUM_BLOCKS * geometry.bytes_per_block);
  cache_bytes = (cache_bytes + alignment - 1) / alignment * alignment;
  cache = aligned_alloc(alignment, cache_bytes);
  CHECK(cache != NULL, "cannot allocate %zu bytes", cache_bytes);
  if (cache == NULL) goto done;
  memset(cache, 0xA5, cache_bytes); /* garbage that cache_init must clear */
  const int64_t cache_shape[2] = {NUM_BLOCKS, geometry.bytes_per_block};
  kvq_tensor cache_t = make_tensor(cache, KVQ_DTYPE_U8, 2, cache_shape);
  CHECK(take(api, api->cache_init(layer, &cache_t), "cache_init") == 0, "cache_init failed");

  /* Inputs, stored in the model dtype; the reference reads back exactly the
   * stored values. */
  enum { QN = NUM_TOKENS * NUM_HEADS * HEAD_SIZE, KN = NUM_TOKENS * NUM_KV_HEADS * HEAD_SIZE };
  const size_t es = dtype_bytes(dtype);
  query = malloc(QN * es);
  key = malloc(KN * es);
  value = malloc(KN * es);
  output = malloc(QN * es);
  CHECK(query && key && value && output, "out of memory");
  if (!(query && key && value && output)) goto done;
  double q_ref[QN], k_ref[KN], v_ref[KN], out_ref[QN];
  uint64_t rng = 12345;
  for (size_t i = 0; i < QN; ++i) q_ref[i] = store(dtype, query, i, next_uniform(&rng));
  for (size_t i = 0; i < KN; ++i) k_ref[i] = store(dtype, key, i, next_uniform(&rng));
  for (size_t i = 0; i < KN; ++i) v_ref[i] = store(dtype, value, i, next_uniform(&rng));
  memset(output, 0xFF, QN * es); /* NaN in every float format: all must be written */

  const int64_t q_shape[3] = {NUM_TOKENS, NUM_HEADS, HEAD_SIZE};
  const int64_t kv_shape[3] = {NUM_TOKENS, NUM_KV_HEADS, HEAD_SIZE};
  kvq_tensor q_t = make_tensor(query, dtype, 3, q_shape);
  kvq_tensor k_t = make_tensor(key, dtype, 3, kv_shape);
  kvq_tensor v_t = make_tensor(value, dtype, 3, kv_shape);
  kvq_tensor o_t = make_tensor(output, dtype, 3, q_shape);

  /* Token t goes to row t of block USED_BLOCK. */
  int64_t slots[NUM_TOKENS];
  for (int t = 0; t < NUM_TOKENS; ++t) slots[t] = USED_BLOCK * BLOCK_SIZE + t;
  const int64_t slot_shape[1] = {NUM_TOKENS};
  kvq_tensor slot_t = make_tensor(slots, KVQ_DTYPE_I64, 1, slot_shape);
  kvq_cache_write_args write;
  memset(&write, 0, sizeof write);
  write.struct_size = KVQ_CACHE_WRITE_ARGS_SIZE;
  write.key = &k_t;
  write.value = &v_t;
  write.slot_mapping = &slot_t;
  write.kv_cache = &cache_t;
  CHECK(take(api, api->cache_write(layer, &write), "cache_write") == 0, "cache_write failed");

  /* One sequence, all 3 tokens new: query_len = seq_len = 3. */
  int32_t query_start_loc[2] = {0, NUM_TOKENS};
  int32_t seq_lens[1] = {NUM_TOKENS};
  int32_t block_table[1][1] = {{USED_BLOCK}};
  const int64_t qsl_shape[1] = {2}, lens_shape[1] = {1}, table_shape[2] = {1, 1};
  kvq_tensor qsl_t = make_tensor(query_start_loc, KVQ_DTYPE_I32, 1, qsl_shape);
  kvq_tensor lens_t = make_tensor(seq_lens, KVQ_DTYPE_I32, 1, lens_shape);
  kvq_tensor table_t = make_tensor(block_table, KVQ_DTYPE_I32, 2, table_shape);
  kvq_forward_args args;
  memset(&args, 0, sizeof args);
  args.struct_size = KVQ_FORWARD_ARGS_SIZE;
  args.attention_state = KVQ_ATTN_PREFILL_NO_CACHE;
  args.query = &q_t;
  args.key = &k_t;
  args.value = &v_t;
  args.kv_cache = &cache_t;
  args.query_start_loc = &qsl_t;
  args.seq_lens = &lens_t;
  args.block_table = &table_t;
  args.output = &o_t;
  CHECK(take(api, api->supports(layer, &args), "supports") == 0, "supports refused the batch");
  if (take(api, api->forward(layer, &args), "forward") != 0) {
    CHECK(0, "forward failed");
    goto done;
  }

  /* f32: 1e-4 absolute. 16-bit model dtypes: the output itself is rounded
   * to 8 (bf16) or 11 (fp16) significant bits, and the plugin may round
   * intermediates too. */
  const double tolerance = dtype == KVQ_DTYPE_F32 ? 1e-4 : dtype == KVQ_DTYPE_BF16 ? 2e-2 : 4e-3;
  reference_attention(q_ref, k_ref, v_ref, out_ref);
  double worst = 0.0;
  int bad = 0;
  for (size_t i = 0; i < QN; ++i) {
    double got = load(dtype, output, i), err = fabs(got - out_ref[i]);
    if (!(err <= tolerance)) { /* also catches NaN */
      if (bad++ < 5) fprintf(stderr, "  output[%zu] = %.8g, reference %.8g\n", i, got, out_ref[i]);
    }
    if (err > worst || isnan(err)) worst = err;
  }
  CHECK(bad == 0, "%d of %d outputs off by more than %g (worst %g)", bad, (int)QN, tolerance,
        worst);
  printf("  forward: max |error| %.3g (tolerance %g)\n", worst, tolerance);

done:
  free(query);
  free(key);
  free(value);
  free(output);
  api->layer_destroy(layer);
  free(cache); /* after the layer: the plugin may hold no reference anyway */
}

static void run_plugin(const char* path) {
  printf("plugin %s\n", path);
  /* RTLD_LOCAL: the plugin's symbols must not leak into the global
   * namespace (two plugins may bundle different copies of a library). */
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(handle != NULL, "dlopen: %s", dlerror());
  if (handle == NULL) return;
  /* ISO C forbids converting void* to a function pointer; POSIX requires it
   * to work, and copying the bits keeps -pedantic quiet. */
  void* symbol = dlsym(handle, KVQ_PLUGIN_ENTRY_SYMBOL);
  CHECK(symbol != NULL, "dlsym(%s): %s", KVQ_PLUGIN_ENTRY_SYMBOL, dlerror());
  if (symbol == NULL) return;
  kvq_plugin_entry_fn entry;
  memcpy(&entry, &symbol, sizeof entry);
  const kvq_plugin_api* api = entry();
  CHECK(api != NULL, "kvq_plugin_entry returned NULL");
  if (api == NULL) return;
  CHECK(api->abi_major == KVQ_ABI_MAJOR, "plugin major %u", api->abi_major);
  if (api->abi_major != KVQ_ABI_MAJOR) return;
  /* A plugin that cannot run on this machine (a GPU plugin without a GPU)
   * says so through its probe: skipped, with its reason. */
  if (KVQ_API_HAS(api, probe)) {
    kvq_probe_result probe;
    memset(&probe, 0, sizeof probe);
    probe.struct_size = KVQ_PROBE_RESULT_SIZE;
    kvq_error* e = api->probe(&probe);
    if (e == NULL && !probe.can_run) {
      printf("SKIPPED %s: %s\n", path, probe.reason ? probe.reason : "");
      ++skipped;
      return;
    }
    api->error_destroy(e);
  }
  /* Every v1.0 function this test calls must be in the table. */
  int complete = KVQ_API_HAS(api, negotiate) && KVQ_API_HAS(api, error_code) &&
                 KVQ_API_HAS(api, error_message) && KVQ_API_HAS(api, error_destroy) &&
                 KVQ_API_HAS(api, instance_destroy) && KVQ_API_HAS(api, get_info) &&
                 KVQ_API_HAS(api, layer_create) && KVQ_API_HAS(api, layer_destroy) &&
                 KVQ_API_HAS(api, cache_geometry) && KVQ_API_HAS(api, cache_init) &&
                 KVQ_API_HAS(api, cache_write) && KVQ_API_HAS(api, supports) &&
                 KVQ_API_HAS(api, forward);
  CHECK(complete, "the api table lacks a required v1.0 function (struct_size %llu)",
        (unsigned long long)api->struct_size);
  if (!complete) return;

  check_version_rules(api);

  kvq_host_info host = make_host(KVQ_ABI_MAJOR, KVQ_ABI_MINOR);
  kvq_instance* instance = NULL;
  kvq_error* refused = api->negotiate(&host, &instance);
  if (refused != NULL && api->error_code(refused) == KVQ_ERR_UNSUPPORTED) {
    /* A device plugin refuses a host too old for its device hooks. */
    printf("SKIPPED %s: %s\n", path, api->error_message(refused));
    api->error_destroy(refused);
    ++skipped;
    return;
  }
  if (take(api, refused, "negotiate") != 0) {
    CHECK(0, "negotiate failed");
    return;
  }
  kvq_plugin_info info;
  memset(&info, 0, sizeof info);
  info.struct_size = KVQ_PLUGIN_INFO_SIZE;
  if (take(api, api->get_info(instance, &info), "get_info") == 0) {
    printf("  name %s, version %s, vendor %s, ABI %u.%u, simd %s\n", info.name, info.version,
           info.vendor, info.abi_major, info.abi_minor, info.simd_level);
#if KVQ_ABI_MINOR >= 1
    /* This C host drives host memory; a device plugin's attention is judged
     * by kvq-conform through the device hooks. */
    if (info.struct_size >= KVQ_STRUCT_SIZE(kvq_plugin_info, has_device_memory) &&
        info.has_device_memory) {
      printf("  attention not driven: a device plugin (%s)\n", info.device_name);
    } else
#endif
    {
      check_attention(api, instance, &info);
    }
  } else {
    CHECK(0, "get_info failed");
  }
  api->instance_destroy(instance);
  /* No dlclose: the header forbids unloading while anything the plugin
   * created might live, and a process exit unloads it anyway. */
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PLUGIN.so [PLUGIN.so ...]\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; ++i) run_plugin(argv[i]);
  printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  if (failures == 0 && skipped == argc - 1) return 77; /* every plugin skipped */
  return failures ? 1 : 0;
}
